//! Fuzz target: the netlink sock_diag reply parser (`netlink::parse_datagram`).
//!
//! Input layout: byte 0 picks the dump's sequence number (1 or 2); the rest is a series of
//! datagrams, each a 2-byte little-endian length then that many bytes (arbitrary splits of a
//! reply into datagrams). The datagrams are fed in order as the dump loop feeds them; the
//! outcome (a socket count at a successful end, or a failure) must equal a naive reference
//! that reads the same bytes message by message. Above all: a reply carrying a failed
//! NLMSG_DONE, an NLMSG_ERROR, NLM_F_DUMP_INTR, a foreign sequence or a truncated message
//! never ends in a count. Each socket's state, receive queue, cgroup id and, from its
//! `SK_MEMINFO` attribute (a UDP dump's), receive buffer and drops must be the reference's; a
//! malformed attribute (shorter than its header, past its message, a cgroup id that is not 8
//! bytes) fails the dump in both. A panic anywhere is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linux_status::netlink::parse_datagram;
use linux_status::proc::SocketView;

const HEADER: usize = 16;
const DONE: u16 = 3;
const ERROR: u16 = 2;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const DUMP_INTR: u16 = 0x10;
const INET_DIAG_MSG: usize = 72;
const SKMEMINFO: u16 = 7;
const CGROUP_ID: u16 = 21;

/// State, receive queue, receive buffer, drops, cgroup id.
type Socket = (u8, u32, Option<u32>, Option<u32>, Option<u64>);

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Count(Vec<Socket>),
    Failed,
    /// The datagrams ended before NLMSG_DONE: the real dump would wait and time out.
    Unfinished,
}

fn datagrams(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let length = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let body = &data[2..];
        let take = length.min(body.len());
        out.push(&body[..take]);
        data = &body[take..];
    }
    out
}

fn fast(sequence: u32, datagrams: &[&[u8]]) -> Outcome {
    let mut sockets = Vec::new();
    for datagram in datagrams {
        let mut on_socket = |s: &_| {
            let s: &linux_status::netlink::DiagSocket = s;
            sockets.push((
                s.state(),
                s.rx_queue(),
                s.receive_buffer(),
                s.drops(),
                s.cgroup_id(),
            ))
        };
        match parse_datagram(datagram, sequence, &mut on_socket) {
            Err(_) => return Outcome::Failed,
            Ok(true) => return Outcome::Count(sockets),
            Ok(false) => {}
        }
    }
    Outcome::Unfinished
}

/// The attributes after `inet_diag_msg`, one by one: None if one is malformed, else the last
/// SK_MEMINFO's receive buffer (index 1) and drops (index 8) where it is long enough to hold
/// them, and the last cgroup id. Up to 3 trailing bytes are padding.
type Found = (Option<u32>, Option<u32>, Option<u64>);
fn naive_attributes(mut rest: &[u8]) -> Option<Found> {
    let mut found = (None, None, None);
    while rest.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if length < 4 || length > rest.len() {
            return None;
        }
        if kind == SKMEMINFO {
            let word = |index: usize| {
                let at = 4 + 4 * index;
                (at + 4 <= length).then(|| {
                    u32::from_ne_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]])
                })
            };
            found.0 = word(1);
            found.1 = word(8);
        }
        if kind == CGROUP_ID {
            if length != 12 {
                return None;
            }
            let mut value = [0u8; 8];
            value.copy_from_slice(&rest[4..12]);
            found.2 = Some(u64::from_ne_bytes(value));
        }
        let step = (length + 3) / 4 * 4;
        rest = if step >= rest.len() { &[] } else { &rest[step..] };
    }
    Some(found)
}

/// One datagram, message by message, with nothing clever: Some(true) at a good end, Some(false)
/// to go on, None for a failed dump.
fn naive_datagram(datagram: &[u8], sequence: u32, sockets: &mut Vec<Socket>) -> Option<bool> {
    if datagram.is_empty() {
        return None;
    }
    let mut at = 0;
    while at < datagram.len() {
        let rest = &datagram[at..];
        if rest.len() < HEADER {
            return None;
        }
        let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if length < HEADER || length > rest.len() || seq != sequence || flags & DUMP_INTR != 0 {
            return None;
        }
        let payload = &rest[HEADER..length];
        let status = (payload.len() >= 4)
            .then(|| i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]));
        match kind {
            DONE => {
                let aligned = (length + 3) / 4 * 4;
                return match status {
                    Some(code) if code >= 0 && rest.len() <= aligned => Some(true),
                    _ => None,
                };
            }
            ERROR => match status {
                Some(0) => {}
                _ => return None,
            },
            SOCK_DIAG_BY_FAMILY => {
                if payload.len() < INET_DIAG_MSG || !matches!(payload[0], 2 | 10) {
                    return None;
                }
                let (buffer, drops, cgroup) = naive_attributes(&payload[INET_DIAG_MSG..])?;
                let rx = u32::from_ne_bytes([payload[56], payload[57], payload[58], payload[59]]);
                sockets.push((payload[1], rx, buffer, drops, cgroup));
            }
            _ => return None,
        }
        at += (length + 3) / 4 * 4;
    }
    Some(false)
}

fn naive(sequence: u32, datagrams: &[&[u8]]) -> Outcome {
    let mut sockets = Vec::new();
    for datagram in datagrams {
        match naive_datagram(datagram, sequence, &mut sockets) {
            None => return Outcome::Failed,
            Some(true) => return Outcome::Count(sockets),
            Some(false) => {}
        }
    }
    Outcome::Unfinished
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let sequence = 1 + u32::from(selector & 1);
    let datagrams = datagrams(rest);
    assert_eq!(fast(sequence, &datagrams), naive(sequence, &datagrams));
});
