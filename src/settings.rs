//! Per-process settings: where the socket tables are read from, the module configuration,
//! the backend in effect, and the agent's Timeout.
//!
//! All of it is fixed before the agent forks its workers (`zbx_module_init`,
//! `zbx_module_item_timeout`) and only read afterwards, so each worker sees what the main
//! process set.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;

use crate::config::{self, Backend, Config, ConfigError};
use crate::scan::ProcSources;
use crate::snapshot::SharedSnapshot;

/// Test-only: a directory holding `tcp`, `tcp6` and `netstat` to read instead of /proc/net.
pub const PROC_NET_DIR_VARIABLE: &str = "LINUX_STATUS_PROC_NET_DIR";

/// The agent's default `Timeout`, used until the agent tells us its own.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;

/// Everything fixed at init.
#[derive(Debug)]
pub struct Settings {
    pub sources: ProcSources,
    pub config: Config,
    pub config_path: PathBuf,
    /// The snapshot every worker shares (mapped before the fork), if the mapping worked.
    pub shared_snapshot: Option<&'static SharedSnapshot>,
}

static SETTINGS: OnceCell<Settings> = OnceCell::new();
/// The origin of the clock the workers share (fixed before the fork).
static CLOCK_ORIGIN: OnceCell<Instant> = OnceCell::new();
static TIMEOUT_SECONDS: AtomicU32 = AtomicU32::new(DEFAULT_TIMEOUT_SECONDS);
/// Set once netlink has failed in this process: later scans use /proc directly.
static NETLINK_REFUSED: AtomicBool = AtomicBool::new(false);

/// Reads the environment and the configuration file; the first successful call wins.
pub fn init(
    proc_net_dir: Option<OsString>,
    config_override: Option<OsString>,
    shared_snapshot: Option<&'static SharedSnapshot>,
) -> Result<&'static Settings, ConfigError> {
    if let Some(settings) = SETTINGS.get() {
        return Ok(settings);
    }
    CLOCK_ORIGIN.get_or_init(Instant::now);
    let sources = match proc_net_dir {
        Some(dir) if !dir.is_empty() => ProcSources::in_dir(&PathBuf::from(dir)),
        _ => ProcSources::system(),
    };
    let config_path = config::config_path(config_override);
    let config = config::load(&config_path)?;
    Ok(SETTINGS.get_or_init(|| Settings {
        sources,
        config,
        config_path,
        shared_snapshot,
    }))
}

/// Nanoseconds since the clock origin, the same clock in every worker of one agent.
pub fn shared_clock_nanos() -> u64 {
    let origin = CLOCK_ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The settings fixed at init, or the defaults if init never ran.
pub fn get() -> &'static Settings {
    SETTINGS.get_or_init(|| Settings {
        sources: ProcSources::system(),
        config: Config::default(),
        config_path: PathBuf::from(config::DEFAULT_CONFIG_PATH),
        shared_snapshot: None,
    })
}

/// The backend to use now: the configured one, unless netlink was refused earlier.
pub fn backend() -> Backend {
    match get().config.backend {
        Backend::Netlink if !netlink_refused() => Backend::Netlink,
        _ => Backend::Proc,
    }
}

/// True once netlink has failed in this process (or in the main process before the fork).
pub fn netlink_refused() -> bool {
    NETLINK_REFUSED.load(Ordering::Relaxed)
}

/// Records that netlink failed; returns true the first time (so the caller says so once).
pub fn mark_netlink_refused() -> bool {
    !NETLINK_REFUSED.swap(true, Ordering::Relaxed)
}

/// Stores the agent's Timeout; values below one second become one second.
pub fn set_timeout_seconds(seconds: i32) {
    let seconds = u32::try_from(seconds).unwrap_or(0).max(1);
    TIMEOUT_SECONDS.store(seconds, Ordering::Relaxed);
}

pub fn timeout() -> Duration {
    Duration::from_secs(u64::from(TIMEOUT_SECONDS.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_at_least_one_second() {
        set_timeout_seconds(-5);
        assert_eq!(timeout(), Duration::from_secs(1));
        set_timeout_seconds(0);
        assert_eq!(timeout(), Duration::from_secs(1));
        set_timeout_seconds(30);
        assert_eq!(timeout(), Duration::from_secs(30));
        set_timeout_seconds(DEFAULT_TIMEOUT_SECONDS as i32);
    }
}
