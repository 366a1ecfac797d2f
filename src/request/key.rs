//! The key grammar: turns the parameters of `linux_status[...]` into a typed request.
//!
//! The agent has already split the key and removed quotes; parameters arrive as raw bytes
//! (any encoding, any length), each possibly with trailing spaces. Every rejection says what
//! was wrong and what is accepted, because the message is what the admin sees in the
//! frontend next to an unsupported item.

use std::fmt;

use crate::model::socket::CGROUP_PATH_MAX_BYTES;
use crate::model::state::TcpState;
use crate::model::text::{quote, trim_spaces};
use crate::request::registry::{self, KEYS};

pub use crate::request::registry::ItemRequest;

/// A rejected key, with the message for the admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(String);

impl KeyError {
    pub fn new(message: String) -> KeyError {
        KeyError(message)
    }

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

/// The longest TcpExt counter name accepted (kernel names are under 40 bytes).
const COUNTER_NAME_MAX: usize = 64;

/// Parses the parameter list of a `linux_status` key: the first parameter picks the registry
/// entry, whose own function parses the rest.
pub fn parse_params(params: &[&[u8]]) -> Result<ItemRequest, KeyError> {
    let Some(&first) = params.first() else {
        return Err(missing_first_parameter());
    };
    let metric = trim_spaces(first);
    if metric.is_empty() {
        return Err(missing_first_parameter());
    }
    let Some(entry) = registry::find(metric) else {
        return Err(KeyError(format!(
            "Unknown first parameter \"{}\": expected {}.",
            quote(first),
            metric_names()
        )));
    };
    let rest = &params[1..];
    let (name, usage) = (entry.metric, entry.usage);
    let limit = usage.matches(',').count();
    if rest.len() > limit {
        return Err(KeyError(format!(
            "Too many parameters: {name} takes at most {limit} after it, got {}; use {usage}.",
            rest.len()
        )));
    }
    (entry.parse)(rest, usage)
}

fn metric_names() -> String {
    let names: Vec<&str> = KEYS.iter().map(|entry| entry.metric).collect();
    format!("one of {}, as in {}", names.join(", "), KEYS[0].usage)
}

fn missing_first_parameter() -> KeyError {
    KeyError(format!(
        "Missing first parameter: expected {}.",
        metric_names()
    ))
}

/// A `<state>` parameter (registry parse functions use it).
pub(crate) fn parse_state(name: &[u8], usage: &str) -> Result<TcpState, KeyError> {
    if trim_spaces(name).is_empty() {
        return Err(KeyError(format!(
            "Missing TCP state: use {usage}. Valid states: {}.",
            TcpState::valid_names_help()
        )));
    }
    TcpState::from_name(name).ok_or_else(|| {
        KeyError(format!(
            "Unknown TCP state \"{}\". Valid states: {} (any case, '-' or '_').",
            quote(name),
            TcpState::valid_names_help()
        ))
    })
}

/// A `<cgroup>` parameter: a cgroup v2 path as `ss --cgroup` prints it (`/` the root,
/// `/system.slice/ssh.service`), UTF-8, at most `CGROUP_PATH_MAX_BYTES`, no empty, `.` or
/// `..` component (so it names a directory under the mount and nothing outside it); a
/// trailing `/` is dropped.
pub(crate) fn parse_cgroup_path(path: &[u8], usage: &str) -> Result<String, KeyError> {
    let path = trim_spaces(path);
    if path.is_empty() {
        return Err(KeyError(format!(
            "Missing cgroup: use {usage} with a cgroup v2 path as ss --cgroup prints it, e.g. /system.slice/ssh.service (/ is the root)."
        )));
    }
    let text = std::str::from_utf8(path).ok().filter(|text| {
        text.starts_with('/')
            && text.len() <= CGROUP_PATH_MAX_BYTES
            && (*text == "/"
                || text
                    .strip_suffix('/')
                    .unwrap_or(text)
                    .split('/')
                    .skip(1)
                    .all(|part| !part.is_empty() && part != "." && part != ".."))
    });
    let Some(text) = text else {
        return Err(KeyError(format!(
            "Invalid cgroup \"{}\": expected a cgroup v2 path starting with /, relative to the cgroup2 mount, without . or .. or empty components, at most {CGROUP_PATH_MAX_BYTES} bytes of UTF-8, e.g. /system.slice/ssh.service.",
            quote(path)
        )));
    };
    let trimmed = text
        .strip_suffix('/')
        .filter(|t| !t.is_empty())
        .unwrap_or(text);
    Ok(trimmed.to_owned())
}

/// The `<state>` of `udp_status`: UNCONN or ESTAB in any spelling `tcp_status` accepts for
/// those two kernel states (UNCONN, CLOSE, CLOSED; ESTAB, ESTABLISHED), or empty for every
/// UDP socket (as `net.udp.socket.count` counts without a state).
pub(crate) fn parse_udp_state(name: &[u8]) -> Result<Option<TcpState>, KeyError> {
    if trim_spaces(name).is_empty() {
        return Ok(None);
    }
    match TcpState::from_name(name) {
        Some(state @ (TcpState::Close | TcpState::Established)) => Ok(Some(state)),
        _ => Err(KeyError(format!(
            "Unknown UDP state \"{}\". Valid states: UNCONN (CLOSE), ESTAB (ESTABLISHED) (any case), or empty for every UDP socket.",
            quote(name)
        ))),
    }
}

/// A TcpExt `<counter>` parameter (registry parse functions use it).
pub(crate) fn parse_counter(name: &[u8], usage: &str) -> Result<ItemRequest, KeyError> {
    let name = trim_spaces(name);
    if name.is_empty() {
        return Err(KeyError(format!(
            "Missing counter name: use {usage}, e.g. linux_status[tcp_ext,ListenOverflows]."
        )));
    }
    if name.len() > COUNTER_NAME_MAX || !name.iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyError(format!(
            "Invalid counter name \"{}\": TcpExt counter names are letters and digits, e.g. ListenOverflows.",
            quote(name)
        )));
    }
    Ok(ItemRequest::TcpExt {
        counter: String::from_utf8_lossy(name).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::filter::{FilterParams, PortParam};

    fn parse(params: &[&str]) -> Result<ItemRequest, KeyError> {
        let bytes: Vec<&[u8]> = params.iter().map(|p| p.as_bytes()).collect();
        parse_params(&bytes)
    }

    fn error(params: &[&str]) -> String {
        parse(params).unwrap_err().message().to_owned()
    }

    fn status(state: TcpState) -> ItemRequest {
        ItemRequest::TcpStatus {
            state,
            filter: FilterParams::default(),
        }
    }

    #[test]
    fn the_old_userparameter_keys_parse() {
        assert_eq!(
            parse(&["tcp_status", "LISTEN"]),
            Ok(status(TcpState::Listen))
        );
        assert_eq!(
            parse(&["tcp_status", "TIME-WAIT"]),
            Ok(status(TcpState::TimeWait))
        );
        // The agent keeps trailing spaces of unquoted parameters.
        assert_eq!(
            parse(&["tcp_status ", "ESTAB "]),
            Ok(status(TcpState::Established))
        );
        assert_eq!(
            parse(&["TCP_STATUS", "syn_rcvd"]),
            Ok(status(TcpState::SynRecv))
        );
    }

    #[test]
    fn filters_follow_the_state() {
        let request = parse(&["tcp_status", "ESTAB", "", "80", "", ""]).unwrap();
        match request {
            ItemRequest::TcpStatus { state, filter } => {
                assert_eq!(state, TcpState::Established);
                assert_eq!(filter.local_port, Some(PortParam::Number(80)));
                assert_eq!(filter.remote_port, None);
            }
            other => panic!("{other:?}"),
        }
        let message = error(&["tcp_status", "ESTAB", "nowhere"]);
        assert!(
            message.starts_with("Invalid local address \"nowhere\""),
            "{message}"
        );
    }

    #[test]
    fn every_metric_parses() {
        assert_eq!(
            parse(&["tcp_summary"]),
            Ok(ItemRequest::TcpSummary {
                filter: FilterParams::default()
            })
        );
        assert!(matches!(
            parse(&["tcp_summary", "", "", "", "22"]),
            Ok(ItemRequest::TcpSummary { filter }) if filter.remote_port == Some(PortParam::Number(22))
        ));
        assert_eq!(
            parse(&["listen_discovery"]),
            Ok(ItemRequest::ListenDiscovery)
        );
        assert_eq!(parse(&["LISTEN_STATS "]), Ok(ItemRequest::ListenStats));
        assert_eq!(
            parse(&["tcp_ext", "ListenOverflows"]),
            Ok(ItemRequest::TcpExt {
                counter: "ListenOverflows".into()
            })
        );
        assert_eq!(parse(&["version"]), Ok(ItemRequest::Version));
    }

    #[test]
    fn missing_first_parameter() {
        for params in [&[][..], &[""], &["  "]] {
            let message = error(params);
            assert!(message.starts_with("Missing first parameter"), "{message}");
            assert!(message.contains("tcp_status, tcp_summary"), "{message}");
        }
    }

    #[test]
    fn unknown_first_parameter() {
        let message = error(&["tcp_stat", "LISTEN"]);
        assert!(
            message.starts_with("Unknown first parameter \"tcp_stat\""),
            "{message}"
        );
        assert!(message.contains("expected one of tcp_status"), "{message}");
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
    fn too_many_parameters() {
        let message = error(&["tcp_status", "LISTEN", "", "", "", "", ""]);
        assert!(message.starts_with("Too many parameters"), "{message}");
        assert!(message.contains("at most 5 after it, got 6"), "{message}");
        for params in [
            &["version", ""][..],
            &["listen_stats", "x"],
            &["listen_discovery", ""],
            &["tcp_ext", "a", "b"],
            &["tcp_summary", "", "", "", "", ""],
        ] {
            let message = error(params);
            assert!(
                message.starts_with("Too many parameters"),
                "{params:?}: {message}"
            );
        }
    }

    #[test]
    fn counter_names_are_checked() {
        assert!(error(&["tcp_ext"]).starts_with("Missing counter name"));
        assert!(error(&["tcp_ext", "a b"]).starts_with("Invalid counter name"));
        assert!(error(&["tcp_ext", &"A".repeat(65)]).starts_with("Invalid counter name"));
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

        let raw: Vec<&[u8]> = vec![b"tcp_status", b"LISTEN", &[0xff]];
        let message = parse_params(&raw).unwrap_err().message().to_owned();
        assert!(
            message.starts_with("Invalid local address \"\\xff\""),
            "{message}"
        );
    }

    #[test]
    fn cgroup_paths_parse_and_stay_inside_the_mount() {
        let status = |path: &str| parse(&["cgroup_status", path, "CLOSE-WAIT"]);
        for (given, kept) in [
            ("/", "/"),
            ("/system.slice/ssh.service", "/system.slice/ssh.service"),
            (" /a.slice/ ", "/a.slice"),
            ("/with space", "/with space"),
        ] {
            assert_eq!(
                status(given),
                Ok(ItemRequest::CgroupStatus {
                    cgroup: kept.into(),
                    state: TcpState::CloseWait
                }),
                "{given}"
            );
        }
        for bad in ["system.slice", "/a/../b", "/..", "/./a", "//a", "/a//b"] {
            let message = status(bad).unwrap_err().message().to_owned();
            assert!(message.starts_with("Invalid cgroup \""), "{bad}: {message}");
        }
        let long = format!("/{}", "a".repeat(CGROUP_PATH_MAX_BYTES));
        assert!(status(&long).is_err());
        let not_utf8: [&[u8]; 3] = [b"cgroup_status", b"/\xff", b"LISTEN"];
        let message = parse_params(&not_utf8).unwrap_err().message().to_owned();
        assert!(message.starts_with("Invalid cgroup"), "{message}");
        let message = error(&["cgroup_status", ""]);
        assert!(
            message.starts_with("Missing cgroup: use linux_status[cgroup_status,<cgroup>,<state>]"),
            "{message}"
        );
        let message = error(&["cgroup_status", "/"]);
        assert!(message.starts_with("Missing TCP state"), "{message}");
        assert_eq!(parse(&["cgroup_summary"]), Ok(ItemRequest::CgroupSummary));
        assert_eq!(
            parse(&["cgroup_discovery"]),
            Ok(ItemRequest::CgroupDiscovery)
        );
        assert!(parse(&["cgroup_summary", "x"]).is_err());
    }

    /// Every message quotes what it echoes: whatever bytes a server puts in any parameter of
    /// any key, the message is printable ASCII (an unescaped NUL made agent 2 cut it).
    #[test]
    fn hostile_bytes_in_any_parameter_come_back_escaped() {
        let hostile: [&[u8]; 8] = [
            b"\0",
            b"0.0.0.0/4f94\x009672",
            b"10.0.0.0/\x1b[31m",
            b"::1/\xff",
            b"\x1b]0;title\x07",
            b"a\"b\\c",
            "\u{e9}\u{feff}".as_bytes(),
            b"LISTEN\r\nForged: line",
        ];
        for entry in KEYS {
            let inside = entry.sample.trim_start_matches("linux_status[");
            let sample: Vec<&[u8]> = inside
                .trim_end_matches(']')
                .split(',')
                .map(str::as_bytes)
                .collect();
            for position in 1..=6 {
                for bad in hostile {
                    let mut params = sample.clone();
                    params.resize(params.len().max(position + 1), b"");
                    params[position] = bad;
                    let Err(error) = parse_params(&params) else {
                        continue;
                    };
                    let message = error.message();
                    assert!(
                        message.bytes().all(|b| (b' '..=b'~').contains(&b)),
                        "{}: {message:?}",
                        entry.metric
                    );
                }
            }
        }
    }
}
