//! TCP service names through the system resolver, as `net.tcp.socket.count` resolves them.
//!
//! The agent passes a port parameter that is not a number to `getaddrinfo(NULL, name)` for a
//! TCP stream socket, so names come from wherever nsswitch's `services` database says
//! (/etc/services on most hosts, but also NIS, LDAP, systemd's own), with the aliases and
//! case rules of that source. Calling the same function keeps the module's answer the
//! agent's. `getaddrinfo` is thread-safe (agent 2's plugin answers from several threads).

use std::ffi::CString;
use std::ptr;

/// The TCP port of a service name, or None if the system knows no such TCP service.
pub fn tcp_service_port(name: &str) -> Option<u16> {
    // An empty service is "no service" to getaddrinfo (port 0); a name must say something.
    if name.is_empty() {
        return None;
    }
    let name = CString::new(name).ok()?;
    // SAFETY: addrinfo is plain data for which all-zero means "no constraint".
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_protocol = libc::IPPROTO_TCP;
    hints.ai_flags = libc::AI_NUMERICHOST;
    let mut found: *mut libc::addrinfo = ptr::null_mut();
    // SAFETY: a null node with a NUL-terminated service and live hints is a valid call; on
    // success `found` is a list we own and free below.
    let status = unsafe { libc::getaddrinfo(ptr::null(), name.as_ptr(), &hints, &mut found) };
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: `found` is the head of the list getaddrinfo returned; its ai_addr points to a
    // sockaddr of ai_addrlen bytes whose family says which struct it is.
    let port = unsafe {
        let entry = &*found;
        let address = entry.ai_addr;
        if address.is_null() {
            None
        } else {
            match i32::from((*address).sa_family) {
                libc::AF_INET => Some(u16::from_be(
                    (*address.cast::<libc::sockaddr_in>()).sin_port,
                )),
                libc::AF_INET6 => Some(u16::from_be(
                    (*address.cast::<libc::sockaddr_in6>()).sin6_port,
                )),
                _ => None,
            }
        }
    };
    // SAFETY: freed once, with the function that matches getaddrinfo.
    unsafe { libc::freeaddrinfo(found) };
    port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_names_with_nul_are_none() {
        assert_eq!(tcp_service_port("no-such-service-linux-status"), None);
        assert_eq!(tcp_service_port("ss\0h"), None);
        assert_eq!(tcp_service_port(""), None);
    }

    #[test]
    fn names_in_the_services_database_resolve() {
        // The oracle is the system's own database, read here by hand.
        let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let Some(port) = services.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("ssh"))
                .then(|| fields.next())
                .flatten()
        }) else {
            panic!("/etc/services lists no ssh entry: install netbase");
        };
        assert_eq!(Some(port), Some("22/tcp"));
        assert_eq!(tcp_service_port("ssh"), Some(22));
    }
}
