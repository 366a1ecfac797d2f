//! Who is at the other end of a connected UNIX socket (`SO_PEERCRED`), and who this process
//! is: agent 2's plugin checks that the socket it dials belongs to its own agent.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The credentials the kernel recorded for the peer when it created its end (for a
/// listening socket: the process that called `listen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: u32,
    pub uid: u32,
}

pub fn peer_credentials(socket: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is borrowed, so open for the call; `credentials` and `len` are
    // valid for writes of the size passed, which is the size of `ucred` the kernel fills.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(credentials).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: u32::try_from(credentials.pid).unwrap_or(0),
        uid: credentials.uid,
    })
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(
            peer_credentials(a.as_fd()).unwrap(),
            PeerCredentials {
                pid: std::process::id(),
                uid: effective_uid()
            }
        );
    }
}
