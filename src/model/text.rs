//! Text helpers for parameters: trimming the way the agent hands them over, and quoting a
//! rejected one safely in a message.

/// How many bytes of a rejected parameter an error message quotes.
const QUOTED_BYTES: usize = 64;

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

/// A parameter made safe to show: printable ASCII kept, everything else escaped, long
/// values cut.
pub fn quote(param: &[u8]) -> String {
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
