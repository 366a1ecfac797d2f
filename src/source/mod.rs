//! The sources: where the sockets and counters come from. [`proc`] streams /proc/net/tcp{,6}
//! text through one reused buffer; [`netlink`] asks the kernel with sock_diag (the wire format
//! and the dump); [`counters`] reads the kernel's counter files (snmp, netstat, snmp6,
//! sockstat), [`netstat`] its TcpExt counters; [`cgroupfs`] finds the cgroup2 mount and
//! turns cgroup ids into paths. Each hands sockets to a callback as a
//! [`crate::model::socket::SocketView`], allocating nothing per socket.
//!
//! Imports: the model, and the OS-call layer (the netlink socket).

pub mod cgroupfs;
pub mod counters;
pub mod netlink;
pub mod netns;
pub mod netstat;
pub mod proc;
