//! The module's start-up, in the agent's main process before it forks the workers: which
//! source answers (a netlink probe under `auto` and `netlink`), and the one line init logs.
//! Module-only: the plugin probes through `answer::walk::probe_auto_fallback` when agent 2
//! configures it.

use crate::answer::walk::probe_netlink;
use crate::answer::Process;
use crate::setup::config::Backend;
use crate::setup::settings::{Settings, PROC_NET_DIR_VARIABLE};

/// The Zabbix module API version the module implements (the agent is told it by
/// `zbx_module_api_version`; `linux_status[info]` reports it).
pub const MODULE_API_VERSION: i32 = 2;

/// Checks which source answers, recording a refused netlink under `Backend=auto` in
/// `process` (the workers inherit it with the fork), and returns the line init logs: the
/// backend, the source in use (and why, after a fallback), the snapshot lifetime and the
/// configuration file.
pub fn probe_backend(settings: &Settings, process: &Process) -> String {
    let backend = settings.backend();
    let mut source = String::new();
    if backend != Backend::Proc {
        match probe_netlink() {
            Ok(()) => source.push_str("answering from netlink sock_diag"),
            Err(error) if backend == Backend::Auto && !error.is_refusal() => {
                source = format!(
                    "answering from netlink sock_diag (the start-up probe failed once: {error}; a request whose dump fails is answered from /proc)"
                );
            }
            Err(error) if backend == Backend::Auto => {
                process.mark_netlink_refused(error.to_string());
                source = format!(
                    "answering from /proc/net/tcp and /proc/net/tcp6: netlink sock_diag unavailable ({error})"
                );
            }
            Err(error) => {
                source = format!(
                    "netlink sock_diag unavailable ({error}): requests will fail until it works (Backend=auto would fall back to /proc)"
                );
            }
        }
    } else if let Some(dir) = &settings.tables.proc_net_dir {
        source = format!(
            "answering from {} (forced by {PROC_NET_DIR_VARIABLE}, a test setting)",
            dir.display(),
        );
    } else {
        source.push_str("answering from /proc/net/tcp and /proc/net/tcp6");
    }
    format!(
        "linux_status {}: backend {backend}, {source}; snapshot lifetime {} ms; configuration {}{}",
        env!("CARGO_PKG_VERSION"),
        settings.config.snapshot_lifetime.as_millis(),
        settings.config_path.path.display(),
        if settings.config_present {
            ""
        } else {
            " (absent: defaults)"
        }
    )
}
