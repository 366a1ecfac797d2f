//! A naive, obviously-correct reference parser for /proc/net/tcp{,6} text, and the adapter
//! that runs the real (fast, incremental) scanner into the same result type.
//!
//! Shared by `tests/parser_properties.rs` and the `proc_parser` fuzz target (both include
//! this file with `#[path]`). It reads the whole input at once, splits it into lines and
//! checks each line's columns with plain string functions: no buffers, no offsets, no state
//! carried between reads. What it must agree with (see src/parse.rs for the format):
//!
//! - Line 1 is the header: its first space-separated field is `sl` and a second one exists.
//! - Every other line: `<digits>:`, two `<hex address>:<4 hex port>` columns (8 hex digits
//!   in tcp, 32 in tcp6), `st` as exactly two hex digits, `<8 hex>:<8 hex>` queues, and at
//!   least one more column. Columns are separated by runs of spaces (only ' ').
//! - The first failing check of the first bad line is the error, with its 1-based line
//!   number (the header is line 1).
//! - Input that does not end with `\n` is truncated at the line after the last newline; an
//!   empty input has no header.
//! - The scanner reads through a buffer of `buffer_len` bytes: a line whose text (without its
//!   newline) is `buffer_len` bytes or longer cannot be held and is `LineTooLong`; that check
//!   comes before the line's content is looked at, and applies to an unterminated last line
//!   too.
//! - A UDP table (/proc/net/udp{,6}): the same, then the line must have exactly 13 columns
//!   (`tr:tm->when retrnsmt uid timeout inode ref pointer drops` after the queues), else
//!   `UdpColumns`, and the 13th must be a decimal number below 2^32 of at most 10 digits,
//!   else `BadDrops`; it is the socket's drops.
#![allow(dead_code)]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// A glob import: it also brings the socket accessor trait into scope where the parser has
// one (the accessors are inherent methods on older versions).
#[allow(unused_imports)]
use linux_status::proc::{Endpoint, Family, Problem, Protocol, ReaderError, Scanner};
use linux_status::Deadline;

/// Everything the parser exposes about one socket line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub state: u8,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub tx_queue: u32,
    pub rx_queue: u32,
    /// The `drops` column (UDP tables only).
    pub drops: Option<u32>,
}

/// Where and why a table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub problem: Problem,
}

pub type Outcome = Result<Vec<Socket>, Rejection>;

/// The reference: parses the whole `input` as one TCP table read through `buffer_len` bytes.
pub fn naive_parse(family: Family, input: &[u8], buffer_len: usize) -> Outcome {
    naive_parse_table(Protocol::Tcp, family, input, buffer_len)
}

/// The reference for a table of `protocol`.
pub fn naive_parse_table(
    protocol: Protocol,
    family: Family,
    input: &[u8],
    buffer_len: usize,
) -> Outcome {
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    // `split` always yields the text after the last newline (empty if input ends with one).
    let tail = pieces.pop().unwrap_or(b"");
    let lines = pieces;

    let mut sockets = Vec::new();
    for (index, &line) in lines.iter().enumerate() {
        let number = index as u64 + 1;
        let reject = |problem| {
            Err(Rejection {
                line: number,
                problem,
            })
        };
        if line.len() >= buffer_len {
            return reject(Problem::LineTooLong);
        }
        if number == 1 {
            let fields = fields(line);
            if !(fields.len() >= 2 && fields[0] == b"sl") {
                return reject(Problem::MissingHeader);
            }
            continue;
        }
        match socket(protocol, family, line) {
            Ok(socket) => sockets.push(socket),
            Err(problem) => return reject(problem),
        }
    }

    let next_line = lines.len() as u64 + 1;
    if !tail.is_empty() {
        let problem = if tail.len() >= buffer_len {
            Problem::LineTooLong
        } else {
            Problem::Truncated
        };
        return Err(Rejection {
            line: next_line,
            problem,
        });
    }
    if lines.is_empty() {
        return Err(Rejection {
            line: 1,
            problem: Problem::Empty,
        });
    }
    Ok(sockets)
}

/// The non-empty runs of non-space bytes.
fn fields(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ')
        .filter(|field| !field.is_empty())
        .collect()
}

fn socket(protocol: Protocol, family: Family, line: &[u8]) -> Result<Socket, Problem> {
    let fields = fields(line);
    let column = |index: usize| fields.get(index).copied();

    let slot = column(0).ok_or(Problem::BadSlot)?;
    let digits = slot.strip_suffix(b":").ok_or(Problem::BadSlot)?;
    if digits.is_empty() || !digits.iter().all(|b| b.is_ascii_digit()) {
        return Err(Problem::BadSlot);
    }

    let address_digits = match family {
        Family::V4 => 8,
        Family::V6 => 32,
    };
    let local = column(1).ok_or(Problem::BadAddress)?;
    let remote = column(2).ok_or(Problem::BadAddress)?;
    let (local_address, local_port) =
        hex_pair(local, address_digits, 4).ok_or(Problem::BadAddress)?;
    let (remote_address, remote_port) =
        hex_pair(remote, address_digits, 4).ok_or(Problem::BadAddress)?;

    let state = column(3).ok_or(Problem::BadState)?;
    let state = std::str::from_utf8(state).map_err(|_| Problem::BadState)?;
    if state.len() != 2 || !state.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Problem::BadState);
    }
    let state = u8::from_str_radix(state, 16).map_err(|_| Problem::BadState)?;

    let queues = column(4).ok_or(Problem::BadQueues)?;
    let (tx, rx) = hex_pair(queues, 8, 8).ok_or(Problem::BadQueues)?;
    if column(5).is_none() {
        return Err(Problem::TooFewColumns);
    }
    let drops = match protocol {
        Protocol::Tcp => None,
        Protocol::Udp => {
            if fields.len() != 13 {
                return Err(Problem::UdpColumns);
            }
            let text = std::str::from_utf8(fields[12]).map_err(|_| Problem::BadDrops)?;
            if text.is_empty() || text.len() > 10 || !text.chars().all(|c| c.is_ascii_digit()) {
                return Err(Problem::BadDrops);
            }
            Some(text.parse::<u32>().map_err(|_| Problem::BadDrops)?)
        }
    };

    Ok(Socket {
        state,
        local: endpoint(family, local_address, local_port),
        remote: endpoint(family, remote_address, remote_port),
        tx_queue: u32::from_str_radix(tx, 16).expect("validated hex"),
        rx_queue: u32::from_str_radix(rx, 16).expect("validated hex"),
        drops,
    })
}

/// `<left hex digits>:<right hex digits>` with exactly these widths, as two strings.
fn hex_pair(column: &[u8], left: usize, right: usize) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(column).ok()?;
    let (a, b) = text.split_once(':')?;
    let is_hex =
        |s: &str, width: usize| s.len() == width && s.chars().all(|c| c.is_ascii_hexdigit());
    (is_hex(a, left) && is_hex(b, right)).then_some((a, b))
}

/// The kernel prints each network-order 32-bit word of the address as a native integer.
fn endpoint(family: Family, address: &str, port: &str) -> Endpoint {
    let mut octets = Vec::new();
    for start in (0..address.len()).step_by(8) {
        let word = u32::from_str_radix(&address[start..start + 8], 16).expect("validated hex");
        octets.extend_from_slice(&word.to_ne_bytes());
    }
    let address = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        Family::V6 => {
            let bytes: [u8; 16] = octets.try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    };
    Endpoint {
        address,
        port: u16::from_str_radix(port, 16).expect("validated hex"),
    }
}

/// The fast path: `scanner` streaming `reader`, collected into the reference's result type.
/// A read error or a timeout cannot happen with the readers and deadline used here: they are
/// bugs, reported by panicking (the fuzzer's crash, the test's failure).
pub fn fast_scan<R: Read>(scanner: &mut Scanner, reader: R, family: Family) -> Outcome {
    fast_scan_table(scanner, reader, Protocol::Tcp, family)
}

/// [`fast_scan`] of a table of `protocol`.
pub fn fast_scan_table<R: Read>(
    scanner: &mut Scanner,
    reader: R,
    protocol: Protocol,
    family: Family,
) -> Outcome {
    let mut sockets = Vec::new();
    let deadline = Deadline::none();
    let result = scanner.scan_table_reader(reader, protocol, family, deadline, &mut |line| {
        assert_eq!(line.family(), family);
        sockets.push(Socket {
            state: line.state(),
            local: line.local(),
            remote: line.remote(),
            tx_queue: line.tx_queue(),
            rx_queue: line.rx_queue(),
            drops: line.drops(),
        })
    });
    match result {
        Ok(()) => Ok(sockets),
        Err(ReaderError::Parse(error)) => Err(Rejection {
            line: error.line,
            problem: error.problem,
        }),
        Err(other) => panic!("scan_reader failed without a parse error: {other:?}"),
    }
}

/// A reader that hands out `data` in chunks whose sizes cycle through `steps`; a step of 0
/// returns `ErrorKind::Interrupted` once (the scanner must retry), like a signal would.
pub struct SplitReader<'a> {
    data: &'a [u8],
    steps: Vec<usize>,
    next: usize,
}

impl<'a> SplitReader<'a> {
    pub fn new(data: &'a [u8], steps: &[usize]) -> Self {
        let steps = if steps.iter().any(|&s| s > 0) {
            steps.to_vec()
        } else {
            vec![1]
        };
        SplitReader {
            data,
            steps,
            next: 0,
        }
    }
}

impl Read for SplitReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let step = self.steps[self.next % self.steps.len()];
        self.next += 1;
        if step == 0 {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
