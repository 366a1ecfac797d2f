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
//!   answer/    one request: backend choice and fallback, snapshots, listen table, JSON
//!     request/   key grammar and filters            setup/  configuration, settings
//!     source/    proc/ (parser, scanner), netlink/ (sock_diag), netstat
//!       model/     states, counters, socket view, deadline, parameter text
//!       sys/       every OS call that needs unsafe
//! ```
//!
//! `unsafe` is denied everywhere but in `sys` and `ffi`.

#![deny(unsafe_code)]
// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod answer;
pub mod model;
pub mod request;
pub mod setup;
pub mod source;
#[allow(unsafe_code)]
pub mod sys;

#[allow(unsafe_code)]
mod ffi;
