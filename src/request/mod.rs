//! The request grammar: the parameters of `linux_status[...]` turned into a typed request, or
//! a message for the admin saying what was wrong and what is accepted. The key grammar
//! ([`key`]) and the socket filters with `net.tcp.socket.count` semantics ([`filter`],
//! service names resolved through the system resolver).
//!
//! Imports: the model, and the OS-call layer for service names.

pub mod filter;
pub mod key;
