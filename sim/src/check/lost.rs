//! Acknowledged writes that the final state contradicts, reported in plain terms
//! ("write 7 was acknowledged at 3.2 s and is gone"). The linearizability checker
//! would also reject these histories; this check names the lost write.
//!
//! A final read (by the verifying client, after the faults healed) that shows value
//! V loses every acknowledged write A that began after V's write had completed: A
//! must come after V in any order, and nothing can bring V back (write ids are
//! unique). A final read of "absent" loses an acknowledged put when every delete
//! that could undo it had completed before the put began.

use crate::history::{Event, Op, Outcome};
use std::collections::BTreeMap;

/// The verifying client's id in the history.
pub const VERIFIER: u32 = u32::MAX;

/// One lost write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub key: String,
    pub detail: String,
}

pub fn check(history: &[Event]) -> Vec<Loss> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    let mut losses = Vec::new();
    for (key, events) in by_key {
        let Some(last) = events
            .iter()
            .filter(|e| e.client == VERIFIER)
            .filter_map(|e| match e.outcome {
                Outcome::Read(v) => Some((e, v)),
                _ => None,
            })
            .next_back()
        else {
            continue;
        };
        let acked_puts = events
            .iter()
            .filter(|e| matches!(e.op, Op::Put { .. }) && e.outcome == Outcome::Done);
        match last.1 {
            Some(seen) => {
                let Some(writer) = events
                    .iter()
                    .find(|e| matches!(e.op, Op::Put { id, .. } if id == seen))
                else {
                    losses.push(Loss {
                        key: key.to_string(),
                        detail: format!(
                            "the final read shows write {seen}, which no client issued"
                        ),
                    });
                    continue;
                };
                if !writer.outcome.is_known() {
                    continue; // It may have taken effect at any time since it began.
                }
                for a in events.iter().filter(|e| {
                    e.client != VERIFIER
                        && e.outcome == Outcome::Done
                        && e.invoked > writer.completed
                }) {
                    losses.push(Loss {
                        key: key.to_string(),
                        detail: format!(
                            "{:?} acknowledged at {} ms (begun at {} ms) is lost: the final read shows write {seen}, completed earlier at {} ms",
                            a.op,
                            a.completed.as_millis(),
                            a.invoked.as_millis(),
                            writer.completed.as_millis()
                        ),
                    });
                }
            }
            None => {
                for put in acked_puts {
                    let undoable = events.iter().any(|d| {
                        matches!(d.op, Op::Delete { .. })
                            && matches!(d.outcome, Outcome::Done | Outcome::Unknown(_))
                            && (!d.outcome.is_known() || d.completed > put.invoked)
                    });
                    if !undoable {
                        losses.push(Loss {
                            key: key.to_string(),
                            detail: format!("{:?} acknowledged at {} ms is lost: the final read finds the key absent and no delete could have followed it", put.op, put.completed.as_millis()),
                        });
                    }
                }
            }
        }
    }
    losses
}
