//! Per-process settings: where the socket tables are read from and the agent's Timeout.
//!
//! Both are fixed before the agent forks its workers (`zbx_module_init`,
//! `zbx_module_item_timeout`) and only read afterwards, so each worker sees the values the
//! main process set.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::scan::ProcSources;

/// Test-only: a directory holding `tcp` and `tcp6` to read instead of /proc/net.
pub const PROC_NET_DIR_VARIABLE: &str = "LINUX_STATUS_PROC_NET_DIR";

/// The agent's default `Timeout`, used until the agent tells us its own.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3;

static SOURCES: OnceCell<ProcSources> = OnceCell::new();
static TIMEOUT_SECONDS: AtomicU32 = AtomicU32::new(DEFAULT_TIMEOUT_SECONDS);

/// Fixes the sources from the environment; later calls keep the first answer.
pub fn init_sources(proc_net_dir: Option<OsString>) -> &'static ProcSources {
    SOURCES.get_or_init(|| match proc_net_dir {
        Some(dir) if !dir.is_empty() => ProcSources::in_dir(&PathBuf::from(dir)),
        _ => ProcSources::system(),
    })
}

/// The sources fixed at init, or /proc/net if init never ran.
pub fn sources() -> &'static ProcSources {
    SOURCES.get_or_init(ProcSources::system)
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
