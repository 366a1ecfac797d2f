//! Signal dispositions for a front end that is its own process (agent 2's plugin).

/// Ignores SIGINT and SIGTERM: agent 2 ends its plugins through the protocol, and a plugin
/// killed by a signal meant for the agent (a terminal's Ctrl-C, a process-group kill) would
/// die under its feet.
pub fn ignore_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: SIG_IGN installs no handler code; it only changes the disposition of a
        // signal, which no other part of the process relies on.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}
