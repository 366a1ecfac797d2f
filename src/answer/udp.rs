//! Per-port UDP aggregation: for each local port its sockets, receive-queue bytes, buffer
//! sizes, fullest socket and drops, from one walk of the UDP tables.
//!
//! A *bound port* is a local port with at least one UNCONN socket (what `ss -ulan` lists:
//! a server's `bind()`, or a sender the kernel auto-bound); connected (ESTAB) sockets on such
//! a port (QUIC and DNS servers connect per client) count with it. Every socket is added to
//! its port's entry during the walk and only bound ports are reported, so one pass is exact
//! whatever order the kernel lists sockets in.
//!
//! Answers are bounded: at most [`MAX_REPORTED_PORTS`] ports are reported (about 170 bytes
//! each, so `udp_summary` stays near 180 KiB, under agent 2's 1 MiB answer and the server's
//! text limits, where 65,536 ports would be 11 MiB). A host over the cap is usually one with
//! many auto-bound client sockets, so the ports outside the kernel's ephemeral range
//! (`ip_local_port_range`, the services) are kept first, then the lowest ephemeral ones; the
//! answer says how many were left out. Discovery reports the same set.
//!
//! Memory, allocated once per worker and reused: a 64 Ki-entry port -> entry index (256 KiB)
//! and one [`UdpPortStats`] per distinct local port seen (at most 65,536, 4.5 MiB; the vector
//! keeps its capacity between walks, so a walk allocates only when a host has more ports
//! than ever before).

use crate::answer::walk::SocketVisitor;
use crate::model::socket::SocketView;
use crate::model::state::{StateCounts, TcpState};

const PORTS: usize = 1 << 16;

/// The most ports `udp_summary` and `udp_discovery` report.
pub const MAX_REPORTED_PORTS: usize = 1024;

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), when known.
pub type EphemeralRange = Option<(u16, u16)>;

fn is_ephemeral(range: EphemeralRange, port: u16) -> Option<bool> {
    range.map(|(low, high)| (low..=high).contains(&port))
}

/// What one local port has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPortStats {
    pub port: u16,
    /// Sockets per state (UNCONN is `TcpState::Close`, ESTAB `TcpState::Established`).
    pub states: StateCounts,
    /// The sum of the sockets' receive queues in bytes (`rx_queue`).
    pub queue_bytes: u64,
    /// The sum of the sockets' receive buffers, None if the source does not report them
    /// (/proc) for any socket of the port.
    pub buffer_bytes: Option<u64>,
    /// The fullest socket's queue as hundredths of a percent of its buffer (floor), None as
    /// for `buffer_bytes`.
    pub fill_hundredths: Option<u64>,
    /// The sum of the sockets' drops, None if a socket's count is unknown.
    pub drops: Option<u64>,
}

/// Adds `value` to a sum (starting at `Some(0)`) that becomes unknown once one term is.
fn add_known(sum: &mut Option<u64>, value: Option<u32>) {
    *sum = sum.zip(value).map(|(sum, value)| sum + u64::from(value));
}

impl UdpPortStats {
    fn new(port: u16) -> UdpPortStats {
        UdpPortStats {
            port,
            states: StateCounts::default(),
            queue_bytes: 0,
            buffer_bytes: Some(0),
            fill_hundredths: Some(0),
            drops: Some(0),
        }
    }

    fn observe(&mut self, socket: &impl SocketView) {
        self.states.add_raw(socket.state());
        let queue = socket.rx_queue();
        self.queue_bytes += u64::from(queue);
        let buffer = socket.receive_buffer();
        add_known(&mut self.buffer_bytes, buffer);
        add_known(&mut self.drops, socket.drops());
        let fill = buffer.map(|buffer| match buffer {
            0 => 0,
            buffer => u64::from(queue) * 10_000 / u64::from(buffer),
        });
        self.fill_hundredths = self.fill_hundredths.zip(fill).map(|(a, b)| a.max(b));
    }

    /// True if the port has an UNCONN socket.
    pub fn is_bound(&self) -> bool {
        self.states.get(TcpState::Close) > 0
    }
}

/// A worker's UDP aggregation table, and the whole walk's totals.
pub struct UdpTable {
    /// slot_of_port[p] = index + 1 into `ports`, 0 for none.
    slot_of_port: Box<[u32]>,
    ports: Vec<UdpPortStats>,
    /// Every socket of the walk by state.
    pub counts: StateCounts,
    /// Every socket's drops summed; None if one is unknown.
    pub drops: Option<u64>,
}

impl Default for UdpTable {
    fn default() -> Self {
        UdpTable {
            slot_of_port: vec![0; PORTS].into_boxed_slice(),
            ports: Vec::new(),
            counts: StateCounts::default(),
            drops: Some(0),
        }
    }
}

impl UdpTable {
    /// Empties the table for a new walk.
    pub fn reset(&mut self) {
        for stats in self.ports.drain(..) {
            self.slot_of_port[usize::from(stats.port)] = 0;
        }
        self.counts = StateCounts::default();
        self.drops = Some(0);
    }

    /// The bound ports, ascending.
    pub fn bound_ports(&mut self) -> impl Iterator<Item = &UdpPortStats> {
        self.ports.sort_unstable_by_key(|stats| stats.port);
        for (slot, stats) in self.ports.iter().enumerate() {
            self.slot_of_port[usize::from(stats.port)] = slot as u32 + 1;
        }
        self.ports.iter().filter(|stats| stats.is_bound())
    }

    /// The bound ports to report, ascending, each with whether it is in `range` (None: range
    /// unknown): all of them up to [`MAX_REPORTED_PORTS`]; past it the ports outside the
    /// range first, then the lowest inside it. Also returns how many bound ports there are.
    pub fn reported_ports(
        &mut self,
        range: EphemeralRange,
    ) -> (usize, impl Iterator<Item = (&UdpPortStats, Option<bool>)>) {
        let (mut bound, mut services) = (0, 0);
        for stats in self.bound_ports() {
            bound += 1;
            services += usize::from(is_ephemeral(range, stats.port) != Some(true));
        }
        // Past the cap: the first `MAX_REPORTED_PORTS` services, and as many ephemeral
        // ports as are left.
        let ephemeral_room = MAX_REPORTED_PORTS.saturating_sub(services);
        let (mut services_seen, mut ephemeral_seen) = (0, 0);
        let reported = self
            .ports
            .iter()
            .filter(|stats| stats.is_bound())
            .filter_map(move |stats| {
                let ephemeral = is_ephemeral(range, stats.port);
                let keep = if ephemeral == Some(true) {
                    ephemeral_seen += 1;
                    ephemeral_seen <= ephemeral_room
                } else {
                    services_seen += 1;
                    services_seen <= MAX_REPORTED_PORTS
                };
                keep.then_some((stats, ephemeral))
            });
        (bound, reported)
    }
}

impl SocketVisitor for UdpTable {
    #[inline]
    fn visit<S: SocketView>(&mut self, socket: &S) {
        self.counts.add_raw(socket.state());
        add_known(&mut self.drops, socket.drops());
        let port = socket.local().port;
        let index = usize::from(port);
        let slot = match self.slot_of_port[index] {
            0 => {
                self.ports.push(UdpPortStats::new(port));
                self.slot_of_port[index] = self.ports.len() as u32;
                self.ports.len() - 1
            }
            slot => slot as usize - 1,
        };
        self.ports[slot].observe(socket);
    }

    fn restart(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::socket::Endpoint;
    use std::net::{IpAddr, Ipv4Addr};

    struct Fake {
        state: u8,
        port: u16,
        queue: u32,
        buffer: Option<u32>,
        drops: Option<u32>,
    }

    impl SocketView for Fake {
        fn state(&self) -> u8 {
            self.state
        }
        fn local(&self) -> Endpoint {
            Endpoint {
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: self.port,
            }
        }
        fn remote(&self) -> Endpoint {
            self.local()
        }
        fn rx_queue(&self) -> u32 {
            self.queue
        }
        fn receive_buffer(&self) -> Option<u32> {
            self.buffer
        }
        fn drops(&self) -> Option<u32> {
            self.drops
        }
    }

    fn socket(state: u8, port: u16, queue: u32, buffer: u32, drops: u32) -> Fake {
        Fake {
            state,
            port,
            queue,
            buffer: Some(buffer),
            drops: Some(drops),
        }
    }

    #[test]
    fn aggregates_per_port_and_reports_bound_ports_only() {
        let mut table = UdpTable::default();
        // An ESTAB socket seen before its port's UNCONN one still counts with the port.
        table.visit(&socket(1, 443, 100, 1000, 1));
        table.visit(&socket(7, 443, 7680, 8192, 2994));
        table.visit(&socket(7, 53, 0, 212992, 0));
        table.visit(&socket(1, 40000, 0, 212992, 5)); // a client: not a bound port
        let ports: Vec<UdpPortStats> = table.bound_ports().copied().collect();
        assert_eq!(
            ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![53, 443]
        );
        let quic = ports[1];
        assert_eq!(quic.states.get(TcpState::Close), 1);
        assert_eq!(quic.states.get(TcpState::Established), 1);
        assert_eq!(quic.queue_bytes, 7780);
        assert_eq!(quic.buffer_bytes, Some(9192));
        assert_eq!(quic.fill_hundredths, Some(9375), "7680 of 8192 is 93.75 %");
        assert_eq!(quic.drops, Some(2995));
        assert_eq!(table.counts.total(), 4);
        assert_eq!(table.drops, Some(3000));

        table.reset();
        assert_eq!(table.bound_ports().count(), 0);
        assert_eq!((table.counts.total(), table.drops), (0, Some(0)));
    }

    #[test]
    fn unknown_buffers_and_drops_stay_unknown() {
        let mut table = UdpTable::default();
        table.visit(&socket(7, 53, 10, 100, 1));
        table.visit(&Fake {
            state: 7,
            port: 53,
            queue: 0,
            buffer: None,
            drops: Some(1),
        });
        let port = *table.bound_ports().next().unwrap();
        assert_eq!(port.buffer_bytes, None);
        assert_eq!(port.fill_hundredths, None);
        assert_eq!(port.drops, Some(2));
        assert_eq!(port.queue_bytes, 10);
    }

    #[test]
    fn past_the_cap_services_are_kept_then_the_lowest_ephemeral_ports() {
        let mut table = UdpTable::default();
        let range = Some((32768, 60999));
        // 1,100 auto-bound senders in the ephemeral range, and three services around it.
        for port in 40000..41100 {
            table.visit(&socket(7, port, 0, 212992, 0));
        }
        for port in [53, 8125, 61000] {
            table.visit(&socket(7, port, 0, 212992, 0));
        }
        let (bound, reported) = table.reported_ports(range);
        let reported: Vec<(u16, Option<bool>)> = reported.map(|(s, e)| (s.port, e)).collect();
        assert_eq!(bound, 1103);
        assert_eq!(reported.len(), MAX_REPORTED_PORTS);
        assert_eq!(
            &reported[..3],
            &[(53, Some(false)), (8125, Some(false)), (40000, Some(true))]
        );
        assert_eq!(reported[MAX_REPORTED_PORTS - 2], (41020, Some(true)));
        assert_eq!(reported[MAX_REPORTED_PORTS - 1], (61000, Some(false)));

        // Under the cap, or with the range unknown, every bound port ascending.
        table.reset();
        table.visit(&socket(7, 40000, 0, 1, 0));
        table.visit(&socket(7, 53, 0, 1, 0));
        let (bound, reported) = table.reported_ports(None);
        let reported: Vec<(u16, Option<bool>)> = reported.map(|(s, e)| (s.port, e)).collect();
        assert_eq!((bound, reported), (2, vec![(53, None), (40000, None)]));
    }
}
