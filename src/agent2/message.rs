//! The JSON messages of agent 2's plugin protocol: what the agent sends ([`Request`]) and
//! what the plugin answers ([`Response`]).
//!
//! Every body carries `id` and `type`. Requests from the agent count `id` up; a reply
//! echoes it; 0 means no reply is wanted. Types: 1 log (plugin to agent), 2 register
//! request, 3 register response, 4 start, 5 terminate, 6 export request, 7 export response,
//! 8 configure (no reply), 9 validate request, 10 validate response; 11 and 12 (period)
//! exist in the agent's sources for plugins that schedule themselves, which this one is
//! not. Fields seen from Debian's 6.0.14 and 7.0.22 agents are in the tests below.
//!
//! Decoding never fails on a field it does not know (newer agents add some, e.g. the
//! export request's `timeout` came with 6.4), and fails with a message on a body that is
//! not a JSON object with a numeric `type`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const LOG: u32 = 1;
pub const REGISTER_REQUEST: u32 = 2;
pub const REGISTER_RESPONSE: u32 = 3;
pub const START: u32 = 4;
pub const TERMINATE: u32 = 5;
pub const EXPORT_REQUEST: u32 = 6;
pub const EXPORT_RESPONSE: u32 = 7;
pub const CONFIGURE: u32 = 8;
pub const VALIDATE_REQUEST: u32 = 9;
pub const VALIDATE_RESPONSE: u32 = 10;

/// The register response's `interfaces` bits.
pub const EXPORTER: u32 = 1;
pub const CONFIGURATOR: u32 = 2;

/// Log severities the agent maps onto its own levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info = 0,
    Critical = 1,
    Error = 2,
    Warning = 3,
    Debug = 4,
}

/// A message from the agent.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Register {
        id: u32,
        /// The agent's protocol version ("6.0.13" from 6.0.14, "6.4.0" from 7.0.22).
        version: String,
    },
    Validate {
        id: u32,
        /// The plugin's section of the agent configuration (`Plugins.<Name>.*`), as the
        /// agent's configuration tree; see [`super::options`].
        options: Value,
    },
    Configure {
        /// The agent's `Timeout` in seconds, if sent.
        timeout: Option<u64>,
        options: Value,
    },
    Start,
    Terminate {
        id: u32,
    },
    Export {
        id: u32,
        key: String,
        parameters: Vec<String>,
        /// Seconds the agent waits for this answer (sent since protocol 6.4).
        timeout: Option<u64>,
    },
    /// A type this plugin has no use for, kept so the session can say what it ignored.
    Other {
        id: u32,
        kind: u32,
    },
}

#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    id: u32,
    #[serde(rename = "type")]
    kind: u32,
}

#[derive(Deserialize)]
struct RegisterBody {
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct OptionsBody {
    #[serde(default)]
    private_options: Value,
    #[serde(default)]
    global_options: Option<GlobalOptions>,
}

#[derive(Deserialize)]
struct GlobalOptions {
    #[serde(rename = "Timeout", default)]
    timeout: Option<u64>,
}

#[derive(Deserialize)]
struct ExportBody {
    #[serde(default)]
    key: String,
    #[serde(default)]
    parameters: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// Decodes one message body.
pub fn decode(body: &[u8]) -> Result<Request, String> {
    let common: Common = serde_json::from_slice(body)
        .map_err(|error| format!("message without a numeric id and type ({error})"))?;
    let id = common.id;
    let specific = |error: serde_json::Error| {
        format!("message of type {} with bad fields ({error})", common.kind)
    };
    Ok(match common.kind {
        REGISTER_REQUEST => {
            let body: RegisterBody = serde_json::from_slice(body).map_err(specific)?;
            Request::Register {
                id,
                version: body.version,
            }
        }
        VALIDATE_REQUEST => {
            let body: OptionsBody = serde_json::from_slice(body).map_err(specific)?;
            Request::Validate {
                id,
                options: body.private_options,
            }
        }
        CONFIGURE => {
            let body: OptionsBody = serde_json::from_slice(body).map_err(specific)?;
            Request::Configure {
                timeout: body.global_options.and_then(|options| options.timeout),
                options: body.private_options,
            }
        }
        START => Request::Start,
        TERMINATE => Request::Terminate { id },
        EXPORT_REQUEST => {
            let body: ExportBody = serde_json::from_slice(body).map_err(specific)?;
            Request::Export {
                id,
                key: body.key,
                parameters: body.parameters.unwrap_or_default(),
                timeout: body.timeout,
            }
        }
        kind => Request::Other { id, kind },
    })
}

/// The `id` and `type` at the start of a body too long to decode, as the agent writes them
/// (`{"id":N,"type":T,...`: Go marshals its structs' fields in order, the common ones first).
pub fn peek_id_and_type(prefix: &[u8]) -> Option<(u32, u32)> {
    fn number_after(text: &[u8], name: &[u8]) -> Option<u32> {
        let at = text.windows(name.len()).position(|window| window == name)? + name.len();
        let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&text[at..at + digits])
            .ok()?
            .parse()
            .ok()
    }
    Some((
        number_after(prefix, b"\"id\":")?,
        number_after(prefix, b"\"type\":")?,
    ))
}

/// A message to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Register {
        id: u32,
        name: &'a str,
        /// Key and description pairs; every description must end with a dot (agent 2
        /// panics at start-up otherwise).
        metrics: &'a [(&'a str, &'a str)],
        interfaces: u32,
    },
    RegisterRefused {
        id: u32,
        name: &'a str,
        error: &'a str,
    },
    Validate {
        id: u32,
        error: Option<&'a str>,
    },
    /// Values go as JSON text: a JSON number reaches the server as `1.000000`, which an
    /// unsigned item refuses.
    Export {
        id: u32,
        result: Result<&'a str, &'a str>,
    },
    Log {
        severity: Severity,
        message: &'a str,
    },
}

#[derive(Serialize)]
struct Out<'a> {
    id: u32,
    #[serde(rename = "type")]
    kind: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interfaces: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl Response<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Out {
            id: 0,
            kind: 0,
            name: None,
            metrics: None,
            interfaces: None,
            value: None,
            error: None,
            severity: None,
            message: None,
        };
        match *self {
            Response::Register {
                id,
                name,
                metrics,
                interfaces,
            } => {
                out.id = id;
                out.kind = REGISTER_RESPONSE;
                out.name = Some(name);
                out.metrics = Some(metrics.iter().flat_map(|&(k, d)| [k, d]).collect());
                out.interfaces = Some(interfaces);
            }
            Response::RegisterRefused { id, name, error } => {
                out.id = id;
                out.kind = REGISTER_RESPONSE;
                out.name = Some(name);
                out.error = Some(error);
            }
            Response::Validate { id, error } => {
                out.id = id;
                out.kind = VALIDATE_RESPONSE;
                out.error = error;
            }
            Response::Export { id, result } => {
                out.id = id;
                out.kind = EXPORT_RESPONSE;
                match result {
                    Ok(value) => out.value = Some(value),
                    Err(error) => out.error = Some(error),
                }
            }
            Response::Log { severity, message } => {
                out.kind = LOG;
                out.severity = Some(severity as u32);
                out.message = Some(message);
            }
        }
        // Serializing strings and integers into a Vec cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_seen_from_agent_6_0_14() {
        assert_eq!(
            decode(br#"{"id":1,"type":2,"version":"6.0.13"}"#),
            Ok(Request::Register {
                id: 1,
                version: "6.0.13".into()
            })
        );
        assert_eq!(
            decode(br#"{"id":0,"type":5}"#),
            Ok(Request::Terminate { id: 0 })
        );
        assert_eq!(
            decode(
                br#"{"id":2,"type":6,"key":"linux_status","parameters":["tcp_status","LISTEN"]}"#
            ),
            Ok(Request::Export {
                id: 2,
                key: "linux_status".into(),
                parameters: vec!["tcp_status".into(), "LISTEN".into()],
                timeout: None
            })
        );
        let configure = br#"{"id":1,"type":8,"global_options":{"Timeout":7,"SourceIP":""},"private_options":{"Name":"LinuxStatus","Nodes":[]}}"#;
        let Ok(Request::Configure { timeout, options }) = decode(configure) else {
            panic!("configure");
        };
        assert_eq!(timeout, Some(7));
        assert_eq!(options["Name"], "LinuxStatus");
    }

    #[test]
    fn requests_seen_from_agent_7_0_22() {
        assert_eq!(
            decode(br#"{"id":1,"type":6,"key":"linux_status","parameters":["tcp_status","LISTEN"],"timeout":60}"#),
            Ok(Request::Export {
                id: 1,
                key: "linux_status".into(),
                parameters: vec!["tcp_status".into(), "LISTEN".into()],
                timeout: Some(60)
            })
        );
        assert_eq!(
            decode(br#"{"id":2,"type":5}"#),
            Ok(Request::Terminate { id: 2 })
        );
    }

    #[test]
    fn an_export_without_parameters_has_none() {
        assert_eq!(
            decode(br#"{"id":3,"type":6,"key":"linux_status"}"#),
            Ok(Request::Export {
                id: 3,
                key: "linux_status".into(),
                parameters: vec![],
                timeout: None
            })
        );
    }

    #[test]
    fn unknown_types_and_fields_are_kept_apart_from_garbage() {
        assert_eq!(
            decode(br#"{"id":9,"type":11,"extra":[1,2]}"#),
            Ok(Request::Other { id: 9, kind: 11 })
        );
        assert_eq!(decode(br#"{"type":4,"new":true}"#), Ok(Request::Start));
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"type\":\"6\"}",
            b"{\"type\":-1}",
            b"{\"id\":-1,\"type\":6}",
            b"{\"type\":6,\"parameters\":[1]}",
            b"{\"type\":6,\"key\":null,\"parameters\":\"x\"}",
            b"\xff",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_id_of_an_oversized_request_is_found_in_its_first_bytes() {
        assert_eq!(
            peek_id_and_type(br#"{"id":4294967295,"type":6,"key":"linux_status","param"#),
            Some((u32::MAX, EXPORT_REQUEST))
        );
        assert_eq!(peek_id_and_type(br#"{"id":7,"type":"#), None);
        assert_eq!(peek_id_and_type(br#"{"id":99999999999,"type":6}"#), None);
        assert_eq!(peek_id_and_type(b"zzzz"), None);
    }

    #[test]
    fn responses_are_byte_exact() {
        let metrics = [("linux_status", "TCP states.")];
        assert_eq!(
            Response::Register {
                id: 1,
                name: "LinuxStatus",
                metrics: &metrics,
                interfaces: EXPORTER | CONFIGURATOR
            }
            .encode(),
            br#"{"id":1,"type":3,"name":"LinuxStatus","metrics":["linux_status","TCP states."],"interfaces":3}"#
        );
        assert_eq!(
            Response::Export {
                id: 7,
                result: Ok("12")
            }
            .encode(),
            br#"{"id":7,"type":7,"value":"12"}"#
        );
        assert_eq!(
            Response::Export {
                id: 8,
                result: Err("Unknown \"x\".\n")
            }
            .encode(),
            br#"{"id":8,"type":7,"error":"Unknown \"x\".\n"}"#
        );
        assert_eq!(
            Response::Validate { id: 2, error: None }.encode(),
            br#"{"id":2,"type":10}"#
        );
        assert_eq!(
            Response::Log {
                severity: Severity::Warning,
                message: "m"
            }
            .encode(),
            br#"{"id":0,"type":1,"severity":3,"message":"m"}"#
        );
        assert_eq!(
            Response::RegisterRefused {
                id: 1,
                name: "LinuxStatus",
                error: "no"
            }
            .encode(),
            br#"{"id":1,"type":3,"name":"LinuxStatus","error":"no"}"#
        );
    }

    #[test]
    fn an_empty_value_is_still_sent() {
        assert_eq!(
            Response::Export {
                id: 1,
                result: Ok("")
            }
            .encode(),
            br#"{"id":1,"type":7,"value":""}"#
        );
    }
}
