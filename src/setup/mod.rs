//! Setup: the module's configuration file ([`config`]) and the settings a front end loads
//! ([`settings`]): where the tables are read, the backend, the agent's Timeout. Pure
//! configuration: parsed and validated, owned by the front ends, never global.
//!
//! Imports: the model and the sources (where the tables are read from).

pub mod config;
pub mod settings;
