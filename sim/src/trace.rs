//! The run's event trace: faults, heals and checker verdicts with their simulated
//! time. Its hash is how determinism is checked (same seed, same trace).

use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    pub at_ms: u64,
    pub what: String,
}

/// A shared, append-only trace.
#[derive(Debug, Clone, Default)]
pub struct Trace(Rc<RefCell<Vec<TraceEvent>>>);

impl Trace {
    pub fn push(&self, at: Duration, what: impl Into<String>) {
        self.0.borrow_mut().push(TraceEvent {
            at_ms: at.as_millis() as u64,
            what: what.into(),
        });
    }

    pub fn events(&self) -> Vec<TraceEvent> {
        self.0.borrow().clone()
    }

    /// FNV-1a over every event, for determinism checks.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for e in self.0.borrow().iter() {
            for b in e.at_ms.to_le_bytes().iter().chain(e.what.as_bytes()) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}
