//! linux_status: TCP connection-state counts for Zabbix, answered inside the agent.
//!
//! `zabbix_agentd` loads the built `liblinux_status.so` with `LoadModule` and calls
//! `linux_status[...]` in-process: no shell, no fork, no temp file. The module lists the
//! sockets with netlink sock_diag or from /proc/net/tcp{,6} and counts them by state, filter
//! and listening port.
//!
//! The folders are the layers; each imports only the ones below it:
//!
//! ```text
//! ffi/       the zabbix_agentd ABI: bindings, the panic guard, the five exports
//!            (the second front end, agent 2's plugin, is src/bin/ over agent2/ + answer/)
//!   answer/    one request: backend choice and fallback, snapshots, listen table, JSON
//!     request/   key grammar and filters            setup/  configuration, settings
//!     source/    proc/ (parser, scanner), netlink/ (sock_diag), netstat
//!       model/     states, counters, socket view, deadline, parameter text
//!       sys/       every OS call that needs unsafe
//! agent2/    agent 2's loadable-plugin protocol (frames, messages, session), generic over a
//!            handler: it imports no other layer
//! ```
//!
//! `unsafe` is denied everywhere but in `sys` and `ffi`.

#![deny(unsafe_code)]
// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod agent2;
mod answer;
mod model;
mod request;
mod setup;
mod source;
#[allow(unsafe_code)]
mod sys;

#[allow(unsafe_code)]
mod ffi;

// The public API: what the front ends, the tests, the fuzz targets and the benchmark use.
// Everything else is private to its layer.

/// Answering a request: [`answer()`] with a [`Context`] (how), the front end's [`Process`]
/// and a [`Worker`] (the state it owns).
pub use answer::error::{AnswerError, Event, EventSink, NoEvents};
pub use answer::snapshot::SharedSnapshot;
pub use answer::walk::probe_auto_fallback;
pub use answer::{answer, Context, ItemValue, Process, Source, Worker};
pub use model::deadline::Deadline;
pub use model::state::{StateCounts, TcpState};
pub use request::filter::{FilterParams, PortParam};
pub use request::key::{parse_params, ItemRequest, KeyError};
pub use setup::config::{parse as parse_config, Backend, Config, ConfigError};

/// What the module does at start-up (for the benchmark, which mimics an agent worker).
pub mod module {
    pub use crate::ffi::startup::{probe_backend, MODULE_API_VERSION};
}

/// The settings a front end loads.
pub mod settings {
    pub use crate::setup::settings::{
        agent_timeout, Settings, Tables, DEFAULT_TIMEOUT_SECONDS, PROC_NET_DIR_VARIABLE,
    };
}

/// The /proc/net/tcp{,6} parser and scanner (for the fuzz targets and the parser tests).
pub mod proc {
    pub use crate::model::socket::{Endpoint, SocketView};
    pub use crate::source::proc::parse::{Family, ParseError, Problem, SocketLine};
    pub use crate::source::proc::scan::{ProcSources, ReaderError, Scanner, READ_BUFFER_BYTES};
}

/// What a front end that is its own process needs of the OS.
pub mod os {
    pub use crate::sys::peer::{effective_uid, peer_credentials, PeerCredentials};
    pub use crate::sys::signals::ignore_stop_signals;
}

/// The shared-snapshot protocol (for tests/snapshot_processes.rs, which forks real workers).
pub mod snapshot {
    pub use crate::answer::snapshot::{fresh, Claim, Lookup, SharedSnapshot, Slot, Table};
    pub use crate::model::state::{StateMask, STATE_SLOTS};
}

/// The key registry: every key, and the files rendered from it (tests/generated.rs).
pub mod registry {
    pub use crate::request::registry::{find, plugin_description, render, KeyEntry, KEYS};
}

/// The one quoting helper for any value a message echoes.
pub use model::text::quote;

/// The netlink sock_diag reply parser (for its fuzz target).
pub mod netlink {
    pub use crate::source::netlink::parse_datagram;
}
