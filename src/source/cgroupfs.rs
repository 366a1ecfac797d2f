//! The cgroup v2 file system: where it is mounted, and the path of a cgroup id.
//!
//! A cgroup v2 id (what sock_diag reports as `INET_DIAG_CGROUP_ID`) is the inode number of
//! the cgroup's directory in any cgroup2 mount (kernfs; the root's is 1). So an id becomes a
//! path by walking the mount's directories, and a path becomes an id by one `stat`. Paths
//! are relative to the mount point, written `/system.slice/ssh.service` with `/` for the
//! root, which is also how `ss --cgroup` prints them.
//!
//! The mount is the first `cgroup2` line of /proc/self/mountinfo (read on every request: a
//! few KiB). None means a cgroup v1 host (or cgroup v2 not mounted in the agent's mount
//! namespace). Inside a cgroup namespace the mount shows only the namespace's subtree: ids
//! outside it do not resolve and are reported as unresolved.
//!
//! The walk is bounded ([`WALK_MAX_DIRECTORIES`] directories, [`WALK_MAX_DEPTH`] levels, the
//! caller's deadline), reads directory entries only (their `d_ino` is the inode, no `stat` per
//! cgroup) and stops as soon as every wanted id is found.

use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::model::deadline::Deadline;
use crate::model::socket::CGROUP_PATH_MAX_BYTES as MAX_PATH_BYTES;

/// At most this many directories are read by one walk (a host with 10,000 containers has
/// some 30,000 cgroups).
pub const WALK_MAX_DIRECTORIES: usize = 100_000;
/// Deeper directories are not entered (systemd's trees are under 10 deep).
pub const WALK_MAX_DEPTH: usize = 32;

/// The mount point of the first cgroup2 file system in a mountinfo text, if any.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        before.split(' ').nth(4).map(unescape_mountinfo)
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes.get(at + 1..at + 4).filter(|digits| {
            bytes[at] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                at += 4;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// The most /proc/self/mountinfo may hold: about 150 bytes a mount, so 4 MiB leaves room
/// for container hosts with tens of thousands of mounts and bounds what one read costs.
pub const MAX_MOUNTINFO_BYTES: usize = 4 << 20;

/// This process's /proc/self/mountinfo, read whole and bounded.
pub fn read_mountinfo() -> Result<String, String> {
    let mut text = String::new();
    super::counters::read_bounded(
        Path::new("/proc/self/mountinfo"),
        MAX_MOUNTINFO_BYTES,
        &mut text,
    )?;
    Ok(text)
}

/// The cgroup2 mount of this process's mount namespace; `Err` if mountinfo is unreadable.
pub fn find_cgroup2_mount() -> Result<Option<PathBuf>, String> {
    Ok(cgroup2_mount(&read_mountinfo()?))
}

/// True if the hierarchy's root has at least one child cgroup.
pub fn has_child_cgroups(mount: &Path) -> Result<bool, String> {
    let entries = fs::read_dir(mount).map_err(|error| {
        format!(
            "Cannot read the cgroup2 mount {}: {error}.",
            mount.display()
        )
    })?;
    Ok(entries
        .flatten()
        .any(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir())))
}

/// The id of the cgroup at `path` (relative to `mount`, as the key parser accepts it: no `.` or `..` component), or
/// `None` if there is no such cgroup.
pub fn id_of_path(mount: &Path, path: &str) -> Result<Option<u64>, String> {
    let relative = path.trim_matches('/');
    let full = if relative.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(relative)
    };
    match fs::symlink_metadata(&full) {
        Ok(metadata) if metadata.is_dir() => Ok(Some(metadata.ino())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("Cannot stat {}: {error}.", full.display())),
    }
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Every wanted id was found.
    AllFound,
    /// The whole hierarchy was read.
    Complete,
    /// [`WALK_MAX_DIRECTORIES`] were read, or the deadline passed: ids not found may exist.
    Truncated,
}

/// Walks the hierarchy under `mount` depth first, calling `found(id, path)` for each cgroup
/// whose id `wanted` accepts; `remaining` is how many wanted ids are still to be found (the
/// walk stops at zero). Unreadable directories (removed meanwhile, no permission) are skipped.
pub fn walk<W, F>(
    mount: &Path,
    deadline: Deadline,
    mut remaining: usize,
    wanted: W,
    mut found: F,
) -> WalkEnd
where
    W: Fn(u64) -> bool,
    F: FnMut(u64, &str),
{
    if remaining == 0 {
        return WalkEnd::AllFound;
    }
    let Ok(root) = fs::symlink_metadata(mount) else {
        return WalkEnd::Complete;
    };
    if wanted(root.ino()) {
        found(root.ino(), "/");
        remaining -= 1;
        if remaining == 0 {
            return WalkEnd::AllFound;
        }
    }
    // (directory, its path relative to the mount, depth)
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(mount.to_path_buf(), String::new(), 0)];
    let mut read = 0usize;
    while let Some((directory, relative, depth)) = stack.pop() {
        if read == WALK_MAX_DIRECTORIES || deadline.expired() {
            return WalkEnd::Truncated;
        }
        read += 1;
        let Ok(entries) = fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let path = format!("{relative}/{}", name.to_string_lossy());
            if path.len() > MAX_PATH_BYTES {
                continue;
            }
            if wanted(entry.ino()) {
                found(entry.ino(), &path);
                remaining -= 1;
                if remaining == 0 {
                    return WalkEnd::AllFound;
                }
            }
            if depth + 1 < WALK_MAX_DEPTH {
                stack.push((entry.path(), path, depth + 1));
            }
        }
    }
    WalkEnd::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "31 24 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let v1_only = "35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount(v1_only), None);
        let escaped = "50 23 0:40 / /tmp/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(escaped), Some(PathBuf::from("/tmp/my cg")));
        assert_eq!(cgroup2_mount("garbage\n - cgroup2\n"), None);
    }

    #[test]
    fn a_walk_maps_directory_inodes_to_paths() {
        let root = std::env::temp_dir().join(format!("ls_cgroupfs_{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("a.slice/b.service")).unwrap();
        fs::create_dir_all(root.join("c")).unwrap();
        fs::write(root.join("c/cgroup.procs"), "").unwrap();
        let inode = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        let wanted = [inode("a.slice/b.service"), inode("c"), 1];
        let mut seen = Vec::new();
        let end = walk(
            &root,
            Deadline::none(),
            3,
            |id| wanted.contains(&id),
            |id, path| seen.push((id, path.to_owned())),
        );
        seen.sort();
        let mut expected = vec![
            (wanted[0], "/a.slice/b.service".to_owned()),
            (wanted[1], "/c".to_owned()),
        ];
        expected.sort();
        assert_eq!(end, WalkEnd::Complete);
        assert_eq!(seen, expected);
        assert_eq!(id_of_path(&root, "/c").unwrap(), Some(wanted[1]));
        assert_eq!(id_of_path(&root, "/c/cgroup.procs").unwrap(), None);
        assert_eq!(id_of_path(&root, "/nothing").unwrap(), None);
        let end = walk(&root, Deadline::none(), 1, |id| id == wanted[1], |_, _| {});
        assert_eq!(end, WalkEnd::AllFound);
        fs::remove_dir_all(&root).unwrap();
    }
}
