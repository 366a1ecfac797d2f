//! What the counters know of one socket, whichever backend listed it.

use std::net::IpAddr;

/// The longest cgroup path a key may name or an answer reports, in bytes (the kernel's
/// PATH_MAX).
pub const CGROUP_PATH_MAX_BYTES: usize = 4096;

/// Which of the kernel's socket tables a walk covers: the same sources (a sock_diag dump, a
/// /proc/net table) serve both, with the protocol's own numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// An address and port of one side of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
}

/// What the counters need to know of one socket, whichever backend listed it.
pub trait SocketView {
    /// The raw kernel state number.
    fn state(&self) -> u8;
    fn local(&self) -> Endpoint;
    fn remote(&self) -> Endpoint;
    /// The receive queue; for a LISTEN socket, the current accept-queue length.
    fn rx_queue(&self) -> u32;
    /// The receive buffer size in bytes (the kernel's `sk_rcvbuf`, twice what `SO_RCVBUF`
    /// set), where the source reports it: netlink's `SK_MEMINFO` does, /proc does not.
    fn receive_buffer(&self) -> Option<u32> {
        None
    }
    /// Datagrams the socket dropped (`sk_drops`): the `drops` column of /proc/net/udp{,6}
    /// and `SK_MEMINFO_DROPS` of a UDP dump; None where the source has no such number (TCP).
    fn drops(&self) -> Option<u32> {
        None
    }
}
