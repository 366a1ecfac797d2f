//! linux_status: TCP connection-state counts for Zabbix, answered inside the agent.
//!
//! `zabbix_agentd` loads the built `liblinux_status.so` with `LoadModule` and calls
//! `linux_status[...]` in-process: no shell, no fork, no temp file. The module lists the
//! sockets with netlink sock_diag or from /proc/net/tcp{,6} and counts them by state, filter
//! and listening port.
//!
//! # Vocabulary
//!
//! - **key**: one `linux_status[<metric>,...]` item key; every key is one entry of the key
//!   registry (`request/registry.rs`), the one list of keys.
//! - **walk**: one pass over the kernel's TCP sockets, delivering each to a visitor; every
//!   count comes from one. A walk is a netlink sock_diag **dump** or a /proc/net/tcp{,6}
//!   **scan** (those two words only for the backend-specific walks).
//! - **source**: what a walk reads: netlink sock_diag or /proc (the `source/` layer holds
//!   both readers); `Source` names the one in use.
//! - **backend**: what the configuration chooses (`Backend`: auto, proc or netlink); `auto`
//!   resolves to a `Source` per process and request (the fallback rule, `answer/walk.rs`).
//! - **snapshot**: the state counts of one walk, reused by later requests within
//!   `SnapshotLifetime` (the freshness rule: `answer::snapshot::fresh`).
//! - **slot**: one place of the shared snapshot page, one per kind of walk (all states, or
//!   one state); nothing else is called a slot (the per-worker cache has *entries*; the
//!   kernel's `sl` column of /proc/net/tcp is its own word).
//! - **process** / **worker**: the state a front end owns and passes in (`answer::Process`:
//!   what all workers of one agent share or inherit; `answer::Worker`: one worker's buffers
//!   and caches). The core has no global state (tests/layers.rs).
//! - **front end**: the module (`ffi/`, loaded by zabbix_agentd) or the agent 2 plugin
//!   (src/bin over `agent2/`): they own the state, render errors and route events to their
//!   agent's log.
//!
//! The folders are the layers; each imports only the ones below it:
//!
//! ```text
//! ffi/       the zabbix_agentd ABI: bindings, the panic guard, the five exports, the module's
//!            state and start-up probe (the second front end, agent 2's plugin, is src/bin/
//!            over agent2/ + answer/)
//!   answer/    one request: dispatch, walks with backend choice and fallback, snapshots,
//!              listen table, JSON, typed errors and events
//!     request/   key registry, key grammar and filters      setup/  configuration, settings
//!     source/    proc/ (parser, scanner), netlink/ (sock_diag), netstat
//!       model/     states, counters, socket view, deadline, parameter text
//!       sys/       every OS call that needs unsafe
//! agent2/    agent 2's loadable-plugin protocol (frames, messages, session), generic over a
//!            handler: it imports only model (the quoting helper)
//! ```
//!
//! `unsafe` is denied everywhere but in `sys` and `ffi`. docs/architecture.md tells the
//! whole story, and how to add a key.

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
pub use answer::netns::NetnsSnapshot;
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
    pub use crate::model::socket::{Endpoint, Protocol, SocketView};
    pub use crate::source::proc::parse::{Family, ParseError, Problem, SocketLine};
    pub use crate::source::proc::scan::{ProcSources, ReaderError, Scanner, READ_BUFFER_BYTES};
}

/// What a front end that is its own process needs of the OS.
pub mod os {
    pub use crate::sys::peer::{effective_uid, peer_credentials, PeerCredentials};
    pub use crate::sys::signals::ignore_stop_signals;
}

/// The shared-snapshot protocol (for tests/snapshot_processes.rs, which forks real workers
/// over the same mapping the module makes).
pub mod snapshot {
    pub use crate::answer::snapshot::{fresh, Claim, Lookup, SharedSnapshot, Slot, Table};
    pub use crate::model::state::{StateMask, TABLE_LEN};
    pub use crate::sys::shared_memory::map_shared_zeroed;
}

/// The key registry: every key, and the files rendered from it (tests/generated.rs).
pub mod registry {
    pub use crate::request::registry::{find, plugin_description, render, KeyEntry, KEYS};
}

/// The one quoting helper for any value a message echoes.
pub use model::text::quote;

/// The cgroup-path classifier and the stat-line reader of namespace discovery (for their fuzz
/// target).
pub mod netns {
    pub use crate::model::netns::{cgroup_path, classify, stat_fields, Classified, Runtime};
}

/// The netlink sock_diag reply parser (for its fuzz target).
pub mod netlink {
    pub use crate::source::netlink::{parse_datagram, DiagSocket};
}
