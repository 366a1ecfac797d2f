//! The model: what every other layer speaks of. TCP states and their names, per-state
//! counters and state sets, the view of one socket, the deadline of a request, and the text
//! rules for parameters.
//!
//! Imports: std only. Everything else may import it.

pub mod deadline;
pub mod netns;
pub mod socket;
pub mod state;
pub mod text;
