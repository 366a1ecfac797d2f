//! Per-listening-port aggregation: which ports have LISTEN sockets, how deep their accept
//! queues are, and how many sockets per state have each such port as their local port.
//!
//! The work is done in the walk's single pass with constant memory: two 64 Ki-bit port
//! bitmaps and a 64 Ki-entry port -> entry index, allocated once per worker, plus one entry
//! per listening port. A connection is attributed to its local port only if that port is
//! already known to listen when the connection is seen. The kernel lists listeners before
//! connections in each table, and an accepted connection lives in the same table as its
//! listener, so one pass is exact in practice; when a connection's port turns out to listen
//! only later in the stream (say a closed IPv4 listener whose connections remain, on a port
//! that also has an IPv6 listener), [`ListenTable::needs_second_pass`] says so and the
//! caller walks again with every listening port known up front.

use crate::model::socket::SocketView;
use crate::model::state::{StateCounts, TcpState};

const PORTS: usize = 1 << 16;
const WORDS: usize = PORTS / 64;

/// What one listening port has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub port: u16,
    /// LISTEN sockets on the port (e.g. 0.0.0.0 and [::]).
    pub listeners: u64,
    /// Connections waiting in their accept queues (rx_queue of the LISTEN sockets).
    pub accept_queue: u64,
    /// Sockets whose local port is this port, per state (LISTEN included).
    pub states: StateCounts,
}

/// A worker's aggregation table.
pub struct ListenTable {
    /// slot_of_port[p] = index + 1 into `ports`, 0 for none.
    slot_of_port: Box<[u32]>,
    /// Local ports of connections seen before their port was known to listen.
    unattributed: Box<[u64]>,
    ports: Vec<PortStats>,
}

impl Default for ListenTable {
    fn default() -> Self {
        ListenTable {
            slot_of_port: vec![0; PORTS].into_boxed_slice(),
            unattributed: vec![0; WORDS].into_boxed_slice(),
            ports: Vec::new(),
        }
    }
}

impl ListenTable {
    /// Empties the table for a new scan. With `keep_ports`, the listening ports of the
    /// previous scan stay known (with zero counts) so connections seen before their
    /// listener are attributed: the second pass.
    pub fn reset(&mut self, keep_ports: bool) {
        self.unattributed.fill(0);
        if keep_ports {
            for stats in &mut self.ports {
                *stats = PortStats {
                    port: stats.port,
                    ..PortStats::default()
                };
            }
        } else {
            for stats in self.ports.drain(..) {
                self.slot_of_port[usize::from(stats.port)] = 0;
            }
        }
    }

    #[inline]
    pub fn observe(&mut self, socket: &impl SocketView) {
        let port = socket.local().port;
        let index = usize::from(port);
        if socket.state() == TcpState::Listen.kernel_number() {
            let slot = match self.slot_of_port[index] {
                0 => {
                    self.ports.push(PortStats {
                        port,
                        ..PortStats::default()
                    });
                    self.slot_of_port[index] = self.ports.len() as u32;
                    self.ports.len() - 1
                }
                slot => slot as usize - 1,
            };
            let stats = &mut self.ports[slot];
            stats.listeners += 1;
            stats.accept_queue += u64::from(socket.rx_queue());
            stats.states.add_raw(socket.state());
        } else {
            match self.slot_of_port[index] {
                0 => self.unattributed[index / 64] |= 1 << (index % 64),
                slot => self.ports[slot as usize - 1].states.add_raw(socket.state()),
            }
        }
    }

    /// True if a connection was seen before its port was known to listen.
    pub fn needs_second_pass(&self) -> bool {
        self.ports.iter().any(|stats| {
            let index = usize::from(stats.port);
            stats.listeners > 0 && self.unattributed[index / 64] & (1 << (index % 64)) != 0
        })
    }

    /// The listening ports, ascending (ports kept from a first pass that no longer listen
    /// are left out).
    pub fn ports(&mut self) -> impl Iterator<Item = &PortStats> {
        self.ports.sort_unstable_by_key(|stats| stats.port);
        for (slot, stats) in self.ports.iter().enumerate() {
            self.slot_of_port[usize::from(stats.port)] = slot as u32 + 1;
        }
        self.ports.iter().filter(|stats| stats.listeners > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::proc::parse::{Family, ProcTableParser};

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn line(local_port: u16, state: u8, rx_queue: u32) -> String {
        format!(
            "   0: 0100007F:{local_port:04X} 0100007F:D000 {state:02X} 00000000:{rx_queue:08X} 00:00000000 00000000     0        0 1 1 0\n"
        )
    }

    fn feed(table: &mut ListenTable, lines: &[String]) {
        let text = format!("{HEADER}{}", lines.concat());
        let mut parser = ProcTableParser::new(Family::V4);
        parser
            .feed(text.as_bytes(), |socket| table.observe(socket))
            .unwrap();
    }

    #[test]
    fn aggregates_listeners_queues_and_connections() {
        let mut table = ListenTable::default();
        feed(
            &mut table,
            &[
                line(80, 0x0A, 3),
                line(80, 0x0A, 1),
                line(22, 0x0A, 0),
                line(80, 0x01, 0),
                line(80, 0x06, 0),
                line(22, 0x01, 0),
                line(40000, 0x01, 0),
            ],
        );
        assert!(!table.needs_second_pass());
        let ports: Vec<PortStats> = table.ports().copied().collect();
        assert_eq!(
            ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![22, 80]
        );
        let http = ports[1];
        assert_eq!((http.listeners, http.accept_queue), (2, 4));
        assert_eq!(http.states.get(TcpState::Listen), 2);
        assert_eq!(http.states.get(TcpState::Established), 1);
        assert_eq!(http.states.get(TcpState::TimeWait), 1);
        assert_eq!(http.states.total(), 4);
        assert_eq!(ports[0].states.get(TcpState::Established), 1);
    }

    #[test]
    fn a_listener_after_its_connections_asks_for_a_second_pass() {
        let lines = [line(8080, 0x01, 0), line(8080, 0x0A, 0)];
        let mut table = ListenTable::default();
        feed(&mut table, &lines);
        assert!(table.needs_second_pass());

        table.reset(true);
        feed(&mut table, &lines);
        assert!(!table.needs_second_pass());
        let ports: Vec<PortStats> = table.ports().copied().collect();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].states.get(TcpState::Established), 1);
        assert_eq!(ports[0].listeners, 1);
    }

    #[test]
    fn reset_forgets_everything_unless_asked_to_keep_ports() {
        let mut table = ListenTable::default();
        feed(&mut table, &[line(80, 0x0A, 0)]);
        table.reset(false);
        feed(&mut table, &[line(80, 0x01, 0)]);
        assert_eq!(table.ports().count(), 0);

        feed(&mut table, &[line(443, 0x0A, 0)]);
        table.reset(true);
        // Port 443 stopped listening between the passes: it is not reported.
        feed(&mut table, &[line(443, 0x01, 0)]);
        assert_eq!(table.ports().count(), 0);
    }
}
