//! Socket filters: the `<laddr>,<lport>,<raddr>,<rport>` parameters, with the semantics of
//! Zabbix's built-in `net.tcp.socket.count`.
//!
//! An address filter is an IPv4 or IPv6 address or CIDR network; a port filter is a number or
//! a TCP service name the system resolver knows (as the agent resolves it); an empty parameter, or port 0, means "any". IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, how an IPv4 client of a dual-stack listener appears in
//! /proc/net/tcp6) are IPv4 addresses here, on the socket side and on the filter side, so an
//! IPv4 filter sees every IPv4 connection whichever table the kernel lists it in.
//!
//! A filter written as `::ffff:a.b.c.d/p` follows `net.tcp.socket.count` for every prefix:
//! from 96 to 128 it is the IPv4 network a.b.c.d/(p-96); from 1 to 95 it is the IPv6 network
//! ::ffff:a.b.c.d/p, against which IPv4 addresses are compared in their mapped form (so /64
//! matches every IPv4 address and the IPv6 ones in ::/64); /0 matches the IPv6 addresses that
//! are not IPv4, as the built-in item does.

use std::net::IpAddr;

use crate::model::socket::{Endpoint, SocketView};
use crate::model::text::{quote, trim_spaces};
use crate::request::key::KeyError;

/// How many service names a worker remembers (items name a handful).
const SERVICE_CACHE_ENTRIES: usize = 32;

/// An address or network to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFilter {
    V4 {
        network: u32,
        prefix: u8,
    },
    V6 {
        network: u128,
        prefix: u8,
    },
    /// `::ffff:a.b.c.d/p` with p in 1..=95: IPv4 addresses compare as ::ffff:a.b.c.d.
    MappedV6 {
        network: u128,
        prefix: u8,
    },
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
                    .ok_or_else(|| {
                        format!(
                            "prefix length \"{}\" is not a number",
                            quote(digits.as_bytes())
                        )
                    })?,
            ),
        };
        match (canonical(address), address) {
            (IpAddr::V4(v4), IpAddr::V4(_)) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return Err(format!("prefix length {prefix} is out of range (0-32)"));
                }
                Ok(AddressFilter::V4 {
                    network: u32::from(v4) & mask32(prefix),
                    prefix,
                })
            }
            (IpAddr::V4(v4), IpAddr::V6(written)) => match prefix.unwrap_or(128) {
                p @ 96..=128 => Ok(AddressFilter::V4 {
                    network: u32::from(v4) & mask32(p - 96),
                    prefix: p - 96,
                }),
                0 => Ok(AddressFilter::V6 {
                    network: 0,
                    prefix: 0,
                }),
                p @ 1..=95 => Ok(AddressFilter::MappedV6 {
                    network: u128::from(written) & mask128(p),
                    prefix: p,
                }),
                p => Err(format!("prefix length {p} is out of range (0-128)")),
            },
            (IpAddr::V6(v6), _) => {
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
            (AddressFilter::MappedV6 { network, prefix }, canonical) => {
                let written = match canonical {
                    IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                    IpAddr::V6(v6) => u128::from(v6),
                };
                written & mask128(*prefix) == *network
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
}

/// A port parameter as written: a number, or a service name resolved when the request is
/// answered (the resolver may read a file or ask a directory service: not a parser's job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortParam {
    Number(u16),
    /// The name, trimmed, and which parameter it was ("local port"), for the message.
    Service {
        name: Box<str>,
        what: &'static str,
    },
}

/// The `<laddr>,<lport>,<raddr>,<rport>` parameters as parsed, service names unresolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterParams {
    pub local_address: Option<AddressFilter>,
    pub local_port: Option<PortParam>,
    pub remote_address: Option<AddressFilter>,
    pub remote_port: Option<PortParam>,
}

impl FilterParams {
    /// True when no parameter restricts anything.
    pub fn is_any(&self) -> bool {
        *self == FilterParams::default()
    }

    /// Parses up to four parameters `<laddr>,<lport>,<raddr>,<rport>` (missing ones = any).
    pub fn from_params(params: &[&[u8]]) -> Result<FilterParams, String> {
        let param = |index: usize| params.get(index).map_or(&b""[..], |p| trim_spaces(p));
        Ok(FilterParams {
            local_address: parse_address(param(0), "local address")?,
            local_port: parse_port(param(1), "local port")?,
            remote_address: parse_address(param(2), "remote address")?,
            remote_port: parse_port(param(3), "remote port")?,
        })
    }

    /// The filter, with service names resolved through the worker's cache.
    pub fn resolve(&self, services: &mut ServiceCache) -> Result<SocketFilter, KeyError> {
        let mut port = |param: &Option<PortParam>| match param {
            None => Ok(None),
            Some(PortParam::Number(port)) => Ok(Some(*port)),
            Some(PortParam::Service { name, what }) => match services.port(name) {
                Some(port) => Ok(Some(port)),
                None => Err(KeyError::new(invalid_port(
                    name.as_bytes(),
                    what,
                    "unknown service name",
                ))),
            },
        };
        Ok(SocketFilter {
            local_address: self.local_address,
            local_port: port(&self.local_port)?,
            remote_address: self.remote_address,
            remote_port: port(&self.remote_port)?,
        })
    }
}

fn as_text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes)
        .map_err(|_| format!("Invalid {what} \"{}\": not valid UTF-8 text.", quote(bytes)))
}

fn parse_address(bytes: &[u8], what: &str) -> Result<Option<AddressFilter>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = as_text(bytes, what)?;
    AddressFilter::parse(text).map(Some).map_err(|problem| {
        format!(
            "Invalid {what} \"{}\": {problem}; expected an IPv4/IPv6 address or CIDR such as 10.0.0.0/8 or fd00::/8, or empty for any.",
            quote(bytes)
        )
    })
}

fn invalid_port(bytes: &[u8], what: &str, problem: &str) -> String {
    format!(
        "Invalid {what} \"{}\": {problem}; expected a number 0-65535 or a TCP service name the system knows (/etc/services), or empty for any.",
        quote(bytes)
    )
}

fn parse_port(bytes: &[u8], what: &'static str) -> Result<Option<PortParam>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = as_text(bytes, what)?;
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Port 0 means "any", as in net.tcp.socket.count (no TCP socket is connected to or
        // from port 0; a LISTEN socket's remote side shows 0 and is still counted).
        return match text.parse::<u16>() {
            Ok(0) => Ok(None),
            Ok(port) => Ok(Some(PortParam::Number(port))),
            Err(_) => Err(invalid_port(bytes, what, "out of range")),
        };
    }
    Ok(Some(PortParam::Service {
        name: text.into(),
        what,
    }))
}

/// Service names a worker already resolved, hits and misses alike: a poll every few seconds
/// should not ask the resolver again. At most [`SERVICE_CACHE_ENTRIES`] names (the oldest
/// goes first).
#[derive(Debug, Default)]
pub struct ServiceCache {
    entries: Vec<(Box<str>, Option<u16>)>,
}

impl ServiceCache {
    /// The TCP port of a service name.
    pub fn port(&mut self, name: &str) -> Option<u16> {
        if let Some((_, port)) = self.entries.iter().find(|(known, _)| &**known == name) {
            return *port;
        }
        let port = crate::sys::services::tcp_service_port(name);
        if self.entries.len() == SERVICE_CACHE_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push((name.into(), port));
        port
    }
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
            ("::ffff:1.2.3.4/129", "out of range (0-128)"),
            ("1.2.3.4/", "is not a number"),
        ] {
            let error = AddressFilter::parse(text).unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn mapped_filters_follow_net_tcp_socket_count_for_every_prefix() {
        let v4 = ipv4(127, 0, 0, 1);
        let mapped = ipv6("::ffff:127.0.0.1");
        // 96..=128: the IPv4 network.
        assert!(filter("::ffff:127.0.0.0/104").matches(v4));
        assert!(!filter("::ffff:10.0.0.0/104").matches(mapped));
        assert!(!filter("::ffff:127.0.0.1/96").matches(ipv6("::1")));
        // 1..=95: the IPv6 network, IPv4 addresses in their mapped form.
        let wide = filter("::ffff:10.1.2.3/64");
        assert!(wide.matches(v4) && wide.matches(mapped));
        assert!(wide.matches(ipv6("::1")), "::1 is in ::/64");
        assert!(!wide.matches(ipv6("fd00::1")));
        let ffff = filter("::ffff:10.1.2.3/88");
        assert!(ffff.matches(v4) && !ffff.matches(ipv6("::1")));
        // 0: the IPv6 addresses that are not IPv4.
        let zero = filter("::ffff:10.1.2.3/0");
        assert!(zero.matches(ipv6("fd00::1")) && zero.matches(ipv6("::1")));
        assert!(!zero.matches(v4) && !zero.matches(mapped));
    }

    fn params(list: &[&str]) -> Result<SocketFilter, String> {
        let bytes: Vec<&[u8]> = list.iter().map(|p| p.as_bytes()).collect();
        FilterParams::from_params(&bytes)?
            .resolve(&mut ServiceCache::default())
            .map_err(|error| error.message().to_owned())
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
