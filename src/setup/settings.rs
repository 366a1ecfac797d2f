//! Settings: where the socket tables are read from, and the module configuration, as the
//! front ends load them; and the agent's Timeout as a duration.
//!
//! Pure configuration: parsed and validated here, owned by the front end (the module fixes
//! its settings in `zbx_module_init`, before the agent forks its workers; the plugin builds
//! its own from agent 2's configuration). Nothing here is global or changes after loading.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::setup::config::{self, Backend, Config, ConfigError, ConfigPath};
use crate::source::proc::scan::ProcSources;

/// Test-only: a directory holding `tcp`, `tcp6` and `netstat` to read instead of /proc/net.
/// Setting it forces the /proc backend (netlink cannot be pointed at files).
pub const PROC_NET_DIR_VARIABLE: &str = "LINUX_STATUS_PROC_NET_DIR";

/// The agent's default `Timeout`, used until the agent tells us its own.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;

/// Where the socket tables are read from: /proc/net, or the directory named by
/// `LINUX_STATUS_PROC_NET_DIR` (which forces the /proc backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub sources: ProcSources,
    pub proc_net_dir: Option<PathBuf>,
}

impl Tables {
    /// The tables for the value of `LINUX_STATUS_PROC_NET_DIR` (unset or empty: /proc/net).
    pub fn from_dir(proc_net_dir: Option<OsString>) -> Tables {
        let proc_net_dir = proc_net_dir
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        let sources = match &proc_net_dir {
            Some(dir) => ProcSources::in_dir(dir),
            None => ProcSources::system(),
        };
        Tables {
            sources,
            proc_net_dir,
        }
    }

    /// The backend requests use: the configured one, or proc when the sources are files.
    pub fn backend(&self, configured: Backend) -> Backend {
        if self.proc_net_dir.is_some() {
            Backend::Proc
        } else {
            configured
        }
    }
}

/// The module's settings.
#[derive(Debug)]
pub struct Settings {
    pub tables: Tables,
    pub config: Config,
    pub config_path: ConfigPath,
    /// False when the default file is absent and the defaults apply.
    pub config_present: bool,
}

impl Settings {
    /// Reads the configuration file (`config_override`: the value of `LINUX_STATUS_CONFIG`).
    pub fn load(
        proc_net_dir: Option<OsString>,
        config_override: Option<OsString>,
    ) -> Result<Settings, ConfigError> {
        let config_path = config::config_path(config_override);
        let (config, config_present) = config::load(&config_path)?;
        Ok(Settings {
            tables: Tables::from_dir(proc_net_dir),
            config,
            config_path,
            config_present,
        })
    }

    /// What applies when init never ran: /proc/net, the default configuration.
    pub fn defaults() -> Settings {
        Settings {
            tables: Tables::from_dir(None),
            config: Config::default(),
            config_path: config::config_path(None),
            config_present: false,
        }
    }

    /// The backend requests use: the configured one, or proc when the sources are files.
    pub fn backend(&self) -> Backend {
        self.tables.backend(self.config.backend)
    }
}

/// The agent's Timeout (from `zbx_module_item_timeout`); values below one second become one
/// second.
pub fn agent_timeout(seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_at_least_one_second() {
        assert_eq!(agent_timeout(-5), Duration::from_secs(1));
        assert_eq!(agent_timeout(0), Duration::from_secs(1));
        assert_eq!(agent_timeout(30), Duration::from_secs(30));
    }

    #[test]
    fn a_proc_directory_forces_the_proc_backend() {
        let mut settings = Settings::defaults();
        assert_eq!(settings.backend(), Backend::Auto);
        settings.tables = Tables::from_dir(Some("/tmp/fixture".into()));
        settings.config.backend = Backend::Netlink;
        assert_eq!(settings.backend(), Backend::Proc);
        assert_eq!(Tables::from_dir(Some("".into())).proc_net_dir, None);
    }
}
