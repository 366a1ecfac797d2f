//! The key registry: every `linux_status[...]` key in one table, the one source of truth for
//! what keys exist.
//!
//! Each [`KeyEntry`] holds the first parameter (the metric name), the key's usage as error
//! messages show it, a description for admins (ending with a dot: agent 2 refuses a plugin
//! description without one), whether it takes the `<laddr>,<lport>,<raddr>,<rport>` filters,
//! a sample key any Linux host answers, and the function that parses its other parameters into
//! an [`ItemRequest`]. The parser ([`super::key::parse_params`]) dispatches through that
//! function, so there is no catch-all arm a new key could fall into; the answer layer matches
//! [`ItemRequest`] exhaustively, so a new variant without an answer does not build.
//!
//! Rendered from this table (and compared with the committed files by tests/generated.rs,
//! which rewrites them under `LS_REGENERATE=1`): tests/lib/keys.json (the Python suites' key
//! list, also read by fuzz/run.sh for its seeds), the README key table, the metric lines of
//! fuzz/dict/key_grammar.dict; at compile time: the plugin's description.

use crate::model::state::TcpState;
use crate::model::text::{quote, trim_spaces};
use crate::request::filter::FilterParams;
use crate::request::key::{
    parse_cgroup_path, parse_counter, parse_state, parse_udp_state, KeyError,
};

/// What an item asks for: one variant per registry entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemRequest {
    /// `linux_status[tcp_status,<state>,<laddr>,<lport>,<raddr>,<rport>]`.
    TcpStatus {
        state: TcpState,
        filter: FilterParams,
    },
    /// `linux_status[tcp_summary,<laddr>,<lport>,<raddr>,<rport>]`: every state as JSON.
    TcpSummary { filter: FilterParams },
    /// `linux_status[listen_discovery]`: LLD JSON of the listening ports.
    ListenDiscovery,
    /// `linux_status[listen_stats]`: per listening port data, plus listen-queue counters.
    ListenStats,
    /// `linux_status[tcp_ext,<counter>]`: one TcpExt counter of /proc/net/netstat.
    TcpExt { counter: String },
    /// `linux_status[netns_discovery]`: LLD JSON of the network namespaces holding processes.
    NetnsDiscovery,
    /// `linux_status[netns_summary,<selector>,<laddr>,<lport>,<raddr>,<rport>]`: the
    /// `tcp_summary` JSON of one network namespace.
    NetnsSummary {
        selector: String,
        filter: FilterParams,
    },
    /// `linux_status[netns_status,<selector>,<state>,<laddr>,<lport>,<raddr>,<rport>]`.
    NetnsStatus {
        selector: String,
        state: TcpState,
        filter: FilterParams,
    },
    /// `linux_status[netns_all]`: every namespace's counters and state table as one JSON.
    NetnsAll,
    /// `linux_status[version]`: the module's version, to check what an agent has loaded.
    Version,
    /// `linux_status[cgroup_discovery]`: LLD JSON of the cgroups holding TCP sockets.
    CgroupDiscovery,
    /// `linux_status[cgroup_summary]`: per cgroup path its per-state counts, as JSON.
    CgroupSummary,
    /// `linux_status[cgroup_status,<cgroup>,<state>]`: the sockets of one cgroup in one
    /// state; `cgroup` is a path under the cgroup2 mount (checked: absolute, no `.`/`..`).
    CgroupStatus { cgroup: String, state: TcpState },
    /// `linux_status[info]`: JSON of the version, the backend configured and in use, and the
    /// settings in force, so a server can see how a host answers.
    Info,
    /// `linux_status[udp_status,<state>,<laddr>,<lport>,<raddr>,<rport>]`: UDP sockets in
    /// one state (None: every UDP socket).
    UdpStatus {
        state: Option<TcpState>,
        filter: FilterParams,
    },
    /// `linux_status[udp_summary]`: UDP counts, per bound port queues and drops, and the
    /// Udp/Udp6 counters, as JSON.
    UdpSummary,
    /// `linux_status[udp_discovery]`: LLD JSON of the bound UDP ports.
    UdpDiscovery,
}

/// Parses the parameters after the first (at most as many as `usage` has commas: checked
/// before) into the request; `usage` is the entry's own, for messages.
pub type ParseRest = fn(rest: &[&[u8]], usage: &str) -> Result<ItemRequest, KeyError>;

/// One key.
#[derive(Clone, Copy)]
pub struct KeyEntry {
    /// The first parameter (matched ignoring ASCII case and trailing spaces).
    pub metric: &'static str,
    /// The whole key with its parameters, as messages and docs show it.
    pub usage: &'static str,
    /// For admins: what it returns; ends with a dot.
    pub description: &'static str,
    /// Takes `<laddr>,<lport>,<raddr>,<rport>` (Zabbix `net.tcp.socket.count` semantics).
    pub filters: bool,
    /// A key every Linux host answers (the suites query each one).
    pub sample: &'static str,
    pub parse: ParseRest,
}

/// Every key, in the order messages and docs list them.
pub const KEYS: &[KeyEntry] = &[
    KeyEntry {
        metric: "tcp_status",
        usage: "linux_status[tcp_status,<state>,<laddr>,<lport>,<raddr>,<rport>]",
        description: "The number of TCP sockets (IPv4 and IPv6) in one state, optionally filtered by local and remote address and port.",
        filters: true,
        sample: "linux_status[tcp_status,LISTEN]",
        parse: |rest, usage| {
            Ok(ItemRequest::TcpStatus {
                state: parse_state(rest.first().copied().unwrap_or(b""), usage)?,
                filter: filter(rest.get(1..).unwrap_or(&[]))?,
            })
        },
    },
    KeyEntry {
        metric: "tcp_summary",
        usage: "linux_status[tcp_summary,<laddr>,<lport>,<raddr>,<rport>]",
        description: "Every state, the total, the listening ports and the listen-queue counters as one JSON object from one walk.",
        filters: true,
        sample: "linux_status[tcp_summary]",
        parse: |rest, _| {
            Ok(ItemRequest::TcpSummary {
                filter: filter(rest)?,
            })
        },
    },
    KeyEntry {
        metric: "listen_discovery",
        usage: "linux_status[listen_discovery]",
        description: "Low-level discovery of the listening TCP ports: one `{#PORT}` row per port.",
        filters: false,
        sample: "linux_status[listen_discovery]",
        parse: |_, _| Ok(ItemRequest::ListenDiscovery),
    },
    KeyEntry {
        metric: "listen_stats",
        usage: "linux_status[listen_stats]",
        description: "Per listening port its listeners, accept-queue depth and connections per state, with ListenOverflows and ListenDrops, as JSON.",
        filters: false,
        sample: "linux_status[listen_stats]",
        parse: |_, _| Ok(ItemRequest::ListenStats),
    },
    KeyEntry {
        metric: "tcp_ext",
        usage: "linux_status[tcp_ext,<counter>]",
        description: "One TcpExt counter of /proc/net/netstat, by its kernel name.",
        filters: false,
        sample: "linux_status[tcp_ext,ListenOverflows]",
        parse: |rest, usage| parse_counter(rest.first().copied().unwrap_or(b""), usage),
    },
    KeyEntry {
        metric: "version",
        usage: "linux_status[version]",
        description: "The version of the module or plugin that answers.",
        filters: false,
        sample: "linux_status[version]",
        parse: |_, _| Ok(ItemRequest::Version),
    },
    KeyEntry {
        metric: "info",
        usage: "linux_status[info]",
        description: "How this agent answers, as JSON: version, backend configured and in use, fallback reason, settings in force, and the keys it answers.",
        filters: false,
        sample: "linux_status[info]",
        parse: |_, _| Ok(ItemRequest::Info),
    },
    KeyEntry {
        metric: "cgroup_discovery",
        usage: "linux_status[cgroup_discovery]",
        description: "Low-level discovery of the cgroups (cgroup v2, netlink) holding TCP sockets: `{#CGROUP}` path, `{#CGROUP.ID}`, `{#UNIT}`.",
        filters: false,
        sample: "linux_status[cgroup_discovery]",
        parse: |_, _| Ok(ItemRequest::CgroupDiscovery),
    },
    KeyEntry {
        metric: "cgroup_summary",
        usage: "linux_status[cgroup_summary]",
        description: "Per cgroup path its sockets per state, plus those without a cgroup (TIME_WAIT, SYN_RECV requests), as one JSON object from one dump.",
        filters: false,
        sample: "linux_status[cgroup_summary]",
        parse: |_, _| Ok(ItemRequest::CgroupSummary),
    },
    KeyEntry {
        metric: "cgroup_status",
        usage: "linux_status[cgroup_status,<cgroup>,<state>]",
        description: "The number of TCP sockets of one cgroup (a path under the cgroup2 mount, as `ss --cgroup` prints it) in one state.",
        filters: false,
        sample: "linux_status[cgroup_status,/,LISTEN]",
        parse: |rest, usage| {
            Ok(ItemRequest::CgroupStatus {
                cgroup: parse_cgroup_path(rest.first().copied().unwrap_or(b""), usage)?,
                state: parse_state(rest.get(1).copied().unwrap_or(b""), usage)?,
            })
        },
    },
    KeyEntry {
        metric: "netns_discovery",
        usage: "linux_status[netns_discovery]",
        description: "Low-level discovery of the network namespaces holding processes: one `{#NETNS}` row per namespace with its runtime, container id, cgroup path and a representative process.",
        filters: false,
        sample: "linux_status[netns_discovery]",
        parse: |_, _| Ok(ItemRequest::NetnsDiscovery),
    },
    KeyEntry {
        metric: "netns_summary",
        usage: "linux_status[netns_summary,<selector>,<laddr>,<lport>,<raddr>,<rport>]",
        description: "The tcp_summary JSON of one network namespace; `<selector>` is self, a `{#NETNS}` id, a unique container id prefix or a cgroup path.",
        filters: true,
        sample: "linux_status[netns_summary,self]",
        parse: |rest, usage| {
            Ok(ItemRequest::NetnsSummary {
                selector: parse_selector(rest.first().copied().unwrap_or(b""), usage)?,
                filter: filter(rest.get(1..).unwrap_or(&[]))?,
            })
        },
    },
    KeyEntry {
        metric: "netns_status",
        usage: "linux_status[netns_status,<selector>,<state>,<laddr>,<lport>,<raddr>,<rport>]",
        description: "The number of TCP sockets in one state in one network namespace (`<selector>` as for netns_summary), optionally filtered.",
        filters: true,
        sample: "linux_status[netns_status,self,LISTEN]",
        parse: |rest, usage| {
            Ok(ItemRequest::NetnsStatus {
                selector: parse_selector(rest.first().copied().unwrap_or(b""), usage)?,
                state: parse_state(rest.get(1).copied().unwrap_or(b""), usage)?,
                filter: filter(rest.get(2..).unwrap_or(&[]))?,
            })
        },
    },
    KeyEntry {
        metric: "netns_all",
        usage: "linux_status[netns_all]",
        description: "Every network namespace keyed by its `{#NETNS}` id, as JSON for a master item: cheap counters on every poll, the state table at most once per NetnsTableInterval with its age.",
        filters: false,
        sample: "linux_status[netns_all]",
        parse: |_, _| Ok(ItemRequest::NetnsAll),
    },
    KeyEntry {
        metric: "udp_status",
        usage: "linux_status[udp_status,<state>,<laddr>,<lport>,<raddr>,<rport>]",
        description: "The number of UDP sockets (IPv4 and IPv6) in one state, UNCONN or ESTAB (empty: both), optionally filtered by local and remote address and port.",
        filters: true,
        sample: "linux_status[udp_status,UNCONN]",
        parse: |rest, _| {
            Ok(ItemRequest::UdpStatus {
                state: parse_udp_state(rest.first().copied().unwrap_or(b""))?,
                filter: filter(rest.get(1..).unwrap_or(&[]))?,
            })
        },
    },
    KeyEntry {
        metric: "udp_summary",
        usage: "linux_status[udp_summary]",
        description: "UDP sockets per state, per bound port its sockets, receive-queue bytes, buffer size, fill and drops, and the Udp and Udp6 counters, as one JSON object from one walk.",
        filters: false,
        sample: "linux_status[udp_summary]",
        parse: |_, _| Ok(ItemRequest::UdpSummary),
    },
    KeyEntry {
        metric: "udp_discovery",
        usage: "linux_status[udp_discovery]",
        description: "Low-level discovery of the bound UDP ports (those with an UNCONN socket): one `{#PORT}` row per port.",
        filters: false,
        sample: "linux_status[udp_discovery]",
        parse: |_, _| Ok(ItemRequest::UdpDiscovery),
    },
];

/// The longest `<selector>` accepted: a cgroup path as discovery reports it.
pub const SELECTOR_MAX: usize = 512;

/// A namespace `<selector>`: non-empty printable UTF-8 of at most `SELECTOR_MAX` bytes, kept
/// as written (resolved against a pass over /proc when answered).
fn parse_selector(raw: &[u8], usage: &str) -> Result<String, KeyError> {
    let selector = trim_spaces(raw);
    if selector.is_empty() {
        return Err(KeyError::new(format!(
            "Missing namespace selector: use {usage} with self, a {{#NETNS}} id of linux_status[netns_discovery], a container id prefix or a cgroup path."
        )));
    }
    match std::str::from_utf8(selector) {
        Ok(text) if selector.len() <= SELECTOR_MAX && !text.chars().any(char::is_control) => {
            Ok(text.to_owned())
        }
        _ => Err(KeyError::new(format!(
            "Invalid namespace selector \"{}\": expected printable text of at most {SELECTOR_MAX} bytes (self, a {{#NETNS}} id, a container id prefix or a cgroup path).",
            quote(selector)
        ))),
    }
}

fn filter(params: &[&[u8]]) -> Result<FilterParams, KeyError> {
    FilterParams::from_params(params).map_err(KeyError::new)
}

/// Every metric name, in registry order (`linux_status[info]`'s `keys`).
pub const METRICS: [&str; KEYS.len()] = {
    let mut out = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        out[i] = KEYS[i].metric;
        i += 1;
    }
    out
};

/// The entry whose metric is `metric` (ignoring ASCII case), if any.
pub fn find(metric: &[u8]) -> Option<&'static KeyEntry> {
    KEYS.iter()
        .find(|entry| metric.eq_ignore_ascii_case(entry.metric.as_bytes()))
}

/// What agent 2 shows for the plugin's one key: the metric names (it must end with a dot).
pub fn plugin_description() -> String {
    let names: Vec<&str> = KEYS.iter().map(|entry| entry.metric).collect();
    format!(
        "TCP connection states, listening ports and TCP counters: {}.",
        names.join(", ")
    )
}

/// The committed files rendered from the registry (see tests/generated.rs).
pub mod render {
    use super::KEYS;
    use std::fmt::Write;

    /// A JSON string literal (the registry's texts are ASCII without control characters).
    fn json_string(text: &str) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// tests/lib/keys.json: `{"keys": [{...}, ...]}`, 2-space indented, trailing newline.
    pub fn keys_json() -> String {
        let mut out = String::from("{\n  \"keys\": [\n");
        for (index, entry) in KEYS.iter().enumerate() {
            let _ = write!(
                out,
                "    {{\n      \"metric\": {},\n      \"usage\": {},\n      \"filters\": {},\n      \"description\": {},\n      \"sample\": {}\n    }}{}\n",
                json_string(entry.metric),
                json_string(entry.usage),
                entry.filters,
                json_string(entry.description),
                json_string(entry.sample),
                if index + 1 < KEYS.len() { "," } else { "" }
            );
        }
        out.push_str("  ]\n}\n");
        out
    }

    /// The README's key table (the lines between its markers).
    pub fn readme_table() -> String {
        let mut out = String::from("| Key | Description |\n|---|---|\n");
        for entry in KEYS {
            let _ = writeln!(out, "| `{}` | {} |", entry.usage, entry.description);
        }
        out
    }

    /// The metric lines of fuzz/dict/key_grammar.dict.
    pub fn fuzz_dict_metrics() -> String {
        KEYS.iter()
            .map(|entry| format!("{}\n", json_string(entry.metric)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::key::parse_params;

    #[test]
    fn entries_are_consistent() {
        for (index, entry) in KEYS.iter().enumerate() {
            assert!(entry.description.ends_with('.'), "{}", entry.metric);
            assert!(
                entry
                    .usage
                    .starts_with(&format!("linux_status[{}", entry.metric)),
                "{}",
                entry.metric
            );
            assert_eq!(
                entry.filters,
                entry.usage.ends_with("<laddr>,<lport>,<raddr>,<rport>]"),
                "{}",
                entry.metric
            );
            assert!(
                KEYS[..index]
                    .iter()
                    .all(|other| other.metric != entry.metric),
                "{} twice",
                entry.metric
            );
        }
    }

    #[test]
    fn every_sample_parses_to_its_own_key() {
        for entry in KEYS {
            let inner = entry
                .sample
                .strip_prefix("linux_status[")
                .and_then(|rest| rest.strip_suffix(']'))
                .expect("sample is linux_status[...]");
            let params: Vec<&[u8]> = inner.split(',').map(str::as_bytes).collect();
            let first = params[0];
            assert!(first.eq_ignore_ascii_case(entry.metric.as_bytes()));
            parse_params(&params).unwrap_or_else(|error| panic!("{}: {error}", entry.sample));
        }
    }

    #[test]
    fn the_plugin_description_names_every_key() {
        // 0.2.0's text, for the keys it had; a new key is appended to the list.
        let description = plugin_description();
        assert!(
            description.starts_with("TCP connection states, listening ports and TCP counters: tcp_status, tcp_summary, listen_discovery, listen_stats, tcp_ext, version, info"),
            "{description}"
        );
        assert!(description.ends_with('.'));
        for entry in KEYS {
            assert!(description.contains(entry.metric), "{description}");
        }
    }
}
