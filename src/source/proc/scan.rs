//! Reading /proc/net/tcp{,6} (or udp{,6}) through one reused buffer, under a deadline.
//!
//! The buffer is allocated once per worker (it lives in the worker's state, `answer::Worker`,
//! and netlink dumps borrow it too) and reused by every scan; the parser borrows lines from
//! it, so a scan allocates nothing per socket.
//! The kernel returns at most one page per read(), so the buffer size only bounds the
//! longest line, not the number of system calls.
//!
//! A scan checks the clock before every read and after the last one: at a million sockets a
//! scan costs about a second, and the agent enforces no timeout on module calls, so a scan
//! that overruns the agent's `Timeout` stops and fails instead of blocking the worker, and a
//! scan that ended past it is not answered late.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::deadline::Deadline;
use crate::model::socket::Protocol;
use crate::source::proc::parse::{Family, ParseError, ProcTableParser, SocketLine};

/// The read buffer size. /proc lines are about 150 bytes (tcp) or 180 (tcp6).
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Where the socket tables (and the TcpExt, Udp and Udp6 counters) are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcSources {
    pub tcp: PathBuf,
    pub tcp6: PathBuf,
    pub netstat: PathBuf,
    pub udp: PathBuf,
    pub udp6: PathBuf,
    /// The `Udp:` counters.
    pub snmp: PathBuf,
    /// The `Udp6*` counters.
    pub snmp6: PathBuf,
    /// `net.ipv4.ip_local_port_range` (which UDP ports are auto-bound senders, most likely).
    pub port_range: PathBuf,
}

impl ProcSources {
    /// The files of the process's network namespace.
    pub fn system() -> Self {
        ProcSources {
            port_range: PathBuf::from("/proc/sys/net/ipv4/ip_local_port_range"),
            ..Self::in_dir(Path::new("/proc/net"))
        }
    }

    /// `tcp`, `tcp6`, `netstat`, `udp`, `udp6`, `snmp` and `snmp6` in `dir` (tests point
    /// this at fixtures).
    pub fn in_dir(dir: &Path) -> Self {
        ProcSources {
            tcp: dir.join("tcp"),
            tcp6: dir.join("tcp6"),
            netstat: dir.join("netstat"),
            udp: dir.join("udp"),
            udp6: dir.join("udp6"),
            snmp: dir.join("snmp"),
            snmp6: dir.join("snmp6"),
            port_range: dir.join("ip_local_port_range"),
        }
    }

    /// The IPv4 and IPv6 tables of `protocol`.
    pub fn tables(&self, protocol: Protocol) -> [&Path; 2] {
        match protocol {
            Protocol::Tcp => [&self.tcp, &self.tcp6],
            Protocol::Udp => [&self.udp, &self.udp6],
        }
    }
}

/// Why a scan failed. Every variant names the file.
#[derive(Debug)]
pub enum ScanError {
    Open {
        path: PathBuf,
        error: io::Error,
    },
    Read {
        path: PathBuf,
        error: io::Error,
    },
    Parse {
        path: PathBuf,
        error: ParseError,
    },
    TimedOut {
        path: PathBuf,
        budget: Duration,
        lines: u64,
    },
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Open { path, error } => {
                write!(f, "Cannot open {}: {error}.", path.display())
            }
            ScanError::Read { path, error } => {
                write!(f, "Cannot read {}: {error}.", path.display())
            }
            ScanError::Parse { path, error } => {
                write!(f, "Unexpected content in {} {error}.", path.display())
            }
            ScanError::TimedOut {
                path,
                budget,
                lines,
            } => write!(
                f,
                "Scan of {} stopped after {lines} lines: it ran past the agent Timeout of {} s.",
                path.display(),
                budget.as_secs()
            ),
        }
    }
}

impl std::error::Error for ScanError {}

/// Owns a worker's read buffer.
pub struct Scanner {
    buffer: Box<[u8]>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::with_buffer_size(READ_BUFFER_BYTES)
    }
}

impl Scanner {
    /// The read buffer, lent to the netlink backend between scans.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buffer
    }

    /// A scanner with a buffer of `bytes` (tests use tiny ones to split lines everywhere).
    pub fn with_buffer_size(bytes: usize) -> Self {
        Scanner {
            buffer: vec![0u8; bytes.max(1)].into_boxed_slice(),
        }
    }

    /// Streams both TCP tables into `on_socket`. A missing tcp6 is IPv6 being disabled, not
    /// an error; a missing tcp is.
    pub fn scan<F>(
        &mut self,
        sources: &ProcSources,
        deadline: Deadline,
        on_socket: F,
    ) -> Result<(), ScanError>
    where
        F: FnMut(&SocketLine<'_>),
    {
        self.scan_protocol(sources, Protocol::Tcp, deadline, on_socket)
    }

    /// Streams both tables of `protocol` into `on_socket`, with the same rule for a missing
    /// IPv6 table (udp6, tcp6).
    pub fn scan_protocol<F>(
        &mut self,
        sources: &ProcSources,
        protocol: Protocol,
        deadline: Deadline,
        mut on_socket: F,
    ) -> Result<(), ScanError>
    where
        F: FnMut(&SocketLine<'_>),
    {
        let [v4, v6] = sources.tables(protocol);
        self.scan_file(v4, protocol, Family::V4, false, deadline, &mut on_socket)?;
        self.scan_file(v6, protocol, Family::V6, true, deadline, &mut on_socket)
    }

    fn scan_file<F>(
        &mut self,
        path: &Path,
        protocol: Protocol,
        family: Family,
        may_be_absent: bool,
        deadline: Deadline,
        on_socket: &mut F,
    ) -> Result<(), ScanError>
    where
        F: FnMut(&SocketLine<'_>),
    {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if may_be_absent && error.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(error) => {
                return Err(ScanError::Open {
                    path: path.to_owned(),
                    error,
                })
            }
        };
        self.scan_table_reader(file, protocol, family, deadline, on_socket)
            .map_err(|failure| failure.at(path))
    }

    /// Streams one TCP table from any reader (the seam the unit tests use).
    pub fn scan_reader<R, F>(
        &mut self,
        reader: R,
        family: Family,
        deadline: Deadline,
        on_socket: &mut F,
    ) -> Result<(), ReaderError>
    where
        R: Read,
        F: FnMut(&SocketLine<'_>),
    {
        self.scan_table_reader(reader, Protocol::Tcp, family, deadline, on_socket)
    }

    /// Streams one table of `protocol` from any reader.
    pub fn scan_table_reader<R, F>(
        &mut self,
        mut reader: R,
        protocol: Protocol,
        family: Family,
        deadline: Deadline,
        on_socket: &mut F,
    ) -> Result<(), ReaderError>
    where
        R: Read,
        F: FnMut(&SocketLine<'_>),
    {
        let mut parser = ProcTableParser::for_table(protocol, family);
        let mut filled = 0;
        let timed_out = |parser: &ProcTableParser, budget| ReaderError::TimedOut {
            budget,
            lines: parser.lines(),
        };
        loop {
            deadline
                .check()
                .map_err(|budget| timed_out(&parser, budget))?;
            if filled == self.buffer.len() {
                return Err(ReaderError::Parse(parser.line_too_long(&self.buffer)));
            }
            let read = match reader.read(&mut self.buffer[filled..]) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ReaderError::Read(error)),
            };
            if read == 0 {
                deadline
                    .check()
                    .map_err(|budget| timed_out(&parser, budget))?;
                return parser
                    .finish(&self.buffer[..filled])
                    .map_err(ReaderError::Parse);
            }
            filled += read;
            let consumed = parser
                .feed(&self.buffer[..filled], &mut *on_socket)
                .map_err(ReaderError::Parse)?;
            self.buffer.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
    }
}

/// A failure of [`Scanner::scan_reader`], before the path is known.
#[derive(Debug)]
pub enum ReaderError {
    Read(io::Error),
    Parse(ParseError),
    TimedOut { budget: Duration, lines: u64 },
}

impl ReaderError {
    fn at(self, path: &Path) -> ScanError {
        let path = path.to_owned();
        match self {
            ReaderError::Read(error) => ScanError::Read { path, error },
            ReaderError::Parse(error) => ScanError::Parse { path, error },
            ReaderError::TimedOut { budget, lines } => ScanError::TimedOut {
                path,
                budget,
                lines,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::proc::parse::Problem;
    use std::io::Cursor;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21662 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:A2D2 06 00000000:00000000 03:000016A5 00000000     0        0 0 3 0000000000000000\n";

    /// Hands out at most `step` bytes per read, like the kernel's page-at-a-time reads.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        pause: Duration,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn collect(scanner: &mut Scanner, step: usize) -> Result<Vec<u8>, ReaderError> {
        let mut states = Vec::new();
        let reader = Trickle {
            data: TABLE.as_bytes(),
            step,
            pause: Duration::ZERO,
        };
        scanner.scan_reader(reader, Family::V4, Deadline::none(), &mut |s| {
            states.push(s.state())
        })?;
        Ok(states)
    }

    #[test]
    fn any_read_size_and_buffer_size_gives_the_same_sockets() {
        for buffer in [160, 200, 333, 4096] {
            let mut scanner = Scanner::with_buffer_size(buffer);
            for step in [1, 7, 64, 150, 4096] {
                assert_eq!(
                    collect(&mut scanner, step).unwrap(),
                    vec![0x0A, 0x06],
                    "buffer {buffer} step {step}"
                );
            }
        }
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_an_error() {
        let mut scanner = Scanner::with_buffer_size(50);
        match collect(&mut scanner, 4096) {
            Err(ReaderError::Parse(error)) => {
                assert_eq!(error.problem, Problem::LineTooLong);
                assert_eq!(error.line, 1);
            }
            other => panic!("expected LineTooLong, got {other:?}"),
        }
    }

    #[test]
    fn a_scan_past_its_deadline_stops_with_an_error() {
        let mut scanner = Scanner::with_buffer_size(4096);
        let slow = Trickle {
            data: TABLE.as_bytes(),
            step: 8,
            pause: Duration::from_millis(5),
        };
        let deadline = Deadline::after(Duration::from_millis(1));
        let result = scanner.scan_reader(slow, Family::V4, deadline, &mut |_| {});
        match result {
            Err(ReaderError::TimedOut { budget, .. }) => {
                assert_eq!(budget, Duration::from_millis(1))
            }
            other => panic!("expected TimedOut, got {other:?}"),
        }
    }

    #[test]
    fn a_scan_whose_last_read_ends_past_the_deadline_fails() {
        // One read delivers the whole table, the next (EOF) comes after the deadline: the
        // answer would be late, so it is an error, not a count.
        struct LateEof<'a> {
            data: Option<&'a [u8]>,
        }
        impl Read for LateEof<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                match self.data.take() {
                    Some(data) => {
                        out[..data.len()].copy_from_slice(data);
                        Ok(data.len())
                    }
                    None => {
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(0)
                    }
                }
            }
        }
        let mut scanner = Scanner::with_buffer_size(4096);
        let reader = LateEof {
            data: Some(TABLE.as_bytes()),
        };
        let deadline = Deadline::after(Duration::from_millis(10));
        let result = scanner.scan_reader(reader, Family::V4, deadline, &mut |_| {});
        assert!(
            matches!(result, Err(ReaderError::TimedOut { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct InterruptedOnce<'a>(bool, Cursor<&'a [u8]>);
        impl Read for InterruptedOnce<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if !self.0 {
                    self.0 = true;
                    return Err(io::ErrorKind::Interrupted.into());
                }
                self.1.read(out)
            }
        }
        let mut scanner = Scanner::default();
        let mut count = 0;
        scanner
            .scan_reader(
                InterruptedOnce(false, Cursor::new(TABLE.as_bytes())),
                Family::V4,
                Deadline::none(),
                &mut |_| count += 1,
            )
            .unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn missing_tcp6_is_not_an_error_but_missing_tcp_is() {
        let dir = std::env::temp_dir().join(format!("linux_status_scan_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sources = ProcSources::in_dir(&dir);
        let _ = std::fs::remove_file(&sources.tcp);
        let mut scanner = Scanner::default();
        let error = scanner
            .scan(&sources, Deadline::none(), |_| {})
            .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("Cannot open "), "{message}");
        assert!(message.contains("/tcp:"), "{message}");

        std::fs::write(&sources.tcp, TABLE).unwrap();
        let mut count = 0;
        scanner
            .scan(&sources, Deadline::none(), |_| count += 1)
            .unwrap();
        assert_eq!(count, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
