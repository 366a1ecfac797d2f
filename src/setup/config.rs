//! The module's own configuration file, read once at `zbx_module_init`.
//!
//! Format, like the agent's: `Name=Value` lines, `#` comments, blank lines ignored. The file
//! at the default path is optional (defaults apply without it); a file named by
//! `LINUX_STATUS_CONFIG` must exist. A file that cannot be read, an unknown name or a bad
//! value is an error naming the file (and line), and makes init fail, so the agent refuses to
//! start exactly as it does for a mistake in its own configuration.
//!
//! Whatever sits at the path is opened without blocking and must be a regular file of at most
//! `MAX_CONFIG_BYTES`: a FIFO would hang the agent's start-up (the open waits for a writer), a
//! device such as /dev/zero would grow memory until the OOM killer, a directory or socket is
//! a mistake; each is refused with a message naming what it is. Every value a message echoes
//! goes through `model::text::quote` (bounded, escaped).

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::text::{quote, quote_path};

/// The largest configuration accepted, in bytes (a file, or the settings agent 2 sends without
/// their blank lines): the two settings take a few dozen bytes, the commented sample 2 KiB.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// Where the configuration is read from unless `CONFIG_PATH_VARIABLE` names another file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/zabbix/linux_status.conf";
pub const CONFIG_PATH_VARIABLE: &str = "LINUX_STATUS_CONFIG";

/// How sockets are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// netlink sock_diag, falling back to /proc when netlink is refused or a dump fails (the
    /// default).
    Auto,
    /// Parse /proc/net/tcp and /proc/net/tcp6 only.
    Proc,
    /// netlink sock_diag only: a refusal or a failed dump is an error.
    Netlink,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Proc => "proc",
            Backend::Netlink => "netlink",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    /// How long a worker reuses a scan for later requests with the same filters; zero
    /// disables reuse.
    pub snapshot_lifetime: Duration,
    /// How old a network namespace's per-state table may be before `netns_all` reads it
    /// again (each read walks the host's whole established hash); zero: every request.
    pub netns_table_interval: Duration,
}

/// The documented default snapshot lifetime.
pub const DEFAULT_SNAPSHOT_LIFETIME: Duration = Duration::from_millis(1000);
/// Longer reuse would hide changes an admin polls for; a minute is already generous.
const MAX_SNAPSHOT_LIFETIME_MS: u64 = 60_000;
/// The documented default table interval: a namespace's table is read at most once a minute,
/// the usual interval of a Zabbix item.
pub const DEFAULT_NETNS_TABLE_INTERVAL: Duration = Duration::from_secs(60);
/// An hour: older tables would be history, not state.
const MAX_NETNS_TABLE_INTERVAL_S: u64 = 3600;

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Auto,
            snapshot_lifetime: DEFAULT_SNAPSHOT_LIFETIME,
            netns_table_interval: DEFAULT_NETNS_TABLE_INTERVAL,
        }
    }
}

/// A configuration error, for the agent's log.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which file to read, and whether it was named explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPath {
    pub path: PathBuf,
    /// Named by `LINUX_STATUS_CONFIG`: then it must exist.
    pub named: bool,
}

/// The path to read: the environment override, else the default.
pub fn config_path(override_path: Option<std::ffi::OsString>) -> ConfigPath {
    match override_path {
        Some(path) if !path.is_empty() => ConfigPath {
            path: PathBuf::from(path),
            named: true,
        },
        _ => ConfigPath {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            named: false,
        },
    }
}

/// Reads the configuration; `Ok((config, false))` when the default file is absent (defaults).
pub fn load(location: &ConfigPath) -> Result<(Config, bool), ConfigError> {
    let path = &location.path;
    match read_bounded(path) {
        Ok(bytes) => parse(&bytes, path).map(|config| (config, true)),
        Err(Unreadable::Io(error)) if error.kind() == io::ErrorKind::NotFound && !location.named => {
            Ok((Config::default(), false))
        }
        Err(Unreadable::Io(error)) if error.kind() == io::ErrorKind::NotFound => Err(ConfigError(format!(
            "linux_status: cannot read {} (named by {CONFIG_PATH_VARIABLE}): {error}; name an existing file, or unset {CONFIG_PATH_VARIABLE} to use {DEFAULT_CONFIG_PATH} when present",
            quote_path(path)
        ))),
        Err(Unreadable::Io(error)) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(ConfigError(format!(
                "linux_status: cannot read {}: {error}; the user the agent runs as (usually zabbix) must be able to read it, e.g. chown root:zabbix and chmod 640",
                quote_path(path)
            )))
        }
        Err(Unreadable::Io(error)) => Err(ConfigError(format!(
            "linux_status: cannot read {}: {error}",
            quote_path(path)
        ))),
        Err(Unreadable::NotAFile(what)) => Err(ConfigError(format!(
            "linux_status: cannot read {}: it is {what}, not a regular file; name a configuration file",
            quote_path(path)
        ))),
        Err(Unreadable::TooLarge) => Err(ConfigError(format!(
            "linux_status: cannot read {}: larger than {MAX_CONFIG_BYTES} bytes, the limit for this file",
            quote_path(path)
        ))),
    }
}

/// What the file is when it is not a regular file.
fn not_a_file(kind: fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Why a configuration file was not read.
enum Unreadable {
    Io(io::Error),
    /// What is at the path instead of a regular file ("a FIFO", "a directory", ...).
    NotAFile(&'static str),
    TooLarge,
}

/// The file's bytes, at most `MAX_CONFIG_BYTES`: opened without blocking (a FIFO's open would
/// wait for a writer) and without becoming the controlling terminal, checked to be a regular
/// file on the open descriptor (no race with a rename), then read up to one byte past the
/// limit so a file that grows meanwhile is still refused, never read without bound.
fn read_bounded(path: &Path) -> Result<Vec<u8>, Unreadable> {
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // A socket cannot be opened at all (ENXIO): name what is there rather than the errno.
        Err(error) => match fs::metadata(path)
            .ok()
            .and_then(|m| not_a_file(m.file_type()))
        {
            Some(what) => return Err(Unreadable::NotAFile(what)),
            None => return Err(Unreadable::Io(error)),
        },
    };
    let kind = file.metadata().map_err(Unreadable::Io)?.file_type();
    if let Some(what) = not_a_file(kind) {
        return Err(Unreadable::NotAFile(what));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(Unreadable::TooLarge);
    }
    Ok(bytes)
}

/// Parses configuration text; `path` only names the file in errors.
/// Text beyond `MAX_CONFIG_BYTES` (blank lines not counted: agent 2's settings arrive on the
/// lines of its own file) is refused.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut text_bytes = 0usize;
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let fail = |problem: String| {
            ConfigError(format!(
                "linux_status: {} line {}: {problem}",
                quote_path(path),
                index + 1
            ))
        };
        text_bytes += line.len();
        if text_bytes > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "the settings are larger than {MAX_CONFIG_BYTES} bytes, the limit"
            )));
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| fail(format!("not valid UTF-8 text: \"{}\"", quote(line))))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(fail(format!(
                "expected Name=Value, got \"{}\"",
                quote(line.as_bytes())
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        match name {
            "Backend" => {
                config.backend = match value {
                    "auto" => Backend::Auto,
                    "proc" => Backend::Proc,
                    "netlink" => Backend::Netlink,
                    _ => {
                        return Err(fail(format!(
                            "Backend must be auto, proc or netlink, got \"{}\"",
                            quote(value.as_bytes())
                        )))
                    }
                }
            }
            "SnapshotLifetime" => {
                let milliseconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms <= MAX_SNAPSHOT_LIFETIME_MS)
                    .ok_or_else(|| {
                        fail(format!(
                            "SnapshotLifetime must be milliseconds from 0 to {MAX_SNAPSHOT_LIFETIME_MS}, got \"{}\"",
                            quote(value.as_bytes())
                        ))
                    })?;
                config.snapshot_lifetime = Duration::from_millis(milliseconds);
            }
            "NetnsTableInterval" => {
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s <= MAX_NETNS_TABLE_INTERVAL_S)
                    .ok_or_else(|| {
                        fail(format!(
                            "NetnsTableInterval must be seconds from 0 to {MAX_NETNS_TABLE_INTERVAL_S}, got \"{}\"",
                            quote(value.as_bytes())
                        ))
                    })?;
                config.netns_table_interval = Duration::from_secs(seconds);
            }
            _ => {
                return Err(fail(format!(
                "unknown parameter \"{}\" (known: Backend, SnapshotLifetime, NetnsTableInterval)",
                quote(name.as_bytes())
            )))
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(text.as_bytes(), Path::new("/etc/zabbix/linux_status.conf"))
    }

    #[test]
    fn empty_and_comment_only_files_give_defaults() {
        assert_eq!(parse_text(""), Ok(Config::default()));
        assert_eq!(parse_text("# nothing\n\n   \n"), Ok(Config::default()));
        assert_eq!(Config::default().backend, Backend::Auto);
        assert_eq!(Config::default().snapshot_lifetime, Duration::from_secs(1));
    }

    #[test]
    fn settings_are_read() {
        let config = parse_text("Backend=netlink\n  SnapshotLifetime = 0  \n").unwrap();
        assert_eq!(config.backend, Backend::Netlink);
        assert_eq!(config.snapshot_lifetime, Duration::ZERO);
        assert_eq!(config.netns_table_interval, Duration::from_secs(60));
        let config = parse_text("NetnsTableInterval=0").unwrap();
        assert_eq!(config.netns_table_interval, Duration::ZERO);
        let config = parse_text("NetnsTableInterval=3600").unwrap();
        assert_eq!(config.netns_table_interval, Duration::from_secs(3600));
        for bad in [
            "NetnsTableInterval=3601",
            "NetnsTableInterval=-1",
            "NetnsTableInterval=1s",
        ] {
            let error = parse_text(bad).unwrap_err().0;
            assert!(
                error.contains("NetnsTableInterval must be seconds from 0 to 3600"),
                "{error}"
            );
        }
        assert_eq!(parse_text("Backend=proc").unwrap().backend, Backend::Proc);
        assert_eq!(parse_text("Backend=auto").unwrap().backend, Backend::Auto);
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let error = parse_text("# ok\nBackend=ebpf\n").unwrap_err().0;
        assert_eq!(
            error,
            "linux_status: /etc/zabbix/linux_status.conf line 2: Backend must be auto, proc or netlink, got \"ebpf\""
        );
        let error = parse_text("SnapshotLifetime=-1").unwrap_err().0;
        assert!(
            error.contains("line 1: SnapshotLifetime must be"),
            "{error}"
        );
        let error = parse_text("SnapshotLifetime=60001").unwrap_err().0;
        assert!(error.contains("from 0 to 60000"), "{error}");
        let error = parse_text("\n\nTimeout=3").unwrap_err().0;
        assert!(
            error.contains("line 3: unknown parameter \"Timeout\""),
            "{error}"
        );
        let error = parse_text("Backend").unwrap_err().0;
        assert!(error.contains("expected Name=Value"), "{error}");
        let error = parse(b"Backend=\xff", Path::new("x")).unwrap_err().0;
        assert!(error.contains("x line 1: not valid UTF-8"), "{error}");
    }

    #[test]
    fn a_missing_default_file_gives_defaults_a_missing_named_file_is_an_error() {
        let missing = PathBuf::from("/nonexistent/linux_status.conf");
        let default = ConfigPath {
            path: missing.clone(),
            named: false,
        };
        assert_eq!(load(&default), Ok((Config::default(), false)));
        let named = ConfigPath {
            path: missing,
            named: true,
        };
        let error = load(&named).unwrap_err().0;
        assert!(
            error.starts_with(
                "linux_status: cannot read /nonexistent/linux_status.conf (named by LINUX_STATUS_CONFIG): No such file or directory"
            ),
            "{error}"
        );
        assert_eq!(config_path(None).path, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert!(!config_path(Some("".into())).named);
        let chosen = config_path(Some("/tmp/x.conf".into()));
        assert_eq!(
            (chosen.path, chosen.named),
            (PathBuf::from("/tmp/x.conf"), true)
        );
    }

    #[test]
    fn an_unreadable_file_names_the_agent_user() {
        // A directory cannot be read as a file: the error names it and the OS error.
        let directory = ConfigPath {
            path: std::env::temp_dir(),
            named: true,
        };
        let error = load(&directory).unwrap_err().0;
        assert!(error.contains("cannot read"), "{error}");
    }

    fn named(path: impl Into<PathBuf>) -> ConfigPath {
        ConfigPath {
            path: path.into(),
            named: true,
        }
    }

    #[test]
    fn only_a_regular_file_is_read_and_nothing_blocks() {
        let dir = std::env::temp_dir().join(format!("ls-config-kinds-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // A FIFO with no writer: a blocking open would wait forever.
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, what) in [
            (fifo.clone(), "a FIFO (named pipe)"),
            (PathBuf::from("/dev/zero"), "a character device"),
            (PathBuf::from("/dev/urandom"), "a character device"),
            (dir.clone(), "a directory"),
            (socket.clone(), "a socket"),
        ] {
            let error = load(&named(&path)).unwrap_err().0;
            assert_eq!(
                error,
                format!(
                    "linux_status: cannot read {}: it is {what}, not a regular file; name a configuration file",
                    path.display()
                )
            );
        }
        // A symbolic link is followed and its target checked.
        let link = dir.join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(load(&named(&link))
            .unwrap_err()
            .0
            .contains("a character device"));
        // At the limit it is read; one byte more is refused, naming the limit.
        let big = dir.join("big.conf");
        let mut text = "#".repeat(MAX_CONFIG_BYTES - 1);
        text.push('\n');
        fs::write(&big, &text).unwrap();
        assert_eq!(load(&named(&big)), Ok((Config::default(), true)));
        text.push('\n');
        fs::write(&big, &text).unwrap();
        let error = load(&named(&big)).unwrap_err().0;
        assert!(
            error.ends_with("larger than 16384 bytes, the limit for this file"),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn echoed_values_are_bounded_and_escaped() {
        let error = parse(b"Backend=proc\0", Path::new("f")).unwrap_err().0;
        assert_eq!(
            error,
            r#"linux_status: f line 1: Backend must be auto, proc or netlink, got "proc\x00""#
        );
        let error = parse("\u{feff}Backend=proc".as_bytes(), Path::new("f"))
            .unwrap_err()
            .0;
        assert!(
            error.contains(r#"unknown parameter "\xef\xbb\xbfBackend""#),
            "{error}"
        );
        let error = parse(b"Backend=\x1b[2J", Path::new("f")).unwrap_err().0;
        assert!(error.ends_with(r#"got "\x1b[2J""#), "{error}");
        let long = format!("Backend={}", "A".repeat(10_000));
        let error = parse(long.as_bytes(), Path::new("f")).unwrap_err().0;
        assert!(error.len() < 200, "{error}");
        assert!(error.ends_with("...(10000 bytes)\""), "{error}");
        let error = parse(b"Backend=\xff\xfe", Path::new("f")).unwrap_err().0;
        assert!(
            error.ends_with(r#"not valid UTF-8 text: "Backend=\xff\xfe""#),
            "{error}"
        );
        // Settings text past the limit, blank lines not counted (agent 2 pads to line numbers).
        let padded = format!("{}Backend=proc\n", "\n".repeat(100_000));
        assert_eq!(
            parse(padded.as_bytes(), Path::new("f")).unwrap().backend,
            Backend::Proc
        );
        let huge = format!("#{}\nBackend=proc", "x".repeat(MAX_CONFIG_BYTES));
        let error = parse(huge.as_bytes(), Path::new("f")).unwrap_err().0;
        assert_eq!(
            error,
            "linux_status: f line 1: the settings are larger than 16384 bytes, the limit"
        );
        // A path is quoted too.
        let error = parse(b"x", Path::new("/tmp/a\nb")).unwrap_err().0;
        assert!(
            error.starts_with(r"linux_status: /tmp/a\x0ab line 1:"),
            "{error}"
        );
    }

    #[test]
    fn the_shipped_sample_is_the_defaults_commented_and_uncommented() {
        let sample = include_str!("../../conf/linux_status.conf.sample");
        assert_eq!(parse_text(sample), Ok(Config::default()));
        // Its commented settings, uncommented, are exactly the defaults too.
        let settings: String = sample
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                ["Backend=", "SnapshotLifetime=", "NetnsTableInterval="]
                    .iter()
                    .any(|name| line.starts_with(name))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(settings.lines().count(), 3, "{settings}");
        assert_eq!(parse_text(&settings), Ok(Config::default()));
    }
}
