//! Per-cgroup counts: the sockets of one netlink dump grouped by `INET_DIAG_CGROUP_ID`, and
//! the ids turned into cgroup paths (`cgroup_discovery`, `cgroup_summary`, `cgroup_status`).
//!
//! Only netlink reports a socket's cgroup (Linux 5.8+); /proc/net/tcp has no such column, so
//! these keys never fall back to /proc: under `Backend=proc`, or `auto` once netlink was
//! refused, they answer an error saying so. On a host without a cgroup2 mount (cgroup v1),
//! or whose cgroup2 hierarchy has no cgroup but its root (a hybrid host that groups services
//! in v1 only, where every id would be the root's), they answer "Cgroup v1: not available".
//!
//! The dump is aggregated as it streams, allocating nothing per socket, into a
//! [`CgroupTable`]: at most [`MAX_CGROUPS`] distinct ids (an open-addressing index of
//! [`INDEX_SLOTS`] slots; about 130 KiB per worker, allocated on its first cgroup request);
//! sockets of further ids are counted in the `other` bucket and `overflow` says so, never
//! dropped and never added to a cgroup they are not in. Sockets the kernel reports without a
//! cgroup id (TIME_WAIT and orphaned FIN_WAIT2 mini-sockets, pending SYN_RECV requests) are
//! the `no_cgroup` bucket, never attributed to a cgroup.
//!
//! Paths come from a walk of the cgroup2 mount ([`cgroupfs::walk`]), cached per worker: an
//! id seen for the first time starts a walk (so a new cgroup resolves at once), an id that a
//! walk did not find (its cgroup was removed while its sockets live on) is retried at most
//! once per [`UNRESOLVED_RETRY`], and counted meanwhile in the `unresolved` bucket. The cache
//! keeps only the ids of the last dump (at most [`MAX_CGROUPS`] paths of at most 4 KiB).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::answer::error::AnswerError;
use crate::answer::report::{write_json_string, write_state_members};
use crate::answer::{Context, Source};
use crate::model::socket::SocketView;
use crate::model::state::{StateCounts, StateMask, TcpState};
use crate::setup::config::Backend;
use crate::source::cgroupfs::{self, WalkEnd};
use crate::source::netlink::{self, NetlinkError};
use crate::source::proc::scan::Scanner;

/// Distinct cgroup ids counted per dump; sockets of more go to the `other` bucket.
pub const MAX_CGROUPS: usize = 1024;
/// Slots of the id index (a power of two, twice [`MAX_CGROUPS`]: short probe sequences).
const INDEX_SLOTS: usize = 2 * MAX_CGROUPS;
/// How long an id a walk could not resolve waits before another walk looks for it.
pub const UNRESOLVED_RETRY: Duration = Duration::from_secs(60);

/// The per-state counts of one dump by cgroup id.
pub struct CgroupTable {
    /// slot -> index + 1 into `ids`/`counts`, 0 for empty.
    index: Box<[u32]>,
    ids: Vec<u64>,
    counts: Vec<StateCounts>,
    /// Sockets without a cgroup id.
    no_cgroup: StateCounts,
    /// Sockets of ids beyond [`MAX_CGROUPS`].
    other: StateCounts,
}

impl Default for CgroupTable {
    fn default() -> Self {
        CgroupTable {
            index: vec![0; INDEX_SLOTS].into_boxed_slice(),
            ids: Vec::with_capacity(MAX_CGROUPS),
            counts: Vec::with_capacity(MAX_CGROUPS),
            no_cgroup: StateCounts::default(),
            other: StateCounts::default(),
        }
    }
}

impl CgroupTable {
    fn reset(&mut self) {
        self.index.fill(0);
        self.ids.clear();
        self.counts.clear();
        self.no_cgroup = StateCounts::default();
        self.other = StateCounts::default();
    }

    /// Counts one socket of kernel state `state` and cgroup `id`.
    #[inline]
    pub fn observe(&mut self, state: u8, id: Option<u64>) {
        let Some(id) = id else {
            self.no_cgroup.add_raw(state);
            return;
        };
        // Fibonacci hashing: ids are sequential inode numbers, spread them.
        let mut slot = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 53) as usize % INDEX_SLOTS;
        loop {
            match self.index[slot] {
                0 => {
                    if self.ids.len() == MAX_CGROUPS {
                        self.other.add_raw(state);
                        return;
                    }
                    self.ids.push(id);
                    let mut counts = StateCounts::default();
                    counts.add_raw(state);
                    self.counts.push(counts);
                    self.index[slot] = self.ids.len() as u32;
                    return;
                }
                entry if self.ids[entry as usize - 1] == id => {
                    self.counts[entry as usize - 1].add_raw(state);
                    return;
                }
                _ => slot = (slot + 1) % INDEX_SLOTS,
            }
        }
    }

    /// The counts of cgroup `id` (zero if it holds no socket).
    pub fn get(&self, id: u64) -> StateCounts {
        self.ids
            .iter()
            .position(|&known| known == id)
            .map(|at| self.counts[at])
            .unwrap_or_default()
    }

    /// True if more than [`MAX_CGROUPS`] ids were seen.
    pub fn overflowed(&self) -> bool {
        self.other.total() > 0
    }
}

/// A worker's cgroup state: the table of the last dump and the id -> path cache.
#[derive(Default)]
pub struct CgroupWork {
    table: CgroupTable,
    /// id -> path found by a walk of `mount`.
    paths: HashMap<u64, String>,
    /// id -> when a walk last failed to find it.
    unresolved: HashMap<u64, Instant>,
    mount: PathBuf,
}

/// The cgroup2 mount, or the "cgroup v1" error; and the netlink-only check.
fn usable_mount(context: &Context<'_>) -> Result<PathBuf, AnswerError> {
    if context.process.source_in_use(context.backend) != Source::Netlink {
        return Err(AnswerError::Source(format!(
            "Per-cgroup counts need netlink sock_diag (INET_DIAG_CGROUP_ID): /proc/net/tcp has no cgroup column, and this agent reads /proc ({}).",
            match context.process.netlink_refused() {
                Some(reason) if context.backend != Backend::Proc =>
                    format!("netlink was refused: {reason}"),
                _ => "Backend=proc".to_owned(),
            }
        )));
    }
    let mount = cgroupfs::find_cgroup2_mount()
        .map_err(AnswerError::Source)?
        .ok_or_else(|| {
            AnswerError::Source(
                "Cgroup v1: not available: no cgroup2 file system is mounted (/proc/self/mountinfo lists none); per-cgroup counts need cgroup v2 (a unified or hybrid hierarchy) and Linux 5.8 or later.".to_owned(),
            )
        })?;
    if !cgroupfs::has_child_cgroups(&mount).map_err(AnswerError::Source)? {
        return Err(AnswerError::Source(format!(
            "Cgroup v1: not available: the cgroup2 hierarchy at {} has no cgroup but its root, so every socket's cgroup id is the root's (services are grouped in cgroup v1 here); per-cgroup counts need services placed in cgroup v2.",
            mount.display()
        )));
    }
    Ok(mount)
}

/// One netlink dump of every state into the worker's table (never /proc: see the module doc).
fn dump_into(
    context: &Context<'_>,
    scanner: &mut Scanner,
    table: &mut CgroupTable,
) -> Result<(), AnswerError> {
    table.reset();
    netlink::dump(
        StateMask::ALL,
        context.deadline,
        scanner.buffer_mut(),
        |socket| table.observe(socket.state(), socket.cgroup_id()),
    )
    .map_err(|error| match error {
        NetlinkError::TimedOut => AnswerError::TimedOut {
            stopped: "Netlink dump stopped".to_owned(),
            budget: context.deadline.budget().unwrap_or_default(),
        },
        other => AnswerError::Source(format!(
            "Netlink sock_diag dump failed: {other}. Per-cgroup counts have no /proc fallback (/proc/net/tcp has no cgroup column)."
        )),
    })?;
    // Full sockets (anything but mini-sockets and requests) always carry the id on 5.8+.
    let minis = [TcpState::TimeWait, TcpState::FinWait2, TcpState::SynRecv]
        .map(|state| table.no_cgroup.get(state))
        .iter()
        .sum::<u64>();
    if table.ids.is_empty() && table.no_cgroup.total() > minis {
        return Err(AnswerError::Source(
            "Cgroup v1: not available: this kernel reports no INET_DIAG_CGROUP_ID for its sockets (it needs Linux 5.8 or later built with cgroup socket data).".to_owned(),
        ));
    }
    Ok(())
}

/// Fills the path cache for the ids of the table (walking the mount when an id is new, or an
/// unresolved one is due for a retry).
fn resolve(work: &mut CgroupWork, mount: &Path, context: &Context<'_>) {
    if work.mount != mount {
        work.paths.clear();
        work.unresolved.clear();
        work.mount = mount.to_path_buf();
    }
    let ids = &work.table.ids;
    work.paths.retain(|id, _| ids.contains(id));
    work.unresolved.retain(|id, _| ids.contains(id));
    let now = Instant::now();
    let due = |id: &u64| match work.unresolved.get(id) {
        Some(when) => now.duration_since(*when) >= UNRESOLVED_RETRY,
        None => !work.paths.contains_key(id),
    };
    let wanted: HashSet<u64> = ids.iter().copied().filter(due).collect();
    if wanted.is_empty() {
        return;
    }
    let mut found: Vec<(u64, String)> = Vec::new();
    let end = cgroupfs::walk(
        mount,
        context.deadline,
        wanted.len(),
        |id| wanted.contains(&id),
        |id, path| found.push((id, path.to_owned())),
    );
    for (id, path) in found {
        work.unresolved.remove(&id);
        work.paths.insert(id, path);
    }
    if end != WalkEnd::Truncated {
        for id in wanted {
            if !work.paths.contains_key(&id) {
                work.unresolved.insert(id, now);
            }
        }
    }
}

/// The dump and the path resolution shared by discovery and summary.
fn dump_and_resolve<'w>(
    context: &Context<'_>,
    scanner: &mut Scanner,
    work: &'w mut CgroupWork,
) -> Result<&'w CgroupWork, AnswerError> {
    let mount = usable_mount(context)?;
    dump_into(context, scanner, &mut work.table)?;
    resolve(work, &mount, context);
    Ok(work)
}

/// The resolved cgroups of the last dump, sorted by path, and the counts of unresolved ids.
fn resolved(work: &CgroupWork) -> (Vec<(&str, u64, &StateCounts)>, StateCounts, usize) {
    let mut rows = Vec::with_capacity(work.table.ids.len());
    let mut unresolved = StateCounts::default();
    let mut unresolved_ids = 0;
    for (id, counts) in work.table.ids.iter().zip(&work.table.counts) {
        match work.paths.get(id) {
            Some(path) => rows.push((path.as_str(), *id, counts)),
            None => {
                unresolved_ids += 1;
                unresolved.add(counts);
            }
        }
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    (rows, unresolved, unresolved_ids)
}

/// The systemd unit a cgroup path ends in (`ssh.service`, `machine-web.scope`,
/// `user-1000.slice`), if its last component has a unit suffix.
fn unit_of(path: &str) -> &str {
    let last = path.rsplit('/').next().unwrap_or("");
    const SUFFIXES: [&str; 4] = [".service", ".scope", ".slice", ".socket"];
    if SUFFIXES
        .iter()
        .any(|suffix| last.len() > suffix.len() && last.ends_with(suffix))
    {
        last
    } else {
        ""
    }
}

/// `linux_status[cgroup_discovery]`:
/// `[{"{#CGROUP}":"/system.slice/ssh.service","{#CGROUP.ID}":"1234","{#UNIT}":"ssh.service"}]`.
pub fn discovery(
    context: &Context<'_>,
    scanner: &mut Scanner,
    work: &mut CgroupWork,
) -> Result<String, AnswerError> {
    let work = dump_and_resolve(context, scanner, work)?;
    let (rows, _, _) = resolved(work);
    let mut json = String::from("[");
    for (index, (path, id, _)) in rows.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str("{\"{#CGROUP}\":");
        write_json_string(&mut json, path);
        let _ = write!(json, ",\"{{#CGROUP.ID}}\":\"{id}\",\"{{#UNIT}}\":");
        write_json_string(&mut json, unit_of(path));
        json.push('}');
    }
    json.push(']');
    Ok(json)
}

/// `linux_status[cgroup_summary]`: `{"cgroups":{"/a.service":{"ESTABLISHED":1,...,"TOTAL":n},
/// ...},"no_cgroup":{...},"unresolved":{...},"unresolved_ids":0,"other":{...},
/// "overflow":false,"max_cgroups":1024,"cgroup2_mount":"/sys/fs/cgroup"}`.
pub fn summary(
    context: &Context<'_>,
    scanner: &mut Scanner,
    work: &mut CgroupWork,
) -> Result<String, AnswerError> {
    let work = dump_and_resolve(context, scanner, work)?;
    let (rows, unresolved, unresolved_ids) = resolved(work);
    let mut json = String::with_capacity(256 + rows.len() * 256);
    json.push_str("{\"cgroups\":{");
    for (index, (path, _, counts)) in rows.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        write_json_string(&mut json, path);
        json.push_str(":{");
        write_state_members(&mut json, counts);
        json.push('}');
    }
    json.push_str("},\"no_cgroup\":{");
    write_state_members(&mut json, &work.table.no_cgroup);
    json.push_str("},\"unresolved\":{");
    write_state_members(&mut json, &unresolved);
    let _ = write!(json, "}},\"unresolved_ids\":{unresolved_ids},\"other\":{{");
    write_state_members(&mut json, &work.table.other);
    let _ = write!(
        json,
        "}},\"overflow\":{},\"max_cgroups\":{MAX_CGROUPS},\"cgroup2_mount\":",
        work.table.overflowed()
    );
    write_json_string(&mut json, &work.mount.to_string_lossy());
    json.push('}');
    Ok(json)
}

/// `linux_status[cgroup_status,<cgroup>,<state>]`: the path is resolved by one `stat` (its
/// inode is its id), so no walk is needed; a path that is not a cgroup is an error, so LLD's
/// lost-resource handling sees a removed cgroup.
pub fn status(
    context: &Context<'_>,
    scanner: &mut Scanner,
    work: &mut CgroupWork,
    cgroup: &str,
    state: TcpState,
) -> Result<u64, AnswerError> {
    let mount = usable_mount(context)?;
    let Some(id) = cgroupfs::id_of_path(&mount, cgroup).map_err(AnswerError::Source)? else {
        return Err(AnswerError::Source(format!(
            "No cgroup {cgroup} under the cgroup2 mount {} (paths are as ss --cgroup prints them, e.g. /system.slice/ssh.service).",
            mount.display()
        )));
    };
    dump_into(context, scanner, &mut work.table)?;
    if work.table.overflowed() && work.table.get(id).total() == 0 {
        return Err(AnswerError::Source(format!(
            "More than {MAX_CGROUPS} cgroups hold sockets: {cgroup} may be among those counted as other."
        )));
    }
    Ok(work.table.get(id).get(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_grouped_by_id_and_unattributed_ones_kept_apart() {
        let mut table = CgroupTable::default();
        table.observe(1, Some(7));
        table.observe(10, Some(7));
        table.observe(8, Some(9000));
        table.observe(6, None);
        table.observe(5, None);
        assert_eq!(table.get(7).get(TcpState::Established), 1);
        assert_eq!(table.get(7).get(TcpState::Listen), 1);
        assert_eq!(table.get(9000).get(TcpState::CloseWait), 1);
        assert_eq!(table.get(42).total(), 0);
        assert_eq!(table.no_cgroup.get(TcpState::TimeWait), 1);
        assert_eq!(table.no_cgroup.get(TcpState::FinWait2), 1);
        assert!(!table.overflowed());
        table.reset();
        assert_eq!(table.get(7).total(), 0);
        assert!(table.ids.is_empty());
    }

    #[test]
    fn ids_beyond_the_cap_go_to_other_never_to_a_cgroup() {
        let mut table = CgroupTable::default();
        for id in 0..MAX_CGROUPS as u64 + 10 {
            // Colliding ids (multiples of the slot count) exercise the probing too.
            table.observe(1, Some(id * INDEX_SLOTS as u64));
            table.observe(1, Some(id * INDEX_SLOTS as u64));
        }
        assert_eq!(table.ids.len(), MAX_CGROUPS);
        assert!(table.overflowed());
        assert_eq!(table.other.get(TcpState::Established), 20);
        let counted: u64 = table.counts.iter().map(StateCounts::total).sum();
        assert_eq!(counted, 2 * MAX_CGROUPS as u64);
        assert_eq!(table.get(5 * INDEX_SLOTS as u64).total(), 2);
    }

    #[test]
    fn units_are_recognised_by_their_suffix_only() {
        assert_eq!(unit_of("/system.slice/ssh.service"), "ssh.service");
        assert_eq!(
            unit_of("/machine.slice/machine-web.scope"),
            "machine-web.scope"
        );
        assert_eq!(unit_of("/user.slice"), "user.slice");
        assert_eq!(unit_of("/lxc.payload.web"), "");
        assert_eq!(unit_of("/"), "");
        assert_eq!(unit_of("/.service"), "");
    }
}
