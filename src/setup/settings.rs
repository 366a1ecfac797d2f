//! Per-process settings: where the socket tables are read from, the module configuration,
//! the backend in effect (and why, after a fallback), and the agent's Timeout.
//!
//! All of it is fixed before the agent forks its workers (`zbx_module_init`,
//! `zbx_module_item_timeout`) and only read afterwards, so each worker starts with what the
//! main process set; a worker that later finds netlink refused records that for itself.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;

use crate::setup::config::{self, Backend, Config, ConfigError, ConfigPath};
use crate::source::proc::scan::ProcSources;

/// Test-only: a directory holding `tcp`, `tcp6` and `netstat` to read instead of /proc/net.
/// Setting it forces the /proc backend (netlink cannot be pointed at files).
pub const PROC_NET_DIR_VARIABLE: &str = "LINUX_STATUS_PROC_NET_DIR";

/// The agent's default `Timeout`, used until the agent tells us its own.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;

/// Everything fixed at init.
#[derive(Debug)]
pub struct Settings {
    pub sources: ProcSources,
    /// The directory named by `LINUX_STATUS_PROC_NET_DIR`, which forces the /proc backend.
    pub proc_net_dir: Option<PathBuf>,
    pub config: Config,
    pub config_path: ConfigPath,
    /// False when the default file is absent and the defaults apply.
    pub config_present: bool,
}

impl Settings {
    /// The backend requests use: the configured one, or proc when the sources are files.
    pub fn backend(&self) -> Backend {
        if self.proc_net_dir.is_some() {
            Backend::Proc
        } else {
            self.config.backend
        }
    }
}

static SETTINGS: OnceCell<Settings> = OnceCell::new();
/// The origin of the clock the workers share (fixed before the fork).
static CLOCK_ORIGIN: OnceCell<Instant> = OnceCell::new();
static TIMEOUT_SECONDS: AtomicU32 = AtomicU32::new(DEFAULT_TIMEOUT_SECONDS);
/// Why netlink is not used in this process, once it was refused (`Backend=auto` then reads
/// /proc for every later request).
static NETLINK_REFUSED: OnceCell<String> = OnceCell::new();

/// Reads the environment and the configuration file once: later calls return the settings
/// of the first successful one.
pub fn init(
    proc_net_dir: Option<OsString>,
    config_override: Option<OsString>,
) -> Result<&'static Settings, ConfigError> {
    SETTINGS.get_or_try_init(|| {
        CLOCK_ORIGIN.get_or_init(Instant::now);
        let proc_net_dir = proc_net_dir
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        let sources = match &proc_net_dir {
            Some(dir) => ProcSources::in_dir(dir),
            None => ProcSources::system(),
        };
        let config_path = config::config_path(config_override);
        let (config, config_present) = config::load(&config_path)?;
        Ok(Settings {
            sources,
            proc_net_dir,
            config,
            config_path,
            config_present,
        })
    })
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
        proc_net_dir: None,
        config: Config::default(),
        config_path: config::config_path(None),
        config_present: false,
    })
}

/// Why netlink was refused in this process (or in the main process before the fork).
pub fn netlink_refused() -> Option<&'static str> {
    NETLINK_REFUSED.get().map(String::as_str)
}

/// Records that netlink was refused; returns true the first time (so the caller says so
/// once).
pub fn mark_netlink_refused(reason: String) -> bool {
    NETLINK_REFUSED.set(reason).is_ok()
}

/// The source that answers requests in this process now.
pub fn source_in_use(backend: Backend) -> Backend {
    match backend {
        Backend::Auto if netlink_refused().is_some() => Backend::Proc,
        Backend::Auto => Backend::Netlink,
        forced => forced,
    }
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

    #[test]
    fn a_proc_directory_forces_the_proc_backend() {
        let mut settings = Settings {
            sources: ProcSources::system(),
            proc_net_dir: None,
            config: Config::default(),
            config_path: config::config_path(None),
            config_present: false,
        };
        assert_eq!(settings.backend(), Backend::Auto);
        settings.proc_net_dir = Some(PathBuf::from("/tmp/fixture"));
        settings.config.backend = Backend::Netlink;
        assert_eq!(settings.backend(), Backend::Proc);
    }
}
