//! linux_status: a Zabbix agent loadable module that counts TCP connection states.
//!
//! The agent loads the built `liblinux_status.so` with `LoadModule` and calls
//! `linux_status[tcp_status,<state>]` in-process: no shell, no fork, no temp file. The
//! module streams /proc/net/tcp and /proc/net/tcp6 through one reused buffer and counts
//! sockets by state.
//!
//! Layout: the safe core ([`state`], [`key`], [`parse`], [`scan`], [`item`], [`settings`])
//! knows nothing of C; `ffi` holds every `extern "C"` function and every `unsafe` block.

pub mod item;
pub mod key;
pub mod parse;
pub mod scan;
pub mod settings;
pub mod state;

mod ffi;
