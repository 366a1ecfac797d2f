//! Answers one `linux_status` request: parses the key, lists the sockets with the configured
//! backend, counts, renders.
//!
//! This is the safe entry point the FFI layer calls. It owns the per-process state of an
//! agent worker (workers are single-threaded processes): the read buffer, the listening-port
//! table, and the snapshot cache that lets requests arriving close together share one
//! kernel walk.
//!
//! Backends: `auto` (the default) dumps with netlink sock_diag and reads /proc instead when
//! netlink is refused (then for the rest of the process) or one dump fails (then for that
//! request); each is said once in the agent log. `proc` and `netlink` force one source; a
//! forced netlink that fails is an error, never a number.

pub mod listen;
pub mod report;
pub mod snapshot;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;

use crate::model::deadline::Deadline;
use crate::model::socket::SocketView;
use crate::model::state::StateMask;
use crate::request::filter::SocketFilter;
use crate::request::key::{parse_params, ItemRequest};
use crate::setup::config::Backend;
use crate::setup::settings;
use crate::source::netlink::{self, NetlinkError};
use crate::source::netstat;
use crate::source::proc::scan::{ProcSources, Scanner};
use listen::ListenTable;
use report::ListenCounters;
use snapshot::{Lookup, SharedSnapshot, Slot};

/// The Zabbix module API version the module implements, reported by `linux_status[info]`.
pub const MODULE_API_VERSION: i32 = 2;
use crate::model::state::StateCounts;

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
    /// Where the settings came from, for `linux_status[info]`: a file, or the agent's own
    /// configuration (agent 2); and whether that source existed.
    pub settings_from: &'a str,
    pub settings_present: bool,
}

/// The snapshots every worker of the agent shares, if the front end provided them at init.
static SHARED_SNAPSHOT: OnceCell<Option<&'static SharedSnapshot>> = OnceCell::new();

/// Fixes the process's settings (environment and configuration file) and the shared
/// snapshots, once: later calls return the first successful call's settings and do not call
/// `share` again. The module maps `share`'s page before the agent forks its workers; a
/// single-process front end may hand out ordinary memory.
pub fn init(
    proc_net_dir: Option<std::ffi::OsString>,
    config_override: Option<std::ffi::OsString>,
    share: impl FnOnce() -> Option<&'static SharedSnapshot>,
) -> Result<&'static settings::Settings, crate::setup::config::ConfigError> {
    let settings = settings::init(proc_net_dir, config_override)?;
    SHARED_SNAPSHOT.get_or_init(share);
    Ok(settings)
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
    let settings_from = settings.config_path.path.to_string_lossy();
    let context = Context {
        sources: &settings.sources,
        backend: settings.backend(),
        snapshot_lifetime: settings.config.snapshot_lifetime,
        shared_snapshot: SHARED_SNAPSHOT.get().copied().flatten(),
        deadline: Deadline::after(settings::timeout()),
        settings_from: &settings_from,
        settings_present: settings.config_present,
    };
    execute(&request, &context)
}

/// Answers a request in a context the caller sets up instead of the process's settings: agent
/// 2's plugin takes its configuration from the agent's own file and its deadline from each
/// request, and never reads the module's configuration file.
pub fn answer_in(params: &[&[u8]], context: &Context<'_>) -> Result<ItemValue, String> {
    let request = parse_params(params).map_err(|error| error.message().to_owned())?;
    execute(&request, context)
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
        ItemRequest::Info => Ok(ItemValue::Text(info(context))),
    }
}

/// `linux_status[info]` for this process.
fn info(context: &Context<'_>) -> String {
    report::info(&report::Info {
        version: env!("CARGO_PKG_VERSION"),
        api_version: MODULE_API_VERSION,
        backend_configured: &context.backend.to_string(),
        backend_in_use: &settings::source_in_use(context.backend).to_string(),
        fallback_reason: settings::netlink_refused().filter(|_| context.backend == Backend::Auto),
        snapshot_lifetime_ms: context.snapshot_lifetime.as_millis(),
        config_file: context.settings_from,
        config_file_present: context.settings_present,
        process_id: std::process::id(),
    })
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
        settings_from: "",
        settings_present: false,
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
/// covered: all of them for /proc, `states` for netlink.
fn walk<V: SocketVisitor>(
    context: &Context<'_>,
    states: StateMask,
    visitor: &mut V,
) -> Result<StateMask, String> {
    SCANNER.with(|cell| {
        let mut scanner = cell
            .try_borrow_mut()
            .map_err(|_| "Internal error: scanner already in use.".to_owned())?;
        if uses_netlink(context.backend) {
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
                Err(error) if context.backend == Backend::Netlink => {
                    let what = if error.is_refusal() {
                        "Netlink sock_diag is unavailable"
                    } else {
                        "Netlink sock_diag dump failed"
                    };
                    return Err(format!(
                        "{what}: {error}. Backend=netlink allows no fallback; Backend=auto would answer from /proc/net/tcp instead."
                    ));
                }
                Err(error) => {
                    report_netlink_failure(&error);
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

/// True when a walk with `backend` asks netlink first.
fn uses_netlink(backend: Backend) -> bool {
    match backend {
        Backend::Proc => false,
        Backend::Auto => settings::netlink_refused().is_none(),
        Backend::Netlink => true,
    }
}

/// Says once per process that netlink failed under `Backend=auto`: a refusal stops this
/// process from asking again; a dump that failed once only sends that request to /proc. The
/// agent sends a module's stderr to its log file (or, under systemd, to the journal).
fn report_netlink_failure(error: &NetlinkError) {
    static DUMP_FAILURE_SAID: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    if error.is_refusal() {
        if settings::mark_netlink_refused(error.to_string()) {
            log(format_args!(
                "linux_status: netlink sock_diag unavailable ({error}); using /proc/net/tcp and /proc/net/tcp6 instead"
            ));
        }
    } else if !DUMP_FAILURE_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log(format_args!(
            "linux_status: a netlink sock_diag dump failed ({error}); that request was answered from /proc/net/tcp and /proc/net/tcp6 (said once per process)"
        ));
    }
}

/// One line on stderr, the agent's log; a closed or full stderr is ignored (`eprintln!`
/// would panic there, and a log line is not worth an item).
fn log(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One netlink dump of the LISTEN sockets (a handful), bounded by a second: does netlink
/// answer in this process?
fn listen_probe() -> Result<(), NetlinkError> {
    let mut buffer = vec![0u8; 64 * 1024];
    netlink::dump(
        StateMask::only(crate::model::state::TcpState::Listen),
        Deadline::after(Duration::from_secs(1)),
        &mut buffer,
        |_| {},
    )
}

/// The agent 2 plugin's start-up probe, once its configuration names the backend: under
/// `Backend=auto` a refused netlink is recorded (and said once, as a request would) before
/// any request, so `linux_status[info]` names the source in use from the first answer, as
/// the module's probe at init does. A dump that fails otherwise changes nothing: each
/// request tries netlink again. Other backends probe nothing.
pub fn probe_auto_fallback(backend: Backend) {
    if backend != Backend::Auto || settings::netlink_refused().is_some() {
        return;
    }
    if let Err(error) = listen_probe() {
        if error.is_refusal() {
            report_netlink_failure(&error);
        }
    }
}

/// Checks, in the main process before the fork, which source answers, and returns the line
/// init logs: the backend, the source in use (and why, after a fallback), the snapshot
/// lifetime and the configuration file.
pub fn probe_backend() -> String {
    let settings = settings::get();
    let backend = settings.backend();
    let mut source = String::new();
    if backend != Backend::Proc {
        match listen_probe() {
            Ok(()) => source.push_str("answering from netlink sock_diag"),
            Err(error) if backend == Backend::Auto && !error.is_refusal() => {
                source = format!(
                    "answering from netlink sock_diag (the start-up probe failed once: {error}; a request whose dump fails is answered from /proc)"
                );
            }
            Err(error) if backend == Backend::Auto => {
                settings::mark_netlink_refused(error.to_string());
                source = format!(
                    "answering from /proc/net/tcp and /proc/net/tcp6: netlink sock_diag unavailable ({error})"
                );
            }
            Err(error) => {
                source = format!(
                    "netlink sock_diag unavailable ({error}): requests will fail until it works (Backend=auto would fall back to /proc)"
                );
            }
        }
    } else if let Some(dir) = &settings.proc_net_dir {
        source = format!(
            "answering from {} (forced by {}, a test setting)",
            dir.display(),
            settings::PROC_NET_DIR_VARIABLE
        );
    } else {
        source.push_str("answering from /proc/net/tcp and /proc/net/tcp6");
    }
    format!(
        "linux_status {}: backend {backend}, {source}; snapshot lifetime {} ms; configuration {}{}",
        env!("CARGO_PKG_VERSION"),
        settings.config.snapshot_lifetime.as_millis(),
        settings.config_path.path.display(),
        if settings.config_present {
            ""
        } else {
            " (absent: defaults)"
        }
    )
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
    if lifetime.is_zero() {
        return count_now(context, filter, wanted).map(|(counts, _)| counts);
    }
    if let Some(shared) = context.shared_snapshot {
        if filter.is_any() {
            return shared_state_counts(context, shared, wanted);
        }
    }
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
    let taken = Instant::now();
    let (counts, covered) = count_now(context, filter, wanted)?;
    SNAPSHOTS.with(|cell| {
        let mut snapshots = cell.borrow_mut();
        snapshots.retain(|s| s.taken.elapsed() <= lifetime && s.filter != *filter);
        if snapshots.len() == SNAPSHOT_SLOTS {
            snapshots.remove(0);
        }
        snapshots.push(Snapshot {
            filter: *filter,
            covered,
            counts,
            taken,
        });
    });
    Ok(counts)
}

/// One walk counting the sockets `filter` matches; returns the counts and the states covered.
fn count_now(
    context: &Context<'_>,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<(StateCounts, StateMask), String> {
    let mut counter = StateCounter {
        filter,
        counts: StateCounts::default(),
    };
    let covered = walk(context, wanted, &mut counter)?;
    Ok((counter.counts, covered))
}

/// The unfiltered counts through the snapshots all workers share (see `snapshot`): a fresh
/// all-states table answers any state; otherwise the slot of the walk this backend would make
/// (netlink: the wanted state alone, so a LISTEN count stays a LISTEN-only dump; /proc: every
/// state) is reused or refreshed by one worker while the others wait for it.
fn shared_state_counts(
    context: &Context<'_>,
    shared: &SharedSnapshot,
    wanted: StateMask,
) -> Result<StateCounts, String> {
    let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let lifetime = nanos(context.snapshot_lifetime);
    let budget = context.deadline.budget().unwrap_or(settings::timeout());
    let walk_states = if uses_netlink(context.backend) {
        shared.walk_for(wanted, settings::shared_clock_nanos(), lifetime)
    } else {
        StateMask::ALL
    };
    let fresh = |slot: &Slot, now: u64| {
        slot.read()
            .filter(|(taken_at, _)| now.saturating_sub(*taken_at) <= lifetime)
            .map(|(_, counts)| counts)
    };
    let all = shared.slot(StateMask::ALL);
    if walk_states != StateMask::ALL {
        if let Some(table) = all.and_then(|slot| fresh(slot, settings::shared_clock_nanos())) {
            return Ok(StateCounts::from_slots(table));
        }
    }
    let Some(slot) = shared.slot(walk_states) else {
        return count_now(context, &SocketFilter::default(), wanted).map(|(counts, _)| counts);
    };
    let waiting_since = Instant::now();
    loop {
        match slot.lookup(settings::shared_clock_nanos(), lifetime, nanos(budget)) {
            Lookup::Fresh(table) => return Ok(StateCounts::from_slots(table)),
            Lookup::Refresh(claim) => {
                return match count_now(context, &SocketFilter::default(), walk_states) {
                    Ok((counts, _)) => {
                        slot.finish(claim, &counts.to_slots());
                        Ok(counts)
                    }
                    Err(error) => {
                        slot.release(claim);
                        Err(error)
                    }
                };
            }
            Lookup::Wait => {
                // The claimant may be stopped or slow: after half the budget, scan here
                // rather than answer late (and offer the result to the others).
                if waiting_since.elapsed() >= budget / 2 {
                    let started = settings::shared_clock_nanos();
                    let (counts, _) = count_now(context, &SocketFilter::default(), walk_states)?;
                    slot.publish(&counts.to_slots(), started);
                    return Ok(counts);
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
