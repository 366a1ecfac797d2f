//! linux_status: a Zabbix agent loadable module that counts TCP connection states.
//!
//! The agent loads the built `liblinux_status.so` with `LoadModule` and calls
//! `linux_status[...]` in-process: no shell, no fork, no temp file. The module lists the
//! sockets from /proc/net/tcp{,6} (streamed through one reused buffer) or, opt-in, from
//! netlink sock_diag, and counts them by state, filter and listening port.
//!
//! Layout: the safe core knows nothing of C: [`state`] (names, counters), [`key`] (the key
//! grammar), [`filter`] (address/port filters), [`parse`] and [`scan`] (/proc text),
//! [`netlink`] (sock_diag wire format), [`listen`] (per-port aggregation), [`netstat`]
//! (TcpExt counters), [`report`] (JSON), [`config`] and [`settings`] (configuration),
//! [`snapshot`] (the state counts shared by the agent's workers),
//! [`item`] (answers a request). `ffi` holds every `extern "C"` function and every `unsafe`
//! block, including the netlink socket calls.

// Every unsafe block says why it is sound; all of them are under src/ffi/.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod agent2;
pub mod config;
pub mod filter;
pub mod item;
pub mod key;
pub mod listen;
pub mod netlink;
pub mod netstat;
pub mod parse;
pub mod report;
pub mod scan;
pub mod settings;
pub mod snapshot;
pub mod state;

mod ffi;
