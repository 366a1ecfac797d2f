//! The state of one agent worker, owned by its front end ([`Worker`]), and the snapshot
//! client: state counts answered from a fresh snapshot (shared by every worker, or this
//! worker's own cache) or from a new walk.
//!
//! A *snapshot* is the state counts of one walk, reused within `SnapshotLifetime`. Those of
//! unfiltered walks live in the shared page (see `snapshot`: one *slot* per kind of walk);
//! filtered ones, or every one when there is no shared page, in the worker's cache (up to
//! [`CACHE_ENTRIES`] entries, one per protocol and filter). UDP counts ([`udp_snapshot_counts`])
//! go the same way, through the page's UDP slot and cache entries marked UDP.

use std::time::{Duration, Instant};

use crate::answer::cgroup::CgroupWork;
use crate::answer::error::AnswerError;
use crate::answer::listen::ListenTable;
use crate::answer::netns::NetnsCache;
use crate::answer::snapshot::{fresh, Lookup, SharedSnapshot, Slot};
use crate::answer::udp::UdpTable;
use crate::answer::walk::walk_and_count;
use crate::answer::Context;
use crate::model::socket::Protocol;
use crate::model::state::{StateCounts, StateMask};
use crate::request::filter::{ServiceCache, SocketFilter};
use crate::setup::settings::DEFAULT_TIMEOUT_SECONDS;
use crate::source::proc::scan::Scanner;

/// The budget of a claim when the deadline has none (tests, the benchmark): the agent's
/// default Timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(DEFAULT_TIMEOUT_SECONDS as u64);

/// At most this many filters are remembered per worker.
pub const CACHE_ENTRIES: usize = 16;

/// What one worker (an agent worker process, or one of the plugin's worker threads) keeps
/// between requests: the read buffer, the listening-port table, the snapshot cache and the
/// service names it resolved. A front end gives each concurrent caller its own.
#[derive(Default)]
pub struct Worker {
    pub(crate) scanner: Scanner,
    pub(crate) listen_table: ListenTable,
    pub(crate) udp_table: UdpTable,
    cache: Vec<CachedCounts>,
    pub(crate) services: ServiceCache,
    /// The per-cgroup table and path cache, allocated on the first cgroup request.
    pub(crate) cgroups: Option<Box<CgroupWork>>,
    pub(crate) netns: NetnsCache,
}

/// One cache entry: the counts of sockets matching `filter`, for the states `covered`, of a
/// walk started at `taken_at` (on the process clock).
struct CachedCounts {
    protocol: Protocol,
    filter: SocketFilter,
    covered: StateMask,
    counts: StateCounts,
    taken_at: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The counts of the TCP sockets `filter` matches, for at least the states `wanted`.
pub fn snapshot_counts(
    context: &Context<'_>,
    worker: &mut Worker,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<StateCounts, AnswerError> {
    counts_of(context, worker, Protocol::Tcp, filter, wanted)
}

/// The counts of the UDP sockets `filter` matches, by state. Every UDP state comes from one
/// walk (a UDP dump walks the whole UDP hash whatever states it asks for), so all of a host's
/// `udp_status` items polled together cost one walk per `SnapshotLifetime`.
pub fn udp_snapshot_counts(
    context: &Context<'_>,
    worker: &mut Worker,
    filter: &SocketFilter,
) -> Result<StateCounts, AnswerError> {
    counts_of(context, worker, Protocol::Udp, filter, StateMask::UDP)
}

fn counts_of(
    context: &Context<'_>,
    worker: &mut Worker,
    protocol: Protocol,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<StateCounts, AnswerError> {
    if context.snapshot_lifetime.is_zero() {
        return walk_and_count(context, &mut worker.scanner, protocol, filter, wanted)
            .map(|(counts, _)| counts);
    }
    if let Some(shared) = context.shared_snapshot {
        if filter.is_any() {
            return match protocol {
                Protocol::Tcp => {
                    shared_snapshot_counts(context, &mut worker.scanner, shared, wanted)
                }
                Protocol::Udp => match shared.udp_slot() {
                    Some(slot) => counts_through_slot(
                        context,
                        &mut worker.scanner,
                        Protocol::Udp,
                        slot,
                        StateMask::UDP,
                        |_| None,
                    ),
                    None => walk_and_count(context, &mut worker.scanner, protocol, filter, wanted)
                        .map(|(counts, _)| counts),
                },
            };
        }
    }
    let lifetime = nanos(context.snapshot_lifetime);
    let now = context.process.clock_nanos();
    let cached = worker.cache.iter().find_map(|entry| {
        (entry.protocol == protocol
            && entry.filter == *filter
            && entry.covered.contains(wanted)
            && fresh(entry.taken_at, now, lifetime))
        .then_some(entry.counts)
    });
    if let Some(counts) = cached {
        return Ok(counts);
    }
    let taken_at = context.process.clock_nanos();
    let (counts, covered) = walk_and_count(context, &mut worker.scanner, protocol, filter, wanted)?;
    let now = context.process.clock_nanos();
    worker.cache.retain(|entry| {
        fresh(entry.taken_at, now, lifetime)
            && (entry.filter != *filter || entry.protocol != protocol)
    });
    if worker.cache.len() == CACHE_ENTRIES {
        worker.cache.remove(0);
    }
    worker.cache.push(CachedCounts {
        protocol,
        filter: *filter,
        covered,
        counts,
        taken_at,
    });
    Ok(counts)
}

/// The unfiltered counts through the snapshots all workers share (see `snapshot`): a fresh
/// all-states table answers any state; otherwise the slot of the walk this backend would make
/// (netlink: the wanted state alone, so a LISTEN count stays a LISTEN-only dump; /proc: every
/// state) is reused or refreshed by one worker while the others wait for it.
fn shared_snapshot_counts(
    context: &Context<'_>,
    scanner: &mut Scanner,
    shared: &SharedSnapshot,
    wanted: StateMask,
) -> Result<StateCounts, AnswerError> {
    let clock = || context.process.clock_nanos();
    let lifetime = nanos(context.snapshot_lifetime);
    let walk_states = if context.process.asks_netlink(context.backend) {
        shared.walk_for(wanted, clock(), lifetime)
    } else {
        StateMask::ALL
    };
    let all = shared.slot(StateMask::ALL);
    if walk_states != StateMask::ALL {
        if let Some(table) = all.and_then(|slot| slot.read_fresh(clock(), lifetime)) {
            return Ok(StateCounts::from_table(table));
        }
    }
    let (Some(slot), Some(all)) = (shared.slot(walk_states), all) else {
        let any = SocketFilter::default();
        return walk_and_count(context, scanner, Protocol::Tcp, &any, wanted)
            .map(|(counts, _)| counts);
    };
    counts_through_slot(
        context,
        scanner,
        Protocol::Tcp,
        slot,
        walk_states,
        |walk_states| {
            // Another single state was claimed since walk_for: both go to slot 0.
            (walk_states != StateMask::ALL && !shared.still_alone(walk_states, clock(), lifetime))
                .then_some((all, StateMask::ALL))
        },
    )
}

/// The unfiltered `protocol` counts of `walk_states` through one shared slot: a fresh table,
/// or this worker's walk once it holds the claim, or another's after waiting for it.
/// `regroup` is asked when this worker got the claim: Some(slot, states) releases it and
/// goes to that slot instead.
fn counts_through_slot<'s>(
    context: &Context<'_>,
    scanner: &mut Scanner,
    protocol: Protocol,
    mut slot: &'s Slot,
    mut walk_states: StateMask,
    regroup: impl Fn(StateMask) -> Option<(&'s Slot, StateMask)>,
) -> Result<StateCounts, AnswerError> {
    let clock = || context.process.clock_nanos();
    let lifetime = nanos(context.snapshot_lifetime);
    let budget = context.deadline.budget().unwrap_or(DEFAULT_TIMEOUT);
    let any = SocketFilter::default();
    let waiting_since = Instant::now();
    loop {
        match slot.lookup(clock(), lifetime, nanos(budget)) {
            Lookup::Fresh(table) => return Ok(StateCounts::from_table(table)),
            Lookup::Refresh(claim) => {
                if let Some((other, states)) = regroup(walk_states) {
                    slot.release(claim);
                    slot = other;
                    walk_states = states;
                    continue;
                }
                return match walk_and_count(context, scanner, protocol, &any, walk_states) {
                    Ok((counts, _)) => {
                        slot.finish(claim, &counts.to_table());
                        Ok(counts)
                    }
                    Err(error) => {
                        slot.release(claim);
                        Err(error)
                    }
                };
            }
            Lookup::Wait => {
                // The claimant may be stopped or slow: after half the budget, walk here
                // rather than answer late (and offer the result to the others).
                if waiting_since.elapsed() >= budget / 2 {
                    let started = clock();
                    let (counts, _) =
                        walk_and_count(context, scanner, protocol, &any, walk_states)?;
                    slot.publish(&counts.to_table(), started);
                    return Ok(counts);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
