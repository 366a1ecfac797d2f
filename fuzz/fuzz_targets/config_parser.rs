//! Fuzz target: the configuration parsers, both ways a configuration arrives.
//!
//! The first input byte picks the way: even, the rest is a module configuration file's bytes
//! (`parse_config`), checked against a naive reference parser written from the README's
//! rules (same outcome: the same settings, or an error on the same line); odd, the rest is
//! the JSON tree agent 2 sends for `Plugins.LinuxStatus.*`, turned into text
//! (`agent2::options`) and parsed. Either way every error message is bounded and printable
//! ASCII (values are quoted, never echoed raw), and nothing panics or hangs.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use linux_status::agent2::options;
use linux_status::{parse_config, Backend, Config};

/// The longest message an error may be: the prefix, a line number, the problem and a quoted
/// value of at most 64 bytes shown as four characters each, with its length.
const MAX_MESSAGE: usize = 512;
const LIMIT: usize = 16 * 1024;

/// The rules, naively: lines split on `\n`; past LIMIT bytes of text (newlines not counted)
/// an error; each line UTF-8, trimmed; blank and `#` lines skipped; `Name=Value` split at the
/// first `=`, both trimmed; Backend one of three words, SnapshotLifetime decimal
/// milliseconds up to 60000, NetnsTableInterval decimal seconds up to 3600 (an optional `+`,
/// as Rust's integer parsing takes it).
fn reference(bytes: &[u8]) -> Result<Config, usize> {
    let mut config = Config::default();
    let mut total = 0;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        total += raw.len();
        if total > LIMIT {
            return Err(line_number);
        }
        let line = std::str::from_utf8(raw).map_err(|_| line_number)?.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or(line_number)?;
        match (name.trim(), value.trim()) {
            ("Backend", "auto") => config.backend = Backend::Auto,
            ("Backend", "proc") => config.backend = Backend::Proc,
            ("Backend", "netlink") => config.backend = Backend::Netlink,
            ("SnapshotLifetime", digits) => {
                let ms = decimal(digits, 60_000).ok_or(line_number)?;
                config.snapshot_lifetime = Duration::from_millis(ms);
            }
            ("NetnsTableInterval", digits) => {
                let seconds = decimal(digits, 3600).ok_or(line_number)?;
                config.netns_table_interval = Duration::from_secs(seconds);
            }
            _ => return Err(line_number),
        }
    }
    Ok(config)
}

/// Decimal digits (an optional `+`, as Rust's integer parsing takes it) up to `max`.
fn decimal(digits: &str, max: u64) -> Option<u64> {
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (value <= max).then_some(value)
}

fn check_message(message: &str, prefix: &str) {
    assert!(
        message.len() <= MAX_MESSAGE,
        "unbounded message: {} bytes",
        message.len()
    );
    assert!(
        message.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "unescaped byte in {message:?}"
    );
    assert!(message.starts_with(prefix), "{message}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&way, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz.conf");
    if way % 2 == 0 {
        let parsed = parse_config(rest, path);
        match (&parsed, reference(rest)) {
            (Ok(config), Ok(expected)) => assert_eq!(config, &expected),
            (Err(error), Err(line)) => {
                check_message(&error.0, &format!("linux_status: fuzz.conf line {line}: "))
            }
            (got, expected) => panic!("parser {got:?} but reference {expected:?}"),
        }
    } else if let Ok(tree) = serde_json::from_slice::<serde_json::Value>(rest) {
        if let Ok(text) = options::to_config_text(&tree) {
            if let Err(error) = parse_config(text.as_bytes(), path) {
                check_message(&error.0, "linux_status: fuzz.conf line ");
            }
        }
    }
});
