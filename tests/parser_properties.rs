//! Property tests: the fast incremental scanner (`Scanner::scan_reader`, any buffer size, any
//! read split) against the naive reference parser in tests/common/naive_parser.rs, on
//! thousands of generated tables.
//!
//! Tables are generated from a fixed seed (a small xorshift PRNG: reproducible, no new
//! dependency): valid lines of both families with random column widths and padding, wide
//! `sl` numbers, every state byte 00..FF in either case, random queues and trailing columns,
//! then, for most tables, one or more random corruptions (a byte inserted, deleted or
//! replaced, a column replaced by junk, a tab, an empty line, the file cut short). Each table
//! is scanned through several buffer sizes (1 byte to the production 64 KiB) and read-size
//! patterns (including `Interrupted` reads) and must give exactly the reference's sockets
//! (state, addresses, ports, queues) or the reference's rejection (line number and problem).
//! The run also asserts that the generator reached every kind of rejection, so a generator
//! that silently produced only valid tables would fail.

#[path = "common/naive_parser.rs"]
mod naive_parser;

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::Path;

use linux_status::proc::{Family, Problem, Protocol, Scanner, READ_BUFFER_BYTES};

use naive_parser::{
    fast_scan, fast_scan_table, naive_parse, naive_parse_table, Outcome, SplitReader,
};

/// How many generated tables; each is checked under several buffer and read configurations.
const CASES: u64 = 4_000;
const SEED: u64 = 0x6c69_6e75_785f_7374;

/// xorshift64*: good enough to explore input shapes, and the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn hex(&mut self, digits: usize, upper: bool) -> String {
        (0..digits)
            .map(|_| {
                let digit = char::from_digit(self.below(16) as u32, 16).expect("hex digit");
                if upper {
                    digit.to_ascii_uppercase()
                } else {
                    digit
                }
            })
            .collect()
    }

    fn spaces(&mut self) -> String {
        " ".repeat(1 + self.below(3))
    }
}

const HEADER4: &str =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
const HEADER6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

const UDP_HEADER4: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            ";
const UDP_HEADER6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops";

fn address_digits(family: Family) -> usize {
    match family {
        Family::V4 => 8,
        Family::V6 => 32,
    }
}

/// One valid socket line (without its newline) of a `protocol` table: a UDP line has exactly the kernel's eight
/// columns after the queues, the last one the decimal drops.
fn socket_line_of(rng: &mut Rng, protocol: Protocol, family: Family, slot: u64) -> String {
    let upper = rng.chance(80);
    let slot = match rng.below(10) {
        // The kernel's right-aligned four columns, growing past 9999.
        0..=6 => format!("{slot:>4}:"),
        // Wide numbers, leading zeros, no padding.
        7 => format!("{}:", rng.next() % 10_000_000_000),
        8 => format!("{slot:06}:"),
        _ => format!("{slot}:"),
    };
    let digits = address_digits(family);
    let mut line = String::new();
    if rng.chance(30) {
        line.push_str(&rng.spaces());
    }
    line.push_str(&slot);
    line.push_str(&rng.spaces());
    line.push_str(&format!("{}:{}", rng.hex(digits, upper), rng.hex(4, upper)));
    line.push_str(&rng.spaces());
    line.push_str(&format!("{}:{}", rng.hex(digits, upper), rng.hex(4, upper)));
    line.push_str(&rng.spaces());
    // Every state byte, not only the eleven real states.
    let state = rng.below(256);
    if upper {
        line.push_str(&format!("{state:02X}"));
    } else {
        line.push_str(&format!("{state:02x}"));
    }
    line.push_str(&rng.spaces());
    line.push_str(&format!("{}:{}", rng.hex(8, upper), rng.hex(8, upper)));
    if protocol == Protocol::Udp {
        let drops = match rng.below(4) {
            0 => 0,
            1 => u64::from(u32::MAX),
            _ => rng.next() % 100_000,
        };
        line.push_str(&format!(
            "{}00:00000000{}00000000{}{}{}0{}{}{}2{}{}{}{drops}",
            rng.spaces(),
            rng.spaces(),
            rng.spaces(),
            rng.next() % 70_000,
            rng.spaces(),
            rng.spaces(),
            rng.next() % 100_000_000,
            rng.spaces(),
            rng.spaces(),
            rng.hex(16, false),
            rng.spaces(),
        ));
        if rng.chance(50) {
            // udp (IPv4) lines are padded to 127 columns.
            line.push_str(&" ".repeat(1 + rng.below(40)));
        }
        return line;
    }
    // The columns the parser does not read: at least one, any shape.
    for _ in 0..1 + rng.below(12) {
        line.push_str(&rng.spaces());
        let column = match rng.below(4) {
            0 => format!("{}:{}", rng.hex(2, upper), rng.hex(8, upper)),
            1 => format!("{}", rng.next() % 100_000),
            2 => "-1".to_owned(),
            _ => rng.hex(16, upper),
        };
        line.push_str(&column);
    }
    if rng.chance(20) {
        line.push_str(&" ".repeat(1 + rng.below(40)));
    }
    line
}

fn valid_table(rng: &mut Rng, family: Family) -> Vec<u8> {
    valid_table_of(rng, Protocol::Tcp, family)
}

fn valid_table_of(rng: &mut Rng, protocol: Protocol, family: Family) -> Vec<u8> {
    let header = match (protocol, family) {
        (Protocol::Tcp, Family::V4) => HEADER4,
        (Protocol::Tcp, Family::V6) => HEADER6,
        (Protocol::Udp, Family::V4) => UDP_HEADER4,
        (Protocol::Udp, Family::V6) => UDP_HEADER6,
    };
    let mut text = String::from(header);
    if rng.chance(50) {
        text.push_str(&" ".repeat(rng.below(60)));
    }
    text.push('\n');
    let lines = match rng.below(10) {
        0 => 0,
        1..=7 => 1 + rng.below(20),
        _ => 20 + rng.below(120),
    };
    let first_slot = if rng.chance(20) { 9_990 } else { 0 };
    for slot in first_slot..first_slot + lines as u64 {
        text.push_str(&socket_line_of(rng, protocol, family, slot));
        text.push('\n');
    }
    text.into_bytes()
}

/// Bytes a corruption may put in: separators, hex-looking and hostile ones.
const INTERESTING: &[u8] = b"\n \t:0Ffg\r\x00\x7f\xff-+xX9";

/// Applies one random defect somewhere in `table`.
fn corrupt(rng: &mut Rng, table: &mut Vec<u8>) {
    if table.is_empty() {
        table.push(*rng.pick(INTERESTING));
        return;
    }
    let at = rng.below(table.len());
    match rng.below(12) {
        0 => {
            table.remove(at);
        }
        1 => table.insert(at, *rng.pick(INTERESTING)),
        2 => table[at] = *rng.pick(INTERESTING),
        3 => table[at] = rng.next() as u8,
        // Cut the file short (possibly inside a line, possibly right after a newline).
        4 => table.truncate(at),
        // Drop the final newline.
        5 => {
            if table.last() == Some(&b'\n') {
                table.pop();
            }
        }
        // An empty line, or a line of junk.
        6 => {
            let start = line_start(table, at);
            const JUNK: [&[u8]; 4] = [b"\n", b"hello world\n", b"   \n", b"sl x\n"];
            let junk = *rng.pick(&JUNK);
            table.splice(start..start, junk.iter().copied());
        }
        // A space becomes a tab (only spaces separate columns).
        7 => {
            if let Some(space) = table[at..].iter().position(|&b| b == b' ') {
                table[at + space] = b'\t';
            }
        }
        // A hex digit grows or shrinks a column.
        8 => {
            if table[at].is_ascii_hexdigit() {
                if rng.chance(50) {
                    table.insert(at, b'A');
                } else {
                    table.remove(at);
                }
            }
        }
        // A line that ends right after its queue column.
        9 => {
            let start = line_start(table, at);
            let end = table[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(table.len(), |length| start + length);
            // Where the sixth column starts: a non-space byte after a space.
            let sixth = (start..end)
                .filter(|&index| {
                    table[index] != b' ' && (index == start || table[index - 1] == b' ')
                })
                .nth(5);
            if let Some(sixth) = sixth {
                table.drain(sixth..end);
            }
        }
        // Nothing at all.
        10 => table.clear(),
        // A very long line.
        _ => {
            let start = line_start(table, at);
            let long = vec![b'7'; 200 + rng.below(400)];
            table.splice(start..start, long);
        }
    }
}

fn line_start(table: &[u8], at: usize) -> usize {
    table[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1)
}

/// The buffer sizes every table is scanned with: tiny, around the line lengths, production.
const BUFFERS: &[usize] = &[
    1,
    2,
    17,
    96,
    148,
    149,
    150,
    177,
    178,
    256,
    4096,
    READ_BUFFER_BYTES,
];

fn problem_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(rejection) => match rejection.problem {
            Problem::Empty => "Empty",
            Problem::MissingHeader => "MissingHeader",
            Problem::BadSlot => "BadSlot",
            Problem::BadAddress => "BadAddress",
            Problem::BadState => "BadState",
            Problem::BadQueues => "BadQueues",
            Problem::TooFewColumns => "TooFewColumns",
            Problem::Truncated => "Truncated",
            Problem::LineTooLong => "LineTooLong",
            Problem::UdpColumns => "UdpColumns",
            Problem::BadDrops => "BadDrops",
        },
    }
}

/// Scans `table` through `buffer` with reads following `steps` and compares with the
/// reference; returns the agreed outcome.
fn check(family: Family, table: &[u8], buffer: usize, steps: &[usize], what: &str) -> Outcome {
    let expected = naive_parse(family, table, buffer);
    let mut scanner = Scanner::with_buffer_size(buffer);
    let actual = fast_scan(&mut scanner, SplitReader::new(table, steps), family);
    assert_eq!(
        actual,
        expected,
        "{what}: family {family:?}, buffer {buffer}, read sizes {steps:?}, table:\n{}",
        String::from_utf8_lossy(table)
    );
    actual
}

#[test]
fn generated_tables_agree_with_the_naive_parser() {
    let mut rng = Rng::new(SEED);
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut scans = 0u64;
    let mut sockets = 0u64;
    for case in 0..CASES {
        let family = if rng.chance(50) {
            Family::V4
        } else {
            Family::V6
        };
        let mut table = valid_table(&mut rng, family);
        let corruptions = match rng.below(10) {
            0..=2 => 0,
            3..=7 => 1,
            _ => 2 + rng.below(3),
        };
        for _ in 0..corruptions {
            corrupt(&mut rng, &mut table);
        }
        let what = format!("case {case} ({corruptions} corruptions)");

        // The production scanner, one read.
        let outcome = naive_parse(family, &table, READ_BUFFER_BYTES);
        let mut scanner = Scanner::default();
        assert_eq!(
            fast_scan(&mut scanner, Cursor::new(&table), family),
            outcome,
            "{what}: production buffer, one read"
        );
        *seen.entry(problem_name(&outcome)).or_default() += 1;
        if let Ok(found) = &outcome {
            sockets += found.len() as u64;
        }
        if corruptions == 0 {
            assert!(
                outcome.is_ok(),
                "{what}: a valid table was rejected: {outcome:?}"
            );
        }

        // Three other buffer sizes and read patterns per table.
        for _ in 0..3 {
            let buffer = match rng.below(4) {
                0 => 1 + rng.below(400),
                1 => *rng.pick(BUFFERS),
                _ => *rng.pick(&[256, 4096, READ_BUFFER_BYTES]),
            };
            let steps: Vec<usize> = (0..1 + rng.below(4))
                .map(|_| match rng.below(6) {
                    0 => 0,
                    1 => 1,
                    2 => 1 + rng.below(16),
                    3 => 4096,
                    _ => 1 + rng.below(300),
                })
                .collect();
            let split = check(family, &table, buffer, &steps, &what);
            *seen.entry(problem_name(&split)).or_default() += 1;
            scans += 1;
        }
    }
    println!("{CASES} tables, {scans} extra scans, {sockets} sockets; outcomes: {seen:?}");
    for kind in [
        "ok",
        "Empty",
        "MissingHeader",
        "BadSlot",
        "BadAddress",
        "BadState",
        "BadQueues",
        "TooFewColumns",
        "Truncated",
        "LineTooLong",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "the generator rarely reached {kind}: {seen:?}"
        );
    }
}

/// UDP tables: corrupted the same ways, plus a column added or removed after the queues and
/// a hostile drops value.
fn corrupt_udp(rng: &mut Rng, table: &mut Vec<u8>) {
    if rng.chance(60) {
        return corrupt(rng, table);
    }
    let at = rng.below(table.len().max(1));
    let start = line_start(table, at.min(table.len()));
    let end = table[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(table.len(), |length| start + length);
    let trimmed = table[start..end]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |last| start + last + 1);
    let insert: &[u8] = match rng.below(5) {
        0 => b" 7",
        1 => b"9",
        2 => b"x",
        3 => b"0000000000",
        _ => b"-1",
    };
    if rng.chance(20) {
        // Remove the last column.
        if let Some(space) = table[start..trimmed].iter().rposition(|&b| b == b' ') {
            table.drain(start + space..trimmed);
        }
    } else {
        table.splice(trimmed..trimmed, insert.iter().copied());
    }
}

#[test]
fn generated_udp_tables_agree_with_the_naive_parser() {
    let mut rng = Rng::new(SEED ^ 0x00d9);
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    for case in 0..2_000 {
        let family = if rng.chance(50) {
            Family::V4
        } else {
            Family::V6
        };
        let mut table = valid_table_of(&mut rng, Protocol::Udp, family);
        let corruptions = match rng.below(10) {
            0..=2 => 0,
            3..=7 => 1,
            _ => 2 + rng.below(3),
        };
        for _ in 0..corruptions {
            corrupt_udp(&mut rng, &mut table);
        }
        let what = format!("UDP case {case} ({corruptions} corruptions)");
        let outcome = naive_parse_table(Protocol::Udp, family, &table, READ_BUFFER_BYTES);
        let mut scanner = Scanner::default();
        assert_eq!(
            fast_scan_table(&mut scanner, Cursor::new(&table), Protocol::Udp, family),
            outcome,
            "{what}: production buffer, one read, table:\n{}",
            String::from_utf8_lossy(&table)
        );
        if corruptions == 0 {
            assert!(
                outcome.is_ok(),
                "{what}: a valid table was rejected: {outcome:?}"
            );
            assert!(outcome
                .iter()
                .flatten()
                .all(|socket| socket.drops.is_some()));
        }
        *seen.entry(problem_name(&outcome)).or_default() += 1;
        for _ in 0..2 {
            let buffer = match rng.below(3) {
                0 => 1 + rng.below(400),
                1 => *rng.pick(BUFFERS),
                _ => 4096,
            };
            let steps: Vec<usize> = (0..1 + rng.below(4))
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => 1 + rng.below(16),
                    _ => 1 + rng.below(300),
                })
                .collect();
            let expected = naive_parse_table(Protocol::Udp, family, &table, buffer);
            let mut scanner = Scanner::with_buffer_size(buffer);
            let split = fast_scan_table(
                &mut scanner,
                SplitReader::new(&table, &steps),
                Protocol::Udp,
                family,
            );
            assert_eq!(split, expected, "{what}: buffer {buffer}, steps {steps:?}");
        }
    }
    println!("UDP outcomes: {seen:?}");
    for kind in ["ok", "UdpColumns", "BadDrops", "BadState", "Truncated"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "the generator rarely reached {kind}: {seen:?}"
        );
    }
}

#[test]
fn the_udp_fixture_agrees_and_counts_as_captured() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/udp-small");
    let (mut unconn, mut estab, mut drops) = (0u64, 0u64, 0u64);
    let mut rng = Rng::new(SEED ^ 0x00da);
    for (file, family) in [("udp", Family::V4), ("udp6", Family::V6)] {
        let table = fs::read(dir.join(file)).expect("fixture");
        let sockets = naive_parse_table(Protocol::Udp, family, &table, READ_BUFFER_BYTES)
            .expect("valid fixture");
        for &buffer in BUFFERS {
            let steps = [1 + rng.below(4096), 1 + rng.below(64), 4096];
            let expected = naive_parse_table(Protocol::Udp, family, &table, buffer);
            let mut scanner = Scanner::with_buffer_size(buffer);
            let actual = fast_scan_table(
                &mut scanner,
                SplitReader::new(&table, &steps),
                Protocol::Udp,
                family,
            );
            assert_eq!(actual, expected, "{file} buffer {buffer}");
        }
        for socket in sockets {
            match socket.state {
                7 => unconn += 1,
                1 => estab += 1,
                other => panic!("UDP state {other}"),
            }
            drops += u64::from(socket.drops.expect("UDP drops"));
        }
    }
    let expected = fs::read_to_string(dir.join("expected-udp")).expect("expected");
    assert_eq!(
        expected,
        format!("UNCONN {unconn}\nESTAB {estab}\ndrops {drops}\n")
    );
}

#[test]
fn every_two_read_split_of_a_table_agrees() {
    let mut rng = Rng::new(SEED ^ 0x5eed);
    for case in 0..40 {
        let family = if case % 2 == 0 {
            Family::V4
        } else {
            Family::V6
        };
        let mut table = valid_table(&mut rng, family);
        table.truncate(2_000);
        if case % 3 == 0 {
            corrupt(&mut rng, &mut table);
        }
        for split in 0..=table.len() {
            // A first read of `split` bytes (0: an interrupted read), then the rest at once.
            let _ = check(
                family,
                &table,
                4096,
                &[split, usize::MAX],
                &format!("case {case}, split at {split}"),
            );
        }
    }
}

fn fixture_tables() -> Vec<(String, Family, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut tables = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("tests/fixtures")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        for (file, family) in [("tcp", Family::V4), ("tcp6", Family::V6)] {
            let path = dir.join(file);
            if let Ok(bytes) = fs::read(&path) {
                tables.push((path.display().to_string(), family, bytes));
            }
        }
    }
    assert!(tables.len() >= 14, "fixture tables found: {}", tables.len());
    tables
}

#[test]
fn real_fixture_text_agrees_through_every_buffer() {
    let mut rng = Rng::new(SEED ^ 0xf1);
    for (name, family, table) in fixture_tables() {
        for &buffer in BUFFERS {
            let steps = [1 + rng.below(4096), 1 + rng.below(64), 4096];
            let _ = check(family, &table, buffer, &steps, &name);
        }
    }
}

#[test]
fn the_reference_counts_the_mixed_small_fixture_as_captured() {
    // Checks the reference itself against the captured `expected` counts.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixed-small");
    let mut counts = [0u64; 256];
    for (file, family) in [("tcp", Family::V4), ("tcp6", Family::V6)] {
        let table = fs::read(dir.join(file)).expect("fixture");
        let sockets = naive_parse(family, &table, READ_BUFFER_BYTES).expect("valid fixture");
        for socket in sockets {
            counts[usize::from(socket.state)] += 1;
        }
    }
    let expected = fs::read_to_string(dir.join("expected")).expect("expected");
    for (number, line) in expected.lines().enumerate() {
        let (name, count) = line.split_once(' ').expect("<STATE> <count>");
        assert_eq!(
            counts[number + 1],
            count.parse::<u64>().expect("count"),
            "{name}"
        );
    }
}
