//! Fuzz target: the /proc/net/{tcp,tcp6,udp,udp6} parser behind `Scanner::scan_table_reader`.
//!
//! Input layout: byte 0 picks the family (bit 0: tcp6/udp6) and the protocol (bit 1: a UDP
//! table, with its drops column), bytes 1-2 the scanner's buffer size
//! (1..=512 bytes, or the production 64 KiB when byte 1 >= 0xF0), bytes 3-6 a cycle of
//! read() sizes (0 = one `Interrupted` error), the rest is the table text. The same text is
//! also scanned with the production buffer in one read. Both results must equal the naive
//! reference parser (tests/common/naive_parser.rs): the same sockets, or a rejection at the
//! same line for the same reason. A panic anywhere is a crash.
#![no_main]

use std::cell::RefCell;
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use linux_status::proc::{Family, Protocol, Scanner, READ_BUFFER_BYTES};

#[path = "../../tests/common/naive_parser.rs"]
mod naive_parser;

use naive_parser::{fast_scan_table, naive_parse_table, SplitReader};

thread_local! {
    // Reused like the module's per-worker scanner: stale bytes from the previous input must
    // never leak into the next scan.
    static PRODUCTION: RefCell<Scanner> = RefCell::new(Scanner::default());
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 7 {
        return;
    }
    let (control, data) = input.split_at(7);
    let family = if control[0] & 1 == 0 {
        Family::V4
    } else {
        Family::V6
    };
    let protocol = if control[0] & 2 == 0 {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let buffer_len = if control[1] >= 0xF0 {
        READ_BUFFER_BYTES
    } else {
        1 + usize::from(u16::from_le_bytes([control[1], control[2]])) % 512
    };
    let steps: Vec<usize> = control[3..7].iter().map(|&b| usize::from(b)).collect();

    let expected = naive_parse_table(protocol, family, data, buffer_len);
    let mut scanner = Scanner::with_buffer_size(buffer_len);
    let split = fast_scan_table(
        &mut scanner,
        SplitReader::new(data, &steps),
        protocol,
        family,
    );
    assert_eq!(
        split, expected,
        "buffer {buffer_len}, read sizes {steps:?}, family {family:?}, {protocol:?}"
    );

    let expected_whole = naive_parse_table(protocol, family, data, READ_BUFFER_BYTES);
    PRODUCTION.with(|cell| {
        let whole = fast_scan_table(&mut cell.borrow_mut(), Cursor::new(data), protocol, family);
        assert_eq!(whole, expected_whole, "production buffer, one read");
    });
});
