//! What can go wrong answering a request ([`AnswerError`]), and what the core reports on the
//! side ([`Event`], through the front end's [`EventSink`]).
//!
//! The core never formats an error for a particular agent and never writes a log itself:
//! each front end renders the error into its agent's message (the module with the deadline
//! it was given, which is the agent's Timeout; the plugin with the agent's own Timeout, which
//! is longer than the budget it hands the core) and sends events where its agent logs them
//! (the module: stderr, which the agent writes to its log; the plugin: agent 2's Log
//! message). The texts are the ones the suites pin.

use std::fmt;
use std::time::Duration;

use crate::request::key::KeyError;
use crate::source::netlink::NetlinkError;

/// Why a request got no value.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// The key was refused: the message says what was wrong and what is accepted.
    Key(KeyError),
    /// A walk ran past its deadline. `stopped` says where ("Netlink dump stopped", "Scan of
    /// /proc/net/tcp stopped after 9 lines"); `budget` is the deadline it was given.
    TimedOut { stopped: String, budget: Duration },
    /// Netlink failed under `Backend=netlink`, which allows no fallback.
    NetlinkForced { refused: bool, error: String },
    /// Reading a table or counter failed (the message names the file).
    Source(String),
}

impl AnswerError {
    /// The message, naming `agent_timeout_seconds` in a time-out (the agent's own figure).
    pub fn message_with_timeout(&self, agent_timeout_seconds: u64) -> String {
        match self {
            AnswerError::TimedOut { stopped, .. } => {
                format!("{stopped}: it ran past the agent Timeout of {agent_timeout_seconds} s.")
            }
            other => other.to_string(),
        }
    }
}

/// The message as the module shows it: a time-out names the deadline's budget, which the
/// module sets to the agent's Timeout.
impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Key(error) => f.write_str(error.message()),
            AnswerError::TimedOut { stopped, budget } => write!(
                f,
                "{stopped}: it ran past the agent Timeout of {} s.",
                budget.as_secs()
            ),
            AnswerError::NetlinkForced { refused, error } => write!(
                f,
                "{}: {error}. Backend=netlink allows no fallback; Backend=auto would answer from /proc/net (tcp, udp) instead.",
                if *refused {
                    "Netlink sock_diag is unavailable"
                } else {
                    "Netlink sock_diag dump failed"
                }
            ),
            AnswerError::Source(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for AnswerError {}

impl From<KeyError> for AnswerError {
    fn from(error: KeyError) -> Self {
        AnswerError::Key(error)
    }
}

/// Something an admin should read in the agent's log.
#[derive(Debug)]
pub enum Event<'a> {
    /// Netlink was refused under `Backend=auto`: this process reads /proc from now on (said
    /// once per process).
    NetlinkRefused(&'a NetlinkError),
    /// One netlink dump failed under `Backend=auto`: that request was answered from /proc
    /// (said once per process).
    DumpFailed(&'a NetlinkError),
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::NetlinkRefused(error) => write!(
                f,
                "linux_status: netlink sock_diag unavailable ({error}); using /proc/net/tcp{{,6}} and /proc/net/udp{{,6}} instead"
            ),
            Event::DumpFailed(error) => write!(
                f,
                "linux_status: a netlink sock_diag dump failed ({error}); that request was answered from /proc/net/tcp{{,6}} or /proc/net/udp{{,6}} (said once per process)"
            ),
        }
    }
}

/// Where the core's events go: the front end's agent log.
pub trait EventSink {
    fn report(&self, event: &Event<'_>);
}

/// Drops every event (tests, the fuzz targets, the benchmark).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn report(&self, _: &Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_out_names_the_timeout_it_is_rendered_with() {
        let error = AnswerError::TimedOut {
            stopped: "Scan of /proc/net/tcp stopped after 9 lines".into(),
            budget: Duration::from_millis(2750),
        };
        assert_eq!(
            error.to_string(),
            "Scan of /proc/net/tcp stopped after 9 lines: it ran past the agent Timeout of 2 s."
        );
        assert_eq!(
            error.message_with_timeout(3),
            "Scan of /proc/net/tcp stopped after 9 lines: it ran past the agent Timeout of 3 s."
        );
        let other = AnswerError::Source("other".into());
        assert_eq!(other.message_with_timeout(3), "other");
    }
}
