//! Answers one parsed `linux_status` request: [`answer`], the one entry of the core, which
//! both front ends call (the module in `ffi`, the agent 2 plugin in src/bin).
//!
//! Nothing here is global: what a request needs comes in explicitly. [`Context`] is how the
//! request is carried out (sources, backend, snapshot lifetime, deadline, the front end's
//! event sink) and borrows the process's state ([`Process`]: the shared clock, whether
//! netlink was refused); [`Worker`] is the calling worker's own (buffers, caches). Each front
//! end owns both and decides where they live.
//!
//! Jobs, one file each: [`cgroup`] (per-cgroup counts), [`walk`] (backend choice, fallback, the visitors), [`worker`] (the
//! worker state and the snapshot client), [`snapshot`] (the shared page's protocol),
//! [`listen`] (the listening-port table), [`udp`] (the UDP per-port table), [`report`] (the JSON renderings), [`error`] (the
//! typed errors and events).

pub mod cgroup;
pub mod error;
pub mod listen;
pub mod netns;
pub mod report;
pub mod snapshot;
pub mod udp;
pub mod walk;
pub mod worker;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::model::deadline::Deadline;
use crate::model::socket::Protocol;
use crate::model::state::StateMask;
use crate::request::filter::SocketFilter;
use crate::request::key::ItemRequest;
use crate::request::registry;
use crate::setup::config::Backend;
use crate::source::proc::scan::ProcSources;
use crate::source::{counters, netstat};
use error::{AnswerError, EventSink};
use netns::NetnsSnapshot;
use report::ListenCounters;
use snapshot::SharedSnapshot;
use walk::fill_listen_table;
pub use worker::Worker;

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Unsigned(u64),
    Text(String),
}

/// The source a walk reads in the end: what `Backend=auto` resolves to (never "auto").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Netlink,
    Proc,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Netlink => "netlink",
            Source::Proc => "proc",
        })
    }
}

/// The state of one answering process, owned by its front end: the clock every worker of the
/// agent shares (its origin is fixed before the agent forks them), and what the fallback
/// rule learned (netlink refused: `Backend=auto` then reads /proc for every later request;
/// whether a failed dump was already reported).
#[derive(Debug)]
pub struct Process {
    clock_origin: Instant,
    netlink_refused: OnceLock<String>,
    dump_failure_reported: AtomicBool,
}

impl Default for Process {
    fn default() -> Self {
        Process::new()
    }
}

impl Process {
    pub fn new() -> Process {
        Process {
            clock_origin: Instant::now(),
            netlink_refused: OnceLock::new(),
            dump_failure_reported: AtomicBool::new(false),
        }
    }

    /// Nanoseconds since the clock origin, the same clock in every worker of one agent.
    pub fn clock_nanos(&self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Why netlink was refused in this process (or in the main process before the fork).
    pub fn netlink_refused(&self) -> Option<&str> {
        self.netlink_refused.get().map(String::as_str)
    }

    /// Records that netlink was refused; true the first time (so the caller says so once).
    pub fn mark_netlink_refused(&self, reason: String) -> bool {
        self.netlink_refused.set(reason).is_ok()
    }

    /// True the first time a failed dump is reported in this process.
    fn first_dump_failure(&self) -> bool {
        !self.dump_failure_reported.swap(true, Ordering::Relaxed)
    }

    /// The source requests with `backend` read now.
    pub fn source_in_use(&self, backend: Backend) -> Source {
        match backend {
            Backend::Auto if self.netlink_refused().is_some() => Source::Proc,
            Backend::Auto | Backend::Netlink => Source::Netlink,
            Backend::Proc => Source::Proc,
        }
    }
}

/// How a request is carried out.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub sources: &'a ProcSources,
    /// The backend configured (may be auto); see [`Process::source_in_use`] for the one used.
    pub backend: Backend,
    /// Zero: every request walks.
    pub snapshot_lifetime: Duration,
    /// The unfiltered counts shared by every worker of the agent, if the front end has them.
    pub shared_snapshot: Option<&'a SharedSnapshot>,
    /// How old a namespace's table may be before `netns_all` reads it again.
    pub netns_table_interval: Duration,
    /// The per-namespace tables shared by every worker, if the front end has them.
    pub netns_snapshot: Option<&'a NetnsSnapshot>,
    pub process: &'a Process,
    pub deadline: Deadline,
    /// Where the settings came from, for `linux_status[info]`: a file, or the agent's own
    /// configuration (agent 2); and whether that source existed.
    pub settings_from: &'a str,
    pub settings_present: bool,
    /// The Zabbix module API version `linux_status[info]` reports (an ffi fact).
    pub api_version: i32,
    /// Where events go: the front end's agent log.
    pub events: &'a dyn EventSink,
}

/// Answers a parsed request. The one entry of the core.
pub fn answer(
    request: &ItemRequest,
    context: &Context<'_>,
    worker: &mut Worker,
) -> Result<ItemValue, AnswerError> {
    match request {
        ItemRequest::TcpStatus { state, filter } => {
            let filter = filter.resolve(&mut worker.services)?;
            let counts =
                worker::snapshot_counts(context, worker, &filter, StateMask::only(*state))?;
            Ok(ItemValue::Unsigned(counts.get(*state)))
        }
        ItemRequest::TcpSummary { filter } => {
            let filter = filter.resolve(&mut worker.services)?;
            let counters = listen_counters(context)?;
            let counts = fill_listen_table(
                context,
                &mut worker.scanner,
                &filter,
                &mut worker.listen_table,
            )?;
            Ok(ItemValue::Text(report::summary(
                &counts,
                worker.listen_table.ports(),
                counters,
            )))
        }
        ItemRequest::ListenDiscovery => {
            fill_unfiltered_listen_table(context, worker)?;
            Ok(ItemValue::Text(report::discovery(
                worker.listen_table.ports(),
            )))
        }
        ItemRequest::ListenStats => {
            let counters = listen_counters(context)?;
            fill_unfiltered_listen_table(context, worker)?;
            Ok(ItemValue::Text(report::listen_stats(
                worker.listen_table.ports(),
                counters,
            )))
        }
        ItemRequest::TcpExt { counter } => {
            netstat::read_tcp_ext_counter(&context.sources.netstat, counter)
                .map(ItemValue::Unsigned)
                .map_err(AnswerError::Source)
        }
        ItemRequest::CgroupDiscovery => {
            let work = worker.cgroups.get_or_insert_with(Box::default);
            cgroup::discovery(context, &mut worker.scanner, work).map(ItemValue::Text)
        }
        ItemRequest::CgroupSummary => {
            let work = worker.cgroups.get_or_insert_with(Box::default);
            cgroup::summary(context, &mut worker.scanner, work).map(ItemValue::Text)
        }
        ItemRequest::CgroupStatus { cgroup, state } => {
            let work = worker.cgroups.get_or_insert_with(Box::default);
            cgroup::status(context, &mut worker.scanner, work, cgroup, *state)
                .map(ItemValue::Unsigned)
        }
        ItemRequest::NetnsDiscovery => netns::discovery_json(context, worker).map(ItemValue::Text),
        ItemRequest::NetnsSummary { selector, filter } => {
            let filter = filter.resolve(&mut worker.services)?;
            netns::summary(context, worker, selector, &filter).map(ItemValue::Text)
        }
        ItemRequest::NetnsStatus {
            selector,
            state,
            filter,
        } => {
            let filter = filter.resolve(&mut worker.services)?;
            netns::status(context, worker, selector, *state, &filter).map(ItemValue::Unsigned)
        }
        ItemRequest::NetnsAll => netns::all(context, worker).map(ItemValue::Text),
        ItemRequest::Version => Ok(ItemValue::Text(env!("CARGO_PKG_VERSION").to_owned())),
        ItemRequest::Info => Ok(ItemValue::Text(info(context, worker))),
        ItemRequest::UdpStatus { state, filter } => {
            let filter = filter.resolve(&mut worker.services)?;
            let counts = worker::udp_snapshot_counts(context, worker, &filter)?;
            Ok(ItemValue::Unsigned(match state {
                Some(state) => counts.get(*state),
                None => counts.total(),
            }))
        }
        ItemRequest::UdpSummary => {
            let counters = udp_counters(context)?;
            fill_udp_table(context, worker)?;
            Ok(ItemValue::Text(report::udp_summary(
                &mut worker.udp_table,
                ephemeral_range(context)?,
                &counters,
            )))
        }
        ItemRequest::UdpDiscovery => {
            fill_udp_table(context, worker)?;
            Ok(ItemValue::Text(report::udp_discovery(
                &mut worker.udp_table,
                ephemeral_range(context)?,
            )))
        }
    }
}

/// The worker's UDP table, from one walk of the UDP tables.
fn fill_udp_table(context: &Context<'_>, worker: &mut Worker) -> Result<(), AnswerError> {
    worker.udp_table.reset();
    walk::walk_protocol(
        context,
        &mut worker.scanner,
        Protocol::Udp,
        StateMask::UDP,
        &mut worker.udp_table,
    )
    .map(|_| ())
}

/// The kernel's ephemeral port range, which orders the UDP ports reported past the cap; a
/// missing file (a fixture directory, a kernel without it) leaves it unknown, a malformed one
/// is an error like any odd /proc content.
fn ephemeral_range(context: &Context<'_>) -> Result<udp::EphemeralRange, AnswerError> {
    let path = &context.sources.port_range;
    if !path.exists() {
        return Ok(None);
    }
    let mut text = String::new();
    counters::read_bounded(path, 64, &mut text).map_err(AnswerError::Source)?;
    counters::port_range(&text).map(Some).map_err(|problem| {
        AnswerError::Source(format!(
            "Unexpected content in {}: {problem}.",
            path.display()
        ))
    })
}

/// The `Udp:` counters of /proc/net/snmp and the `Udp6*` ones of /proc/net/snmp6, under
/// their kernel names, rendered as JSON members. A missing snmp6 is IPv6 being disabled
/// (as a missing tcp6 or udp6): its members are left out.
fn udp_counters(context: &Context<'_>) -> Result<String, AnswerError> {
    let mut text = String::new();
    let mut members = String::new();
    let sources = context.sources;
    let malformed = |path: &std::path::Path, problem: String| {
        AnswerError::Source(format!(
            "Unexpected content in {}: {problem}.",
            path.display()
        ))
    };
    counters::read_counter_file(&sources.snmp, &mut text).map_err(AnswerError::Source)?;
    let udp = counters::group(&text, counters::Layout::Paired, "Udp")
        .map_err(|problem| malformed(&sources.snmp, problem))?;
    for (name, value) in udp {
        let value = counters::value(name, value).map_err(|p| malformed(&sources.snmp, p))?;
        report::push_counter_member(&mut members, name, value);
    }
    if sources.snmp6.exists() {
        counters::read_counter_file(&sources.snmp6, &mut text).map_err(AnswerError::Source)?;
        let all = counters::group(&text, counters::Layout::NameValue, "")
            .map_err(|problem| malformed(&sources.snmp6, problem))?;
        for (name, value) in all.filter(|(name, _)| name.starts_with("Udp6")) {
            let value = counters::value(name, value).map_err(|p| malformed(&sources.snmp6, p))?;
            report::push_counter_member(&mut members, name, value);
        }
    }
    Ok(members)
}

/// `linux_status[info]` for this process.
fn info(context: &Context<'_>, worker: &Worker) -> String {
    let process = context.process;
    report::info(&report::Info {
        version: env!("CARGO_PKG_VERSION"),
        api_version: context.api_version,
        backend_configured: &context.backend.to_string(),
        backend_in_use: &process.source_in_use(context.backend).to_string(),
        fallback_reason: process
            .netlink_refused()
            .filter(|_| context.backend == Backend::Auto),
        snapshot_lifetime_ms: context.snapshot_lifetime.as_millis(),
        config_file: context.settings_from,
        config_file_present: context.settings_present,
        process_id: std::process::id(),
        keys: &registry::METRICS,
        netns_table_interval_s: context.netns_table_interval.as_secs(),
        netns_pass: worker.netns.last_pass(),
    })
}

/// The worker's listening-port table, from one walk of every socket.
fn fill_unfiltered_listen_table(
    context: &Context<'_>,
    worker: &mut Worker,
) -> Result<(), AnswerError> {
    fill_listen_table(
        context,
        &mut worker.scanner,
        &SocketFilter::default(),
        &mut worker.listen_table,
    )
    .map(|_| ())
}

/// The kernel's listen-queue counters.
fn listen_counters(context: &Context<'_>) -> Result<ListenCounters, AnswerError> {
    let [overflows, drops] = netstat::read_tcp_ext_counters(
        &context.sources.netstat,
        ["ListenOverflows", "ListenDrops"],
    )
    .map_err(AnswerError::Source)?;
    Ok(ListenCounters { overflows, drops })
}
