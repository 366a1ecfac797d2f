//! The netlink sock_diag backend: the kernel lists the sockets in binary, filtered by state.
//!
//! One `SOCK_DIAG_BY_FAMILY` dump per address family (AF_INET, then AF_INET6) with an
//! `inet_diag_req_v2` whose `idiag_states` mask selects states in the kernel: a LISTEN-only
//! dump walks only the small listening hash, which is why it is nearly free. The mask never
//! includes bit 13 (bound-inactive, kernel 6.5+), which would add a walk of the bind hash
//! and list sockets that /proc and `ss -tan` do not.
//!
//! Two details keep the counts identical to /proc/net/tcp:
//! - a TIME_WAIT mini-socket reports its substate, which is FIN_WAIT2 for an orphaned
//!   FIN_WAIT2 connection, but the kernel filters it by its TIME_WAIT state; so asking for
//!   FIN_WAIT2 also asks for TIME_WAIT and counts each socket by its reported state;
//! - pending connection requests are dumped when SYN_RECV is asked for and reported as
//!   SYN_RECV, as /proc lists them.
//!
//! A dump is only as good as its end: the kernel reports a dump that failed (`-ENOENT` when
//! `tcp_diag` cannot be loaded, an error in the middle of the walk) in the payload of
//! `NLMSG_DONE` as a negative errno, or as `NLMSG_ERROR`, and marks a dump whose hash table
//! changed under it with `NLM_F_DUMP_INTR`. Any of these, a message of another sequence, a
//! truncated or empty datagram, or a dump that ends without `NLMSG_DONE` fails the whole dump:
//! the caller gets an error, never the partial count.
//!
//! Each socket's attributes (after `inet_diag_msg`) are walked once for two of them.
//! `INET_DIAG_CGROUP_ID` (21, Linux 5.8+): the cgroup v2 id of the cgroup whose process
//! created the socket (an accepted socket takes its listener's). The kernel adds it to every
//! full socket unconditionally (`inet_diag_msg_attrs_fill`, not gated by an `idiag_ext` bit:
//! the 8-bit `idiag_ext` could not name attribute 21 anyway), so the TCP request is unchanged;
//! TIME_WAIT mini-sockets (also orphaned FIN_WAIT2) and pending SYN_RECV requests have no
//! attributes and no cgroup id.
//!
//! UDP (`IPPROTO_UDP`, `udp_diag`) uses the same dump: its sockets are in state 7 (TCP_CLOSE,
//! `UNCONN` in `ss`) or 1 (ESTAB, connected), and the request asks for the `SK_MEMINFO`
//! extension (`INET_DIAG_SKMEMINFO`), whose `u32` array gives the receive buffer
//! (`SK_MEMINFO_RCVBUF`, index 1) and the socket's drops (`SK_MEMINFO_DROPS`, index 8, since
//! Linux 4.7); the receive queue stays `idiag_rqueue`, the number /proc/net/udp prints.
//!
//! A malformed attribute (shorter than its header, running past its message, a cgroup id that
//! is not 8 bytes) fails the dump like any malformed message.
//!
//! The wire format is assembled and parsed here as bytes (safe code); the socket calls are
//! in `sys::netlink_socket`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::model::deadline::Deadline;
use crate::model::socket::{Endpoint, Protocol, SocketView};
use crate::model::state::{StateMask, TcpState};
use crate::sys::netlink_socket::NetlinkSocket;

const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
/// Set on a dump's messages when the table changed while it was walked.
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x100 | 0x200;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_V2_BYTES: usize = 56;
const INET_DIAG_MSG_BYTES: usize = 72;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const NLA_HEADER_BYTES: usize = 4;
/// `nla_type` without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `INET_DIAG_SKMEMINFO`: the attribute type, and (minus one) its bit in `idiag_ext`.
const INET_DIAG_SKMEMINFO: u16 = 7;
/// `INET_DIAG_CGROUP_ID` (include/uapi/linux/inet_diag.h): a u64 in host byte order.
const INET_DIAG_CGROUP_ID: u16 = 21;
const SK_MEMINFO_RCVBUF: usize = 1;
const SK_MEMINFO_DROPS: usize = 8;

/// The mask to send so that every wanted state is reported exactly (see the module doc).
fn kernel_mask(protocol: Protocol, states: StateMask) -> u32 {
    if protocol == Protocol::Udp {
        // A UDP socket is only ever UNCONN (7) or ESTAB (1).
        return states.bits() & StateMask::UDP.bits();
    }
    let fin_wait2 = 1 << TcpState::FinWait2.kernel_number();
    let time_wait = 1 << TcpState::TimeWait.kernel_number();
    if states.bits() & fin_wait2 != 0 {
        states.bits() | time_wait
    } else {
        states.bits()
    }
}

/// One socket as the kernel reported it (`struct inet_diag_msg`, and `SK_MEMINFO` when it
/// came with one).
#[derive(Clone, Copy, Debug)]
pub struct DiagSocket {
    state: u8,
    local: Endpoint,
    remote: Endpoint,
    rx_queue: u32,
    cgroup_id: Option<u64>,
    receive_buffer: Option<u32>,
    drops: Option<u32>,
}

impl DiagSocket {
    /// The cgroup v2 id of the socket's cgroup (`INET_DIAG_CGROUP_ID`); `None` for
    /// TIME_WAIT mini-sockets and pending requests, and on kernels before 5.8.
    pub fn cgroup_id(&self) -> Option<u64> {
        self.cgroup_id
    }
}

impl SocketView for DiagSocket {
    fn state(&self) -> u8 {
        self.state
    }
    fn local(&self) -> Endpoint {
        self.local
    }
    fn remote(&self) -> Endpoint {
        self.remote
    }
    fn rx_queue(&self) -> u32 {
        self.rx_queue
    }
    fn receive_buffer(&self) -> Option<u32> {
        self.receive_buffer
    }
    fn drops(&self) -> Option<u32> {
        self.drops
    }
}

/// Why a dump failed.
#[derive(Debug)]
pub enum NetlinkError {
    /// The socket could not be opened or set up (refused by an LSM, no sock_diag, ...).
    Refused(io::Error),
    /// Sending or receiving failed.
    Io(io::Error),
    /// The kernel answered with an error code (`NLMSG_ERROR`, or a failed `NLMSG_DONE`).
    Kernel(i32),
    /// The table changed during the dump (`NLM_F_DUMP_INTR`).
    Interrupted,
    /// The answer did not parse.
    Malformed(&'static str),
    TimedOut,
}

/// Kernel answers that mean "sock_diag cannot serve this here", not "try again": no handler
/// for the protocol (ENOENT: `tcp_diag`/`udp_diag` not built or not loadable), a family or
/// request the kernel does not support, or a security module refusing the request.
pub const NOT_HERE_ERRNOS: [i32; 6] = [
    libc::ENOENT,
    libc::EOPNOTSUPP,
    libc::EPROTONOSUPPORT,
    libc::EAFNOSUPPORT,
    libc::EACCES,
    libc::EPERM,
];

impl NetlinkError {
    /// The fallback rule (README, "The fallback rule"): true when netlink will not work in
    /// this process at all, so `Backend=auto` answers from /proc for the rest of the process:
    /// the socket cannot be opened or set up, or the kernel answers with one of
    /// `NOT_HERE_ERRNOS`.
    /// False for a dump that failed this once (any other kernel errno such as ENOBUFS or
    /// ENOMEM, an interrupted dump, a receive error, a malformed reply, a time-out): that
    /// request is answered from /proc and the next one asks netlink again.
    pub fn is_refusal(&self) -> bool {
        match self {
            NetlinkError::Refused(_) => true,
            NetlinkError::Kernel(code) => NOT_HERE_ERRNOS.contains(code),
            _ => false,
        }
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Refused(error) => write!(f, "socket refused: {error}"),
            NetlinkError::Io(error) => write!(f, "{error}"),
            NetlinkError::Kernel(code) => {
                write!(f, "kernel error: {}", io::Error::from_raw_os_error(*code))
            }
            NetlinkError::Interrupted => {
                f.write_str("dump interrupted: the socket table changed during the walk")
            }
            NetlinkError::Malformed(what) => write!(f, "malformed answer: {what}"),
            NetlinkError::TimedOut => f.write_str("ran past the agent Timeout"),
        }
    }
}

/// Lists every TCP socket in `states`, IPv4 then IPv6, into `on_socket`. `buffer` is the
/// worker's read buffer (at least 32 KiB: the kernel's dump datagrams are smaller).
pub fn dump<F>(
    states: StateMask,
    deadline: Deadline,
    buffer: &mut [u8],
    on_socket: F,
) -> Result<(), NetlinkError>
where
    F: FnMut(&DiagSocket),
{
    dump_protocol(Protocol::Tcp, states, deadline, buffer, on_socket)
}

/// Lists every socket of `protocol` in `states`, IPv4 then IPv6, into `on_socket` (UDP
/// sockets with their `SK_MEMINFO`).
pub fn dump_protocol<F>(
    protocol: Protocol,
    states: StateMask,
    deadline: Deadline,
    buffer: &mut [u8],
    mut on_socket: F,
) -> Result<(), NetlinkError>
where
    F: FnMut(&DiagSocket),
{
    let socket = NetlinkSocket::open_sock_diag().map_err(NetlinkError::Refused)?;
    for (sequence, family) in [(1, AF_INET), (2, AF_INET6)] {
        socket
            .send_to_kernel(&request(
                family,
                protocol,
                kernel_mask(protocol, states),
                sequence,
            ))
            .map_err(NetlinkError::Io)?;
        loop {
            // Every receive waits at most for what is left of the budget (a zero SO_RCVTIMEO
            // would mean "wait forever": never less than a millisecond).
            let left = match deadline.remaining() {
                Some(left) if left.is_zero() => return Err(NetlinkError::TimedOut),
                Some(left) => left,
                None => Duration::from_secs(30),
            };
            socket
                .set_receive_timeout(left.max(Duration::from_millis(1)))
                .map_err(NetlinkError::Refused)?;
            let received = socket.receive(buffer).map_err(|error| {
                if error.kind() == io::ErrorKind::WouldBlock {
                    NetlinkError::TimedOut
                } else {
                    NetlinkError::Io(error)
                }
            })?;
            let done = parse_datagram(&buffer[..received], sequence, &mut on_socket)?;
            if deadline.expired() {
                return Err(NetlinkError::TimedOut);
            }
            if done {
                break;
            }
        }
    }
    Ok(())
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for a dump of `family`'s `protocol` sockets.
fn request(
    family: u8,
    protocol: Protocol,
    states: u32,
    sequence: u32,
) -> [u8; NLMSG_HEADER_BYTES + INET_DIAG_REQ_V2_BYTES] {
    const LENGTH: usize = NLMSG_HEADER_BYTES + INET_DIAG_REQ_V2_BYTES;
    let mut message = [0u8; LENGTH];
    message[0..4].copy_from_slice(&(LENGTH as u32).to_ne_bytes());
    message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message[8..12].copy_from_slice(&sequence.to_ne_bytes());
    // pid 0: the kernel.
    let body = &mut message[NLMSG_HEADER_BYTES..];
    body[0] = family;
    // TCP: idiag_ext 0 (no extensions); UDP: SK_MEMINFO. Then pad 0, the state mask; the
    // socket id stays zero.
    (body[1], body[2]) = match protocol {
        Protocol::Tcp => (IPPROTO_TCP, 0),
        Protocol::Udp => (IPPROTO_UDP, 1 << (INET_DIAG_SKMEMINFO - 1)),
    };
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    message
}

/// Parses one datagram of the dump numbered `sequence`; returns true at its successful end.
/// Public for the fuzz target.
pub fn parse_datagram<F>(
    mut bytes: &[u8],
    sequence: u32,
    on_socket: &mut F,
) -> Result<bool, NetlinkError>
where
    F: FnMut(&DiagSocket),
{
    if bytes.is_empty() {
        return Err(NetlinkError::Malformed("empty datagram"));
    }
    while !bytes.is_empty() {
        if bytes.len() < NLMSG_HEADER_BYTES {
            return Err(NetlinkError::Malformed("short message header"));
        }
        let length = u32::from_ne_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
        let message_sequence = u32::from_ne_bytes(bytes[8..12].try_into().unwrap_or_default());
        if length < NLMSG_HEADER_BYTES || length > bytes.len() {
            return Err(NetlinkError::Malformed("message length out of bounds"));
        }
        if message_sequence != sequence {
            return Err(NetlinkError::Malformed("message of another sequence"));
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            return Err(NetlinkError::Interrupted);
        }
        let payload = &bytes[NLMSG_HEADER_BYTES..length];
        let status = || {
            payload
                .get(0..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        match kind {
            NLMSG_DONE => {
                // The dump's own status: 0, or the negative errno of a dump that failed.
                let code = status().ok_or(NetlinkError::Malformed("short done message"))?;
                if code < 0 {
                    return Err(NetlinkError::Kernel(code.saturating_neg()));
                }
                if bytes.len() > ((length + 3) & !3) {
                    return Err(NetlinkError::Malformed(
                        "messages after the end of the dump",
                    ));
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                let code = status().ok_or(NetlinkError::Malformed("short error message"))?;
                // An acknowledgement (0) is not sent for a dump; any error fails it.
                if code != 0 {
                    return Err(NetlinkError::Kernel(code.saturating_neg()));
                }
            }
            SOCK_DIAG_BY_FAMILY => on_socket(&parse_socket(payload)?),
            _ => return Err(NetlinkError::Malformed("unexpected message type")),
        }
        let aligned = (length + 3) & !3;
        bytes = bytes.get(aligned..).unwrap_or(&[]);
    }
    Ok(false)
}

fn parse_socket(payload: &[u8]) -> Result<DiagSocket, NetlinkError> {
    if payload.len() < INET_DIAG_MSG_BYTES {
        return Err(NetlinkError::Malformed("short inet_diag_msg"));
    }
    let family = payload[0];
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    let address = |at: usize| -> Result<IpAddr, NetlinkError> {
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ))),
            AF_INET6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&payload[at..at + 16]);
                Ok(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => Err(NetlinkError::Malformed("unknown address family")),
        }
    };
    let attributes = attributes(&payload[INET_DIAG_MSG_BYTES..])?;
    Ok(DiagSocket {
        cgroup_id: attributes.cgroup_id,
        state: payload[1],
        local: Endpoint {
            address: address(8)?,
            port: port(4),
        },
        remote: Endpoint {
            address: address(24)?,
            port: port(6),
        },
        rx_queue: u32::from_ne_bytes([payload[56], payload[57], payload[58], payload[59]]),
        receive_buffer: attributes.receive_buffer,
        drops: attributes.drops,
    })
}

/// What a socket's attributes say (each the last one if repeated).
#[derive(Default)]
struct Attributes {
    cgroup_id: Option<u64>,
    receive_buffer: Option<u32>,
    drops: Option<u32>,
}

/// Walks the attributes after `inet_diag_msg` once: `INET_DIAG_CGROUP_ID` (exactly 8 bytes)
/// and `SK_MEMINFO` (a `u32` array; an index past its end is unknown, as on kernels without
/// drops). An attribute shorter than its header or running past the message fails the dump;
/// fewer than 4 bytes left after the last one are alignment padding.
fn attributes(mut rest: &[u8]) -> Result<Attributes, NetlinkError> {
    let mut found = Attributes::default();
    while rest.len() >= NLA_HEADER_BYTES {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if length < NLA_HEADER_BYTES || length > rest.len() {
            return Err(NetlinkError::Malformed("attribute length out of bounds"));
        }
        let value = &rest[NLA_HEADER_BYTES..length];
        match kind {
            INET_DIAG_CGROUP_ID => {
                let id: [u8; 8] = value
                    .try_into()
                    .map_err(|_| NetlinkError::Malformed("cgroup id attribute not 8 bytes"))?;
                found.cgroup_id = Some(u64::from_ne_bytes(id));
            }
            INET_DIAG_SKMEMINFO => {
                let entry = |index: usize| {
                    value
                        .get(4 * index..4 * index + 4)
                        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                };
                found.receive_buffer = entry(SK_MEMINFO_RCVBUF);
                found.drops = entry(SK_MEMINFO_DROPS);
            }
            _ => {}
        }
        rest = rest.get((length + 3) & !3..).unwrap_or(&[]);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((NLMSG_HEADER_BYTES + payload.len()) as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&0u16.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    fn diag_v4(state: u8, local: [u8; 4], local_port: u16, rx_queue: u32) -> Vec<u8> {
        let mut payload = vec![0u8; INET_DIAG_MSG_BYTES];
        payload[0] = AF_INET;
        payload[1] = state;
        payload[4..6].copy_from_slice(&local_port.to_be_bytes());
        payload[6..8].copy_from_slice(&40000u16.to_be_bytes());
        payload[8..12].copy_from_slice(&local);
        payload[24..28].copy_from_slice(&[10, 0, 0, 2]);
        payload[56..60].copy_from_slice(&rx_queue.to_ne_bytes());
        payload
    }

    #[test]
    fn requests_have_the_kernel_layout() {
        let bytes = request(
            AF_INET6,
            Protocol::Tcp,
            kernel_mask(Protocol::Tcp, StateMask::ALL),
            7,
        );
        assert_eq!(bytes.len(), 72);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 20);
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!((bytes[16], bytes[17]), (AF_INET6, IPPROTO_TCP));
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 0xffe);
    }

    #[test]
    fn udp_requests_ask_for_sk_meminfo_and_the_two_udp_states() {
        let bytes = request(
            AF_INET,
            Protocol::Udp,
            kernel_mask(Protocol::Udp, StateMask::ALL),
            1,
        );
        assert_eq!(
            (bytes[16], bytes[17], bytes[18]),
            (AF_INET, IPPROTO_UDP, 0x40)
        );
        assert_eq!(
            u32::from_ne_bytes(bytes[20..24].try_into().unwrap()),
            (1 << 1) | (1 << 7)
        );
        assert_eq!(
            kernel_mask(Protocol::Udp, StateMask::only(TcpState::Listen)),
            0
        );
    }

    fn attribute(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut bytes = ((NLA_HEADER_BYTES + body.len()) as u16)
            .to_ne_bytes()
            .to_vec();
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(body);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    fn meminfo(values: &[u32]) -> Vec<u8> {
        let body: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        attribute(INET_DIAG_SKMEMINFO, &body)
    }

    #[test]
    fn sk_meminfo_gives_the_receive_buffer_and_drops() {
        let mut payload = diag_v4(7, [127, 0, 0, 1], 5399, 7680);
        payload.extend(attribute(8, &[0])); // INET_DIAG_SHUTDOWN, padded
        payload.extend(meminfo(&[7680, 8192, 0, 212992, 512, 0, 0, 0, 2994]));
        let datagram = message(SOCK_DIAG_BY_FAMILY, 1, &payload);
        let mut seen = Vec::new();
        parse_datagram(&datagram, 1, &mut |s: &DiagSocket| seen.push(*s)).unwrap();
        assert_eq!(seen[0].rx_queue(), 7680);
        assert_eq!(seen[0].receive_buffer(), Some(8192));
        assert_eq!(seen[0].drops(), Some(2994));

        // A kernel before 4.7 has no drops entry: unknown, not zero.
        let mut payload = diag_v4(7, [127, 0, 0, 1], 5399, 0);
        payload.extend(meminfo(&[0, 8192, 0, 0, 0, 0, 0, 0]));
        let datagram = message(SOCK_DIAG_BY_FAMILY, 1, &payload);
        let mut seen = Vec::new();
        parse_datagram(&datagram, 1, &mut |s: &DiagSocket| seen.push(*s)).unwrap();
        assert_eq!(
            (seen[0].receive_buffer(), seen[0].drops()),
            (Some(8192), None)
        );

        // No attribute at all (a TCP dump): nothing known.
        let datagram = message(SOCK_DIAG_BY_FAMILY, 1, &diag_v4(1, [10, 0, 0, 1], 80, 0));
        let mut seen = Vec::new();
        parse_datagram(&datagram, 1, &mut |s: &DiagSocket| seen.push(*s)).unwrap();
        assert_eq!((seen[0].receive_buffer(), seen[0].drops()), (None, None));
    }

    #[test]
    fn an_attribute_running_past_its_message_fails_the_dump() {
        let mut payload = diag_v4(7, [127, 0, 0, 1], 5399, 0);
        let mut bad = meminfo(&[0; 9]);
        bad[0..2].copy_from_slice(&200u16.to_ne_bytes());
        payload.extend(bad);
        assert!(matches!(
            outcome(&message(SOCK_DIAG_BY_FAMILY, 1, &payload)).0,
            Err(NetlinkError::Malformed(_))
        ));
        let mut payload = diag_v4(7, [127, 0, 0, 1], 5399, 0);
        payload.extend([1, 0, 7, 0]); // length 1 < header
        assert!(matches!(
            outcome(&message(SOCK_DIAG_BY_FAMILY, 1, &payload)).0,
            Err(NetlinkError::Malformed(_))
        ));
    }

    #[test]
    fn fin_wait2_also_asks_for_time_wait_mini_sockets() {
        assert_eq!(
            kernel_mask(Protocol::Tcp, StateMask::only(TcpState::FinWait2)),
            (1 << 5) | (1 << 6)
        );
        assert_eq!(
            kernel_mask(Protocol::Tcp, StateMask::only(TcpState::Listen)),
            1 << 10
        );
        assert!(StateMask::ALL.contains(StateMask::only(TcpState::Closing)));
        assert!(!StateMask::only(TcpState::Listen).contains(StateMask::ALL));
    }

    #[test]
    fn datagrams_parse_into_sockets_until_done() {
        let mut datagram = message(SOCK_DIAG_BY_FAMILY, 1, &diag_v4(10, [127, 0, 0, 1], 80, 3));
        datagram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &diag_v4(1, [127, 0, 0, 1], 80, 0),
        ));
        let mut seen = Vec::new();
        let done = parse_datagram(&datagram, 1, &mut |s: &DiagSocket| seen.push(*s)).unwrap();
        assert!(!done);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].state(), 10);
        assert_eq!(seen[0].local().port, 80);
        assert_eq!(seen[0].local().address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(seen[0].remote().port, 40000);
        assert_eq!(seen[0].rx_queue(), 3);

        let done_message = message(NLMSG_DONE, 1, &0i32.to_ne_bytes());
        assert!(parse_datagram(&done_message, 1, &mut |_: &DiagSocket| {}).unwrap());
    }

    fn message_with_flags(kind: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = message(kind, sequence, payload);
        bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        bytes
    }

    fn outcome(datagram: &[u8]) -> (Result<bool, NetlinkError>, usize) {
        let mut seen = 0;
        let result = parse_datagram(datagram, 1, &mut |_: &DiagSocket| seen += 1);
        (result, seen)
    }

    #[test]
    fn a_dump_that_failed_in_its_done_message_is_an_error_not_a_count() {
        // -ENOENT: tcp_diag could not be loaded; the kernel still ends the dump with DONE.
        let mut datagram = message(SOCK_DIAG_BY_FAMILY, 1, &diag_v4(1, [10, 0, 0, 1], 80, 0));
        datagram.extend(message(NLMSG_DONE, 1, &(-2i32).to_ne_bytes()));
        assert!(matches!(outcome(&datagram).0, Err(NetlinkError::Kernel(2))));
        let done_interrupted = message_with_flags(NLMSG_DONE, NLM_F_DUMP_INTR, 1, &[0; 4]);
        assert!(matches!(
            outcome(&done_interrupted).0,
            Err(NetlinkError::Interrupted)
        ));
        let short_done = message(NLMSG_DONE, 1, &[]);
        assert!(matches!(
            outcome(&short_done).0,
            Err(NetlinkError::Malformed(_))
        ));
    }

    #[test]
    fn interrupted_foreign_truncated_and_empty_answers_fail_the_dump() {
        let socket = diag_v4(1, [10, 0, 0, 1], 80, 0);
        let interrupted = message_with_flags(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP_INTR, 1, &socket);
        assert!(matches!(
            outcome(&interrupted).0,
            Err(NetlinkError::Interrupted)
        ));
        let foreign = message(SOCK_DIAG_BY_FAMILY, 9, &socket);
        assert!(matches!(
            outcome(&foreign).0,
            Err(NetlinkError::Malformed(_))
        ));
        let mut truncated = message(SOCK_DIAG_BY_FAMILY, 1, &socket);
        truncated.truncate(truncated.len() - 10);
        assert!(matches!(
            outcome(&truncated).0,
            Err(NetlinkError::Malformed(_))
        ));
        assert!(matches!(outcome(&[]).0, Err(NetlinkError::Malformed(_))));
        let overrun = message(4, 1, &[0; 4]);
        assert!(matches!(
            outcome(&overrun).0,
            Err(NetlinkError::Malformed(_))
        ));
        let mut after_done = message(NLMSG_DONE, 1, &0i32.to_ne_bytes());
        after_done.extend(message(SOCK_DIAG_BY_FAMILY, 1, &socket));
        assert!(matches!(
            outcome(&after_done).0,
            Err(NetlinkError::Malformed(_))
        ));
    }

    #[test]
    fn refusals_stop_netlink_for_the_process_other_failures_do_not() {
        let refused = NetlinkError::Refused(io::Error::from_raw_os_error(13));
        assert!(refused.is_refusal());
        assert!(NetlinkError::Kernel(2).is_refusal());
        assert!(NetlinkError::Kernel(libc::EACCES).is_refusal());
        assert!(!NetlinkError::Kernel(libc::ENOBUFS).is_refusal());
        assert!(!NetlinkError::Kernel(libc::ENOMEM).is_refusal());
        assert!(!NetlinkError::Kernel(libc::EINTR).is_refusal());
        assert!(!NetlinkError::Interrupted.is_refusal());
        assert!(!NetlinkError::Malformed("x").is_refusal());
        assert!(!NetlinkError::TimedOut.is_refusal());
        assert_eq!(
            refused.to_string(),
            "socket refused: Permission denied (os error 13)"
        );
    }

    fn parse_one(payload: &[u8]) -> Result<DiagSocket, NetlinkError> {
        let mut seen = None;
        parse_datagram(
            &message(SOCK_DIAG_BY_FAMILY, 1, payload),
            1,
            &mut |s: &DiagSocket| seen = Some(*s),
        )?;
        Ok(seen.expect("one socket"))
    }

    #[test]
    fn the_cgroup_id_attribute_is_read_among_the_others() {
        let bare = diag_v4(1, [127, 0, 0, 1], 80, 0);
        assert_eq!(parse_one(&bare).unwrap().cgroup_id(), None);
        let mut full = bare.clone();
        full.extend(attribute(8, &[1])); // INET_DIAG_SHUTDOWN, one byte, padded
        full.extend(attribute(INET_DIAG_CGROUP_ID, &4242u64.to_ne_bytes()));
        full.extend(attribute(22, &[0; 2])); // INET_DIAG_SOCKOPT
        let socket = parse_one(&full).unwrap();
        assert_eq!(socket.cgroup_id(), Some(4242));
        assert_eq!(socket.state(), 1);
        // The nested flag does not hide the type.
        let mut nested = bare.clone();
        nested.extend(attribute(INET_DIAG_CGROUP_ID | 0x8000, &7u64.to_ne_bytes()));
        assert_eq!(parse_one(&nested).unwrap().cgroup_id(), Some(7));
    }

    #[test]
    fn malformed_attributes_fail_the_dump() {
        let bare = diag_v4(1, [127, 0, 0, 1], 80, 0);
        let mut short_id = bare.clone();
        short_id.extend(attribute(INET_DIAG_CGROUP_ID, &[1, 2, 3, 4]));
        assert!(matches!(
            parse_one(&short_id),
            Err(NetlinkError::Malformed(_))
        ));
        let mut overlong = bare.clone();
        overlong.extend([200, 0, 21, 0, 0, 0, 0, 0]);
        assert!(matches!(
            parse_one(&overlong),
            Err(NetlinkError::Malformed(_))
        ));
        let mut zero = bare.clone();
        zero.extend([0, 0, 21, 0]);
        assert!(matches!(parse_one(&zero), Err(NetlinkError::Malformed(_))));
    }

    #[test]
    fn kernel_errors_and_garbage_are_errors() {
        let error = message(NLMSG_ERROR, 1, &(-13i32).to_ne_bytes());
        assert!(matches!(
            parse_datagram(&error, 1, &mut |_: &DiagSocket| {}),
            Err(NetlinkError::Kernel(13))
        ));
        assert!(parse_datagram(&[1, 2, 3], 1, &mut |_: &DiagSocket| {}).is_err());
        let mut lying = message(SOCK_DIAG_BY_FAMILY, 1, &[0; 8]);
        assert!(
            parse_datagram(&lying, 1, &mut |_: &DiagSocket| {}).is_err(),
            "short body"
        );
        lying[0] = 0xff;
        assert!(
            parse_datagram(&lying, 1, &mut |_: &DiagSocket| {}).is_err(),
            "bad length"
        );
    }
}
