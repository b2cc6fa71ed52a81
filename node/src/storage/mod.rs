//! The storage seams: an ordered, byte-keyed store with atomic batches and an explicit
//! durability point, and a store of named blobs for bulk object bytes.
//!
//! Owns: the [`Engine`] trait, its two implementations ([`sled_engine::SledEngine`] for
//! real runs, [`mem_engine::MemEngine`] with crash semantics for the simulation), the
//! [`BlobStore`] trait ([`blob`]) with [`fs_blob::FsBlobStore`] (real runs) and
//! [`mem_blob::MemBlobStore`] (simulation), the record framing every stored value uses
//! ([`frame`]), and the conformance suites every implementation must pass
//! ([`conformance`]).
//!
//! Must not: know about Raft, objects or tenants. Callers own their key layout and
//! blob names.
//!
//! **Durability contract:** [`Engine::apply`] makes a batch visible to readers at once
//! and atomically, but durable only after a later [`Engine::sync`] returns `Ok`. A
//! crash keeps a prefix of the applied batches that includes every batch applied
//! before the last successful `sync`; it never keeps part of a batch. Blobs follow the
//! weaker contract described in [`blob`]: unsynced bytes may be torn.

pub mod blob;
pub mod conformance;
pub mod frame;
pub mod fs_blob;
pub mod group_commit;
pub mod mem_blob;
pub mod mem_engine;
pub mod overlay;
pub mod sled_engine;
#[cfg(test)]
mod tests;

pub use blob::{BlobRef, BlobStore};

use futures::future::BoxFuture;
use std::ops::Bound;
use std::sync::Arc;

/// A storage failure. Every variant is fatal for the operation that hit it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The underlying store failed (disk full, I/O error, injected fault).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// A stored record failed its CRC or format check.
    #[error("stored record {key} is corrupt: {why}")]
    Corrupt { key: String, why: String },
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` (no error if absent).
    Remove { key: Vec<u8> },
    /// Remove every key in `[start, end)`.
    RemoveRange { start: Vec<u8>, end: Vec<u8> },
}

/// An atomic group of writes, applied in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        });
    }
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Remove { key: key.into() });
    }
    pub fn remove_range(&mut self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::RemoveRange {
            start: start.into(),
            end: end.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// An ordered key-value store with atomic batches and explicit sync.
///
/// Keys compare as byte strings (big-endian integers sort numerically). All methods
/// may be called concurrently from many tasks.
pub trait Engine: Send + Sync + 'static {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Up to `limit` entries with keys in `(start, end)`, in ascending key order.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StorageError>;

    /// The entry with the greatest key in `[start, end)`, if any.
    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Row>, StorageError>;

    /// Applies `batch` atomically. Visible at once; durable after the next `sync`.
    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError>;

    /// Makes every batch applied before this call durable. Concurrent callers may share
    /// one underlying flush (group commit).
    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Bytes the store occupies, for status and tests (an estimate is fine).
    fn size_bytes(&self) -> u64;
}

/// Key-value pairs in key order, as scans return them.
pub type Rows = Vec<Row>;
/// One key-value pair.
pub type Row = (Vec<u8>, Vec<u8>);

/// A shared engine handle, as the node passes it around.
pub type EngineRef = Arc<dyn Engine>;
