//! The module's own configuration file, read once at `zbx_module_init`.
//!
//! Format, like the agent's: `Name=Value` lines, `#` comments, blank lines ignored. The file
//! at the default path is optional (defaults apply without it); a file named by
//! `LINUX_STATUS_CONFIG` must exist. A file that cannot be read, an unknown name or a bad
//! value is an error naming the file (and line), and makes init fail, so the agent refuses to
//! start exactly as it does for a mistake in its own configuration.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

/// The documented default snapshot lifetime.
pub const DEFAULT_SNAPSHOT_LIFETIME: Duration = Duration::from_millis(1000);
/// Longer reuse would hide changes an admin polls for; a minute is already generous.
const MAX_SNAPSHOT_LIFETIME_MS: u64 = 60_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Auto,
            snapshot_lifetime: DEFAULT_SNAPSHOT_LIFETIME,
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
    match fs::read(path) {
        Ok(bytes) => parse(&bytes, path).map(|config| (config, true)),
        Err(error) if error.kind() == io::ErrorKind::NotFound && !location.named => {
            Ok((Config::default(), false))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(ConfigError(format!(
            "linux_status: cannot read {} (named by {CONFIG_PATH_VARIABLE}): {error}; name an existing file, or unset {CONFIG_PATH_VARIABLE} to use {DEFAULT_CONFIG_PATH} when present",
            path.display()
        ))),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(ConfigError(format!(
                "linux_status: cannot read {}: {error}; the user the agent runs as (usually zabbix) must be able to read it, e.g. chown root:zabbix and chmod 640",
                path.display()
            )))
        }
        Err(error) => Err(ConfigError(format!(
            "linux_status: cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Parses configuration text; `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let fail = |problem: String| {
            ConfigError(format!(
                "linux_status: {} line {}: {problem}",
                path.display(),
                index + 1
            ))
        };
        let line = std::str::from_utf8(line)
            .map_err(|_| fail("not valid UTF-8 text".to_owned()))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(fail(format!("expected Name=Value, got \"{line}\"")));
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
                            "Backend must be auto, proc or netlink, got \"{value}\""
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
                            "SnapshotLifetime must be milliseconds from 0 to {MAX_SNAPSHOT_LIFETIME_MS}, got \"{value}\""
                        ))
                    })?;
                config.snapshot_lifetime = Duration::from_millis(milliseconds);
            }
            _ => {
                return Err(fail(format!(
                    "unknown parameter \"{name}\" (known: Backend, SnapshotLifetime)"
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

    #[test]
    fn the_shipped_sample_is_the_defaults_commented_and_uncommented() {
        let sample = include_str!("../../conf/linux_status.conf.sample");
        assert_eq!(parse_text(sample), Ok(Config::default()));
        // Its commented settings, uncommented, are exactly the defaults too.
        let settings: String = sample
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.starts_with("Backend=") || line.starts_with("SnapshotLifetime="))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(settings.lines().count(), 2, "{settings}");
        assert_eq!(parse_text(&settings), Ok(Config::default()));
    }
}
