//! The kernel's TCP extension counters (`TcpExt:` lines of /proc/net/netstat).
//!
//! The file holds pairs of lines per group: `TcpExt: Name1 Name2 ...` then
//! `TcpExt: value1 value2 ...`. Names differ between kernel versions, so counters are looked
//! up by name, never by position (the layout is [`super::counters`]'s paired lines; its
//! unit tests cover these lookups on a TcpExt fixture).

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
