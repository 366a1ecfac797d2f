//! The /proc/net/{tcp,tcp6,udp,udp6} text parser: safe, allocation-free, incremental.
//!
//! # The format
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!    0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   116        0 21662 1 ...
//! ```
//!
//! - Line 1 is a header (`sl  local_address ...`), padded with spaces.
//! - Every other line is one socket. `sl` is a decimal slot number right-aligned in four
//!   columns, so past 9999 entries it simply grows wider: nothing may depend on column
//!   positions, only on runs of spaces between fields.
//! - Addresses are hex: 8 digits in tcp (one 32-bit word), 32 in tcp6 (four words); each
//!   word is the network-order address bytes printed as a native-endian integer. Ports are
//!   4 hex digits in host order. `st` is the kernel state number in 2 hex digits.
//! - `tx_queue:rx_queue` are 8 hex digits each; for a LISTEN socket rx_queue is the current
//!   accept-queue length.
//! - The columns after the queues differ between full sockets, TIME_WAIT mini-sockets and
//!   SYN_RECV request sockets, and between kernel versions. This parser validates the first
//!   five columns of every line strictly and does not read the rest.
//! - /proc/net/udp{,6} lines have the same first five columns (UDP states are 07, UNCONN,
//!   and 01, ESTAB) and exactly eight after the queues, always printed:
//!   `tr:tm->when retrnsmt uid timeout inode ref pointer drops`; `drops` is the socket's
//!   dropped datagrams in decimal (`sk_drops`). A UDP table is parsed as strictly as a TCP
//!   one, plus that column count and the drops number.
//! - Every line, including the last, ends with `\n`. The kernel hands the file out at most
//!   one page per read(), so a line may be split across reads.
//!
//! # Design
//!
//! [`ProcTableParser::feed`] takes whatever bytes have been read so far, parses every
//! complete line and reports how many bytes it consumed; the caller keeps the partial tail
//! and appends the next read to it (the csv-core model). Each socket is handed to a
//! callback as a [`SocketLine`] borrowing the buffer: no allocation per line or socket.
//! Anything unexpected is an error naming the line, never a silent skip: a wrong number is
//! worse than no number for a monitoring system.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::socket::{Endpoint, Protocol, SocketView};

/// Which file is being parsed; it fixes the address width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// /proc/net/tcp: 8 hex digits per address.
    V4,
    /// /proc/net/tcp6: 32 hex digits per address.
    V6,
}

impl Family {
    fn address_hex_digits(self) -> usize {
        match self {
            Family::V4 => 8,
            Family::V6 => 32,
        }
    }
}

/// One socket line, borrowed from the read buffer. Fields are validated; decoding the
/// addresses is left to the callers that need them.
#[derive(Clone, Copy, Debug)]
pub struct SocketLine<'a> {
    family: Family,
    state: u8,
    local: &'a [u8],
    remote: &'a [u8],
    queues: &'a [u8],
    /// The `drops` column of a UDP line; None in a TCP table.
    drops: Option<u32>,
}

impl SocketView for SocketLine<'_> {
    #[inline]
    fn state(&self) -> u8 {
        SocketLine::state(self)
    }

    fn local(&self) -> Endpoint {
        SocketLine::local(self)
    }

    fn remote(&self) -> Endpoint {
        SocketLine::remote(self)
    }

    fn rx_queue(&self) -> u32 {
        SocketLine::rx_queue(self)
    }

    fn drops(&self) -> Option<u32> {
        self.drops
    }
}

impl<'a> SocketLine<'a> {
    /// The raw kernel state number (`st`).
    #[inline]
    pub fn state(&self) -> u8 {
        self.state
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn local(&self) -> Endpoint {
        decode_endpoint(self.family, self.local)
    }

    pub fn remote(&self) -> Endpoint {
        decode_endpoint(self.family, self.remote)
    }

    /// The receive queue; for a LISTEN socket, the current accept-queue length.
    pub fn rx_queue(&self) -> u32 {
        hex_u32(&self.queues[9..17]).unwrap_or(0)
    }

    /// The send queue.
    pub fn tx_queue(&self) -> u32 {
        hex_u32(&self.queues[..8]).unwrap_or(0)
    }

    /// The `drops` column of a UDP table (None in a TCP one).
    pub fn drops(&self) -> Option<u32> {
        self.drops
    }
}

/// What was wrong with a line. Line numbers count from 1, the header being line 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: u64,
    pub problem: Problem,
    /// The start of the offending line, lossily made printable, for the error message.
    pub excerpt: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file is empty: even a table without sockets has a header.
    Empty,
    /// Line 1 is not the `sl  local_address ...` header.
    MissingHeader,
    /// The slot column is not `<digits>:`.
    BadSlot,
    /// An address column is not `<8 or 32 hex digits>:<4 hex digits>`.
    BadAddress,
    /// The state column is not two hex digits.
    BadState,
    /// The queue column is not `<8 hex>:<8 hex>`.
    BadQueues,
    /// A line ends before the columns after the queues.
    TooFewColumns,
    /// A UDP line does not have exactly eight columns after the queues.
    UdpColumns,
    /// The `drops` column of a UDP line is not a decimal number below 2^32.
    BadDrops,
    /// The last line has no newline: the file was cut short.
    Truncated,
    /// A line is longer than the read buffer can hold.
    LineTooLong,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Empty => "file is empty, expected a header line",
            Problem::MissingHeader => "expected the header line (\"sl  local_address ...\")",
            Problem::BadSlot => "slot column is not \"<number>:\"",
            Problem::BadAddress => "address column is not \"<hex address>:<hex port>\"",
            Problem::BadState => "state column is not two hex digits",
            Problem::BadQueues => "queue column is not \"<hex tx>:<hex rx>\"",
            Problem::TooFewColumns => "line ends after the queue column",
            Problem::UdpColumns => {
                "expected 8 columns after the queues (tr:tm->when retrnsmt uid timeout inode ref pointer drops)"
            }
            Problem::BadDrops => "drops column is not a decimal number",
            Problem::Truncated => "last line has no newline (file cut short)",
            Problem::LineTooLong => "line longer than the read buffer",
        })
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)?;
        if !self.excerpt.is_empty() {
            write!(f, ": \"{}\"", self.excerpt)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// How much of an offending line an error message quotes.
const EXCERPT_BYTES: usize = 80;

fn excerpt(line: &[u8]) -> String {
    crate::model::text::quote_within(line, EXCERPT_BYTES)
}

/// Incremental parser state for one file.
#[derive(Debug)]
pub struct ProcTableParser {
    family: Family,
    protocol: Protocol,
    /// Lines completed so far (the header included).
    lines: u64,
}

impl ProcTableParser {
    /// A parser of /proc/net/tcp (V4) or tcp6 (V6).
    #[cfg(test)]
    pub fn new(family: Family) -> Self {
        Self::for_table(Protocol::Tcp, family)
    }

    /// A parser of the `protocol` table of `family` (udp6 is `(Udp, V6)`).
    pub fn for_table(protocol: Protocol, family: Family) -> Self {
        ProcTableParser {
            family,
            protocol,
            lines: 0,
        }
    }

    /// Lines parsed so far, header included.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Parses every complete line in `input`, calling `on_socket` for each socket line, and
    /// returns how many bytes were consumed (up to and including the last newline). The
    /// caller keeps `input[consumed..]` and passes it again, followed by more data.
    pub fn feed<F>(&mut self, input: &[u8], mut on_socket: F) -> Result<usize, ParseError>
    where
        F: FnMut(&SocketLine<'_>),
    {
        let mut consumed = 0;
        while let Some(length) = find_newline(&input[consumed..]) {
            let line = &input[consumed..consumed + length];
            let line_number = self.lines + 1;
            if line_number == 1 {
                if !is_header(line) {
                    return Err(self.error(Problem::MissingHeader, line));
                }
            } else {
                let mut socket = parse_socket_line(self.family, line)
                    .map_err(|problem| self.error(problem, line))?;
                if self.protocol == Protocol::Udp {
                    socket.drops =
                        Some(udp_drops(line).map_err(|problem| self.error(problem, line))?);
                }
                on_socket(&socket);
            }
            self.lines = line_number;
            consumed += length + 1;
        }
        Ok(consumed)
    }

    /// Checks what is left once the file has ended: `unconsumed` is the tail that `feed`
    /// did not consume (a line without its newline).
    pub fn finish(&self, unconsumed: &[u8]) -> Result<(), ParseError> {
        if !unconsumed.is_empty() {
            return Err(self.error(Problem::Truncated, unconsumed));
        }
        if self.lines == 0 {
            return Err(self.error(Problem::Empty, unconsumed));
        }
        Ok(())
    }

    /// The error for a line longer than the buffer: `pending` is the unconsumed start of it.
    pub fn line_too_long(&self, pending: &[u8]) -> ParseError {
        self.error(Problem::LineTooLong, pending)
    }

    fn error(&self, problem: Problem, line: &[u8]) -> ParseError {
        ParseError {
            line: self.lines + 1,
            problem,
            excerpt: excerpt(line),
        }
    }
}

/// The first `\n`. A /proc line is 150-180 bytes and finding its end is most of the
/// parser's own work: the memchr crate compares 16-32 bytes per instruction (SIMD chosen at
/// run time), which a byte loop does not reach.
#[inline]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

fn is_header(line: &[u8]) -> bool {
    let mut fields = Fields::new(line);
    fields.next() == Some(b"sl") && fields.next().is_some()
}

/// Splits a line at runs of spaces.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(line: &'a [u8]) -> Self {
        Fields { rest: line }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// Validates the first five columns of a socket line and borrows them.
///
/// Columns are separated by runs of spaces; each must be exactly its expected shape (a
/// column that runs on without a space after its expected width is malformed). Written with
/// positions rather than a field iterator because it runs once per socket.
#[inline]
fn parse_socket_line(family: Family, line: &[u8]) -> Result<SocketLine<'_>, Problem> {
    let end = line.len();
    let skip_spaces = |mut at: usize| {
        while at < end && line[at] == b' ' {
            at += 1;
        }
        at
    };
    // The column starting at `at` is exactly `left` hex digits, then `:` and `right` more
    // when `right` is not zero.
    let column = |at: usize, left: usize, right: usize| -> Option<&[u8]> {
        let width = if right == 0 { left } else { left + 1 + right };
        let candidate = line.get(at..at + width)?;
        let ends = at + width == end || line[at + width] == b' ';
        let valid = if right == 0 {
            all_hex(candidate)
        } else {
            is_hex_pair(candidate, left, right)
        };
        (ends && valid).then_some(candidate)
    };

    let mut at = skip_spaces(0);
    let digits = at;
    while at < end && line[at].is_ascii_digit() {
        at += 1;
    }
    if at == digits || line.get(at) != Some(&b':') || !matches!(line.get(at + 1), None | Some(b' '))
    {
        return Err(Problem::BadSlot);
    }

    at = skip_spaces(at + 1);
    if let Some(socket) = fast_columns(family, line, at) {
        return Ok(socket);
    }

    let digits = family.address_hex_digits();
    let width = digits + 5;
    let local = column(at, digits, 4).ok_or(Problem::BadAddress)?;
    at = skip_spaces(at + width);
    let remote = column(at, digits, 4).ok_or(Problem::BadAddress)?;

    at = skip_spaces(at + width);
    let state = column(at, 2, 0).ok_or(Problem::BadState)?;
    let state = hex_value(state[0]) << 4 | hex_value(state[1]);

    at = skip_spaces(at + 2);
    let queues = column(at, 8, 8).ok_or(Problem::BadQueues)?;
    if skip_spaces(at + 17) == end {
        return Err(Problem::TooFewColumns);
    }

    Ok(SocketLine {
        family,
        state,
        local,
        remote,
        queues,
        drops: None,
    })
}

/// Columns of a UDP line (the slot through `drops`).
const UDP_COLUMNS: usize = 13;

/// The `drops` column of a UDP line whose first five columns are valid: the line must have
/// exactly [`UDP_COLUMNS`] columns, the last a decimal u32 (the kernel prints `%u`).
fn udp_drops(line: &[u8]) -> Result<u32, Problem> {
    let mut fields = Fields::new(line);
    let mut last: &[u8] = b"";
    let mut count = 0;
    for field in fields.by_ref() {
        count += 1;
        last = field;
        if count > UDP_COLUMNS {
            return Err(Problem::UdpColumns);
        }
    }
    if count != UDP_COLUMNS {
        return Err(Problem::UdpColumns);
    }
    if last.is_empty() || last.len() > 10 || !last.iter().all(u8::is_ascii_digit) {
        return Err(Problem::BadDrops);
    }
    let value = last
        .iter()
        .fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0'));
    u32::try_from(value).map_err(|_| Problem::BadDrops)
}

/// The columns after the slot when they have the kernel's exact shape and more columns
/// follow; None sends the line to the general path (which also explains any error).
#[inline]
fn fast_columns(family: Family, line: &[u8], at: usize) -> Option<SocketLine<'_>> {
    let (fits, used) = match family {
        Family::V4 => (
            line.get(at..at + V4_WORDS.len() * 8)
                .is_some_and(|block| has_shape(block, &V4_WORDS)),
            V4_SHAPE_USED,
        ),
        Family::V6 => (
            line.get(at..at + V6_WORDS.len() * 8)
                .is_some_and(|block| has_shape(block, &V6_WORDS)),
            V6_SHAPE_USED,
        ),
    };
    // A column must follow the queues: the byte after their space is not a space.
    if !fits || line[at + used] == b' ' {
        return None;
    }
    let block = &line[at..];
    let width = family.address_hex_digits() + 5;
    let state = &block[2 * width + 2..2 * width + 4];
    Some(SocketLine {
        family,
        state: hex_value(state[0]) << 4 | hex_value(state[1]),
        local: &block[..width],
        remote: &block[width + 1..2 * width + 1],
        queues: &block[2 * width + 5..2 * width + 22],
        drops: None,
    })
}

/// `<left hex digits>:<right hex digits>` with exact widths.
#[inline]
fn is_hex_pair(column: &[u8], left: usize, right: usize) -> bool {
    column.len() == left + 1 + right
        && column[left] == b':'
        && all_hex(&column[..left])
        && all_hex(&column[left + 1..])
}

/// Every byte is a hex digit.
#[inline]
fn all_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_hexdigit)
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of every byte of `word` that is a hex digit (SWAR: eight bytes at once).
#[inline]
fn hex_digit_bytes(word: u64) -> u64 {
    // With the high bits cleared no byte can carry into the next: adding (0x80 - low) sets
    // a byte's high bit iff it is >= low, adding (0x7f - high) iff it is > high.
    let low7 = word & !HIGHS;
    let in_range = |x: u64, low: u8, high: u8| {
        let at_least_low = x.wrapping_add(u64::from(0x80 - low) * ONES);
        let above_high = x.wrapping_add(u64::from(0x7f - high) * ONES);
        at_least_low & !above_high & HIGHS
    };
    let digits = in_range(low7, b'0', b'9');
    let letters = in_range(low7 | (0x20 * ONES), b'a', b'f');
    (digits | letters) & !word & HIGHS
}

/// The columns after the slot as the kernel prints them, one space apart: `H` is a hex
/// digit, `?` is not looked at, anything else must be that byte. Checking this shape eight
/// bytes at a time is the fast path; any other spacing takes the general path.
const V4_SHAPE: &[u8; 56] = b"HHHHHHHH:HHHH HHHHHHHH:HHHH HH HHHHHHHH:HHHHHHHH ???????";
const V6_SHAPE: &[u8; 104] = b"HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH:HHHH HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH:HHHH HH HHHHHHHH:HHHHHHHH ???????";
/// Bytes of the shape that matter (up to the space after the queues).
const V4_SHAPE_USED: usize = 49;
const V6_SHAPE_USED: usize = 97;

/// One 8-byte block of a shape: which bytes must be hex digits (high bits), which must
/// equal a literal (mask and value).
#[derive(Clone, Copy)]
struct ShapeWord {
    hex: u64,
    literal_mask: u64,
    literal: u64,
}

const fn shape_words<const WORDS: usize>(shape: &[u8]) -> [ShapeWord; WORDS] {
    let mut words = [ShapeWord {
        hex: 0,
        literal_mask: 0,
        literal: 0,
    }; WORDS];
    let mut index = 0;
    while index < WORDS * 8 {
        let byte = shape[index];
        let shift = 8 * (index % 8) as u32;
        let word = &mut words[index / 8];
        if byte == b'H' {
            word.hex |= 0x80 << shift;
        } else if byte != b'?' {
            word.literal_mask |= 0xff << shift;
            word.literal |= (byte as u64) << shift;
        }
        index += 1;
    }
    words
}

static V4_WORDS: [ShapeWord; 7] = shape_words::<7>(V4_SHAPE);
static V6_WORDS: [ShapeWord; 13] = shape_words::<13>(V6_SHAPE);

/// True if `block` has `shape` (a fixed number of words, so the loop unrolls).
#[inline]
fn has_shape<const WORDS: usize>(block: &[u8], shape: &[ShapeWord; WORDS]) -> bool {
    let mut fits = true;
    for (index, expected) in shape.iter().enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&block[index * 8..index * 8 + 8]);
        let word = u64::from_le_bytes(bytes);
        fits &= hex_digit_bytes(word) & expected.hex == expected.hex;
        fits &= word & expected.literal_mask == expected.literal;
    }
    fits
}

/// The value of a byte already known to be a hex digit.
#[inline]
fn hex_value(byte: u8) -> u8 {
    hex_digit(byte).unwrap_or(0)
}

#[inline]
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Parses up to 8 hex digits (callers pass validated columns).
fn hex_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &b| {
        Some(value << 4 | u32::from(hex_digit(b)?))
    })
}

/// Decodes a validated `HEX:PORT` column.
fn decode_endpoint(family: Family, column: &[u8]) -> Endpoint {
    let digits = family.address_hex_digits();
    let port = hex_u32(&column[digits + 1..]).unwrap_or(0) as u16;
    let mut octets = [0u8; 16];
    for (word_index, word) in column[..digits].chunks(8).enumerate() {
        let word = hex_u32(word).unwrap_or(0);
        // The kernel prints each network-order 32-bit word as a native integer.
        octets[word_index * 4..word_index * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let address = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(octets)),
    };
    Endpoint { address, port }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const LISTEN4: &str = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 21662 1 0000000000000000 100 0 0 10 0\n";
    const TIMEWAIT4: &str = "   1: 0100007F:1F90 0100007F:A2D2 06 00000000:00000000 03:000016A5 00000000     0        0 0 3 0000000000000000\n";
    const HEADER6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const ESTAB6: &str = "   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D6C4 01 00000000:00000000 00:00000000 00000000     0        0 3456 1 0000000000000000 20 4 30 10 -1\n";

    fn states(family: Family, text: &str) -> Result<Vec<u8>, ParseError> {
        let mut parser = ProcTableParser::new(family);
        let mut seen = Vec::new();
        let consumed = parser.feed(text.as_bytes(), |socket| seen.push(socket.state()))?;
        parser.finish(&text.as_bytes()[consumed..])?;
        Ok(seen)
    }

    #[test]
    fn parses_header_and_socket_lines() {
        let text = format!("{HEADER4}{LISTEN4}{TIMEWAIT4}");
        assert_eq!(states(Family::V4, &text).unwrap(), vec![0x0A, 0x06]);
    }

    #[test]
    fn header_only_is_an_empty_table() {
        assert_eq!(states(Family::V4, HEADER4).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn decodes_ipv4_endpoints_and_queues() {
        let text = format!("{HEADER4}{LISTEN4}");
        let mut parser = ProcTableParser::new(Family::V4);
        let mut seen = None;
        parser
            .feed(text.as_bytes(), |socket| {
                seen = Some((socket.local(), socket.remote(), socket.rx_queue()))
            })
            .unwrap();
        let (local, remote, rx_queue) = seen.unwrap();
        assert_eq!(local.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(local.port, 8080);
        assert_eq!(remote.address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(remote.port, 0);
        assert_eq!(rx_queue, 3);
    }

    #[test]
    fn decodes_ipv4_mapped_ipv6_endpoints() {
        let text = format!("{HEADER6}{ESTAB6}");
        let mut parser = ProcTableParser::new(Family::V6);
        let mut seen = None;
        parser
            .feed(text.as_bytes(), |socket| seen = Some(socket.local()))
            .unwrap();
        let local = seen.unwrap();
        assert_eq!(
            local.address,
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        );
        assert_eq!(local.port, 8080);
    }

    #[test]
    fn wide_slot_numbers_are_accepted() {
        let wide = LISTEN4.replacen("   0:", "12345:", 1);
        let text = format!("{HEADER4}{wide}");
        assert_eq!(states(Family::V4, &text).unwrap(), vec![0x0A]);
    }

    #[test]
    fn incremental_feeding_matches_one_shot_at_every_split() {
        let text = format!("{HEADER4}{LISTEN4}{TIMEWAIT4}{LISTEN4}");
        let bytes = text.as_bytes();
        let expected = states(Family::V4, &text).unwrap();
        for split in 0..=bytes.len() {
            let mut parser = ProcTableParser::new(Family::V4);
            let mut seen = Vec::new();
            let mut pending = bytes[..split].to_vec();
            let consumed = parser.feed(&pending, |s| seen.push(s.state())).unwrap();
            pending.drain(..consumed);
            pending.extend_from_slice(&bytes[split..]);
            let consumed = parser.feed(&pending, |s| seen.push(s.state())).unwrap();
            parser.finish(&pending[consumed..]).unwrap();
            assert_eq!(seen, expected, "split at {split}");
        }
    }

    fn problem(family: Family, text: &str) -> (u64, Problem) {
        let error = states(family, text).unwrap_err();
        (error.line, error.problem)
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_line() {
        let garbage = format!("{HEADER4}{LISTEN4}hello world\n{LISTEN4}");
        assert_eq!(problem(Family::V4, &garbage), (3, Problem::BadSlot));

        let bad_state = format!("{HEADER4}{}", LISTEN4.replacen(" 0A ", " ZZ ", 1));
        assert_eq!(problem(Family::V4, &bad_state), (2, Problem::BadState));

        let long_state = format!("{HEADER4}{}", LISTEN4.replacen(" 0A ", " 00A ", 1));
        assert_eq!(problem(Family::V4, &long_state), (2, Problem::BadState));

        let v6_in_v4 = format!("{HEADER4}{ESTAB6}");
        assert_eq!(problem(Family::V4, &v6_in_v4), (2, Problem::BadAddress));

        let bad_queue = format!(
            "{HEADER4}{}",
            LISTEN4.replacen("00000000:00000003", "0:3", 1)
        );
        assert_eq!(problem(Family::V4, &bad_queue), (2, Problem::BadQueues));

        let short = format!("{HEADER4}   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n");
        assert_eq!(problem(Family::V4, &short), (2, Problem::TooFewColumns));

        let no_header = LISTEN4.to_string();
        assert_eq!(problem(Family::V4, &no_header), (1, Problem::MissingHeader));

        assert_eq!(problem(Family::V4, ""), (1, Problem::Empty));

        let blank_line = format!("{HEADER4}\n{LISTEN4}");
        assert_eq!(problem(Family::V4, &blank_line), (2, Problem::BadSlot));
    }

    #[test]
    fn a_cut_last_line_is_truncation_not_a_socket() {
        let cut = &LISTEN4[..40];
        let text = format!("{HEADER4}{LISTEN4}{cut}");
        assert_eq!(problem(Family::V4, &text), (3, Problem::Truncated));
        // Even a complete-looking line needs its newline.
        let text = format!("{HEADER4}{}", LISTEN4.trim_end());
        assert_eq!(problem(Family::V4, &text), (2, Problem::Truncated));
    }

    #[test]
    fn error_messages_quote_a_printable_excerpt() {
        let text = format!("{HEADER4}\u{1}\u{7f}junk é\n");
        let error = states(Family::V4, &text).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"line 2: slot column is not "<number>:": "\x01\x7fjunk \xc3\xa9""#
        );
    }

    #[test]
    fn hex_checks_agree_with_the_standard_library_on_every_byte() {
        for byte in 0..=255u8 {
            for position in 0..9 {
                let mut digits = *b"0123456789";
                digits[position] = byte;
                assert_eq!(
                    all_hex(&digits),
                    digits.iter().all(u8::is_ascii_hexdigit),
                    "byte {byte:#04x} at {position}"
                );
            }
        }
        assert!(all_hex(b"0123456789abcdefABCDEF0000000000"));
        assert!(all_hex(b""));
    }

    // Captured in a private namespace (a 4 KiB-buffer receiver flooded; udp lines are padded
    // to 127 columns with spaces, udp6 ones are not).
    const UDP_HEADER4: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n";
    const UDP_FLOODED4: &str = " 9213: 0100007F:1517 00000000:0000 07 00000000:00001E00 00:00000000 00000000     0        0 16634948 2 00000000bd5b635a 294    \n";
    const UDP_HEADER6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";
    const UDP_ESTAB6: &str = " 9167: 00000000000000000000000001000000:14E9 00000000000000000000000001000000:1517 01 00000000:00000000 00:00000000 00000000     0        0 16634950 2 000000008644b259 0\n";

    /// State, local port, receive queue and drops of each socket line.
    type UdpSeen = Vec<(u8, u16, u32, Option<u32>)>;

    fn udp(family: Family, text: &str) -> Result<UdpSeen, (u64, Problem)> {
        let mut parser = ProcTableParser::for_table(Protocol::Udp, family);
        let mut seen = Vec::new();
        let consumed = parser
            .feed(text.as_bytes(), |s| {
                seen.push((s.state(), s.local().port, s.rx_queue(), s.drops()))
            })
            .map_err(|e| (e.line, e.problem))?;
        parser
            .finish(&text.as_bytes()[consumed..])
            .map_err(|e| (e.line, e.problem))?;
        Ok(seen)
    }

    #[test]
    fn udp_lines_give_their_drops() {
        let text = format!("{UDP_HEADER4}{UDP_FLOODED4}");
        assert_eq!(
            udp(Family::V4, &text).unwrap(),
            vec![(7, 5399, 0x1E00, Some(294))]
        );
        let text = format!("{UDP_HEADER6}{UDP_ESTAB6}");
        assert_eq!(udp(Family::V6, &text).unwrap(), vec![(1, 5353, 0, Some(0))]);
        // The same line read as TCP has no drops.
        let text = format!("{UDP_HEADER4}{UDP_FLOODED4}");
        let mut parser = ProcTableParser::new(Family::V4);
        let mut drops = Vec::new();
        parser
            .feed(text.as_bytes(), |s| drops.push(s.drops()))
            .unwrap();
        assert_eq!(drops, vec![None]);
    }

    #[test]
    fn udp_lines_need_eight_columns_after_the_queues_and_a_decimal_drops() {
        let short = UDP_FLOODED4.replacen(" 294", "", 1);
        assert_eq!(
            udp(Family::V4, &format!("{UDP_HEADER4}{short}")),
            Err((2, Problem::UdpColumns))
        );
        let long = UDP_FLOODED4.replacen(" 294", " 294 7", 1);
        assert_eq!(
            udp(Family::V4, &format!("{UDP_HEADER4}{long}")),
            Err((2, Problem::UdpColumns))
        );
        for bad in ["-1", "29a", "4294967296", "00000000004"] {
            let line = UDP_FLOODED4.replacen(" 294", &format!(" {bad}"), 1);
            assert_eq!(
                udp(Family::V4, &format!("{UDP_HEADER4}{line}")),
                Err((2, Problem::BadDrops)),
                "{bad}"
            );
        }
        let max = UDP_FLOODED4.replacen(" 294", " 4294967295", 1);
        assert_eq!(
            udp(Family::V4, &format!("{UDP_HEADER4}{max}")).unwrap()[0].3,
            Some(u32::MAX)
        );
        // The TCP checks come first.
        let bad_state = UDP_FLOODED4.replacen(" 07 ", " 7 ", 1);
        assert_eq!(
            udp(Family::V4, &format!("{UDP_HEADER4}{bad_state}")),
            Err((2, Problem::BadState))
        );
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex_u32(b"0000FFFF"), Some(0xFFFF));
        assert_eq!(hex_u32(b"ffffffff"), Some(u32::MAX));
        assert_eq!(hex_u32(b""), None);
        assert_eq!(hex_u32(b"123456789"), None);
        assert_eq!(hex_u32(b"12G4"), None);
    }
}
