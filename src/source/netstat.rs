//! The kernel's TCP extension counters (`TcpExt:` lines of /proc/net/netstat).
//!
//! The file holds pairs of lines per group: `TcpExt: Name1 Name2 ...` then
//! `TcpExt: value1 value2 ...`. Names differ between kernel versions, so counters are looked
//! up by name, never by position (the layout is [`super::counters`]'s paired lines).

use std::path::Path;

use super::counters::{self, Layout};

/// One counter by its exact kernel name.
pub fn tcp_ext_counter(text: &str, name: &str) -> Result<Option<u64>, String> {
    counters::counter(text, Layout::Paired, "TcpExt", name)
}

/// Reads the file and looks up `name`; errors name the file.
pub fn read_tcp_ext_counter(path: &Path, name: &str) -> Result<u64, String> {
    read_tcp_ext_counters(path, [name]).map(|[value]| value)
}

/// Reads the file once and looks up every name in `names`; errors name the file.
pub fn read_tcp_ext_counters<const N: usize>(
    path: &Path,
    names: [&str; N],
) -> Result<[u64; N], String> {
    let mut text = String::new();
    counters::read_counter_file(path, &mut text)?;
    let mut values = [0; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = match tcp_ext_counter(&text, name) {
            Ok(Some(value)) => value,
            Ok(None) => return Err(format!(
                "No TcpExt counter \"{name}\" in {} (names are case-sensitive, e.g. ListenOverflows, ListenDrops, TCPTimeouts).",
                path.display()
            )),
            Err(problem) => {
                return Err(format!("Unexpected content in {}: {problem}.", path.display()))
            }
        };
    }
    Ok(values)
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

    #[test]
    fn counters_are_found_by_name() {
        assert_eq!(tcp_ext_counter(NETSTAT, "ListenOverflows"), Ok(Some(17)));
        assert_eq!(tcp_ext_counter(NETSTAT, "ListenDrops"), Ok(Some(19)));
        assert_eq!(
            tcp_ext_counter(NETSTAT, "InNoRoutes"),
            Ok(None),
            "IpExt is not TcpExt"
        );
        assert_eq!(tcp_ext_counter(NETSTAT, "listenoverflows"), Ok(None));
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(tcp_ext_counter("", "ListenDrops").is_err());
        assert!(tcp_ext_counter("TcpExt: A B\nTcpExt: 1\n", "B").is_err());
        assert!(tcp_ext_counter("TcpExt: A\nTcpExt: x\n", "A").is_err());
    }
}
