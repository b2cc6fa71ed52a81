//! The object store replicated by each replica group.
//!
//! Owns: object metadata and chunk records, the commands that change them
//! ([`ObjectCommand`]), their application ([`store::ObjectStore`]) and local reads
//! ([`reader::ObjectReader`]).
//!
//! Key layout inside a group's application space:
//!
//! | key | value |
//! |---|---|
//! | `o` tenant `\0` container `\0` key | [`ObjectMeta`] |
//! | `c` version (u128 BE) index (u32 BE) | chunk bytes, framed (CRC-32) |
//! | `u` upload (u128 BE) | [`UploadRecord`]: an upload in progress |
//!
//! **Architecture Invariant:** an object becomes visible only through `Commit` or
//! `PutSmall`, which write its metadata in the same batch that removes the upload
//! record; chunks of an upload that never commits are invisible and are removed by
//! `Abort` or `ReapUploads`.

pub mod reader;
pub mod store;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `tenant/container/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectId {
    pub tenant: String,
    pub container: String,
    pub key: String,
}

/// Everything known about one stored object version, except its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// CRC-32 of the whole content.
    pub crc32: u32,
    /// Random id of this version; also names its chunks.
    pub version: u128,
    /// Number of stored chunks (all `STORAGE_CHUNK_BYTES` but the last).
    pub chunks: u32,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub created_ms: u64,
    pub modified_ms: u64,
}

impl ObjectMeta {
    /// The ETag clients use for conditional requests.
    pub fn etag(&self) -> String {
        etag_of(self.version)
    }
}

/// ETag of a version id.
pub fn etag_of(version: u128) -> String {
    format!("\"{version:032x}\"")
}

/// Optimistic-concurrency conditions of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// Proceed only if the current ETag equals this (`*`: if any object exists).
    pub if_match: Option<String>,
    /// Proceed only if the current ETag differs from this (`*`: if none exists).
    pub if_none_match: Option<String>,
}

impl Conditions {
    /// Why the conditions fail against `current`, if they do.
    pub fn check(&self, current: Option<&ObjectMeta>) -> Option<String> {
        let etag = current.map(ObjectMeta::etag);
        if let Some(want) = &self.if_match {
            let ok = match (&etag, want.as_str()) {
                (Some(_), "*") => true,
                (Some(e), w) => normalize_etag(e) == normalize_etag(w),
                (None, _) => false,
            };
            if !ok {
                return Some(match etag {
                    Some(e) => format!("If-Match {want} does not match the current ETag {e}"),
                    None => format!("If-Match {want} given but the object does not exist"),
                });
            }
        }
        if let Some(avoid) = &self.if_none_match {
            let conflict = match (&etag, avoid.as_str()) {
                (Some(_), "*") => true,
                (Some(e), a) => normalize_etag(e) == normalize_etag(a),
                (None, _) => false,
            };
            if conflict {
                return Some(format!(
                    "If-None-Match {avoid} matched the current object {}",
                    etag.unwrap_or_default()
                ));
            }
        }
        None
    }

    /// Whether any condition is set (such writes are not blindly retried).
    pub fn is_conditional(&self) -> bool {
        self.if_match.is_some() || self.if_none_match.is_some()
    }
}

/// ETags compare without their quotes, so `abc` and `"abc"` are the same tag.
fn normalize_etag(e: &str) -> &str {
    e.trim().trim_matches('"')
}

/// An upload in progress: chunks appended, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub object: ObjectId,
    pub started_ms: u64,
    /// When the last chunk was appended: uploads idle too long are reaped.
    pub touched_ms: u64,
    /// Chunks appended so far.
    pub chunks: u32,
}

/// A change to a group's object store, replicated through its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ObjectCommand {
    /// Stores chunk `index` of `upload`, creating the upload record if needed.
    AppendChunk {
        upload: u128,
        object: ObjectId,
        /// The leader's clock when it proposed the chunk.
        now_ms: u64,
        index: u32,
        data: Bytes,
    },
    /// Makes `upload` the current version of its object, if `conditions` hold.
    Commit {
        upload: u128,
        object: ObjectId,
        meta: ObjectMeta,
        conditions: Conditions,
    },
    /// Stores a whole object of at most one chunk in one entry.
    PutSmall {
        object: ObjectId,
        meta: ObjectMeta,
        data: Bytes,
        conditions: Conditions,
    },
    /// Drops an unfinished upload and its chunks.
    Abort { upload: u128 },
    /// Removes an object.
    Delete {
        object: ObjectId,
        if_match: Option<String>,
    },
    /// Drops uploads idle since before the cutoff (their client or leader is gone).
    ReapUploads { idle_before_ms: u64 },
}

/// The outcome of an [`ObjectCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectResponse {
    Stored(ObjectMeta),
    Appended,
    Aborted,
    Deleted {
        version: u128,
    },
    Reaped {
        uploads: u32,
    },
    NotFound,
    PreconditionFailed(String),
    /// A commit or chunk for an upload that no longer exists (aborted or reaped).
    UploadMissing,
    /// A commit whose chunk count does not match what was appended.
    Incomplete {
        expected: u32,
        appended: u32,
    },
}

pub(crate) mod layout {
    //! Keys of the object store, relative to the group's application prefix.
    use crate::raft::keys;

    pub fn object(group: u64, tenant: &str, container: &str, key: &str) -> Vec<u8> {
        let mut k = container_prefix(group, tenant, container);
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub fn container_prefix(group: u64, tenant: &str, container: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'o');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(container.as_bytes());
        k.push(0);
        k
    }

    pub fn chunk(group: u64, version: u128, index: u32) -> Vec<u8> {
        let mut k = version_prefix(group, version);
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    pub fn version_prefix(group: u64, version: u128) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'c');
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    pub fn upload(group: u64, upload: u128) -> Vec<u8> {
        let mut k = uploads_prefix(group);
        k.extend_from_slice(&upload.to_be_bytes());
        k
    }

    pub fn uploads_prefix(group: u64) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'u');
        k
    }
}

#[cfg(test)]
mod tests;
