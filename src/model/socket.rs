//! What the counters know of one socket, whichever backend listed it.

use std::net::IpAddr;

/// The longest cgroup path a key may name or an answer reports, in bytes (the kernel's
/// PATH_MAX).
pub const CGROUP_PATH_MAX_BYTES: usize = 4096;

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
}
