//! Setup: the module's configuration file ([`config`]) and the per-process settings fixed
//! before the agent forks its workers ([`settings`]): sources, backend, Timeout, and what a
//! fallback left behind.
//!
//! Imports: the model and the sources (where the tables are read from).

pub mod config;
pub mod settings;
