//! The network-namespace keys: discovery, one namespace's counts chosen by a selector, and
//! every namespace at once for a master item.
//!
//! Data flow: one pass over /proc ([`crate::source::netns::discover`], reused by this worker
//! within `SnapshotLifetime`) lists the namespaces with a representative process each; a
//! namespace is read through that process's `/proc/<pid>/net/` files with the ordinary /proc
//! scanner (netlink sock_diag cannot reach another namespace without CAP_SYS_ADMIN), and the
//! representative's identity (pid, start time, namespace inode) is checked after every read:
//! if it changed, the numbers may be another namespace's and are thrown away ("gone").
//!
//! Cost: every read of a namespace's table walks the host's whole established hash (global
//! unless `net.ipv4.tcp_child_ehash_entries` gives namespaces their own), so `netns_all`
//! reads each namespace's table at most once per `NetnsTableInterval`, shared by every
//! worker through [`NetnsSnapshot`], and spends at most half the request's budget on reads
//! (oldest tables first); a table it has no time for keeps its last counts and says how old
//! they are, and a namespace never read yet says so (`states: null`). The cheap counters
//! (sockstat, snmp, netstat: a few hundred bytes each, no walk) are read on every request.

use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::answer::error::AnswerError;
use crate::answer::report::{self, ListenCounters};
use crate::answer::snapshot::{fresh, Lookup, Slot};
use crate::answer::walk::{fill_listen_table, walk_and_count};
use crate::answer::{Context, Worker};
use crate::model::socket::Protocol;
use crate::model::state::{StateCounts, StateMask, TcpState, TABLE_LEN};
use crate::model::text::quote;
use crate::request::filter::SocketFilter;
use crate::setup::config::Backend;
use crate::source::counters::{self, Layout};
use crate::source::netns::{
    discover, net_dir, still_holds, Discovery, DiscoveryError, Identity, NamespaceRow,
};
use crate::source::netstat;
use crate::source::proc::scan::ProcSources;

/// Shared table slots: twice `MAX_NAMESPACES / 4`, looked up in a window of [`PROBE`].
pub const NETNS_SLOTS: usize = 2048;
/// How many neighbouring slots a namespace may use (open addressing).
pub const PROBE: usize = 8;
/// A slot's table: the identity (inode, pid, start time) then the state counts.
pub const NETNS_TABLE_LEN: usize = 3 + TABLE_LEN;

/// The per-namespace tables every worker shares (the module maps it before the fork, like
/// [`crate::answer::snapshot::SharedSnapshot`]; 2,048 slots of 160 bytes = 320 KiB). Each
/// slot runs the shared snapshot protocol; its table starts with the identity it counts, so
/// a reader takes a table only for the exact namespace it asks about: two namespaces landing
/// on the same slot cost extra reads, never a wrong number.
#[repr(C)]
pub struct NetnsSnapshot {
    slots: [Slot<NETNS_TABLE_LEN>; NETNS_SLOTS],
}

impl Default for NetnsSnapshot {
    fn default() -> Self {
        NetnsSnapshot {
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }
}

impl std::fmt::Debug for NetnsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsSnapshot").finish_non_exhaustive()
    }
}

fn key(identity: &Identity) -> [u64; 3] {
    [identity.inode, u64::from(identity.pid), identity.start_time]
}

impl NetnsSnapshot {
    fn window(&self, identity: &Identity) -> impl Iterator<Item = &Slot<NETNS_TABLE_LEN>> {
        // Inodes are dense small integers: mixing them spreads neighbours over the page.
        let mixed = identity.inode.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        let start = usize::try_from(mixed).unwrap_or(0) % NETNS_SLOTS;
        (0..PROBE).filter_map(move |step| self.slots.get((start + step) % NETNS_SLOTS))
    }

    /// The last published table of `identity`, with when its walk started.
    fn last(&self, identity: &Identity) -> Option<(u64, StateCounts)> {
        let wanted = key(identity);
        self.window(identity).find_map(|slot| {
            let (taken_at, table) = slot.read()?;
            (table[..3] == wanted).then(|| (taken_at, counts_of(&table)))
        })
    }

    /// The slot to refresh `identity` in: its own, else an empty one, else the oldest.
    fn slot_for(&self, identity: &Identity) -> Option<&Slot<NETNS_TABLE_LEN>> {
        let wanted = key(identity);
        let mut oldest: Option<(u64, &Slot<NETNS_TABLE_LEN>)> = None;
        for slot in self.window(identity) {
            match slot.read() {
                Some((_, table)) if table[..3] == wanted => return Some(slot),
                None if slot.unclaimed() => return Some(slot),
                Some((taken_at, _)) if oldest.is_none_or(|(age, _)| taken_at < age) => {
                    oldest = Some((taken_at, slot));
                }
                _ => {}
            }
        }
        oldest.map(|(_, slot)| slot)
    }
}

fn counts_of(table: &[u64; NETNS_TABLE_LEN]) -> StateCounts {
    let mut counts = [0u64; TABLE_LEN];
    counts.copy_from_slice(&table[3..]);
    StateCounts::from_table(counts)
}

fn table_of(identity: &Identity, counts: &StateCounts) -> [u64; NETNS_TABLE_LEN] {
    let mut table = [0u64; NETNS_TABLE_LEN];
    table[..3].copy_from_slice(&key(identity));
    table[3..].copy_from_slice(&counts.to_table());
    table
}

/// A worker's namespace state: the last pass over /proc and a reused text buffer.
#[derive(Default)]
pub struct NetnsCache {
    discovery: Option<(u64, Discovery)>,
    text: String,
}

impl NetnsCache {
    /// What the last pass skipped, for `linux_status[info]`.
    pub fn last_pass(&self) -> Option<report::NetnsPass<'_>> {
        self.discovery.as_ref().map(|(_, found)| report::NetnsPass {
            namespaces: found.rows.len(),
            processes: found.processes,
            gone: found.gone,
            unreadable: found.unreadable,
            hidepid: found.hidepid.as_deref(),
        })
    }
}

/// What a selector chooses: see [`select`].
#[derive(Debug, PartialEq, Eq)]
pub enum Selected<'a> {
    One(&'a NamespaceRow),
    None,
    Ambiguous(usize),
}

/// The namespace a selector names: `self` (the answering agent's own), an id of
/// `netns_discovery` (`{#NETNS}`), a cgroup path (starting with `/`, the representative's,
/// exactly), or a prefix of a container id. Every reading is tried, and more than one
/// namespace matching is [`Selected::Ambiguous`], never a pick.
pub fn select<'a>(discovery: &'a Discovery, selector: &str) -> Selected<'a> {
    let mut found: Option<&NamespaceRow> = None;
    let mut matches = 0;
    for row in &discovery.rows {
        let inode = row.identity.inode;
        let hit = if selector == "self" {
            discovery.agent_inode == Some(inode)
        } else if selector.starts_with('/') {
            row.cgroup == selector && !row.cgroup_truncated
        } else {
            selector.parse::<u64>().ok() == Some(inode)
                || (!row.container.is_empty() && row.container.starts_with(selector))
        };
        if hit {
            matches += 1;
            found = Some(row);
        }
    }
    match (matches, found) {
        (1, Some(row)) => Selected::One(row),
        (0, _) | (_, None) => Selected::None,
        (count, _) => Selected::Ambiguous(count),
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// This worker's pass over /proc, reused within `SnapshotLifetime` (`refresh`: make a new one
/// regardless).
fn discovery<'w>(
    context: &Context<'_>,
    cache: &'w mut NetnsCache,
    refresh: bool,
) -> Result<&'w Discovery, AnswerError> {
    let now = context.process.clock_nanos();
    let lifetime = nanos(context.snapshot_lifetime);
    let reuse = !refresh
        && !context.snapshot_lifetime.is_zero()
        && cache
            .discovery
            .as_ref()
            .is_some_and(|(taken_at, _)| fresh(*taken_at, now, lifetime));
    if !reuse {
        let found = discover(context.deadline).map_err(|error| match error {
            DiscoveryError::TimedOut(_) => AnswerError::TimedOut {
                stopped: error.to_string(),
                budget: context.deadline.budget().unwrap_or_default(),
            },
            other => AnswerError::Source(other.to_string()),
        })?;
        cache.discovery = Some((now, found));
    }
    match &cache.discovery {
        Some((_, found)) => Ok(found),
        None => Err(AnswerError::Source(
            "Internal error: no pass over /proc.".into(),
        )),
    }
}

fn gone(identity: &Identity) -> AnswerError {
    AnswerError::Source(format!(
        "Network namespace {} is gone or changed during the read: its process {} exited or moved to another namespace; no number is given for it.",
        identity.inode, identity.pid
    ))
}

/// The identity a selector names now, from a cached pass, or a new pass if the cached one
/// does not name exactly one (a namespace made since, or one whose process changed).
fn resolve(
    context: &Context<'_>,
    worker: &mut Worker,
    selector: &str,
) -> Result<Identity, AnswerError> {
    for refresh in [false, true] {
        let found = discovery(context, &mut worker.netns, refresh)?;
        match select(found, selector) {
            Selected::One(row) if still_holds(&row.identity) => return Ok(row.identity),
            Selected::Ambiguous(count) if refresh => {
                return Err(AnswerError::Source(format!(
                    "The selector \"{}\" matches {count} network namespaces; give more of the container id, the id of linux_status[netns_discovery] ({{#NETNS}}) or the cgroup path.",
                    quote(selector.as_bytes())
                )))
            }
            _ if refresh => break,
            _ => {}
        }
    }
    Err(AnswerError::Source(format!(
        "No network namespace matches \"{}\" (the agent's own: self; an id of linux_status[netns_discovery]; a unique container id prefix; or a cgroup path): it is gone, or hidden from the agent's user.",
        quote(selector.as_bytes())
    )))
}

/// The context that reads one namespace's files with the /proc scanner, no snapshots.
fn namespace_context<'a>(context: &Context<'a>, sources: &'a ProcSources) -> Context<'a> {
    Context {
        sources,
        backend: Backend::Proc,
        snapshot_lifetime: Duration::ZERO,
        shared_snapshot: None,
        ..*context
    }
}

/// The counts of one namespace's sockets `filter` matches (one read of its tables), checked
/// to be that namespace's.
fn read_counts(
    context: &Context<'_>,
    worker: &mut Worker,
    identity: &Identity,
    filter: &SocketFilter,
) -> Result<StateCounts, AnswerError> {
    let sources = ProcSources::in_dir(&net_dir(identity.pid));
    let context = namespace_context(context, &sources);
    let (counts, _) = walk_and_count(
        &context,
        &mut worker.scanner,
        Protocol::Tcp,
        filter,
        StateMask::ALL,
    )
    .map_err(|error| {
        if still_holds(identity) {
            error
        } else {
            gone(identity)
        }
    })?;
    if !still_holds(identity) {
        return Err(gone(identity));
    }
    Ok(counts)
}

/// `netns_status`: one state's count in one namespace.
pub fn status(
    context: &Context<'_>,
    worker: &mut Worker,
    selector: &str,
    state: TcpState,
    filter: &SocketFilter,
) -> Result<u64, AnswerError> {
    let identity = resolve(context, worker, selector)?;
    read_counts(context, worker, &identity, filter).map(|counts| counts.get(state))
}

/// `netns_summary`: the `tcp_summary` JSON of one namespace.
pub fn summary(
    context: &Context<'_>,
    worker: &mut Worker,
    selector: &str,
    filter: &SocketFilter,
) -> Result<String, AnswerError> {
    let identity = resolve(context, worker, selector)?;
    let sources = ProcSources::in_dir(&net_dir(identity.pid));
    let ns_context = namespace_context(context, &sources);
    let checked = |error: AnswerError| {
        if still_holds(&identity) {
            error
        } else {
            gone(&identity)
        }
    };
    let [overflows, drops] =
        netstat::read_tcp_ext_counters(&sources.netstat, ["ListenOverflows", "ListenDrops"])
            .map_err(|error| checked(AnswerError::Source(error)))?;
    let counts = fill_listen_table(
        &ns_context,
        &mut worker.scanner,
        filter,
        &mut worker.listen_table,
    )
    .map_err(checked)?;
    if !still_holds(&identity) {
        return Err(gone(&identity));
    }
    Ok(report::summary(
        &counts,
        worker.listen_table.ports(),
        ListenCounters { overflows, drops },
    ))
}

/// The cheap counters of one namespace, in the order [`COUNTER_NAMES`] lists them.
const COUNTERS: [(&str, Layout, &str, &str); 12] = [
    ("sockstat", Layout::Sockstat, "TCP", "inuse"),
    ("sockstat", Layout::Sockstat, "TCP", "orphan"),
    ("sockstat", Layout::Sockstat, "TCP", "tw"),
    ("snmp", Layout::Paired, "Tcp", "CurrEstab"),
    ("snmp", Layout::Paired, "Tcp", "ActiveOpens"),
    ("snmp", Layout::Paired, "Tcp", "PassiveOpens"),
    ("snmp", Layout::Paired, "Tcp", "EstabResets"),
    ("snmp", Layout::Paired, "Tcp", "RetransSegs"),
    ("snmp", Layout::Paired, "Tcp", "InErrs"),
    ("snmp", Layout::Paired, "Tcp", "OutRsts"),
    ("netstat", Layout::Paired, "TcpExt", "ListenOverflows"),
    ("netstat", Layout::Paired, "TcpExt", "ListenDrops"),
];

/// Reads the cheap counters of `identity` (three small files) into `values`; an error names
/// the file. `text` is the worker's reused buffer.
fn read_cheap_counters(
    identity: &Identity,
    text: &mut String,
    values: &mut [u64; COUNTERS.len()],
) -> Result<(), String> {
    let dir = net_dir(identity.pid);
    let mut loaded = "";
    for (index, (file, layout, group, name)) in COUNTERS.iter().enumerate() {
        let path = dir.join(file);
        if loaded != *file {
            counters::read_counter_file(&path, text)?;
            loaded = file;
        }
        values[index] = counters::counter(text, *layout, group, name)
            .map_err(|problem| format!("Unexpected content in {}: {problem}.", path.display()))?
            .ok_or_else(|| format!("No {group} counter \"{name}\" in {}.", path.display()))?;
    }
    Ok(())
}

fn json_string(json: &mut String, text: &str) {
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(json, "\\u{:04x}", u32::from(c));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

fn host_flag(discovery: &Discovery, inode: u64) -> &'static str {
    match discovery.init_inode {
        Some(init) if init == inode => "1",
        Some(_) => "0",
        None => "unknown",
    }
}

/// `netns_discovery`: LLD rows.
pub fn discovery_json(context: &Context<'_>, worker: &mut Worker) -> Result<String, AnswerError> {
    let found = discovery(context, &mut worker.netns, true)?;
    let mut json = String::with_capacity(256 * found.rows.len() + 2);
    json.push('[');
    for (index, row) in found.rows.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        let inode = row.identity.inode;
        let _ = write!(
            json,
            "{{\"{{#NETNS}}\":\"{inode}\",\"{{#NETNS.HOST}}\":\"{}\",\"{{#NETNS.AGENT}}\":\"{}\",\"{{#NETNS.RUNTIME}}\":",
            host_flag(found, inode),
            if found.agent_inode == Some(inode) { "1" } else { "0" },
        );
        json_string(&mut json, row.runtime.name());
        json.push_str(",\"{#NETNS.CONTAINER}\":");
        json_string(&mut json, &row.container);
        json.push_str(",\"{#NETNS.POD}\":");
        json_string(&mut json, &row.pod);
        json.push_str(",\"{#NETNS.CGROUP}\":");
        json_string(&mut json, &row.cgroup);
        let _ = write!(
            json,
            ",\"{{#NETNS.PID}}\":\"{}\",\"{{#NETNS.COMM}}\":",
            row.identity.pid
        );
        json_string(&mut json, &row.comm);
        json.push('}');
    }
    json.push(']');
    Ok(json)
}

/// Where one namespace's table in `netns_all` came from.
enum TableState {
    /// Read by this request, or by another worker within the interval: counts, age.
    Counts(StateCounts, u64),
    /// Never read yet (no time in this request's budget, or another worker is reading it).
    Pending,
}

/// `netns_all`: every namespace, its cheap counters and its last state table.
pub fn all(context: &Context<'_>, worker: &mut Worker) -> Result<String, AnswerError> {
    let started = Instant::now();
    let budget = context.deadline.budget().unwrap_or(Duration::from_secs(3)) / 2;
    let found = discovery(context, &mut worker.netns, true)?.clone();
    let interval = nanos(context.netns_table_interval);
    let shared = context.netns_snapshot;
    let mut own_tables: Vec<Option<(u64, StateCounts)>> = vec![None; found.rows.len()];
    let mut errors: Vec<Option<String>> = vec![None; found.rows.len()];
    // Tables due, oldest (never read: 0) first.
    let now = context.process.clock_nanos();
    let mut due: Vec<(u64, usize)> = Vec::new();
    for (index, row) in found.rows.iter().enumerate() {
        let last = shared.and_then(|page| page.last(&row.identity));
        own_tables[index] = last;
        match last {
            Some((taken_at, _)) if fresh(taken_at, now, interval) && interval > 0 => {}
            Some((taken_at, _)) => due.push((taken_at, index)),
            None => due.push((0, index)),
        }
    }
    due.sort_unstable();
    let (mut read, mut kept) = (0u64, 0u64);
    // A table not read in this request: its last counts are kept (or it stays pending).
    let stale_after = nanos(context.deadline.budget().unwrap_or(Duration::from_secs(3)));
    for (_, index) in due {
        let Some(row) = found.rows.get(index) else {
            continue;
        };
        if started.elapsed() >= budget {
            kept += 1;
            continue;
        }
        let identity = row.identity;
        let claim = match shared.and_then(|page| page.slot_for(&identity)) {
            Some(slot) => match slot.lookup(context.process.clock_nanos(), 0, stale_after) {
                Lookup::Refresh(claim) => Some((slot, claim)),
                // Another worker reads a table there now: keep the last one.
                Lookup::Wait | Lookup::Fresh(_) => {
                    kept += 1;
                    continue;
                }
            },
            None => None,
        };
        let taken_at = context.process.clock_nanos();
        let result = read_counts(context, worker, &identity, &SocketFilter::default());
        match (result, claim) {
            (Ok(counts), Some((slot, claim))) => {
                slot.finish(claim, &table_of(&identity, &counts));
                own_tables[index] = Some((taken_at, counts));
                read += 1;
            }
            (Ok(counts), None) => {
                own_tables[index] = Some((taken_at, counts));
                read += 1;
            }
            (Err(error), claim) => {
                if let Some((slot, claim)) = claim {
                    slot.release(claim);
                }
                own_tables[index] = None;
                errors[index] = Some(error.to_string());
            }
        }
    }
    let now = context.process.clock_nanos();
    let mut json = String::with_capacity(600 * found.rows.len() + 200);
    let mut values = [0u64; COUNTERS.len()];
    let mut gone_during = 0u64;
    json.push_str("{\"netns\":{");
    let mut first = true;
    for (index, row) in found.rows.iter().enumerate() {
        let identity = row.identity;
        let counters = read_cheap_counters(&identity, &mut worker.netns.text, &mut values);
        if !still_holds(&identity) {
            gone_during += 1;
            continue;
        }
        if !first {
            json.push(',');
        }
        first = false;
        let _ = write!(
            json,
            "\"{}\":{{\"pid\":{},\"host\":\"{}\",\"runtime\":",
            identity.inode,
            identity.pid,
            host_flag(&found, identity.inode)
        );
        json_string(&mut json, row.runtime.name());
        json.push_str(",\"container\":");
        json_string(&mut json, &row.container);
        let _ = write!(json, ",\"processes\":{},\"counters\":", row.processes);
        match counters {
            Ok(()) => {
                json.push('{');
                for (at, ((_, _, _, name), value)) in COUNTERS.iter().zip(values).enumerate() {
                    if at > 0 {
                        json.push(',');
                    }
                    let _ = write!(json, "\"{name}\":{value}");
                }
                json.push_str("},\"counters_error\":null");
            }
            Err(error) => {
                json.push_str("null,\"counters_error\":");
                json_string(&mut json, &error);
            }
        }
        let table = match own_tables.get(index).copied().flatten() {
            Some((taken_at, counts)) => TableState::Counts(counts, now.saturating_sub(taken_at)),
            None => TableState::Pending,
        };
        match table {
            TableState::Counts(counts, age) => {
                json.push_str(",\"states\":{");
                for state in TcpState::ALL {
                    let _ = write!(json, "\"{}\":{},", state.kernel_name(), counts.get(state));
                }
                let _ = write!(
                    json,
                    "\"TOTAL\":{}}},\"states_age_ms\":{}",
                    counts.total(),
                    age / 1_000_000
                );
            }
            TableState::Pending => json.push_str(",\"states\":null,\"states_age_ms\":null"),
        }
        json.push_str(",\"states_error\":");
        match errors.get(index).and_then(Option::as_deref) {
            Some(error) => json_string(&mut json, error),
            None => json.push_str("null"),
        }
        json.push('}');
    }
    let _ = write!(
        json,
        "}},\"namespaces\":{},\"tables_read\":{read},\"tables_kept\":{kept},\"gone_during_read\":{gone_during},\"processes\":{},\"processes_gone\":{},\"processes_unreadable\":{},\"hidepid\":",
        found.rows.len() as u64 - gone_during,
        found.processes,
        found.gone,
        found.unreadable
    );
    match &found.hidepid {
        Some(value) => json_string(&mut json, value),
        None => json.push_str("null"),
    }
    json.push('}');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::netns::Runtime;

    fn row(inode: u64, pid: u32, container: &str, cgroup: &str) -> NamespaceRow {
        NamespaceRow {
            identity: Identity {
                inode,
                pid,
                start_time: 1,
            },
            comm: "x".into(),
            cgroup: cgroup.into(),
            cgroup_truncated: false,
            runtime: Runtime::Docker,
            container: container.into(),
            pod: String::new(),
            processes: 1,
        }
    }

    #[test]
    fn selectors_pick_one_or_say_why_not() {
        let found = Discovery {
            rows: vec![
                row(4026531840, 1, "", "/init.scope"),
                row(
                    4026532197,
                    10,
                    "abc123",
                    "/system.slice/docker-abc123.scope",
                ),
                row(
                    4026532198,
                    20,
                    "abd999",
                    "/system.slice/docker-abd999.scope",
                ),
                row(4026532199, 30, "4026532197ff", "/x"),
            ],
            agent_inode: Some(4026531840),
            ..Discovery::default()
        };
        let inode = |selected: Selected<'_>| match selected {
            Selected::One(row) => Some(row.identity.inode),
            _ => None,
        };
        assert_eq!(inode(select(&found, "self")), Some(4026531840));
        assert_eq!(inode(select(&found, "4026532198")), Some(4026532198));
        assert_eq!(inode(select(&found, "abc")), Some(4026532197));
        assert_eq!(select(&found, "ab"), Selected::Ambiguous(2));
        // An id that is also a container id prefix of another namespace: refused.
        assert_eq!(select(&found, "4026532197"), Selected::Ambiguous(2));
        assert_eq!(inode(select(&found, "/x")), Some(4026532199));
        assert_eq!(select(&found, "/system.slice"), Selected::None);
        assert_eq!(select(&found, "zzz"), Selected::None);
        assert_eq!(select(&found, "1"), Selected::None);
    }

    #[test]
    fn shared_tables_answer_only_their_own_namespace() {
        let page = Box::<NetnsSnapshot>::default();
        let a = Identity {
            inode: 7,
            pid: 100,
            start_time: 5,
        };
        let mut counts = StateCounts::default();
        counts.add_raw(1);
        let slot = page.slot_for(&a).unwrap();
        let Lookup::Refresh(claim) = slot.lookup(10, 0, 1000) else {
            panic!("claim")
        };
        slot.finish(claim, &table_of(&a, &counts));
        assert_eq!(page.last(&a).map(|(at, c)| (at, c.total())), Some((10, 1)));
        // The same inode with another pid or start time is another namespace.
        for other in [Identity { pid: 101, ..a }, Identity { start_time: 6, ..a }] {
            assert_eq!(page.last(&other), None);
        }
        // Filling the whole window evicts the oldest, never mixes tables.
        for n in 0..(PROBE as u64 + 2) {
            let b = Identity {
                inode: 7,
                pid: 200 + n as u32,
                start_time: 5,
            };
            let slot = page.slot_for(&b).unwrap();
            if let Lookup::Refresh(claim) = slot.lookup(20 + n, 0, 1000) {
                slot.finish(claim, &table_of(&b, &StateCounts::default()));
            }
            assert_eq!(page.last(&b).map(|(_, c)| c.total()), Some(0));
        }
    }
}
