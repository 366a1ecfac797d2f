//! The request grammar: the parameters of `linux_status[...]` turned into a typed request, or
//! a message for the admin saying what was wrong and what is accepted. The key registry
//! ([`registry`], every key in one table), the key grammar ([`key`]) and the socket filters
//! with `net.tcp.socket.count` semantics ([`filter`]).
//!
//! Imports: the model, and the OS-call layer for service names.

pub mod filter;
pub mod key;
pub mod registry;
