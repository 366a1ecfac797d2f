//! Answers one `linux_status` request: parses the key, lists the sockets with the configured
//! backend, counts, renders.
//!
//! This is the safe entry point the FFI layer calls. It owns the per-process state of an
//! agent worker (workers are single-threaded processes): the read buffer, the listening-port
//! table, and the snapshot cache that lets requests arriving close together share one
//! kernel walk.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::config::Backend;
use crate::filter::SocketFilter;
use crate::key::{parse_params, ItemRequest};
use crate::listen::ListenTable;
use crate::netlink::{self, NetlinkError, StateMask};
use crate::netstat;
use crate::parse::SocketView;
use crate::report::{self, ListenCounters};
use crate::scan::{Deadline, ProcSources, Scanner};
use crate::settings;
use crate::snapshot::{Lookup, SharedSnapshot};
use crate::state::StateCounts;

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Unsigned(u64),
    Text(String),
}

/// How a request is carried out.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub sources: &'a ProcSources,
    pub backend: Backend,
    /// Zero: every request scans.
    pub snapshot_lifetime: Duration,
    /// The unfiltered counts shared by every worker of the agent, if mapped at init.
    pub shared_snapshot: Option<&'static SharedSnapshot>,
    pub deadline: Deadline,
}

thread_local! {
    static SCANNER: RefCell<Scanner> = RefCell::new(Scanner::default());
    static LISTEN_TABLE: RefCell<Option<ListenTable>> = const { RefCell::new(None) };
    static SNAPSHOTS: RefCell<Vec<Snapshot>> = const { RefCell::new(Vec::new()) };
}

/// Answers a request with the process's settings.
pub fn answer(params: &[&[u8]]) -> Result<ItemValue, String> {
    let request = parse_params(params).map_err(|error| error.message().to_owned())?;
    let settings = settings::get();
    let context = Context {
        sources: &settings.sources,
        backend: settings::backend(),
        snapshot_lifetime: settings.config.snapshot_lifetime,
        shared_snapshot: settings.shared_snapshot,
        deadline: Deadline::after(settings::timeout()),
    };
    execute(&request, &context)
}

/// Runs a parsed request.
pub fn execute(request: &ItemRequest, context: &Context<'_>) -> Result<ItemValue, String> {
    match request {
        ItemRequest::TcpStatus { state, filter } => {
            let counts = state_counts(context, filter, StateMask::only(*state))?;
            Ok(ItemValue::Unsigned(counts.get(*state)))
        }
        ItemRequest::TcpSummary { filter } => {
            let counters = listen_counters(context)?;
            with_listen_table(context, filter, |counts, table| {
                Ok(report::summary(counts, table.ports(), counters))
            })
        }
        ItemRequest::ListenDiscovery => {
            with_listen_table(context, &SocketFilter::default(), |_, table| {
                Ok(report::discovery(table.ports()))
            })
        }
        ItemRequest::ListenStats => {
            let counters = listen_counters(context)?;
            with_listen_table(context, &SocketFilter::default(), |_, table| {
                Ok(report::listen_stats(table.ports(), counters))
            })
        }
        ItemRequest::TcpExt { counter } => {
            netstat::read_tcp_ext_counter(&context.sources.netstat, counter)
                .map(ItemValue::Unsigned)
        }
        ItemRequest::Version => Ok(ItemValue::Text(env!("CARGO_PKG_VERSION").to_owned())),
    }
}

/// Counts every socket of both families by state, in one pass (no snapshot, proc backend
/// unless the context says otherwise).
pub fn count_states(sources: &ProcSources, deadline: Deadline) -> Result<StateCounts, String> {
    let context = Context {
        sources,
        backend: Backend::Proc,
        snapshot_lifetime: Duration::ZERO,
        shared_snapshot: None,
        deadline,
    };
    state_counts(&context, &SocketFilter::default(), StateMask::ALL)
}

/// Receives each socket of a walk (generic so each backend's socket type is used directly).
trait SocketVisitor {
    fn visit<S: SocketView>(&mut self, socket: &S);
    /// Forgets what a failed walk delivered, before the walk is repeated on /proc.
    fn restart(&mut self);
}

struct StateCounter<'a> {
    filter: &'a SocketFilter,
    counts: StateCounts,
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

/// The kernel's listen-queue counters.
fn listen_counters(context: &Context<'_>) -> Result<ListenCounters, String> {
    let [overflows, drops] = netstat::read_tcp_ext_counters(
        &context.sources.netstat,
        ["ListenOverflows", "ListenDrops"],
    )?;
    Ok(ListenCounters { overflows, drops })
}

/// Walks the sockets in `states` with the context's backend. Returns the states the walk
/// covered: all of them for /proc, `states` for netlink. Netlink trouble other than the
/// Timeout switches this process to /proc (saying so once) and the walk is redone there.
fn walk<V: SocketVisitor>(
    context: &Context<'_>,
    states: StateMask,
    visitor: &mut V,
) -> Result<StateMask, String> {
    SCANNER.with(|cell| {
        let mut scanner = cell
            .try_borrow_mut()
            .map_err(|_| "Internal error: scanner already in use.".to_owned())?;
        if context.backend == Backend::Netlink && !settings::netlink_refused() {
            let dumped = netlink::dump(states, context.deadline, scanner.buffer_mut(), |socket| {
                visitor.visit(socket)
            });
            match dumped {
                Ok(()) => return Ok(states),
                Err(NetlinkError::TimedOut) => {
                    return Err(format!(
                        "Netlink dump stopped: it ran past the agent Timeout of {} s.",
                        context.deadline.budget().unwrap_or_default().as_secs()
                    ))
                }
                Err(error) => {
                    report_netlink_refused(&error);
                    visitor.restart();
                }
            }
        }
        scanner
            .scan(context.sources, context.deadline, |socket| {
                visitor.visit(socket)
            })
            .map_err(|error| error.to_string())?;
        Ok(StateMask::ALL)
    })
}

/// Says once per process that netlink failed, and stops using it. The agent sends a
/// module's stderr to its log file.
pub fn report_netlink_refused(error: &NetlinkError) {
    if settings::mark_netlink_refused() {
        eprintln!(
            "linux_status: netlink sock_diag unavailable ({error}); using /proc/net/tcp and /proc/net/tcp6 instead"
        );
    }
}

/// Checks, in the main process before the fork, that the configured backend works; if
/// netlink is refused the workers start on /proc and the log says so once.
pub fn probe_backend() {
    if settings::backend() != Backend::Netlink {
        return;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let probe = netlink::dump(
        StateMask::only(crate::state::TcpState::Listen),
        Deadline::after(Duration::from_secs(1)),
        &mut buffer,
        |_| {},
    );
    if let Err(error) = probe {
        report_netlink_refused(&error);
    }
}

/// One cached result: the counts of sockets matching `filter`, for the states `covered`.
struct Snapshot {
    filter: SocketFilter,
    covered: StateMask,
    counts: StateCounts,
    taken: Instant,
}

/// At most this many filters are remembered per worker.
const SNAPSHOT_SLOTS: usize = 16;

fn state_counts(
    context: &Context<'_>,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<StateCounts, String> {
    let lifetime = context.snapshot_lifetime;
    if let Some(shared) = context.shared_snapshot {
        if !lifetime.is_zero() && filter.is_any() {
            return shared_state_counts(context, shared);
        }
    }
    if !lifetime.is_zero() {
        let cached = SNAPSHOTS.with(|cell| {
            cell.borrow().iter().find_map(|snapshot| {
                (snapshot.filter == *filter
                    && snapshot.covered.contains(wanted)
                    && snapshot.taken.elapsed() <= lifetime)
                    .then_some(snapshot.counts)
            })
        });
        if let Some(counts) = cached {
            return Ok(counts);
        }
    }
    let mut counter = StateCounter {
        filter,
        counts: StateCounts::default(),
    };
    let covered = walk(context, wanted, &mut counter)?;
    if !lifetime.is_zero() {
        SNAPSHOTS.with(|cell| {
            let mut snapshots = cell.borrow_mut();
            snapshots.retain(|s| s.taken.elapsed() <= lifetime && s.filter != *filter);
            if snapshots.len() == SNAPSHOT_SLOTS {
                snapshots.remove(0);
            }
            snapshots.push(Snapshot {
                filter: *filter,
                covered,
                counts: counter.counts,
                taken: Instant::now(),
            });
        });
    }
    Ok(counter.counts)
}

/// The unfiltered counts through the snapshot all workers share: reuse a fresh one, or
/// refresh it (one worker scans, the others wait for its result).
fn shared_state_counts(
    context: &Context<'_>,
    shared: &SharedSnapshot,
) -> Result<StateCounts, String> {
    let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let lifetime = nanos(context.snapshot_lifetime);
    let stale_after = nanos(context.deadline.budget().unwrap_or(settings::timeout()));
    loop {
        match shared.lookup(settings::shared_clock_nanos(), lifetime, stale_after) {
            Lookup::Fresh(counts) => return Ok(counts),
            Lookup::Refresh => {
                let mut counter = StateCounter {
                    filter: &SocketFilter::default(),
                    counts: StateCounts::default(),
                };
                return match walk(context, StateMask::ALL, &mut counter) {
                    Ok(_) => {
                        shared.publish(&counter.counts, settings::shared_clock_nanos());
                        Ok(counter.counts)
                    }
                    Err(error) => {
                        shared.release();
                        Err(error)
                    }
                };
            }
            Lookup::Wait => {
                if context.deadline.expired() {
                    return Err(format!(
                        "Waited for another agent process's scan past the agent Timeout of {} s.",
                        context.deadline.budget().unwrap_or_default().as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Counts the sockets `filter` matches, by state and by listening port (two passes in the
/// rare case the first cannot attribute every connection), and hands both to `render`.
fn with_listen_table(
    context: &Context<'_>,
    filter: &SocketFilter,
    render: impl FnOnce(&StateCounts, &mut ListenTable) -> Result<String, String>,
) -> Result<ItemValue, String> {
    LISTEN_TABLE.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "Internal error: listen table already in use.".to_owned())?;
        let table = slot.get_or_insert_with(ListenTable::default);
        let counts = fill_listen_table(context, filter, table)?;
        render(&counts, table).map(ItemValue::Text)
    })
}

fn fill_listen_table(
    context: &Context<'_>,
    filter: &SocketFilter,
    table: &mut ListenTable,
) -> Result<StateCounts, String> {
    let mut counts = StateCounts::default();
    for keep_ports in [false, true] {
        let mut filler = TableFiller {
            filter,
            counts: StateCounts::default(),
            table,
            keep_ports,
        };
        filler.restart();
        walk(context, StateMask::ALL, &mut filler)?;
        counts = filler.counts;
        if !table.needs_second_pass() {
            break;
        }
    }
    Ok(counts)
}

/// Answers a request in a context the caller sets up instead of the process's settings: agent
/// 2's plugin takes its configuration from the agent's own file and its deadline from each
/// request, and never reads the module's configuration file.
pub fn answer_in(params: &[&[u8]], context: &Context<'_>) -> Result<ItemValue, String> {
    let request = parse_params(params).map_err(|error| error.message().to_owned())?;
    execute(&request, context)
}
