//! Socket filters: the `<laddr>,<lport>,<raddr>,<rport>` parameters, with the semantics of
//! Zabbix's built-in `net.tcp.socket.count`.
//!
//! An address filter is an IPv4 or IPv6 address or CIDR network; a port filter is a number or
//! a TCP service name from /etc/services; an empty parameter, or port 0, means "any". IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, how an IPv4 client of a dual-stack listener appears in
//! /proc/net/tcp6) are IPv4 addresses here, on the socket side and on the filter side, so an
//! IPv4 filter sees every IPv4 connection whichever table the kernel lists it in.

use std::fs;
use std::net::IpAddr;

use crate::parse::{Endpoint, SocketView};
use crate::state::trim_spaces;

/// Where service names are looked up.
const SERVICES_FILE: &str = "/etc/services";

/// An address or network to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFilter {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

impl AddressFilter {
    /// Parses `address` or `address/prefix`.
    pub fn parse(text: &str) -> Result<AddressFilter, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| "not an IPv4 or IPv6 address".to_owned())?;
        let prefix = match prefix {
            None => None,
            Some(digits) => Some(
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("prefix length \"{digits}\" is not a number"))?,
            ),
        };
        match canonical(address) {
            IpAddr::V4(v4) => {
                let written_as_mapped = address.is_ipv6();
                let prefix = match (prefix, written_as_mapped) {
                    (None, _) => 32,
                    (Some(p), false) if p <= 32 => p,
                    (Some(p), true) if (96..=128).contains(&p) => p - 96,
                    (Some(p), mapped) => {
                        return Err(format!(
                            "prefix length {p} is out of range (0-{})",
                            if mapped {
                                "128, at least 96 for ::ffff:a.b.c.d"
                            } else {
                                "32"
                            }
                        ))
                    }
                };
                Ok(AddressFilter::V4 {
                    network: u32::from(v4) & mask32(prefix),
                    prefix,
                })
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return Err(format!("prefix length {prefix} is out of range (0-128)"));
                }
                Ok(AddressFilter::V6 {
                    network: u128::from(v6) & mask128(prefix),
                    prefix,
                })
            }
        }
    }

    pub fn matches(&self, address: IpAddr) -> bool {
        match (self, canonical(address)) {
            (AddressFilter::V4 { network, prefix }, IpAddr::V4(v4)) => {
                u32::from(v4) & mask32(*prefix) == *network
            }
            (AddressFilter::V6 { network, prefix }, IpAddr::V6(v6)) => {
                u128::from(v6) & mask128(*prefix) == *network
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4; everything else unchanged.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Which sockets a key counts. The default matches every socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SocketFilter {
    pub local_address: Option<AddressFilter>,
    pub local_port: Option<u16>,
    pub remote_address: Option<AddressFilter>,
    pub remote_port: Option<u16>,
}

impl SocketFilter {
    /// True when no parameter restricts anything.
    pub fn is_any(&self) -> bool {
        *self == SocketFilter::default()
    }

    #[inline]
    pub fn matches(&self, socket: &impl SocketView) -> bool {
        if self.is_any() {
            return true;
        }
        Self::side_matches(self.local_address, self.local_port, || socket.local())
            && Self::side_matches(self.remote_address, self.remote_port, || socket.remote())
    }

    fn side_matches(
        address: Option<AddressFilter>,
        port: Option<u16>,
        endpoint: impl FnOnce() -> Endpoint,
    ) -> bool {
        if address.is_none() && port.is_none() {
            return true;
        }
        let endpoint = endpoint();
        port.is_none_or(|port| port == endpoint.port)
            && address.is_none_or(|filter| filter.matches(endpoint.address))
    }

    /// Parses up to four parameters `<laddr>,<lport>,<raddr>,<rport>` (missing ones = any).
    pub fn from_params(params: &[&[u8]]) -> Result<SocketFilter, String> {
        let param = |index: usize| params.get(index).map_or(&b""[..], |p| trim_spaces(p));
        Ok(SocketFilter {
            local_address: parse_address(param(0), "local address")?,
            local_port: parse_port(param(1), "local port")?,
            remote_address: parse_address(param(2), "remote address")?,
            remote_port: parse_port(param(3), "remote port")?,
        })
    }
}

fn as_text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| {
        format!(
            "Invalid {what} \"{}\": not valid UTF-8 text.",
            crate::key::quote(bytes)
        )
    })
}

fn parse_address(bytes: &[u8], what: &str) -> Result<Option<AddressFilter>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = as_text(bytes, what)?;
    AddressFilter::parse(text).map(Some).map_err(|problem| {
        format!(
            "Invalid {what} \"{}\": {problem}; expected an IPv4/IPv6 address or CIDR such as 10.0.0.0/8 or fd00::/8, or empty for any.",
            crate::key::quote(bytes)
        )
    })
}

fn parse_port(bytes: &[u8], what: &str) -> Result<Option<u16>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = as_text(bytes, what)?;
    let invalid = |problem: &str| {
        format!(
            "Invalid {what} \"{}\": {problem}; expected a number 0-65535 or a TCP service name from {SERVICES_FILE}, or empty for any.",
            crate::key::quote(bytes)
        )
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Port 0 means "any", as in net.tcp.socket.count (no TCP socket is connected to or
        // from port 0; a LISTEN socket's remote side shows 0 and is still counted).
        return match text.parse::<u16>() {
            Ok(0) => Ok(None),
            Ok(port) => Ok(Some(port)),
            Err(_) => Err(invalid("out of range")),
        };
    }
    let services = fs::read_to_string(SERVICES_FILE).unwrap_or_default();
    lookup_service(&services, text)
        .map(Some)
        .ok_or_else(|| invalid("unknown service name"))
}

/// The TCP port of a service name or alias in /etc/services text.
pub fn lookup_service(services: &str, name: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let official = fields.next()?;
        let (port, protocol) = fields.next()?.split_once('/')?;
        if protocol != "tcp" {
            return None;
        }
        let named = official == name || fields.any(|alias| alias == name);
        if named {
            port.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ipv4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn ipv6(text: &str) -> IpAddr {
        IpAddr::V6(text.parse::<Ipv6Addr>().expect("valid IPv6 literal"))
    }

    fn filter(text: &str) -> AddressFilter {
        AddressFilter::parse(text).unwrap()
    }

    #[test]
    fn ipv4_addresses_and_networks() {
        assert!(filter("127.0.0.1").matches(ipv4(127, 0, 0, 1)));
        assert!(!filter("127.0.0.1").matches(ipv4(127, 0, 0, 2)));
        assert!(filter("10.0.0.0/8").matches(ipv4(10, 200, 3, 4)));
        assert!(!filter("10.0.0.0/8").matches(ipv4(11, 0, 0, 1)));
        assert!(filter("0.0.0.0/0").matches(ipv4(192, 0, 2, 1)));
        // Host bits in the network are ignored, as with `ip route`.
        assert!(filter("10.1.2.3/8").matches(ipv4(10, 9, 9, 9)));
    }

    #[test]
    fn ipv4_filters_match_ipv4_mapped_sockets() {
        let mapped = ipv6("::ffff:127.0.0.1");
        assert!(filter("127.0.0.1").matches(mapped));
        assert!(filter("127.0.0.0/8").matches(mapped));
        assert!(filter("::ffff:127.0.0.1").matches(ipv4(127, 0, 0, 1)));
        assert!(filter("::ffff:127.0.0.0/104").matches(ipv4(127, 1, 2, 3)));
        assert!(!filter("::/0").matches(mapped), "::/0 is IPv6 only");
        assert!(!filter("0.0.0.0/0").matches(ipv6("::1")));
    }

    #[test]
    fn ipv6_addresses_and_networks() {
        assert!(filter("::1").matches(ipv6("::1")));
        assert!(filter("fd00::/8").matches(ipv6("fd12:3456::1")));
        assert!(!filter("fd00::/8").matches(ipv6("fe80::1")));
        assert!(filter("::/0").matches(ipv6("2001:db8::1")));
        assert!(filter("::").matches(ipv6("::")));
    }

    #[test]
    fn bad_addresses_are_explained() {
        for (text, problem) in [
            ("localhost", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "out of range (0-32)"),
            ("::1/129", "out of range (0-128)"),
            ("10.0.0.0/x", "is not a number"),
            ("10.0.0.0/+8", "is not a number"),
            ("::ffff:1.2.3.4/64", "at least 96"),
            ("1.2.3.4/", "is not a number"),
        ] {
            let error = AddressFilter::parse(text).unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    const SERVICES: &str = "\
# comment
ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
domain\t\t53/udp
zabbix-agent\t10050/tcp
";

    #[test]
    fn service_names_and_aliases() {
        assert_eq!(lookup_service(SERVICES, "ssh"), Some(22));
        assert_eq!(lookup_service(SERVICES, "www"), Some(80));
        assert_eq!(lookup_service(SERVICES, "zabbix-agent"), Some(10050));
        assert_eq!(lookup_service(SERVICES, "domain"), None, "udp only");
        assert_eq!(lookup_service(SERVICES, "SSH"), None);
        assert_eq!(lookup_service(SERVICES, "comment"), None);
    }

    fn params(list: &[&str]) -> Result<SocketFilter, String> {
        let bytes: Vec<&[u8]> = list.iter().map(|p| p.as_bytes()).collect();
        SocketFilter::from_params(&bytes)
    }

    #[test]
    fn parameters_build_a_filter() {
        assert!(params(&[]).unwrap().is_any());
        assert!(params(&["", " ", "", ""]).unwrap().is_any());
        let filter = params(&["127.0.0.0/8", "8080", "::1", " 22 "]).unwrap();
        assert_eq!(filter.local_port, Some(8080));
        assert_eq!(filter.remote_port, Some(22));
        assert!(
            params(&["", "0", "", "00"]).unwrap().is_any(),
            "port 0 is any"
        );
        assert!(filter.local_address.is_some() && filter.remote_address.is_some());
    }

    #[test]
    fn bad_ports_are_explained() {
        let error = params(&["", "65536"]).unwrap_err();
        assert!(
            error.starts_with("Invalid local port \"65536\": out of range"),
            "{error}"
        );
        let error = params(&["", "", "", "no-such-service-here"]).unwrap_err();
        assert!(error.starts_with("Invalid remote port"), "{error}");
        assert!(error.contains("unknown service name"), "{error}");
        let error = params(&["", "-1"]).unwrap_err();
        assert!(error.contains("unknown service name"), "{error}");
        let error = params(&["", "", "1.2.3"]).unwrap_err();
        assert!(
            error.starts_with("Invalid remote address \"1.2.3\""),
            "{error}"
        );
    }
}
