//! When a walk of the socket table must give up: the agent's Timeout, measured from the
//! start of the request.

use std::time::{Duration, Instant};

/// When a scan must give up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    started: Instant,
    budget: Option<Duration>,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Deadline {
            started: Instant::now(),
            budget: Some(budget),
        }
    }

    pub fn none() -> Self {
        Deadline {
            started: Instant::now(),
            budget: None,
        }
    }

    /// Time left before the deadline; None without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.budget
            .map(|budget| budget.saturating_sub(self.started.elapsed()))
    }

    pub fn expired(&self) -> bool {
        self.check().is_err()
    }

    /// The agent's Timeout this deadline enforces, if any.
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Err(budget) once the deadline has passed.
    pub fn check(&self) -> Result<(), Duration> {
        match self.budget {
            Some(budget) if self.started.elapsed() > budget => Err(budget),
            _ => Ok(()),
        }
    }
}
