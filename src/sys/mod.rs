//! The OS calls that need `unsafe`, each behind a safe API: the netlink sock_diag socket, the
//! shared anonymous mapping the agent's workers share, service-name resolution, and the
//! plugin process's signal dispositions and peer check. With the
//! FFI layer, the only place `unsafe` is allowed (`#![deny(unsafe_code)]` in lib.rs).
//!
//! Imports: std and libc only.

pub mod netlink_socket;
pub mod peer;
pub mod services;
pub mod shared_memory;
pub mod signals;
