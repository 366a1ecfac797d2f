//! The plugin's section of agent 2's configuration, as the agent sends it in validate and
//! configure requests, turned into `Name=Value` lines for the module's own configuration
//! parser (so both front ends accept the same settings with the same messages).
//!
//! The agent sends its parsed configuration tree for `Plugins.<Name>.*`: a node is
//! `{"Name": "...", "Nodes": [...], "Line": N}`, a value is `{"Value": "<base64>", "Line":
//! N}` (Go encodes the raw bytes as base64). `Plugins.LinuxStatus.Backend=netlink` on line
//! 12 arrives as `{"Name":"LinuxStatus","Nodes":[{"Name":"Backend","Nodes":[{"Value":
//! "bmV0bGluaw==","Line":12}],"Line":12}],...}`. The `System` subtree (`System.Path` and the
//! agent's other per-plugin settings) belongs to the agent and is left out. Each setting is
//! put on its line of the agent's file, so the parser's "line N" points at it.

use serde_json::Value;

/// What a configuration message names in its errors.
pub const SOURCE_NAME: &str = "zabbix_agent2.conf (Plugins.LinuxStatus.*)";

/// Beyond this line number settings are listed one per line instead of on their own line.
const MAX_PADDED_LINE: u64 = 100_000;

/// The settings as configuration text, or why the tree is not one.
pub fn to_config_text(options: &Value) -> Result<String, String> {
    let mut settings: Vec<(u64, String)> = Vec::new();
    match options {
        Value::Null => {}
        Value::Object(root) => {
            for child in nodes(root.get("Nodes")) {
                if child.get("Name").and_then(Value::as_str) == Some("System") {
                    continue;
                }
                collect(child, "", &mut settings, 0)?;
            }
        }
        _ => return Err("the agent sent plugin options that are not a configuration tree".into()),
    }
    settings.sort_by_key(|(line, _)| *line);
    let padded = settings
        .last()
        .is_none_or(|(line, _)| *line <= MAX_PADDED_LINE)
        && settings.windows(2).all(|pair| pair[0].0 < pair[1].0);
    let mut text = String::new();
    let mut current = 1u64;
    for (line, setting) in settings {
        if padded {
            while current < line {
                text.push('\n');
                current += 1;
            }
        }
        text.push_str(&setting);
        text.push('\n');
        current += 1;
    }
    Ok(text)
}

fn nodes(list: Option<&Value>) -> impl Iterator<Item = &serde_json::Map<String, Value>> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn collect(
    node: &serde_json::Map<String, Value>,
    prefix: &str,
    settings: &mut Vec<(u64, String)>,
    depth: usize,
) -> Result<(), String> {
    if depth > 16 {
        return Err("the agent sent plugin options nested too deep".into());
    }
    let Some(name) = node.get("Name").and_then(Value::as_str) else {
        return Ok(());
    };
    // One setting per line: a name must not be able to start another one.
    if name.contains(['\n', '\r', '=']) {
        return Err("the agent sent a setting name with a line break or '='".into());
    }
    let path = if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    };
    let mut line = node.get("Line").and_then(Value::as_u64).unwrap_or(0);
    let mut value = None;
    for child in nodes(node.get("Nodes")) {
        if let Some(encoded) = child.get("Value") {
            let encoded = encoded.as_str().unwrap_or_default();
            let bytes = decode_base64(encoded)
                .ok_or_else(|| format!("the agent sent an unreadable value for {path}"))?;
            // A repeated setting: the last occurrence wins, as for the agent's own settings,
            // and its own line is the one to name.
            value = Some(bytes);
            if let Some(own_line) = child.get("Line").and_then(Value::as_u64) {
                line = own_line;
            }
        } else {
            collect(child, &path, settings, depth + 1)?;
        }
    }
    if let Some(bytes) = value {
        let text = String::from_utf8_lossy(&bytes);
        if text.contains(['\n', '\r']) {
            return Err(format!(
                "the value of Plugins.LinuxStatus.{path} holds a line break"
            ));
        }
        settings.push((line, format!("{path}={text}")));
    }
    Ok(())
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON); None if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        Some(u32::from(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, quad) in bytes.chunks(4).enumerate() {
        let last = index + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut group = 0u32;
        for &byte in &quad[..4 - pad] {
            group = (group << 6) | sextet(byte)?;
        }
        group <<= 6 * pad as u32;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Debian's agent 2 6.0.14 sent for a section with a path, two settings and a
    /// nested unknown one, on lines 11 to 14.
    const SEEN: &str = r#"{"Name":"LinuxStatus","Nodes":[{"Name":"System","Nodes":[{"Name":"Path","Nodes":[{"Value":"L3RtcC9hMi9wcm9iZS9wbHVnaW4ucHk=","Line":11}],"Line":11}],"Line":11},{"Name":"Backend","Nodes":[{"Value":"bmV0bGluaw==","Line":12}],"Line":12},{"Name":"SnapshotLifetime","Nodes":[{"Value":"MjUw","Line":13}],"Line":13},{"Name":"Nested","Nodes":[{"Name":"Thing","Nodes":[{"Value":"eA==","Line":14}],"Line":14}],"Line":14}],"Line":11}"#;

    #[test]
    fn settings_land_on_their_lines_without_the_system_subtree() {
        let options: Value = serde_json::from_str(SEEN).unwrap();
        let text = to_config_text(&options).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 14);
        assert!(lines[..11].iter().all(|line| line.is_empty()));
        assert_eq!(
            &lines[11..],
            ["Backend=netlink", "SnapshotLifetime=250", "Nested.Thing=x"]
        );
    }

    #[test]
    fn a_repeated_setting_is_its_last_value_on_its_own_line() {
        let repeated: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"SnapshotLifetime","Nodes":[{"Value":"MA==","Line":2},{"Value":"LTE=","Line":3}],"Line":2}]}"#,
        )
        .unwrap();
        assert_eq!(
            to_config_text(&repeated).unwrap(),
            "\n\nSnapshotLifetime=-1\n"
        );
    }

    #[test]
    fn no_options_are_no_settings() {
        assert_eq!(to_config_text(&Value::Null).unwrap(), "");
        let path_only: Value = serde_json::from_str(
            r#"{"Name":"LinuxStatus","Nodes":[{"Name":"System","Nodes":[{"Name":"Path","Nodes":[{"Value":"eA==","Line":1}],"Line":1}],"Line":1}],"Line":1}"#,
        )
        .unwrap();
        assert_eq!(to_config_text(&path_only).unwrap(), "");
    }

    #[test]
    fn odd_trees_are_refused_or_listed_in_order() {
        assert!(to_config_text(&Value::from("x")).is_err());
        let bad_value: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"Backend","Nodes":[{"Value":"!!!!","Line":1}]}]}"#,
        )
        .unwrap();
        assert!(to_config_text(&bad_value).is_err());
        let newline: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"Backend","Nodes":[{"Value":"YQpi","Line":1}]}]}"#,
        )
        .unwrap();
        assert!(to_config_text(&newline).unwrap_err().contains("line break"));
        let bad_name: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"x\nBackend","Nodes":[{"Value":"YQ==","Line":1}]}]}"#,
        )
        .unwrap();
        assert!(to_config_text(&bad_name)
            .unwrap_err()
            .contains("setting name"));
        // No line numbers: one setting per line, in order.
        let unnumbered: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"A","Nodes":[{"Value":"MQ=="}]},{"Name":"B","Nodes":[{"Value":"Mg=="}]}]}"#,
        )
        .unwrap();
        assert_eq!(to_config_text(&unnumbered).unwrap(), "A=1\nB=2\n");
        // A hostile line number is not padded to.
        let far: Value = serde_json::from_str(
            r#"{"Nodes":[{"Name":"A","Nodes":[{"Value":"MQ=="}],"Line":18446744073709551615}]}"#,
        )
        .unwrap();
        assert_eq!(to_config_text(&far).unwrap(), "A=1\n");
    }

    #[test]
    fn base64_round_trips_and_rejects_malformed_input() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("eA==").unwrap(), b"x");
        assert_eq!(decode_base64("eHk=").unwrap(), b"xy");
        assert_eq!(decode_base64("eHl6").unwrap(), b"xyz");
        assert_eq!(decode_base64("bmV0bGluaw==").unwrap(), b"netlink");
        for bad in ["e", "eA=", "e===", "eA==eA==", "e-A=", "===="] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
    }
}
