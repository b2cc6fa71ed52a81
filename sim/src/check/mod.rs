//! The checkers. Each returns findings that name the offending part of the history;
//! a run fails on any finding and prints its seed and the command that replays it.
//!
//! - [`linear`]: linearizability per key (includes stale reads during faults);
//! - [`lost`]: acknowledged writes the final state contradicts;
//! - corrupt reads are reported straight from the history (`Outcome::Corrupt`);
//! - convergence and placement look at the replicas' stores (see `crate::scenario`).

pub mod linear;
pub mod lost;

use crate::history::{Event, Outcome};

/// Reads that returned bytes other than what the named write stored.
pub fn corrupt_reads(history: &[Event]) -> Vec<String> {
    history
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Corrupt(why) => Some(format!(
                "{} at {} ms: {why}",
                e.key,
                e.completed.as_millis()
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
