//! Text helpers for parameters: trimming the way the agent hands them over, and the one
//! quoting helper every message uses to echo a value it did not make itself (an item
//! parameter, a configuration value or name, a file path, a /proc line, a plugin request).
//!
//! Quoted text is bounded and unambiguous: printable ASCII is kept, `"` and `\` are
//! escaped, and every other byte (NUL, ESC and other controls, DEL, each byte of UTF-8 text
//! including a BOM, invalid UTF-8) is written `\xNN`; past the bound the text is cut and the
//! full length named, e.g. `AAAA...(67108864 bytes)`. So `proc\0` reads `proc\x00`, never
//! `proc`, and a value cannot forge a log line or grow one without limit.

/// How many bytes of a rejected parameter or value an error message quotes.
pub const QUOTED_BYTES: usize = 64;
/// How many bytes of a file path a message quotes (longer paths are cut like values).
pub const QUOTED_PATH_BYTES: usize = 1024;

/// Strips leading and trailing spaces: the agent keeps trailing spaces of unquoted
/// parameters, and quoted ones may carry both. Other bytes, tabs included, are not blanks
/// here: they make the name unknown.
pub fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' '] = bytes {
        bytes = rest;
    }
    bytes
}

/// A parameter made safe to show: printable ASCII kept, everything else escaped, cut after
/// `QUOTED_BYTES`.
pub fn quote(param: &[u8]) -> String {
    quote_within(param, QUOTED_BYTES)
}

/// A file path made safe to show, cut after `QUOTED_PATH_BYTES`.
pub fn quote_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    quote_within(path.as_os_str().as_bytes(), QUOTED_PATH_BYTES)
}

/// `quote` with its own bound: at most `limit` bytes of `param` are shown (each as at most
/// four characters), then `...(N bytes)`.
pub fn quote_within(param: &[u8], limit: usize) -> String {
    let mut quoted = String::with_capacity(param.len().min(limit) + 2);
    for &byte in param.iter().take(limit) {
        match byte {
            b'"' | b'\\' => {
                quoted.push('\\');
                quoted.push(char::from(byte));
            }
            b' '..=b'~' => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if param.len() > limit {
        quoted.push_str(&format!("...({} bytes)", param.len()));
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_unambiguous() {
        // A NUL and the four characters `\x00` typed into a value read differently.
        assert_eq!(quote(b"proc\0"), r"proc\x00");
        assert_eq!(quote(br"proc\x00"), r"proc\\x00");
        assert_eq!(quote(br#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(quote(b"\x1b[31mred"), r"\x1b[31mred");
        assert_eq!(quote("\u{feff}Backend".as_bytes()), r"\xef\xbb\xbfBackend");
        assert_eq!(quote(&[0xff, b'\n', 0x7f]), r"\xff\x0a\x7f");
        assert_eq!(quote(b""), "");
    }

    #[test]
    fn quoted_text_is_bounded() {
        let long = vec![b'A'; 64 << 20];
        let shown = quote(&long);
        assert_eq!(
            shown,
            format!("{}...(67108864 bytes)", "A".repeat(QUOTED_BYTES))
        );
        // Every shown byte is at most four characters.
        let shown = quote(&[0u8; 100]);
        assert_eq!(shown.len(), 4 * QUOTED_BYTES + "...(100 bytes)".len());
        let path = std::path::Path::new("/etc/zabbix/linux_status.conf");
        assert_eq!(quote_path(path), "/etc/zabbix/linux_status.conf");
        assert!(quote_path(std::path::Path::new(&"d/".repeat(4000))).ends_with("...(8000 bytes)"));
    }
}
