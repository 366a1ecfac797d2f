//! The state of one agent worker, owned by its front end ([`Worker`]), and the snapshot
//! client: state counts answered from a fresh snapshot (shared by every worker, or this
//! worker's own cache) or from a new walk.
//!
//! A *snapshot* is the state counts of one walk, reused within `SnapshotLifetime`. Those of
//! unfiltered walks live in the shared page (see `snapshot`: one *slot* per kind of walk);
//! filtered ones, or every one when there is no shared page, in the worker's cache (up to
//! [`CACHE_ENTRIES`] entries, one per filter).

use std::time::{Duration, Instant};

use crate::answer::cgroup::CgroupWork;
use crate::answer::error::AnswerError;
use crate::answer::listen::ListenTable;
use crate::answer::netns::NetnsCache;
use crate::answer::snapshot::{fresh, Lookup, SharedSnapshot};
use crate::answer::walk::walk_and_count;
use crate::answer::Context;
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
    cache: Vec<CachedCounts>,
    pub(crate) services: ServiceCache,
    /// The per-cgroup table and path cache, allocated on the first cgroup request.
    pub(crate) cgroups: Option<Box<CgroupWork>>,
    pub(crate) netns: NetnsCache,
}

/// One cache entry: the counts of sockets matching `filter`, for the states `covered`, of a
/// walk started at `taken_at` (on the process clock).
struct CachedCounts {
    filter: SocketFilter,
    covered: StateMask,
    counts: StateCounts,
    taken_at: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The counts of the sockets `filter` matches, for at least the states `wanted`.
pub fn snapshot_counts(
    context: &Context<'_>,
    worker: &mut Worker,
    filter: &SocketFilter,
    wanted: StateMask,
) -> Result<StateCounts, AnswerError> {
    if context.snapshot_lifetime.is_zero() {
        return walk_and_count(context, &mut worker.scanner, filter, wanted)
            .map(|(counts, _)| counts);
    }
    if let Some(shared) = context.shared_snapshot {
        if filter.is_any() {
            return shared_snapshot_counts(context, &mut worker.scanner, shared, wanted);
        }
    }
    let lifetime = nanos(context.snapshot_lifetime);
    let now = context.process.clock_nanos();
    let cached = worker.cache.iter().find_map(|entry| {
        (entry.filter == *filter
            && entry.covered.contains(wanted)
            && fresh(entry.taken_at, now, lifetime))
        .then_some(entry.counts)
    });
    if let Some(counts) = cached {
        return Ok(counts);
    }
    let taken_at = context.process.clock_nanos();
    let (counts, covered) = walk_and_count(context, &mut worker.scanner, filter, wanted)?;
    let now = context.process.clock_nanos();
    worker
        .cache
        .retain(|entry| fresh(entry.taken_at, now, lifetime) && entry.filter != *filter);
    if worker.cache.len() == CACHE_ENTRIES {
        worker.cache.remove(0);
    }
    worker.cache.push(CachedCounts {
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
    let budget = context.deadline.budget().unwrap_or(DEFAULT_TIMEOUT);
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
    let any = SocketFilter::default();
    let (Some(mut slot), Some(all)) = (shared.slot(walk_states), all) else {
        return walk_and_count(context, scanner, &any, wanted).map(|(counts, _)| counts);
    };
    let mut walk_states = walk_states;
    let waiting_since = Instant::now();
    loop {
        match slot.lookup(clock(), lifetime, nanos(budget)) {
            Lookup::Fresh(table) => return Ok(StateCounts::from_table(table)),
            Lookup::Refresh(claim)
                if walk_states != StateMask::ALL
                    && !shared.still_alone(walk_states, clock(), lifetime) =>
            {
                // Another single state was claimed since walk_for: both go to slot 0.
                slot.release(claim);
                slot = all;
                walk_states = StateMask::ALL;
            }
            Lookup::Refresh(claim) => {
                return match walk_and_count(context, scanner, &any, walk_states) {
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
                    let (counts, _) = walk_and_count(context, scanner, &any, walk_states)?;
                    slot.publish(&counts.to_table(), started);
                    return Ok(counts);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
