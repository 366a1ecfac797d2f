//! JSON renderings of the counts: what `tcp_summary`, `listen_discovery` and `listen_stats`
//! return. Member names are the kernel state names (with underscores), so Zabbix JSONPath
//! preprocessing needs no brackets: `$.TIME_WAIT`.

use std::fmt::Write;

use crate::answer::listen::PortStats;
use crate::answer::udp::{EphemeralRange, UdpPortStats, UdpTable};
use crate::model::state::{StateCounts, TcpState};

/// Writes `"ESTABLISHED":n,...,"CLOSING":n,"TOTAL":n` (no braces).
pub(crate) fn write_state_members(json: &mut String, counts: &StateCounts) {
    for state in TcpState::ALL {
        let _ = write!(json, "\"{}\":{},", state.kernel_name(), counts.get(state));
    }
    let _ = write!(json, "\"TOTAL\":{}", counts.total());
}

/// `{"ESTABLISHED":28,...,"CLOSING":1,"TOTAL":73,"ports":[...],"ListenOverflows":0,
/// "ListenDrops":0}`: the states first (what `$.TIME_WAIT` reads), then the listening ports
/// and counters, so one request can feed a whole template.
pub fn summary<'a>(
    counts: &StateCounts,
    ports: impl Iterator<Item = &'a PortStats>,
    counters: ListenCounters,
) -> String {
    let mut json = String::with_capacity(512);
    json.push('{');
    write_state_members(&mut json, counts);
    json.push(',');
    write_listen_members(&mut json, ports, counters);
    json.push('}');
    json
}

/// `[{"{#PORT}":"22"},...]`: Zabbix low-level discovery rows.
pub fn discovery<'a>(ports: impl Iterator<Item = &'a PortStats>) -> String {
    let mut json = String::from("[");
    for (index, stats) in ports.enumerate() {
        if index > 0 {
            json.push(',');
        }
        let _ = write!(json, "{{\"{{#PORT}}\":\"{}\"}}", stats.port);
    }
    json.push(']');
    json
}

/// The kernel's listen-queue counters reported with the per-port data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenCounters {
    pub overflows: u64,
    pub drops: u64,
}

/// `{"ports":[{"port":22,"listeners":2,"accept_queue":0,"ESTABLISHED":3,...,"TOTAL":5}],
/// "ListenOverflows":0,"ListenDrops":0}`
pub fn listen_stats<'a>(
    ports: impl Iterator<Item = &'a PortStats>,
    counters: ListenCounters,
) -> String {
    let mut json = String::from("{");
    write_listen_members(&mut json, ports, counters);
    json.push('}');
    json
}

/// Writes `"ports":[...],"ListenOverflows":n,"ListenDrops":n` (no braces).
fn write_listen_members<'a>(
    json: &mut String,
    ports: impl Iterator<Item = &'a PortStats>,
    counters: ListenCounters,
) {
    json.push_str("\"ports\":[");
    for (index, stats) in ports.enumerate() {
        if index > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            "{{\"port\":{},\"listeners\":{},\"accept_queue\":{},",
            stats.port, stats.listeners, stats.accept_queue
        );
        write_state_members(json, &stats.states);
        json.push('}');
    }
    let _ = write!(
        json,
        "],\"ListenOverflows\":{},\"ListenDrops\":{}",
        counters.overflows, counters.drops
    );
}

/// Writes `"UNCONN":n,"ESTAB":n` then `,"TOTAL":n` (no braces): the `ss -uan` names.
fn write_udp_state_members(json: &mut String, counts: &StateCounts, total: bool) {
    let _ = write!(
        json,
        "\"UNCONN\":{},\"ESTAB\":{}",
        counts.get(TcpState::Close),
        counts.get(TcpState::Established)
    );
    if total {
        let _ = write!(json, ",\"TOTAL\":{}", counts.total());
    }
}

fn write_optional(json: &mut String, value: Option<u64>) {
    match value {
        Some(value) => {
            let _ = write!(json, "{value}");
        }
        None => json.push_str("null"),
    }
}

fn write_udp_port(json: &mut String, stats: &UdpPortStats) {
    let _ = write!(
        json,
        "{{\"port\":{},\"sockets\":{},",
        stats.port,
        stats.states.total()
    );
    write_udp_state_members(json, &stats.states, false);
    let _ = write!(
        json,
        ",\"queue_bytes\":{},\"buffer_bytes\":",
        stats.queue_bytes
    );
    write_optional(json, stats.buffer_bytes);
    json.push_str(",\"fill_percent\":");
    match stats.fill_hundredths {
        Some(hundredths) => {
            let _ = write!(json, "{}.{:02}", hundredths / 100, hundredths % 100);
        }
        None => json.push_str("null"),
    }
    json.push_str(",\"drops\":");
    write_optional(json, stats.drops);
    json.push('}');
}

/// `{"UNCONN":3,"ESTAB":1,"TOTAL":4,"drops":2994,"ports":[{"port":53,"sockets":2,"UNCONN":2,
/// "ESTAB":0,"queue_bytes":0,"buffer_bytes":425984,"fill_percent":0.00,"drops":0}],
/// "ports_bound":1,"ports_omitted":0,` then `counters`, the `"InDatagrams":0,...,
/// "Udp6InDatagrams":0,...` members already rendered (or empty), and `}`. `ports` holds at
/// most `MAX_REPORTED_PORTS` ports (see `answer::udp`).
pub fn udp_summary(table: &mut UdpTable, range: EphemeralRange, counters: &str) -> String {
    let mut json = String::with_capacity(512);
    json.push('{');
    write_udp_state_members(&mut json, &table.counts, true);
    json.push_str(",\"drops\":");
    write_optional(&mut json, table.drops);
    json.push_str(",\"ports\":[");
    let (bound, reported) = table.reported_ports(range);
    let mut shown = 0;
    for (stats, _) in reported {
        if shown > 0 {
            json.push(',');
        }
        write_udp_port(&mut json, stats);
        shown += 1;
    }
    let _ = write!(
        json,
        "],\"ports_bound\":{bound},\"ports_omitted\":{}",
        bound - shown
    );
    if !counters.is_empty() {
        json.push(',');
        json.push_str(counters);
    }
    json.push('}');
    json
}

/// `[{"{#PORT}":"53","{#PORT.EPHEMERAL}":"0"},...]`: one row per bound UDP port `udp_summary`
/// reports; `{#PORT.EPHEMERAL}` is `1` inside the kernel's ephemeral port range (auto-bound
/// senders, most likely), `0` outside, `unknown` when the range could not be read.
pub fn udp_discovery(table: &mut UdpTable, range: EphemeralRange) -> String {
    let mut json = String::from("[");
    let (_, reported) = table.reported_ports(range);
    for (index, (stats, ephemeral)) in reported.enumerate() {
        if index > 0 {
            json.push(',');
        }
        let ephemeral = match ephemeral {
            Some(true) => "1",
            Some(false) => "0",
            None => "unknown",
        };
        let _ = write!(
            json,
            "{{\"{{#PORT}}\":\"{}\",\"{{#PORT.EPHEMERAL}}\":\"{ephemeral}\"}}",
            stats.port
        );
    }
    json.push(']');
    json
}

/// Appends `"name":value` to a rendered member list (comma-separated, no braces).
pub fn push_counter_member(json: &mut String, name: &str, value: u64) {
    if !json.is_empty() {
        json.push(',');
    }
    write_json_string(json, name);
    let _ = write!(json, ":{value}");
}

/// What `linux_status[info]` reports: how this process answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info<'a> {
    pub version: &'a str,
    pub api_version: i32,
    pub backend_configured: &'a str,
    pub backend_in_use: &'a str,
    pub fallback_reason: Option<&'a str>,
    pub snapshot_lifetime_ms: u128,
    pub config_file: &'a str,
    pub config_file_present: bool,
    pub process_id: u32,
    /// The first parameters this process answers (the key registry's metrics), so a server
    /// can see which keys a host's module or plugin knows before creating items for them.
    pub keys: &'a [&'a str],
    pub netns_table_interval_s: u64,
    /// What this worker's last pass over /proc for the netns keys skipped, if it made one.
    pub netns_pass: Option<NetnsPass<'a>>,
}

/// The skips of one pass over /proc (see `source::netns::Discovery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetnsPass<'a> {
    pub namespaces: usize,
    pub processes: u64,
    /// Exited during the pass.
    pub gone: u64,
    /// Not allowed to look at (hidepid=1, permissions).
    pub unreadable: u64,
    pub hidepid: Option<&'a str>,
}

/// `{"version":"0.2.0","api_version":2,"backend_configured":"auto","backend_in_use":"netlink",
/// "fallback_reason":null,...}`
pub fn info(info: &Info<'_>) -> String {
    let mut json = String::with_capacity(256);
    json.push_str("{\"version\":");
    write_json_string(&mut json, info.version);
    let _ = write!(json, ",\"api_version\":{}", info.api_version);
    json.push_str(",\"backend_configured\":");
    write_json_string(&mut json, info.backend_configured);
    json.push_str(",\"backend_in_use\":");
    write_json_string(&mut json, info.backend_in_use);
    json.push_str(",\"fallback_reason\":");
    match info.fallback_reason {
        Some(reason) => write_json_string(&mut json, reason),
        None => json.push_str("null"),
    }
    let _ = write!(
        json,
        ",\"snapshot_lifetime_ms\":{},\"config_file\":",
        info.snapshot_lifetime_ms
    );
    write_json_string(&mut json, info.config_file);
    let _ = write!(
        json,
        ",\"config_file_present\":{},\"process_id\":{},\"keys\":[",
        info.config_file_present, info.process_id
    );
    for (i, key) in info.keys.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        write_json_string(&mut json, key);
    }
    let _ = write!(
        json,
        "],\"netns_table_interval_s\":{},\"netns_last_pass\":",
        info.netns_table_interval_s
    );
    match info.netns_pass {
        None => json.push_str("null"),
        Some(pass) => {
            let _ = write!(
                json,
                "{{\"namespaces\":{},\"processes\":{},\"processes_gone\":{},\"processes_unreadable\":{},\"hidepid\":",
                pass.namespaces, pass.processes, pass.gone, pass.unreadable
            );
            match pass.hidepid {
                Some(value) => write_json_string(&mut json, value),
                None => json.push_str("null"),
            }
            json.push('}');
        }
    }
    json.push('}');
    json
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub(crate) fn write_json_string(json: &mut String, text: &str) {
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(json, "\\u{:04x}", u32::from(c));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(raw: &[u8]) -> StateCounts {
        let mut counts = StateCounts::default();
        for &state in raw {
            counts.add_raw(state);
        }
        counts
    }

    #[test]
    fn summary_lists_every_state_then_total_then_ports() {
        let ports = [PortStats {
            port: 22,
            listeners: 1,
            accept_queue: 0,
            states: counts(&[10]),
        }];
        let json = summary(
            &counts(&[1, 1, 10, 6, 0xff]),
            ports.iter(),
            ListenCounters {
                overflows: 1,
                drops: 2,
            },
        );
        assert!(json.starts_with(
            "{\"ESTABLISHED\":2,\"SYN_SENT\":0,\"SYN_RECV\":0,\"FIN_WAIT1\":0,\"FIN_WAIT2\":0,\
             \"TIME_WAIT\":1,\"CLOSE\":0,\"CLOSE_WAIT\":0,\"LAST_ACK\":0,\"LISTEN\":1,\
             \"CLOSING\":0,\"TOTAL\":5,\"ports\":[{\"port\":22,\"listeners\":1,"
        ));
        assert!(json.ends_with("\"TOTAL\":1}],\"ListenOverflows\":1,\"ListenDrops\":2}"));
    }

    #[test]
    fn discovery_rows() {
        let ports = [
            PortStats {
                port: 22,
                ..PortStats::default()
            },
            PortStats {
                port: 8080,
                ..PortStats::default()
            },
        ];
        assert_eq!(
            discovery(ports.iter()),
            "[{\"{#PORT}\":\"22\"},{\"{#PORT}\":\"8080\"}]"
        );
        assert_eq!(discovery([].iter()), "[]");
    }

    #[test]
    fn listen_stats_shape() {
        let ports = [PortStats {
            port: 80,
            listeners: 2,
            accept_queue: 4,
            states: counts(&[10, 10, 1]),
        }];
        let json = listen_stats(
            ports.iter(),
            ListenCounters {
                overflows: 7,
                drops: 9,
            },
        );
        assert!(json.starts_with(
            "{\"ports\":[{\"port\":80,\"listeners\":2,\"accept_queue\":4,\"ESTABLISHED\":1,"
        ));
        assert!(json.ends_with(
            "\"LISTEN\":2,\"CLOSING\":0,\"TOTAL\":3}],\"ListenOverflows\":7,\"ListenDrops\":9}"
        ));
        assert_eq!(
            listen_stats([].iter(), ListenCounters::default()),
            "{\"ports\":[],\"ListenOverflows\":0,\"ListenDrops\":0}"
        );
    }

    #[test]
    fn info_is_json_with_escaped_strings() {
        let text = info(&Info {
            version: "0.2.0",
            api_version: 2,
            backend_configured: "auto",
            backend_in_use: "proc",
            fallback_reason: Some("socket refused: \"x\"\\\n"),
            snapshot_lifetime_ms: 1000,
            config_file: "/etc/zabbix/linux_status.conf",
            config_file_present: false,
            process_id: 42,
            keys: &["tcp_status", "info"],
            netns_table_interval_s: 60,
            netns_pass: None,
        });
        assert_eq!(
            text,
            r#"{"version":"0.2.0","api_version":2,"backend_configured":"auto","backend_in_use":"proc","fallback_reason":"socket refused: \"x\"\\\u000a","snapshot_lifetime_ms":1000,"config_file":"/etc/zabbix/linux_status.conf","config_file_present":false,"process_id":42,"keys":["tcp_status","info"],"netns_table_interval_s":60,"netns_last_pass":null}"#
        );
    }
}
