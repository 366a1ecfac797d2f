//! The key grammar: turns the parameters of `linux_status[...]` into a typed request.
//!
//! The agent has already split the key and removed quotes; parameters arrive as raw bytes
//! (any encoding, any length), each possibly with trailing spaces. Every rejection says what
//! was wrong and what is accepted, because the message is what the admin sees in the
//! frontend next to an unsupported item.

use std::fmt;

use crate::state::{trim_spaces, TcpState};

/// What an item asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemRequest {
    /// `linux_status[tcp_status,<state>]`: sockets in one state.
    TcpStatus(TcpState),
    /// `linux_status[version]`: the module's version, to check what an agent has loaded.
    Version,
}

/// A rejected key, with the message for the admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(String);

impl KeyError {
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

const USAGE: &str = "linux_status[tcp_status,<state>]";
const TCP_STATUS: &[u8] = b"tcp_status";
const VERSION: &[u8] = b"version";
const FIRST_PARAMETERS: &str = "tcp_status or version";

/// How many bytes of a rejected parameter an error message quotes.
const QUOTED_BYTES: usize = 64;

/// Parses the parameter list of a `linux_status` key.
pub fn parse_params(params: &[&[u8]]) -> Result<ItemRequest, KeyError> {
    let Some(&first) = params.first() else {
        return Err(missing_first_parameter());
    };
    let metric = trim_spaces(first);
    if metric.is_empty() {
        return Err(missing_first_parameter());
    }
    if metric.eq_ignore_ascii_case(TCP_STATUS) {
        parse_tcp_status(&params[1..])
    } else if metric.eq_ignore_ascii_case(VERSION) {
        match params.len() {
            1 => Ok(ItemRequest::Version),
            _ => Err(KeyError(
                "Too many parameters: version takes none; use linux_status[version].".to_owned(),
            )),
        }
    } else {
        Err(KeyError(format!(
            "Unknown first parameter \"{}\": expected {FIRST_PARAMETERS}, as in {USAGE}.",
            quote(first)
        )))
    }
}

fn missing_first_parameter() -> KeyError {
    KeyError(format!(
        "Missing first parameter: expected {FIRST_PARAMETERS}, as in {USAGE}."
    ))
}

fn parse_tcp_status(params: &[&[u8]]) -> Result<ItemRequest, KeyError> {
    if params.len() > 1 {
        return Err(KeyError(format!(
            "Too many parameters: tcp_status takes one state, got {} parameters after it; use {USAGE}.",
            params.len()
        )));
    }
    let name = params.first().copied().unwrap_or(b"");
    if trim_spaces(name).is_empty() {
        return Err(KeyError(format!(
            "Missing TCP state: use {USAGE}. Valid states: {}.",
            TcpState::valid_names_help()
        )));
    }
    match TcpState::from_name(name) {
        Some(state) => Ok(ItemRequest::TcpStatus(state)),
        None => Err(KeyError(format!(
            "Unknown TCP state \"{}\". Valid states: {} (any case, '-' or '_').",
            quote(name),
            TcpState::valid_names_help()
        ))),
    }
}

/// A parameter made safe to show: printable ASCII kept, everything else escaped, long
/// values cut.
fn quote(param: &[u8]) -> String {
    let mut quoted = String::new();
    for &byte in param.iter().take(QUOTED_BYTES) {
        match byte {
            b'"' | b'\\' => {
                quoted.push('\\');
                quoted.push(char::from(byte));
            }
            b' '..=b'~' => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if param.len() > QUOTED_BYTES {
        quoted.push_str(&format!("...({} bytes)", param.len()));
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: &[&str]) -> Result<ItemRequest, KeyError> {
        let bytes: Vec<&[u8]> = params.iter().map(|p| p.as_bytes()).collect();
        parse_params(&bytes)
    }

    fn error(params: &[&str]) -> String {
        parse(params).unwrap_err().message().to_owned()
    }

    #[test]
    fn the_old_userparameter_keys_parse() {
        assert_eq!(
            parse(&["tcp_status", "LISTEN"]),
            Ok(ItemRequest::TcpStatus(TcpState::Listen))
        );
        assert_eq!(
            parse(&["tcp_status", "TIME-WAIT"]),
            Ok(ItemRequest::TcpStatus(TcpState::TimeWait))
        );
        // The agent keeps trailing spaces of unquoted parameters.
        assert_eq!(
            parse(&["tcp_status ", "ESTAB "]),
            Ok(ItemRequest::TcpStatus(TcpState::Established))
        );
        assert_eq!(
            parse(&["TCP_STATUS", "syn_rcvd"]),
            Ok(ItemRequest::TcpStatus(TcpState::SynRecv))
        );
    }

    #[test]
    fn missing_first_parameter() {
        for params in [&[][..], &[""], &["  "]] {
            let message = error(params);
            assert!(message.starts_with("Missing first parameter"), "{message}");
            assert!(message.contains("tcp_status"), "{message}");
        }
    }

    #[test]
    fn unknown_first_parameter() {
        let message = error(&["tcp_stat", "LISTEN"]);
        assert!(
            message.starts_with("Unknown first parameter \"tcp_stat\""),
            "{message}"
        );
        assert!(message.contains("expected tcp_status"), "{message}");
    }

    #[test]
    fn missing_state() {
        for params in [
            &["tcp_status"][..],
            &["tcp_status", ""],
            &["tcp_status", " "],
        ] {
            let message = error(params);
            assert!(message.starts_with("Missing TCP state"), "{message}");
            assert!(
                message.contains("Valid states: ESTAB (ESTABLISHED)"),
                "{message}"
            );
        }
    }

    #[test]
    fn unknown_state_lists_the_valid_names() {
        let message = error(&["tcp_status", "WAIT"]);
        assert!(
            message.starts_with("Unknown TCP state \"WAIT\""),
            "{message}"
        );
        for state in TcpState::ALL {
            assert!(message.contains(state.ss_name()), "{message}");
        }
    }

    #[test]
    fn version() {
        assert_eq!(parse(&["version"]), Ok(ItemRequest::Version));
        assert_eq!(parse(&["VERSION "]), Ok(ItemRequest::Version));
        let message = error(&["version", ""]);
        assert!(message.starts_with("Too many parameters"), "{message}");
    }

    #[test]
    fn too_many_parameters() {
        let message = error(&["tcp_status", "LISTEN", ""]);
        assert!(message.starts_with("Too many parameters"), "{message}");
        assert!(message.contains("got 2 parameters"), "{message}");
    }

    #[test]
    fn hostile_parameters_are_quoted_safely() {
        let long = "X".repeat(100_000);
        let message = error(&["tcp_status", &long]);
        assert!(
            message.len() < 1_000,
            "message is bounded: {}",
            message.len()
        );
        assert!(message.contains("...(100000 bytes)"), "{message}");

        let message = error(&["tcp_status", "a\"b\\c\u{1}\u{e9}"]);
        assert!(message.contains(r#""a\"b\\c\x01\xc3\xa9""#), "{message}");

        let raw: Vec<&[u8]> = vec![b"tcp_status", &[0xff, 0xfe, b'\n']];
        let message = parse_params(&raw).unwrap_err().message().to_owned();
        assert!(message.contains(r#""\xff\xfe\x0a""#), "{message}");
    }
}
