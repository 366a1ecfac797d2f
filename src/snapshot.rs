//! A state-count snapshot shared by every worker of one agent.
//!
//! The agent answers passive checks in several worker processes (`StartAgents`, 3 by default
//! in 6.0, 10 in 7.x), forked after `zbx_module_init`. Eleven per-state items polled together
//! land on different workers; a per-process cache would still walk the kernel's socket table
//! once per worker. So init maps one shared anonymous page before the fork (see
//! `ffi::shared_memory`), and the workers publish and read the unfiltered per-state counts
//! there: within `SnapshotLifetime` one walk serves every worker.
//!
//! Protocol, lock-free and all in atomics (so it is safe code over shared memory):
//! - a worker that finds no fresh snapshot tries to *claim* the refresh (compare-and-swap on
//!   `claim`); the winner scans, publishes and releases; the others wait for its result
//!   instead of walking the table too;
//! - publishing is a sequence lock: the writer makes `sequence` odd, writes, makes it even;
//!   a reader retries if `sequence` was odd or changed while it copied;
//! - a claim older than the agent's Timeout (its worker died, or is stuck in a slow read) may
//!   be taken over.
//!
//! Times are nanoseconds on CLOCK_MONOTONIC measured from one `Instant` fixed at init (before
//! the fork, so the same for every worker), plus one so that zero means "never".

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::state::{StateCounts, STATE_SLOTS};

/// The shared record. All-zero bytes are a valid, empty record (what a fresh anonymous
/// mapping holds).
#[repr(C)]
#[derive(Default)]
pub struct SharedSnapshot {
    sequence: AtomicU64,
    /// When the published counts were taken (their scan finished), 0 = never.
    completed_at: AtomicU64,
    /// When the worker refreshing the snapshot began, 0 = nobody is.
    claim: AtomicU64,
    counts: [AtomicU64; STATE_SLOTS],
}

impl std::fmt::Debug for SharedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSnapshot")
            .field("completed_at", &self.completed_at.load(Ordering::Relaxed))
            .field("claim", &self.claim.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a worker should do about an unfiltered count.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh snapshot: use it.
    Fresh(StateCounts),
    /// This worker now holds the claim: scan, then `publish` or `release`.
    Refresh,
    /// Another worker is scanning: wait a little and look again.
    Wait,
}

impl SharedSnapshot {
    /// Reads a snapshot taken no more than `lifetime` before `now`, else claims the refresh
    /// or says to wait. A claim older than `stale_after` is taken over.
    pub fn lookup(&self, now: u64, lifetime: u64, stale_after: u64) -> Lookup {
        if let Some(counts) = self.read_fresh(now, lifetime) {
            return Lookup::Fresh(counts);
        }
        let claim = self.claim.load(Ordering::Acquire);
        let stale = claim != 0 && now.saturating_sub(claim) > stale_after;
        if (claim == 0 || stale)
            && self
                .claim
                .compare_exchange(claim, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Lookup::Refresh;
        }
        Lookup::Wait
    }

    fn read_fresh(&self, now: u64, lifetime: u64) -> Option<StateCounts> {
        for _ in 0..8 {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let completed_at = self.completed_at.load(Ordering::Relaxed);
            let mut slots = [0u64; STATE_SLOTS];
            for (slot, shared) in slots.iter_mut().zip(&self.counts) {
                *slot = shared.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) != before {
                continue;
            }
            let fresh = completed_at != 0 && now.saturating_sub(completed_at) <= lifetime;
            return fresh.then(|| StateCounts::from_slots(slots));
        }
        None
    }

    /// Publishes counts taken at `now` and releases the claim.
    pub fn publish(&self, counts: &StateCounts, now: u64) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.completed_at.store(now.max(1), Ordering::Relaxed);
        for (shared, value) in self.counts.iter().zip(counts.to_slots()) {
            shared.store(value, Ordering::Relaxed);
        }
        self.sequence
            .store(sequence.wrapping_add(2), Ordering::Release);
        self.release();
    }

    /// Gives the claim up without publishing (the scan failed).
    pub fn release(&self) {
        self.claim.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn counts(established: u64) -> StateCounts {
        let mut slots = [0; STATE_SLOTS];
        slots[1] = established;
        StateCounts::from_slots(slots)
    }

    #[test]
    fn one_worker_refreshes_the_others_wait_then_share() {
        let shared = SharedSnapshot::default();
        assert_eq!(shared.lookup(10, SECOND, 3 * SECOND), Lookup::Refresh);
        assert_eq!(shared.lookup(11, SECOND, 3 * SECOND), Lookup::Wait);
        shared.publish(&counts(5), 20);
        assert_eq!(
            shared.lookup(21, SECOND, 3 * SECOND),
            Lookup::Fresh(counts(5))
        );
        assert_eq!(
            shared.lookup(20 + SECOND, SECOND, 3 * SECOND),
            Lookup::Fresh(counts(5)),
            "fresh up to the lifetime"
        );
        assert_eq!(
            shared.lookup(21 + SECOND, SECOND, 3 * SECOND),
            Lookup::Refresh,
            "expired: the next worker refreshes"
        );
    }

    #[test]
    fn a_failed_scan_releases_and_a_stale_claim_is_taken_over() {
        let shared = SharedSnapshot::default();
        assert_eq!(shared.lookup(1, SECOND, 3 * SECOND), Lookup::Refresh);
        shared.release();
        assert_eq!(shared.lookup(2, SECOND, 3 * SECOND), Lookup::Refresh);
        // The claimant vanished: after the stale limit another worker takes over.
        assert_eq!(
            shared.lookup(2 + 3 * SECOND, SECOND, 3 * SECOND),
            Lookup::Wait
        );
        assert_eq!(
            shared.lookup(3 + 3 * SECOND, SECOND, 3 * SECOND),
            Lookup::Refresh
        );
    }

    #[test]
    fn zero_lifetime_never_reuses() {
        let shared = SharedSnapshot::default();
        shared.publish(&counts(1), 5);
        assert_eq!(shared.lookup(5, 0, SECOND), Lookup::Fresh(counts(1)));
        assert_eq!(shared.lookup(6, 0, SECOND), Lookup::Refresh);
    }

    #[test]
    fn readers_never_see_a_torn_snapshot() {
        use std::sync::Arc;
        let shared = Arc::new(SharedSnapshot::default());
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for n in 1..20_000u64 {
                    let mut slots = [n; STATE_SLOTS];
                    slots[0] = 0;
                    shared.publish(&StateCounts::from_slots(slots), n);
                }
            })
        };
        for _ in 0..20_000 {
            if let Some(counts) = shared.read_fresh(u64::MAX / 2, u64::MAX) {
                let slots = counts.to_slots();
                assert!(slots[1..].iter().all(|&v| v == slots[1]), "torn: {slots:?}");
            }
        }
        writer.join().unwrap();
    }
}
