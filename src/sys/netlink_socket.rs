//! A NETLINK_SOCK_DIAG socket: the system calls behind the netlink backend.
//!
//! std has no netlink sockets, so these few calls go through libc; they live here, in the
//! FFI layer, so that every `unsafe` block of the crate is under src/ffi/. The API is safe:
//! the descriptor is an `OwnedFd` (closed on drop, close-on-exec), buffers are slices.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An open sock_diag netlink socket.
pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    /// Opens a NETLINK_SOCK_DIAG socket; the error tells why it was refused (EACCES from an
    /// LSM, EPROTONOSUPPORT without inet_diag, ...).
    pub fn open_sock_diag() -> io::Result<NetlinkSocket> {
        // SAFETY: socket() takes no pointers; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(NetlinkSocket { fd })
    }

    /// Bounds every later `recv` so a silent kernel cannot block the agent worker.
    pub fn set_receive_timeout(&self, timeout: Duration) -> io::Result<()> {
        let timeout = libc::timeval {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: the option value points to a live timeval of the size passed.
        let result = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one request to the kernel.
    pub fn send_to_kernel(&self, message: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid; the fields we need are set below.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `message` and `kernel` are live for the call and their sizes are passed.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&raw const kernel).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if sent >= 0 {
                return if sent as usize == message.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "short netlink send",
                    ))
                };
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Receives one datagram (one or more netlink messages) into `buffer`. A datagram larger
    /// than the buffer is an error, never a silent truncation.
    pub fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buffer` is writable for its whole length during the call.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_TRUNC,
                )
            };
            if received >= 0 {
                let received = received as usize;
                if received > buffer.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink datagram of {received} bytes exceeds the buffer"),
                    ));
                }
                return Ok(received);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}
