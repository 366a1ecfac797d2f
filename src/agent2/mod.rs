//! Zabbix agent 2's loadable-plugin protocol, written from what the agent sends and
//! expects (Zabbix's own code is GPL/AGPL and not used): agent 2 cannot load C modules; it
//! starts a plugin executable, listens on a UNIX socket the plugin dials, and exchanges
//! framed JSON messages with it.
//!
//! Layers, one way: [`frame`] (header and payload, bounded reads), [`message`] (the JSON
//! bodies), [`options`] (the agent's configuration tree as `Name=Value` lines),
//! [`session`] (one connection: dispatch, worker pool, deadlines, endings). The protocol
//! knows nothing about sockets counting: [`session::Handler`] is what the plugin executable
//! wires to the core.
//!
//! The start-up sequence, seen from Debian's agent 2 6.0.14 and 7.0.22: the agent runs the
//! executable as `<path> <socket> true` (registration: register request, validate
//! request, terminate) and then `<path> <socket> false` (serving: configure, then export
//! requests until terminate). When the plugin process may exit depends on the agent
//! version; the executable decides from [`session::Ending`].

pub mod frame;
pub mod message;
pub mod options;
pub mod session;
