//! The kernel's counter files, looked up by name, never by position (names come and go
//! between kernel versions). Three layouts:
//!
//! - **paired lines** (/proc/net/snmp, /proc/net/netstat): per group a name line and a value
//!   line with the same prefix, `Udp: InDatagrams NoPorts ...` then `Udp: 0 0 ...`;
//! - **name-value lines** (/proc/net/snmp6): one counter per line, `Udp6InErrors   0`;
//! - **sockstat** (/proc/net/sockstat{,6}): one line per protocol of name-value pairs,
//!   `TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 372`.
//!
//! Every file is per network namespace (read /proc/<pid>/net/... for another one), small
//! (a few KiB) and read whole through [`read_counter_file`] into a caller's reused buffer,
//! bounded by [`MAX_COUNTER_FILE_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most a counter file may hold. Debian 12's snmp6 is about 3 KiB, netstat about 2.5 KiB;
/// 64 KiB leaves room for kernels with many more counters and bounds a hostile test directory.
pub const MAX_COUNTER_FILE_BYTES: usize = 64 * 1024;

/// The layouts above; `group` names the paired-line prefix or the sockstat protocol without
/// its colon ("Udp", "TcpExt", "TCP"), and is unused for name-value lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(
    dead_code,
    reason = "snmp6 and sockstat are read by the UDP and namespace keys being added"
)]
pub enum Layout {
    Paired,
    NameValue,
    Sockstat,
}

/// Reads `path` into `text` (cleared first), bounded by [`MAX_COUNTER_FILE_BYTES`].
pub fn read_counter_file(path: &Path, text: &mut String) -> Result<(), String> {
    read_bounded(path, MAX_COUNTER_FILE_BYTES, text)
}

/// Reads `path` into `text` (cleared first), refusing what is not a regular file (a FIFO's
/// open would otherwise wait for a writer: opened non-blocking) and more than `limit` bytes.
/// Errors name the file and end with a dot. The one bounded reader of the small kernel files
/// read whole (counter files here, /proc/self/mountinfo in [`super::cgroupfs`]).
pub fn read_bounded(path: &Path, limit: usize, text: &mut String) -> Result<(), String> {
    text.clear();
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| format!("Cannot read {}: {error}.", path.display()))?;
    let regular = file
        .metadata()
        .map(|metadata| metadata.file_type().is_file())
        .map_err(|error| format!("Cannot read {}: {error}.", path.display()))?;
    if !regular {
        return Err(format!(
            "Cannot read {}: not a regular file.",
            path.display()
        ));
    }
    file.take(limit as u64 + 1)
        .read_to_string(text)
        .map_err(|error| format!("Cannot read {}: {error}.", path.display()))?;
    if text.len() > limit {
        text.clear();
        return Err(format!(
            "Cannot read {}: larger than {limit} bytes.",
            path.display()
        ));
    }
    Ok(())
}

/// Every counter of `group` in `text`, in file order, as (name, value text). An error says
/// what is malformed (no such group, a value line not matching its names). Values stay text:
/// some are signed (`Tcp: MaxConn` is -1), so [`value`] converts only the ones asked for.
pub fn group<'t>(
    text: &'t str,
    layout: Layout,
    group: &'t str,
) -> Result<Box<dyn Iterator<Item = (&'t str, &'t str)> + 't>, String> {
    Ok(match layout {
        Layout::Paired => {
            let mut lines = text.lines().filter(has_prefix(group));
            let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
                return Err(format!("no {group} lines"));
            };
            let names = names.split_whitespace().skip(1);
            let values = values.split_whitespace().skip(1);
            if names.clone().count() != values.clone().count() {
                return Err(format!(
                    "the {group} value line does not match its name line"
                ));
            }
            Box::new(names.zip(values))
        }
        Layout::NameValue => Box::new(text.lines().filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next().unwrap_or("")))
        })),
        Layout::Sockstat => {
            let Some(line) = text.lines().find(has_prefix(group)) else {
                return Err(format!("no {group} line"));
            };
            let mut words = line.split_whitespace().skip(1);
            Box::new(std::iter::from_fn(move || {
                Some((words.next()?, words.next().unwrap_or("")))
            }))
        }
    })
}

/// A counter's value text as a number; counters are unsigned, anything else is malformed.
pub fn value(name: &str, text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "the value of {} is not a counter: \"{}\"",
            name.escape_default(),
            text.escape_default()
        )
    })
}

/// `net.ipv4.ip_local_port_range` as the kernel prints it (`32768\t60999\n`): the low and high
/// port, low <= high.
pub fn port_range(text: &str) -> Result<(u16, u16), String> {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(low)), Some(Ok(high)), None) if low <= high => Ok((low, high)),
        _ => Err(format!(
            "expected two port numbers, low then high, got \"{}\"",
            crate::model::text::quote(text.as_bytes())
        )),
    }
}

/// One counter by its exact (case-sensitive) kernel name; `Ok(None)` if the kernel has no
/// such counter.
pub fn counter(
    text: &str,
    layout: Layout,
    group_name: &str,
    name: &str,
) -> Result<Option<u64>, String> {
    group(text, layout, group_name)?
        .find(|(counter, _)| *counter == name)
        .map(|(name, text)| value(name, text))
        .transpose()
}

/// `Tcp:` must not match `TcpExt:`: the prefix is the group and its colon.
fn has_prefix(group: &str) -> impl Fn(&&str) -> bool + '_ {
    move |line| {
        line.strip_prefix(group)
            .is_some_and(|rest| rest.starts_with(':'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPTimeouts
TcpExt: 0 0 17 19 4
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
";
    const SNMP: &str = "\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens CurrEstab
Tcp: 1 200 120000 -1 5 3 2
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 0 0 2994 3000 2994 0 0 0 0
";
    const SNMP6: &str =
        "Udp6InDatagrams                 \t12\nUdp6RcvbufErrors                \t7\n";
    const SOCKSTAT: &str =
        "sockets: used 12\nTCP: inuse 1 orphan 0 tw 3 alloc 1 mem 372\nUDP: inuse 2 mem 0\n";

    #[test]
    fn counters_are_found_by_name_in_every_layout() {
        let find = |text, layout, group, name| counter(text, layout, group, name);
        assert_eq!(
            find(NETSTAT, Layout::Paired, "TcpExt", "ListenOverflows"),
            Ok(Some(17))
        );
        assert_eq!(
            find(NETSTAT, Layout::Paired, "TcpExt", "ListenDrops"),
            Ok(Some(19))
        );
        assert_eq!(
            find(NETSTAT, Layout::Paired, "TcpExt", "InNoRoutes"),
            Ok(None)
        );
        assert_eq!(
            find(NETSTAT, Layout::Paired, "TcpExt", "listendrops"),
            Ok(None)
        );
        assert_eq!(
            find(SNMP, Layout::Paired, "Udp", "RcvbufErrors"),
            Ok(Some(2994))
        );
        assert_eq!(
            find(SNMP6, Layout::NameValue, "", "Udp6RcvbufErrors"),
            Ok(Some(7))
        );
        assert_eq!(find(SOCKSTAT, Layout::Sockstat, "TCP", "tw"), Ok(Some(3)));
        assert_eq!(
            find(SOCKSTAT, Layout::Sockstat, "UDP", "inuse"),
            Ok(Some(2))
        );
    }

    #[test]
    fn a_group_is_its_prefix_and_colon() {
        assert_eq!(find_names(NETSTAT, "Tcp"), Err("no Tcp lines".to_owned()));
        assert_eq!(find_names(SNMP, "Tcp").unwrap().len(), 7);
    }

    fn find_names<'t>(text: &'t str, group_name: &'t str) -> Result<Vec<&'t str>, String> {
        group(text, Layout::Paired, group_name).map(|counters| counters.map(|(n, _)| n).collect())
    }

    #[test]
    fn a_signed_neighbour_does_not_spoil_the_group() {
        // Tcp: MaxConn is -1 on every kernel: asking for it is an error, for the others not.
        assert_eq!(
            counter(SNMP, Layout::Paired, "Tcp", "CurrEstab"),
            Ok(Some(2))
        );
        let problem = counter(SNMP, Layout::Paired, "Tcp", "MaxConn").unwrap_err();
        assert!(
            problem.contains("MaxConn") && problem.contains("-1"),
            "{problem}"
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(counter("", Layout::Paired, "TcpExt", "ListenDrops").is_err());
        assert!(counter("TcpExt: A B\nTcpExt: 1\n", Layout::Paired, "TcpExt", "B").is_err());
        assert!(counter("TcpExt: A\nTcpExt: x\n", Layout::Paired, "TcpExt", "A").is_err());
        assert!(counter("Udp6InErrors\n", Layout::NameValue, "", "Udp6InErrors").is_err());
        assert!(counter("UDP: inuse\n", Layout::Sockstat, "UDP", "inuse").is_err());
        assert!(counter("sockets: used 1\n", Layout::Sockstat, "TCP", "tw").is_err());
    }

    #[test]
    fn the_ephemeral_port_range_is_two_ordered_ports() {
        assert_eq!(port_range("32768\t60999\n"), Ok((32768, 60999)));
        assert_eq!(port_range("1024 1024"), Ok((1024, 1024)));
        for bad in [
            "",
            "32768",
            "60999\t32768",
            "1 2 3",
            "x 2",
            "1 70000",
            "\u{1b}[2J 1",
        ] {
            let error = port_range(bad).unwrap_err();
            assert!(error.is_ascii() && !error.contains('\u{1b}'), "{error}");
        }
    }
}
