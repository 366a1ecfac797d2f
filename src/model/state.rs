//! TCP connection states: the kernel's numbering, every name an admin may type for each
//! state, and a fixed-size per-state counter table.
//!
//! The `st` column of /proc/net/tcp{,6} holds the kernel's state number in hex. Admins spell
//! the same states in three families: the `ss` names (`ESTAB`, `TIME-WAIT`, `UNCONN`), the
//! kernel/netstat names (`ESTABLISHED`, `TIME_WAIT`, `CLOSE`) and Zabbix's lowercase names
//! (`established`). A name is matched whole after trimming, ignoring case and treating `-`
//! and `_` alike: `WAIT` matches nothing, unlike the `grep` of the script this replaces.

use std::fmt;

use crate::model::text::trim_spaces;

/// A TCP state as numbered by the kernel (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The state for a kernel state number, if it is one of the eleven real states.
    pub fn from_kernel(number: u8) -> Option<TcpState> {
        match number {
            1..=11 => Some(TcpState::ALL[usize::from(number) - 1]),
            _ => None,
        }
    }

    /// The kernel's state number (the `st` column).
    pub fn kernel_number(self) -> u8 {
        self as u8
    }

    /// The kernel/netstat name, with underscores (`TIME_WAIT`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// The name `ss -tan` prints (`TIME-WAIT`).
    pub fn ss_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTAB",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "UNCONN",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// Every accepted spelling in canonical form (upper case, `_` for `-`). The kernel and
    /// `ss` names come first; the rest are common variants (`SYN_RCVD` from BSD netstat,
    /// `CLOSED` from RFC 793, `FIN_WAIT_1` from the ss names with `-` turned into `_`).
    fn canonical_spellings(self) -> &'static [&'static str] {
        match self {
            TcpState::Established => &["ESTABLISHED", "ESTAB"],
            TcpState::SynSent => &["SYN_SENT"],
            TcpState::SynRecv => &["SYN_RECV", "SYN_RCVD"],
            TcpState::FinWait1 => &["FIN_WAIT1", "FIN_WAIT_1"],
            TcpState::FinWait2 => &["FIN_WAIT2", "FIN_WAIT_2"],
            TcpState::TimeWait => &["TIME_WAIT"],
            TcpState::Close => &["CLOSE", "UNCONN", "CLOSED"],
            TcpState::CloseWait => &["CLOSE_WAIT"],
            TcpState::LastAck => &["LAST_ACK"],
            TcpState::Listen => &["LISTEN"],
            TcpState::Closing => &["CLOSING"],
        }
    }

    /// Looks a state up by any accepted name: surrounding spaces are ignored,
    /// case is ignored and `-` equals `_`; the whole name must match.
    pub fn from_name(name: &[u8]) -> Option<TcpState> {
        let name = trim_spaces(name);
        // The longest spelling is 11 bytes; anything longer cannot match.
        const LONGEST: usize = 11;
        if name.is_empty() || name.len() > LONGEST {
            return None;
        }
        let mut canonical = [0u8; LONGEST];
        for (slot, &byte) in canonical.iter_mut().zip(name) {
            *slot = match byte {
                b'-' => b'_',
                other => other.to_ascii_uppercase(),
            };
        }
        let canonical = &canonical[..name.len()];
        TcpState::ALL.into_iter().find(|state| {
            state
                .canonical_spellings()
                .iter()
                .any(|spelling| spelling.as_bytes() == canonical)
        })
    }

    /// The list shown when a state name is not recognised: `ss` name, then kernel name.
    pub fn valid_names_help() -> String {
        let mut help = String::new();
        for (index, state) in TcpState::ALL.into_iter().enumerate() {
            if index > 0 {
                help.push_str(", ");
            }
            help.push_str(state.ss_name());
            if state.ss_name() != state.kernel_name() {
                help.push_str(" (");
                help.push_str(state.kernel_name());
                help.push(')');
            }
        }
        help
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

/// How many numbers [`StateCounts::to_table`] gives.
pub const TABLE_LEN: usize = 13;

/// Socket counts per state, plus sockets whose `st` is not one of the eleven real states
/// (a future kernel's addition must not break the known counts, nor be silently lost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    by_kernel_number: [u64; 12],
    other: u64,
}

impl StateCounts {
    /// Counts one socket with the raw `st` value from /proc.
    #[inline]
    pub fn add_raw(&mut self, kernel_number: u8) {
        match self.by_kernel_number.get_mut(usize::from(kernel_number)) {
            Some(count) if kernel_number != 0 => *count += 1,
            _ => self.other += 1,
        }
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &StateCounts) {
        for (count, more) in self.by_kernel_number.iter_mut().zip(other.by_kernel_number) {
            *count += more;
        }
        self.other += other.other;
    }

    pub fn get(&self, state: TcpState) -> u64 {
        self.by_kernel_number[usize::from(state.kernel_number())]
    }

    /// Sockets whose state number is not one of the eleven known ones.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Every socket seen, known states and others.
    pub fn total(&self) -> u64 {
        self.by_kernel_number.iter().sum::<u64>() + self.other
    }

    /// The counts as plain numbers (for sharing them between agent workers).
    pub fn to_table(&self) -> [u64; TABLE_LEN] {
        let mut table = [0; TABLE_LEN];
        table[..12].copy_from_slice(&self.by_kernel_number);
        table[12] = self.other;
        table
    }

    pub fn from_table(table: [u64; TABLE_LEN]) -> StateCounts {
        let mut by_kernel_number = [0; 12];
        by_kernel_number.copy_from_slice(&table[..12]);
        StateCounts {
            by_kernel_number,
            other: table[12],
        }
    }
}

/// A set of states, as the kernel numbers them (bit n = state n; the netlink `idiag_states`
/// mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateMask(u32);

impl StateMask {
    /// The eleven real states (bits 1..=11).
    pub const ALL: StateMask = StateMask(0xffe);
    /// The states a UDP socket is ever in: ESTABLISHED (1, connected; `ESTAB` in `ss -uan`)
    /// and CLOSE (7, not connected; `UNCONN`).
    pub const UDP: StateMask = StateMask(1 << 1 | 1 << 7);

    pub fn only(state: TcpState) -> StateMask {
        StateMask(1 << state.kernel_number())
    }

    pub fn contains(self, other: StateMask) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: StateMask) -> StateMask {
        StateMask(self.0 | other.0)
    }

    /// The kernel's `idiag_states` bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip() {
        for state in TcpState::ALL {
            assert_eq!(TcpState::from_kernel(state.kernel_number()), Some(state));
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(12), None);
        assert_eq!(TcpState::from_kernel(0xff), None);
    }

    #[test]
    fn ss_names_of_the_old_script_are_accepted() {
        let expected = [
            ("ESTAB", TcpState::Established),
            ("SYN-SENT", TcpState::SynSent),
            ("SYN-RECV", TcpState::SynRecv),
            ("FIN-WAIT-1", TcpState::FinWait1),
            ("FIN-WAIT-2", TcpState::FinWait2),
            ("TIME-WAIT", TcpState::TimeWait),
            ("UNCONN", TcpState::Close),
            ("CLOSE-WAIT", TcpState::CloseWait),
            ("LAST-ACK", TcpState::LastAck),
            ("LISTEN", TcpState::Listen),
            ("CLOSING", TcpState::Closing),
        ];
        for (name, state) in expected {
            assert_eq!(TcpState::from_name(name.as_bytes()), Some(state), "{name}");
            assert_eq!(state.ss_name(), name);
        }
    }

    #[test]
    fn kernel_netstat_and_zabbix_names_are_accepted() {
        for state in TcpState::ALL {
            let kernel = state.kernel_name();
            assert_eq!(TcpState::from_name(kernel.as_bytes()), Some(state));
            let zabbix = kernel.to_ascii_lowercase();
            assert_eq!(
                TcpState::from_name(zabbix.as_bytes()),
                Some(state),
                "{zabbix}"
            );
        }
        assert_eq!(
            TcpState::from_name(b"SYN_RCVD"),
            Some(TcpState::SynRecv),
            "BSD netstat name"
        );
        assert_eq!(TcpState::from_name(b"closed"), Some(TcpState::Close));
        assert_eq!(TcpState::from_name(b"fin_wait_2"), Some(TcpState::FinWait2));
    }

    #[test]
    fn case_blanks_and_separators_are_ignored() {
        assert_eq!(
            TcpState::from_name(b"  time-wait "),
            Some(TcpState::TimeWait)
        );
        assert_eq!(TcpState::from_name(b"Time_Wait"), Some(TcpState::TimeWait));
        assert_eq!(TcpState::from_name(b"eStAb"), Some(TcpState::Established));
    }

    #[test]
    fn substrings_and_near_misses_are_rejected() {
        for name in [
            "",
            " ",
            "WAIT",
            "ESTA",
            "SYN",
            "TIME",
            "FIN_WAIT",
            "LISTENING",
            "LISTEN2",
            "CLOSE WAIT",
            "TIME--WAIT",
            "ESTABLISHED_",
            "_LISTEN",
            "LIST",
            "0A",
            "10",
            "SYN_RCV",
            "FIN-WAIT-3",
        ] {
            assert_eq!(TcpState::from_name(name.as_bytes()), None, "{name:?}");
        }
        assert_eq!(TcpState::from_name("ÉSTAB".as_bytes()), None);
        assert_eq!(TcpState::from_name(b"LISTEN\0"), None);
        assert_eq!(TcpState::from_name(b"\tLISTEN"), None);
        assert_eq!(TcpState::from_name(&[b'L'; 4096]), None);
    }

    #[test]
    fn help_lists_every_state_once() {
        let help = TcpState::valid_names_help();
        for state in TcpState::ALL {
            assert!(help.contains(state.ss_name()), "{help}");
            assert!(help.contains(state.kernel_name()), "{help}");
        }
        assert!(help.starts_with("ESTAB (ESTABLISHED), SYN-SENT (SYN_SENT)"));
    }

    #[test]
    fn counts_known_and_other_states() {
        let mut counts = StateCounts::default();
        for raw in [1, 1, 10, 6, 0, 12, 0xff] {
            counts.add_raw(raw);
        }
        assert_eq!(counts.get(TcpState::Established), 2);
        assert_eq!(counts.get(TcpState::Listen), 1);
        assert_eq!(counts.get(TcpState::TimeWait), 1);
        assert_eq!(counts.get(TcpState::Closing), 0);
        assert_eq!(counts.other(), 3);
        assert_eq!(counts.total(), 7);
        let round_trip = StateCounts::from_table(counts.to_table());
        assert_eq!(round_trip, counts);
    }
}
