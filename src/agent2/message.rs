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
//!
//! An export request's parameters are capped while they are decoded ([`MAX_PARAMETERS`],
//! [`MAX_PARAMETER_BYTES`]): a 1 MiB frame of `["",...]` would otherwise become some
//! 240,000 `String`s (5.6 MiB). Past a cap the rest are read and dropped, and the request
//! becomes [`Request::ExportRefused`], answered with the reason. [`decoded_bytes`] is what
//! a decoded request costs in memory, which the session's queue budget counts.

use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The most parameters an export request may have. A Zabbix item key is at most 2048
/// bytes (the server's limit), so no key the server sends has more than 1024.
pub const MAX_PARAMETERS: usize = 1024;
/// The longest parameter accepted: twice the longest key the server sends.
pub const MAX_PARAMETER_BYTES: usize = 4096;

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
    /// An export request past a cap on its parameters: answered with `error`, not run.
    ExportRefused {
        id: u32,
        error: String,
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
    parameters: Option<Parameters>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// The parameters as decoded under the caps: the list, or the first cap passed.
#[derive(Default)]
struct Parameters {
    list: Vec<String>,
    refused: Option<String>,
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(BoundedList)
    }
}

struct BoundedList;

impl<'de> Visitor<'de> for BoundedList {
    type Value = Parameters;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parameters, A::Error> {
        let mut list = Vec::new();
        let mut count = 0usize;
        // Past the first refusal the rest is read and dropped; a count past the cap is named
        // once the whole list has been counted.
        let mut too_many = false;
        let mut too_long: Option<String> = None;
        loop {
            if too_many || too_long.is_some() {
                match seq.next_element::<IgnoredAny>()? {
                    Some(_) => count += 1,
                    None => break,
                }
                continue;
            }
            let Some(parameter) = seq.next_element::<BoundedString>()? else {
                break;
            };
            count += 1;
            match parameter.0 {
                Ok(text) if count <= MAX_PARAMETERS => list.push(text),
                Ok(_) => {
                    list = Vec::new();
                    too_many = true;
                }
                Err(len) => {
                    list = Vec::new();
                    too_long = Some(format!(
                        "Parameter {count} is {len} bytes, more than the {MAX_PARAMETER_BYTES} bytes linux_status accepts in one parameter from agent 2."
                    ))
                }
            }
        }
        let refused = if too_many {
            Some(format!(
                "The request has {count} parameters, more than the {MAX_PARAMETERS} linux_status accepts from agent 2."
            ))
        } else {
            too_long
        };
        Ok(Parameters { list, refused })
    }
}

/// A string parameter, or the length of one longer than [`MAX_PARAMETER_BYTES`] (whose
/// bytes are not kept).
struct BoundedString(Result<String, usize>);

impl<'de> Deserialize<'de> for BoundedString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = BoundedString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<BoundedString, E> {
                Ok(BoundedString(if text.len() > MAX_PARAMETER_BYTES {
                    Err(text.len())
                } else {
                    Ok(text.to_owned())
                }))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// What a decoded export request holds in memory, in bytes: the strings' heap blocks
/// (with the allocator's per-block overhead) and the list, for the session's budget.
pub fn decoded_bytes(key: &str, parameters: &[String]) -> usize {
    fn block(len: usize) -> usize {
        if len == 0 {
            0
        } else {
            // glibc: 8 bytes of header, 16-byte granules, 32 bytes at least.
            (len + 8).max(32).next_multiple_of(16)
        }
    }
    block(key.len())
        + block(std::mem::size_of_val(parameters))
        + parameters.iter().map(|p| block(p.len())).sum::<usize>()
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
            let mut parameters = body.parameters.unwrap_or_default();
            // The budget counts the list by its length: no spare capacity behind it.
            parameters.list.shrink_to_fit();
            match parameters.refused {
                Some(error) => Request::ExportRefused { id, error },
                None => Request::Export {
                    id,
                    key: body.key,
                    parameters: parameters.list,
                    timeout: body.timeout,
                },
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

    fn export_with(parameters: &str) -> Result<Request, String> {
        decode(
            format!(r#"{{"id":5,"type":6,"key":"linux_status","parameters":{parameters}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn parameters_are_capped_in_number_at_decode() {
        let at_cap = format!("[{}]", vec![r#""x""#; MAX_PARAMETERS].join(","));
        let Ok(Request::Export { parameters, .. }) = export_with(&at_cap) else {
            panic!("{MAX_PARAMETERS} parameters are accepted");
        };
        assert_eq!(parameters.len(), MAX_PARAMETERS);
        // The issue's flood: 240,000 empty strings in one frame.
        let flood = format!("[{}]", vec![r#""""#; 240_000].join(","));
        assert_eq!(
            export_with(&flood),
            Ok(Request::ExportRefused {
                id: 5,
                error: "The request has 240000 parameters, more than the 1024 linux_status accepts from agent 2.".into()
            })
        );
        // Past the cap the rest is only counted, whatever it is.
        let mixed = format!(
            "[{},1,null,[2]]",
            vec![r#""""#; MAX_PARAMETERS + 1].join(",")
        );
        assert!(matches!(
            export_with(&mixed),
            Ok(Request::ExportRefused { ref error, .. }) if error.contains("has 1028 parameters")
        ));
    }

    #[test]
    fn parameters_are_capped_in_length_at_decode() {
        let long = "é".repeat(MAX_PARAMETER_BYTES / 2);
        let Ok(Request::Export { parameters, .. }) = export_with(&format!(r#"["a","{long}"]"#))
        else {
            panic!("a parameter of {MAX_PARAMETER_BYTES} bytes is accepted");
        };
        assert_eq!(parameters[1].len(), MAX_PARAMETER_BYTES);
        let longer = "x".repeat(MAX_PARAMETER_BYTES + 1);
        assert_eq!(
            export_with(&format!(r#"["a","{longer}","b"]"#)),
            Ok(Request::ExportRefused {
                id: 5,
                error: "Parameter 2 is 4097 bytes, more than the 4096 bytes linux_status accepts in one parameter from agent 2.".into()
            })
        );
        // Escapes count as the bytes they stand for.
        let escaped = r"A".repeat(MAX_PARAMETER_BYTES);
        assert!(matches!(
            export_with(&format!(r#"["{escaped}"]"#)),
            Ok(Request::Export { .. })
        ));
    }

    #[test]
    fn decoded_sizes_count_heap_blocks() {
        assert_eq!(decoded_bytes("", &[]), 0);
        // key: 12 + 8 -> 32; list of 2: 48 + 8 -> 64; "tcp_status" -> 32; "" -> 0.
        assert_eq!(
            decoded_bytes("linux_status", &["tcp_status".into(), String::new()]),
            32 + 64 + 32
        );
        let flood = vec![String::from("x"); MAX_PARAMETERS];
        assert_eq!(decoded_bytes("", &flood), (24 * 1024 + 16) + 32 * 1024);
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
