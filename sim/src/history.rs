//! What the workload did and saw: one [`Event`] per operation, with the simulated
//! times it was invoked and completed, from which the checkers work.
//!
//! Every write carries a unique [`WriteId`] (in the object's user metadata and as
//! the seed of its content), so a read names exactly which write it observed.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client id of the fence probe's reads (the verifier is `u32::MAX`).
pub const PROBE: u32 = u32::MAX - 1;

/// Identifies one write: `client << 32 | sequence`.
pub type WriteId = u64;

/// The object a key's value came from: a write, or nothing.
pub type Value = Option<WriteId>;

/// The condition a put or delete was sent with, in terms of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cond {
    Always,
    /// If-Match the ETag of this write.
    IfMatch(WriteId),
    /// If-None-Match `*`: only if the key is absent.
    IfAbsent,
}

/// One operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Op {
    Put {
        id: WriteId,
        size: u64,
        cond: Cond,
    },
    Delete {
        cond: Cond,
    },
    Get,
    /// A read from the tenant's secondary (paired-region) copy: eventually
    /// consistent, so kept out of the linearizability check and checked against
    /// the last sync time it came with (`crate::geo::check`).
    SecondaryGet {
        /// The copy's last sync time as the answer carried it (ms since the epoch).
        last_sync_ms: Option<u64>,
    },
}

impl Op {
    /// Whether the operation reads (a read never changes the state).
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Get | Op::SecondaryGet { .. })
    }
}

/// What an operation's response established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A put or delete took effect.
    Done,
    /// A conditional put or delete was refused: the condition did not hold.
    Refused,
    /// A delete found nothing to delete.
    Absent,
    /// A get returned this value.
    Read(Value),
    /// The operation definitely did nothing (rejected before acting).
    Failed(String),
    /// It may or may not have taken effect (timeout, lost connection, ...).
    Unknown(String),
    /// A read returned bytes that are not what the write it names stored.
    Corrupt(String),
}

impl Outcome {
    /// Whether the operation's effect (or its absence) is known.
    pub fn is_known(&self) -> bool {
        !matches!(self, Outcome::Unknown(_))
    }
}

/// One operation as the workload saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub client: u32,
    /// `tenant/container/key`.
    pub key: String,
    pub op: Op,
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome,
}

/// The history shared by every workload client.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<Mutex<Vec<Event>>>);

impl History {
    pub fn record(&self, e: Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The content of write `id` of `size` bytes: a deterministic byte stream, so any
/// read can be checked byte for byte against the write it claims to be.
pub fn content(id: WriteId, size: u64) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
