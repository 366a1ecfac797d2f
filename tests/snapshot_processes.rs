//! The shared-snapshot protocol on the real mapping, across real processes: forked workers
//! while the claimant of the moment is stopped with SIGSTOP and resumed (the loom models in
//! `answer::snapshot` cover the interleavings; this covers processes, signals and the page).
//! A test crate of its own: it needs `fork`, `kill` and `waitpid`, which the library allows
//! only in its FFI and OS layers. Not built for the loom models (they model the protocol).
#![cfg(not(loom))]

use linux_status::snapshot::{
    map_shared_zeroed, Lookup, SharedSnapshot, Slot, StateMask, TABLE_LEN,
};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn map_shared_snapshot() -> Option<&'static SharedSnapshot> {
    // SAFETY: SharedSnapshot is atomic integers only; all-zero is an empty record.
    unsafe { map_shared_zeroed::<SharedSnapshot>() }
}

#[test]
fn the_page_is_a_usable_snapshot() {
    let shared = map_shared_snapshot().expect("mmap");
    let slot = shared.slot(StateMask::ALL).unwrap();
    match slot.lookup(1, 10, 10) {
        Lookup::Refresh(claim) => slot.release(claim),
        other => panic!("a fresh page is empty: {other:?}"),
    }
    assert!(slot.unclaimed() && slot.at_rest());
}

/// What the forked workers of the stress test report, in a second shared page.
#[derive(Default)]
struct Stats {
    stop: AtomicBool,
    scans: AtomicU64,
    unclaimed_scans: AtomicU64,
    fresh_reads: AtomicU64,
    torn: AtomicU64,
    too_old: AtomicU64,
    claimant: AtomicI32,
}

const LIFETIME: u64 = 20_000_000;
const STALE_AFTER: u64 = 100_000_000;
const GIVE_UP_WAITING: Duration = Duration::from_millis(200);
const WORKERS: usize = 4;
/// A scan holds the claim for 40% of a lifetime, so stops often catch a claimant.
const SCAN: Duration = Duration::from_millis(8);

/// One agent worker's use of the protocol, allocation-free (it runs in a forked child).
fn worker(slot: &Slot, stats: &Stats, origin: Instant) {
    let now = || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1;
    let mut waiting_since: Option<Instant> = None;
    while !stats.stop.load(Ordering::Relaxed) {
        let at = now();
        match slot.lookup(at, LIFETIME, STALE_AFTER) {
            Lookup::Fresh(slots) => {
                waiting_since = None;
                if slots.iter().any(|&v| v != slots[0]) {
                    stats.torn.fetch_add(1, Ordering::Relaxed);
                }
                // Each scan publishes its start time as every count.
                if at.saturating_sub(slots[0]) > LIFETIME {
                    stats.too_old.fetch_add(1, Ordering::Relaxed);
                }
                stats.fresh_reads.fetch_add(1, Ordering::Relaxed);
            }
            Lookup::Refresh(claim) => {
                waiting_since = None;
                // SAFETY: getpid has no preconditions.
                stats
                    .claimant
                    .store(unsafe { libc::getpid() }, Ordering::Relaxed);
                stats.scans.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(SCAN);
                let counts = [claim.taken_at(); TABLE_LEN];
                slot.finish(claim, &counts);
            }
            Lookup::Wait => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP_WAITING {
                    waiting_since = None;
                    let started = now();
                    stats.unclaimed_scans.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                    slot.publish(&[started; TABLE_LEN], started);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory preconditions; pid is a child of this process.
    unsafe { libc::kill(pid, signal) };
}

/// Forked workers share the real mapping while the claimant of the moment is stopped with
/// SIGSTOP past the stale limit and resumed, again and again: no torn or over-age read,
/// the sequence even and the claim free at rest, and once the stops end one scan per
/// lifetime.
#[test]
fn forked_workers_through_stopped_claimants_and_takeovers() {
    let shared = map_shared_snapshot().expect("mmap");
    let slot = shared.slot(StateMask::ALL).unwrap();
    // SAFETY: Stats is atomics only; all-zero is its Default.
    let stats = unsafe { map_shared_zeroed::<Stats>() }.expect("mmap");
    let origin = Instant::now();
    let mut children = Vec::new();
    for _ in 0..WORKERS {
        // SAFETY: the child runs only allocation-free code on shared atomics, sleeps and
        // clock reads, then leaves with _exit (no destructors, no test harness).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            worker(slot, stats, origin);
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        children.push(pid);
    }
    // Phase 1: stop whoever holds the claim (or any worker) for longer than the stale
    // limit, resume it, repeat.
    let mut stops = 0;
    let mut claimants_stopped = 0;
    let phase1 = Instant::now();
    while phase1.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(40));
        let claimant = stats.claimant.load(Ordering::Relaxed);
        let victim = if children.contains(&claimant) {
            claimant
        } else {
            children[stops % WORKERS]
        };
        signal(victim, libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(5));
        if victim == stats.claimant.load(Ordering::Relaxed) && !slot.unclaimed() {
            claimants_stopped += 1;
        }
        std::thread::sleep(Duration::from_millis(145));
        signal(victim, libc::SIGCONT);
        stops += 1;
    }
    // Phase 2: no more stops; count the scans over a known number of lifetimes.
    std::thread::sleep(Duration::from_millis(300));
    let scans_before = stats.scans.load(Ordering::Relaxed);
    let unclaimed_before = stats.unclaimed_scans.load(Ordering::Relaxed);
    let phase2 = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let elapsed = phase2.elapsed().as_nanos() as u64;
    let scans = stats.scans.load(Ordering::Relaxed) - scans_before;
    let unclaimed = stats.unclaimed_scans.load(Ordering::Relaxed) - unclaimed_before;
    stats.stop.store(true, Ordering::Relaxed);
    for pid in children {
        let mut status = 0;
        // SAFETY: waits for our own child; status is a live int.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "worker {pid} ended with status {status}"
        );
    }
    assert!(stops >= 10, "only {stops} stops");
    assert!(
        claimants_stopped >= 2,
        "only {claimants_stopped} of {stops} stops caught a worker holding the claim"
    );
    assert_eq!(stats.torn.load(Ordering::Relaxed), 0, "torn reads");
    assert_eq!(
        stats.too_old.load(Ordering::Relaxed),
        0,
        "values older than the lifetime"
    );
    assert!(
        stats.fresh_reads.load(Ordering::Relaxed) > 100,
        "the snapshot was never shared"
    );
    assert!(slot.at_rest(), "sequence odd at rest");
    assert!(slot.unclaimed(), "a claim survived its workers");
    let lifetimes = elapsed / LIFETIME;
    assert!(
        scans >= 1 && scans <= lifetimes + 2,
        "{scans} scans in {lifetimes} lifetimes after the stops ended"
    );
    assert_eq!(unclaimed, 0, "workers gave up waiting with nobody stopped");
}
