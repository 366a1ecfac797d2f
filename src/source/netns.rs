//! Network namespaces as an unprivileged user sees them: one pass over `/proc` finds every
//! namespace that holds a process, and [`identity_of`] tells whether a representative process
//! still stands for the namespace it stood for.
//!
//! The id of a namespace is the inode number of `/proc/<pid>/net/tcp` (`stat` works without
//! privileges; `/proc/<pid>/ns/net` needs ptrace rights over the process, which the agent's
//! user does not have). The kernel reuses those numbers once a namespace is gone, so a
//! namespace is known by its *identity*: the inode, the representative pid and that pid's
//! start time (field 22 of `/proc/<pid>/stat`). A pid reused by another process has another
//! start time; a process that moved (setns) has another inode. Every answer read through a
//! pid checks the identity before and after the read.
//!
//! Bounds: the pass keeps one [`NamespaceRow`] per namespace (fixed-size fields: the cgroup
//! path is cut at [`MAX_CGROUP_BYTES`], the per-process files are read into one
//! [`FILE_BUFFER_BYTES`] buffer), at most [`MAX_NAMESPACES`] of them (more is an error, never
//! a silently shortened list), and checks the deadline every [`DEADLINE_EVERY`] processes.
//! What it could not look at is counted, never guessed: processes that exited during the pass
//! (`gone`), and processes whose `/proc/<pid>/net/tcp` the user may not stat (`unreadable`:
//! `hidepid=1`; with `hidepid=2` other users' processes are not even listed, and the
//! [`Discovery::hidepid`] of the /proc mount says so).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::model::deadline::Deadline;
use crate::model::netns::{cgroup_path, classify, pod_uid_chars, stat_fields, Runtime};

/// The most namespaces one pass keeps: 4,096 rows of at most ~700 bytes, under 3 MiB.
pub const MAX_NAMESPACES: usize = 4096;
/// A cgroup path longer than this is reported cut (`cgroup_truncated`); its runtime and id
/// are classified from the whole line first.
pub const MAX_CGROUP_BYTES: usize = 512;
/// The bytes read of `/proc/<pid>/stat` and `/proc/<pid>/cgroup` (a cgroup v1 file lists a
/// dozen hierarchies; v2 one line).
pub const FILE_BUFFER_BYTES: usize = 4096;
/// The deadline is checked once per this many processes.
pub const DEADLINE_EVERY: usize = 64;

/// Where the per-process files live.
pub const PROC_ROOT: &str = "/proc";

/// Who stands for a namespace: its id and the process read through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The inode of `/proc/<pid>/net/tcp`: `{#NETNS}`.
    pub inode: u64,
    pub pid: u32,
    /// Clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

/// One discovered namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRow {
    pub identity: Identity,
    /// The representative's command name (at most 64 bytes, lossy UTF-8).
    pub comm: String,
    /// The representative's cgroup path (cut at `MAX_CGROUP_BYTES`).
    pub cgroup: String,
    pub cgroup_truncated: bool,
    pub runtime: Runtime,
    /// Container, unit or machine id, as the cgroup path names it (empty if none).
    pub container: String,
    /// The Kubernetes pod uid (empty outside Kubernetes).
    pub pod: String,
    /// Processes seen in the namespace during the pass.
    pub processes: u32,
}

/// What one pass found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Ordered by inode.
    pub rows: Vec<NamespaceRow>,
    pub processes: u64,
    /// Processes that exited during the pass.
    pub gone: u64,
    /// Processes whose `/proc/<pid>/net/tcp` could not be looked at (permission).
    pub unreadable: u64,
    /// The namespace of the process answering (`/proc/self/net/tcp`).
    pub agent_inode: Option<u64>,
    /// The namespace of pid 1 (None when pid 1 is hidden from the user): "the host's".
    pub init_inode: Option<u64>,
    /// The `hidepid=` option of the /proc mount, if any.
    pub hidepid: Option<String>,
}

/// Why a pass gave no list.
#[derive(Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// /proc could not be listed.
    List(String),
    TooMany,
    /// The deadline passed after this many processes.
    TimedOut(u64),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::List(error) => write!(f, "Cannot list {PROC_ROOT}: {error}."),
            DiscoveryError::TooMany => write!(
                f,
                "More than {MAX_NAMESPACES} network namespaces hold processes, the most one pass keeps."
            ),
            DiscoveryError::TimedOut(processes) => write!(
                f,
                "The pass over {PROC_ROOT} stopped after {processes} processes"
            ),
        }
    }
}

/// `/proc/<pid>/net`: the folder whose tcp, tcp6, netstat, snmp and sockstat are the
/// namespace's.
pub fn net_dir(pid: u32) -> PathBuf {
    Path::new(PROC_ROOT).join(pid.to_string()).join("net")
}

/// The namespace inode of a process: the inode of its `net/tcp`.
fn net_inode(pid_dir: &Path) -> io::Result<u64> {
    fs::metadata(pid_dir.join("net/tcp")).map(|meta| meta.ino())
}

/// Reads at most the buffer's size of a small /proc file.
fn read_small<'b>(path: &Path, buffer: &'b mut [u8]) -> io::Result<&'b [u8]> {
    let mut file = File::open(path)?;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(&buffer[..filled])
}

/// The start time of `pid`, from its stat file.
fn start_time(pid_dir: &Path, buffer: &mut [u8]) -> io::Result<(String, u64)> {
    let text = read_small(&pid_dir.join("stat"), buffer)?;
    let (comm, start) = stat_fields(text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected stat line"))?;
    let comm = &comm[..comm.len().min(64)];
    Ok((String::from_utf8_lossy(comm).into_owned(), start))
}

/// The identity `pid` has now: its namespace inode and start time, read start time first
/// then inode, so a process replaced in between shows as a changed start time next time.
pub fn identity_of(pid: u32) -> io::Result<Identity> {
    let pid_dir = Path::new(PROC_ROOT).join(pid.to_string());
    let mut buffer = [0u8; 1024];
    let (_, start_time) = start_time(&pid_dir, &mut buffer)?;
    let inode = net_inode(&pid_dir)?;
    Ok(Identity {
        inode,
        pid,
        start_time,
    })
}

/// Whether `identity` still holds: same pid, start time and namespace.
pub fn still_holds(identity: &Identity) -> bool {
    identity_of(identity.pid).is_ok_and(|now| now == *identity)
}

fn cut(text: &str, bytes: usize) -> (&str, bool) {
    if text.len() <= bytes {
        return (text, false);
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The `hidepid=` option of the /proc mount (from /proc/self/mountinfo's super options).
fn proc_hidepid() -> Option<String> {
    let text = super::cgroupfs::read_mountinfo().ok()?;
    // The last mount on /proc is the one on top (a private mount namespace may stack one).
    let line = text
        .lines()
        .rfind(|line| line.split(' ').nth(4) == Some(PROC_ROOT) && line.contains(" - proc "))?;
    let options = line.rsplit(' ').next()?;
    options
        .split(',')
        .find_map(|option| option.strip_prefix("hidepid="))
        .map(str::to_owned)
}

/// One pass over /proc.
pub fn discover(deadline: Deadline) -> Result<Discovery, DiscoveryError> {
    let entries =
        fs::read_dir(PROC_ROOT).map_err(|error| DiscoveryError::List(error.to_string()))?;
    let mut discovery = Discovery {
        agent_inode: net_inode(&Path::new(PROC_ROOT).join("self")).ok(),
        init_inode: net_inode(&Path::new(PROC_ROOT).join("1")).ok(),
        hidepid: proc_hidepid(),
        ..Discovery::default()
    };
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut buffer = vec![0u8; FILE_BUFFER_BYTES];
    let mut pid_dir = PathBuf::from(PROC_ROOT);
    for (seen, entry) in entries.enumerate() {
        if seen % DEADLINE_EVERY == 0 && deadline.check().is_err() {
            return Err(DiscoveryError::TimedOut(discovery.processes));
        }
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        discovery.processes += 1;
        pid_dir.push(&name);
        let result = visit(pid, &pid_dir, &mut buffer, &mut index, &mut discovery);
        pid_dir.pop();
        result?;
    }
    discovery.rows.sort_by_key(|row| row.identity.inode);
    Ok(discovery)
}

/// Counts one process into its namespace's row, or starts a row with it as representative.
fn visit(
    pid: u32,
    pid_dir: &Path,
    buffer: &mut [u8],
    index: &mut HashMap<u64, usize>,
    discovery: &mut Discovery,
) -> Result<(), DiscoveryError> {
    let inode = match net_inode(pid_dir) {
        Ok(inode) => inode,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            discovery.gone += 1;
            return Ok(());
        }
        Err(_) => {
            discovery.unreadable += 1;
            return Ok(());
        }
    };
    if let Some(&row) = index.get(&inode) {
        if let Some(row) = discovery.rows.get_mut(row) {
            row.processes = row.processes.saturating_add(1);
        }
        return Ok(());
    }
    let Ok((comm, start_time)) = start_time(pid_dir, buffer) else {
        // Exited between the two reads: the namespace's next process will stand for it.
        discovery.gone += 1;
        return Ok(());
    };
    // Confirm the inode after the start time (the order identity_of uses).
    if net_inode(pid_dir).ok() != Some(inode) {
        discovery.gone += 1;
        return Ok(());
    }
    if discovery.rows.len() == MAX_NAMESPACES {
        return Err(DiscoveryError::TooMany);
    }
    let cgroup_text = read_small(&pid_dir.join("cgroup"), buffer)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    let path = cgroup_path(&cgroup_text).unwrap_or("");
    let classified = classify(path);
    let (cgroup, cgroup_truncated) = cut(path, MAX_CGROUP_BYTES);
    index.insert(inode, discovery.rows.len());
    discovery.rows.push(NamespaceRow {
        identity: Identity {
            inode,
            pid,
            start_time,
        },
        comm,
        cgroup: cgroup.to_owned(),
        cgroup_truncated,
        runtime: classified.runtime,
        container: cut(classified.id, 256).0.to_owned(),
        pod: pod_uid_chars(cut(classified.pod, 64).0).collect(),
        processes: 1,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn this_process_is_found_in_its_own_namespace() {
        let found = discover(Deadline::after(Duration::from_secs(10))).unwrap();
        let me = identity_of(std::process::id()).unwrap();
        assert_eq!(found.agent_inode, Some(me.inode));
        let row = found
            .rows
            .iter()
            .find(|row| row.identity.inode == me.inode)
            .expect("own namespace listed");
        assert!(row.identity.pid <= me.pid);
        assert!(row.processes >= 1);
        assert!(still_holds(&row.identity));
        assert!(found
            .rows
            .windows(2)
            .all(|w| w[0].identity.inode < w[1].identity.inode));
        let moved = Identity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!still_holds(&moved));
    }

    #[test]
    fn a_gone_pid_does_not_hold() {
        let gone = Identity {
            inode: 1,
            pid: u32::MAX,
            start_time: 0,
        };
        assert!(!still_holds(&gone));
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("abc", 5), ("abc", false));
        assert_eq!(cut("aé", 2), ("a", true));
    }
}
