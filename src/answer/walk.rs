//! Walking the socket table: the backend choice and the fallback rule, and the visitors that
//! count what a walk delivers.
//!
//! A *walk* is one pass over the kernel's TCP sockets, by a netlink sock_diag dump or a
//! /proc/net/tcp{,6} scan; every count of this crate comes from one. `auto` (the default)
//! dumps with netlink and scans /proc instead when netlink is refused (then for the rest of
//! the process: recorded in [`Process`]) or one dump fails (then for that request); each is
//! reported once per process through the context's event sink. `proc` and `netlink` force one
//! source; a forced netlink that fails is an error, never a number.

use std::time::Duration;

use crate::answer::error::{AnswerError, Event};
use crate::answer::listen::ListenTable;
use crate::answer::{Context, Process};
use crate::model::deadline::Deadline;
use crate::model::socket::{Protocol, SocketView};
use crate::model::state::{StateCounts, StateMask, TcpState};
use crate::request::filter::SocketFilter;
use crate::setup::config::Backend;
use crate::source::netlink::{self, NetlinkError};
use crate::source::proc::scan::{ScanError, Scanner};

/// Receives each socket of a walk (generic so each backend's socket type is used directly).
pub trait SocketVisitor {
    fn visit<S: SocketView>(&mut self, socket: &S);
    /// Forgets what a failed walk delivered, before the walk is repeated on /proc.
    fn restart(&mut self);
}

/// Counts the sockets a filter matches, by state.
pub struct StateCounter<'a> {
    pub filter: &'a SocketFilter,
    pub counts: StateCounts,
}

impl SocketVisitor for StateCounter<'_> {
    #[inline]
    fn visit<S: SocketView>(&mut self, socket: &S) {
        if self.filter.matches(socket) {
            self.counts.add_raw(socket.state());
        }
    }

    fn restart(&mut self) {
        self.counts = StateCounts::default();
    }
}

/// Counts the sockets a filter matches by state and by listening port, into a borrowed
/// table; `keep_ports` is the pass's reset mode.
struct TableFiller<'a> {
    filter: &'a SocketFilter,
    counts: StateCounts,
    table: &'a mut ListenTable,
    keep_ports: bool,
}

impl SocketVisitor for TableFiller<'_> {
    #[inline]
    fn visit<S: SocketView>(&mut self, socket: &S) {
        if self.filter.matches(socket) {
            self.counts.add_raw(socket.state());
            self.table.observe(socket);
        }
    }

    fn restart(&mut self) {
        self.counts = StateCounts::default();
        self.table.reset(self.keep_ports);
    }
}

/// Walks the TCP sockets in `states` with the context's backend, reading through
/// `scanner`'s buffer. Returns the states the walk covered: all of them for /proc, `states`
/// for netlink.
pub fn walk<V: SocketVisitor>(
    context: &Context<'_>,
    scanner: &mut Scanner,
    states: StateMask,
    visitor: &mut V,
) -> Result<StateMask, AnswerError> {
    walk_protocol(context, scanner, Protocol::Tcp, states, visitor)
}

/// [`walk`] over the sockets of `protocol`: the same backend choice and fallback rule (one
/// `Process` record: a refused sock_diag is refused for both protocols).
pub fn walk_protocol<V: SocketVisitor>(
    context: &Context<'_>,
    scanner: &mut Scanner,
    protocol: Protocol,
    states: StateMask,
    visitor: &mut V,
) -> Result<StateMask, AnswerError> {
    if context.process.asks_netlink(context.backend) {
        let dumped = netlink::dump_protocol(
            protocol,
            states,
            context.deadline,
            scanner.buffer_mut(),
            |socket| visitor.visit(socket),
        );
        match dumped {
            Ok(()) => return Ok(states),
            Err(NetlinkError::TimedOut) => {
                return Err(AnswerError::TimedOut {
                    stopped: "Netlink dump stopped".to_owned(),
                    budget: context.deadline.budget().unwrap_or_default(),
                })
            }
            Err(error) if context.backend == Backend::Netlink => {
                return Err(AnswerError::NetlinkForced {
                    refused: error.is_refusal(),
                    error: error.to_string(),
                });
            }
            Err(error) => {
                report_netlink_failure(context, protocol, &error);
                visitor.restart();
            }
        }
    }
    scanner
        .scan_protocol(context.sources, protocol, context.deadline, |socket| {
            visitor.visit(socket)
        })
        .map_err(|error| match error {
            ScanError::TimedOut {
                path,
                budget,
                lines,
            } => AnswerError::TimedOut {
                stopped: format!("Scan of {} stopped after {lines} lines", path.display()),
                budget,
            },
            other => AnswerError::Source(other.to_string()),
        })?;
    Ok(StateMask::ALL)
}

/// Reports once per process that netlink failed under `Backend=auto`: a refusal stops this
/// process from asking again; a dump that failed once only sends that request to /proc.
/// A kernel that answers a UDP dump with an error (no `udp_diag` module: ENOENT) has not
/// refused sock_diag for TCP: for UDP only the socket's own refusal stops netlink.
fn report_netlink_failure(context: &Context<'_>, protocol: Protocol, error: &NetlinkError) {
    let refusal = match (protocol, error) {
        (Protocol::Udp, NetlinkError::Kernel(_)) => false,
        _ => error.is_refusal(),
    };
    if refusal {
        if context.process.mark_netlink_refused(error.to_string()) {
            context.events.report(&Event::NetlinkRefused(error));
        }
    } else if context.process.first_dump_failure() {
        context.events.report(&Event::DumpFailed(error));
    }
}

/// One walk counting the `protocol` sockets `filter` matches; returns the counts and the
/// states covered.
pub fn walk_and_count(
    context: &Context<'_>,
    scanner: &mut Scanner,
    protocol: Protocol,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<(StateCounts, StateMask), AnswerError> {
    let mut counter = StateCounter {
        filter,
        counts: StateCounts::default(),
    };
    let covered = walk_protocol(context, scanner, protocol, wanted, &mut counter)?;
    Ok((counter.counts, covered))
}

/// Counts the sockets `filter` matches, by state and by listening port, into `table` (two
/// walks in the rare case the first cannot attribute every connection).
pub fn fill_listen_table(
    context: &Context<'_>,
    scanner: &mut Scanner,
    filter: &SocketFilter,
    table: &mut ListenTable,
) -> Result<StateCounts, AnswerError> {
    let mut counts = StateCounts::default();
    for keep_ports in [false, true] {
        let mut filler = TableFiller {
            filter,
            counts: StateCounts::default(),
            table,
            keep_ports,
        };
        filler.restart();
        walk(context, scanner, StateMask::ALL, &mut filler)?;
        counts = filler.counts;
        if !table.needs_second_pass() {
            break;
        }
    }
    Ok(counts)
}

/// One netlink dump of the LISTEN sockets (a handful), bounded by a second: does netlink
/// answer in this process?
pub fn probe_netlink() -> Result<(), NetlinkError> {
    let mut buffer = vec![0u8; 64 * 1024];
    netlink::dump(
        StateMask::only(TcpState::Listen),
        Deadline::after(Duration::from_secs(1)),
        &mut buffer,
        |_| {},
    )
}

/// The start-up probe of a front end, once its configuration names the backend: under
/// `Backend=auto` a refused netlink is recorded in `process` (and reported once, as a request
/// would) before any request, so `linux_status[info]` names the source in use from the first
/// answer. A dump that fails otherwise changes nothing: each request tries netlink again.
/// Other backends probe nothing.
pub fn probe_auto_fallback(context: &Context<'_>) {
    if context.backend != Backend::Auto || context.process.netlink_refused().is_some() {
        return;
    }
    if let Err(error) = probe_netlink() {
        if error.is_refusal() {
            report_netlink_failure(context, Protocol::Tcp, &error);
        }
    }
}

/// Whether `Process` lets a walk with `backend` ask netlink first (see [`Process`]).
impl Process {
    pub(crate) fn asks_netlink(&self, backend: Backend) -> bool {
        match backend {
            Backend::Proc => false,
            Backend::Auto => self.netlink_refused().is_none(),
            Backend::Netlink => true,
        }
    }
}
