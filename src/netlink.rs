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
//! The wire format is assembled and parsed here as bytes (safe code); the socket calls are
//! in `ffi::netlink_socket`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::ffi::netlink_socket::NetlinkSocket;
use crate::parse::{Endpoint, SocketView};
use crate::scan::Deadline;
use crate::state::TcpState;

const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x100 | 0x200;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_V2_BYTES: usize = 56;
const INET_DIAG_MSG_BYTES: usize = 72;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// A set of states, as the kernel's `idiag_states` bit mask (bit n = state n).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateMask(u32);

impl StateMask {
    /// The eleven real states (bits 1..=11).
    pub const ALL: StateMask = StateMask(0xffe);

    pub fn only(state: TcpState) -> StateMask {
        StateMask(1 << state.kernel_number())
    }

    pub fn contains(self, other: StateMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// The mask to send so that every wanted state is reported exactly (see the module doc).
    fn for_kernel(self) -> u32 {
        let fin_wait2 = 1 << TcpState::FinWait2.kernel_number();
        let time_wait = 1 << TcpState::TimeWait.kernel_number();
        if self.0 & fin_wait2 != 0 {
            self.0 | time_wait
        } else {
            self.0
        }
    }
}

/// One socket as the kernel reported it (`struct inet_diag_msg`).
#[derive(Clone, Copy, Debug)]
pub struct DiagSocket {
    state: u8,
    local: Endpoint,
    remote: Endpoint,
    rx_queue: u32,
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
}

/// Why a dump failed.
#[derive(Debug)]
pub enum NetlinkError {
    /// The socket could not be opened or used (refused by an LSM, no inet_diag, ...).
    Io(io::Error),
    /// The kernel answered with an error code.
    Kernel(i32),
    /// The answer did not parse.
    Malformed(&'static str),
    TimedOut,
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Io(error) => write!(f, "{error}"),
            NetlinkError::Kernel(code) => {
                write!(f, "kernel error: {}", io::Error::from_raw_os_error(*code))
            }
            NetlinkError::Malformed(what) => write!(f, "malformed answer: {what}"),
            NetlinkError::TimedOut => f.write_str("ran past the agent Timeout"),
        }
    }
}

impl From<io::Error> for NetlinkError {
    fn from(error: io::Error) -> Self {
        NetlinkError::Io(error)
    }
}

/// Lists every TCP socket in `states`, IPv4 then IPv6, into `on_socket`. `buffer` is the
/// per-process read buffer (at least 32 KiB: the kernel's dump datagrams are smaller).
pub fn dump<F>(
    states: StateMask,
    deadline: Deadline,
    buffer: &mut [u8],
    mut on_socket: F,
) -> Result<(), NetlinkError>
where
    F: FnMut(&DiagSocket),
{
    let socket = NetlinkSocket::open_sock_diag()?;
    // A zero SO_RCVTIMEO would mean "wait forever": never pass less than a millisecond.
    let wait = deadline.remaining().unwrap_or(Duration::from_secs(30));
    socket.set_receive_timeout(wait.max(Duration::from_millis(1)))?;
    for (sequence, family) in [(1, AF_INET), (2, AF_INET6)] {
        socket.send_to_kernel(&request(family, states.for_kernel(), sequence))?;
        loop {
            let received = socket.receive(buffer).map_err(|error| {
                if error.kind() == io::ErrorKind::WouldBlock {
                    NetlinkError::TimedOut
                } else {
                    NetlinkError::Io(error)
                }
            })?;
            let done = parse_datagram(&buffer[..received], sequence, &mut on_socket)?;
            if done {
                break;
            }
            if deadline.expired() {
                return Err(NetlinkError::TimedOut);
            }
        }
    }
    Ok(())
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for a dump of `family`'s TCP sockets.
fn request(
    family: u8,
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
    body[1] = IPPROTO_TCP;
    // idiag_ext 0 (no extensions), pad 0, then the state mask; the socket id stays zero.
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    message
}

/// Parses one datagram; returns true at the end of the dump.
fn parse_datagram<F>(
    mut bytes: &[u8],
    sequence: u32,
    on_socket: &mut F,
) -> Result<bool, NetlinkError>
where
    F: FnMut(&DiagSocket),
{
    while !bytes.is_empty() {
        if bytes.len() < NLMSG_HEADER_BYTES {
            return Err(NetlinkError::Malformed("short message header"));
        }
        let length = u32::from_ne_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let message_sequence = u32::from_ne_bytes(bytes[8..12].try_into().unwrap_or_default());
        if length < NLMSG_HEADER_BYTES || length > bytes.len() {
            return Err(NetlinkError::Malformed("message length out of bounds"));
        }
        let payload = &bytes[NLMSG_HEADER_BYTES..length];
        if message_sequence == sequence {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let code = payload
                        .get(0..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or(NetlinkError::Malformed("short error message"))?;
                    if code != 0 {
                        return Err(NetlinkError::Kernel(-code));
                    }
                }
                SOCK_DIAG_BY_FAMILY => on_socket(&parse_socket(payload)?),
                _ => {}
            }
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
    Ok(DiagSocket {
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
    })
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
        let bytes = request(AF_INET6, StateMask::ALL.for_kernel(), 7);
        assert_eq!(bytes.len(), 72);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 20);
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!((bytes[16], bytes[17]), (AF_INET6, IPPROTO_TCP));
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 0xffe);
    }

    #[test]
    fn fin_wait2_also_asks_for_time_wait_mini_sockets() {
        assert_eq!(
            StateMask::only(TcpState::FinWait2).for_kernel(),
            (1 << 5) | (1 << 6)
        );
        assert_eq!(StateMask::only(TcpState::Listen).for_kernel(), 1 << 10);
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
