//! Raft plumbing shared by the directory and the replica groups.
//!
//! Owns: the openraft type configuration ([`TypeConfig`]), the seeded runtime
//! ([`runtime`]), the log store and state machine over the storage seam
//! ([`log_store`], [`state_machine`]), the key layout ([`keys`]) and the peer network
//! ([`network`]). openraft types do not leak past this module and
//! [`crate::group`], which owns running groups.
//!
//! **Architecture Invariant:** one `Raft` per group, every RPC carries its group id,
//! and all groups of a node share one engine and one channel per peer node.

// openraft's traits fix the (large) `StorageError` and `ConfigError` types we return.
#![allow(clippy::result_large_err)]

pub mod keys;
pub mod log_store;
pub mod network;
pub mod runtime;
pub mod segments;
pub mod snapshot;
pub mod state_machine;

use crate::directory::{DirectoryCommand, DirectoryResponse};
use crate::objects::{ObjectCommand, ObjectResponse};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A command replicated through a group's log.
// Commands live briefly (proposed, serialised, applied once); boxing the larger
// variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Directory(DirectoryCommand),
    Object(ObjectCommand),
    /// Several commands proposed together (see `crate::proposals`), applied in
    /// order and atomically; never nested.
    Batch(Vec<Command>),
}

/// What applying a [`Command`] produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    /// For blank and membership entries.
    None,
    Directory(DirectoryResponse),
    Object(ObjectResponse),
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
}

openraft::declare_raft_types!(
    /// openraft types for every Stratus group.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot::BlobCursor,
        AsyncRuntime = runtime::SeededRuntime,
);

/// A running Raft instance of one group.
pub type Raft = openraft::Raft<TypeConfig>;
/// openraft's storage error for our config.
pub type StorageError = openraft::StorageError<u64>;
/// A log id.
pub type LogId = openraft::LogId<u64>;

/// Raft entries per AppendEntries. An entry is at most one proposal batch
/// (`proposals::BATCH_BYTES_MAX`, about 1 MiB), so a full AppendEntries stays
/// under half the peer message limit.
pub const APPEND_ENTRIES_MAX: u64 = 32;

/// Timing for a group. Election timeouts are ten heartbeats and more than ten typical
/// appends on a loaded two-core machine.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        // openraft 0.9 gives every AppendEntries (heartbeats too) a timeout of one
        // heartbeat interval, and a timed-out follower is backed off for 500 ms, so
        // the interval must cover a slow append on a shared disk. A follower that
        // heard from a leader waits the leader lease (= election_max) plus a random
        // election timeout before it stands: 3.2-4 s here between losing a leader
        // and electing the next (the simulation measured 8 s with 2.5-4 s timeouts).
        Self {
            heartbeat: Duration::from_millis(300),
            election_min: Duration::from_millis(1200),
            election_max: Duration::from_millis(2000),
        }
    }
}

/// The openraft config every group uses.
pub fn raft_config(
    group: u64,
    timing: RaftTiming,
) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: format!("stratus-group-{group}"),
        heartbeat_interval: timing.heartbeat.as_millis() as u64,
        election_timeout_min: timing.election_min.as_millis() as u64,
        election_timeout_max: timing.election_max.as_millis() as u64,
        max_payload_entries: APPEND_ENTRIES_MAX,
        // Snapshots are triggered by the node from log volume (`GroupCounters`), not
        // by entry count: their cost is the state size, so they are spaced by it.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    }
    .validate()
}

/// When to snapshot a group (and so purge its log).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotTrigger {
    /// Log bytes since the last snapshot before another is considered.
    pub log_bytes_min: u64,
    /// Entries since the last snapshot before another is considered.
    pub entries_min: u64,
}

impl Default for SnapshotTrigger {
    fn default() -> Self {
        Self {
            log_bytes_min: 32 * 1024 * 1024,
            entries_min: 2000,
        }
    }
}

/// Log volume since the last snapshot of one group, shared by its log store (which
/// counts) and its state machine (which resets on every snapshot).
#[derive(Debug, Default)]
pub struct GroupCounters {
    log_bytes: AtomicU64,
    entries: AtomicU64,
    last_snapshot_bytes: AtomicU64,
}

impl GroupCounters {
    /// `entries` of `bytes` in total were appended to the log.
    pub fn logged(&self, entries: u64, bytes: u64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.log_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot of `bytes` was built.
    pub fn snapshot_built(&self, bytes: u64) {
        self.entries.store(0, Ordering::Relaxed);
        self.log_bytes.store(0, Ordering::Relaxed);
        self.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether the log has grown enough to pay for copying the state again: at
    /// least the trigger's minimums, and at least the last snapshot's size, so the
    /// copying costs at most one byte per logged byte.
    pub fn snapshot_due(&self, trigger: SnapshotTrigger) -> bool {
        let bytes = self.log_bytes.load(Ordering::Relaxed);
        let floor = trigger
            .log_bytes_min
            .max(self.last_snapshot_bytes.load(Ordering::Relaxed));
        bytes >= floor && self.entries.load(Ordering::Relaxed) >= trigger.entries_min
    }
}

/// Encodes a value for storage or the wire (postcard).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types to a Vec cannot fail.
    postcard::to_stdvec(value).expect("postcard serialisation of in-memory types is infallible")
}

/// Decodes a value written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests;
