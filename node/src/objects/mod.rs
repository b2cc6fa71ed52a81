//! The object store replicated by each replica group.
//!
//! Owns: object metadata, inline object bytes and the chunk CRC lists of chunked
//! versions (all replicated through the group's log), the commands that change them
//! ([`ObjectCommand`]), their application ([`store::ObjectStore`]), local reads
//! ([`reader::ObjectReader`]) and the stored chunks ([`chunks::ChunkStore`]).
//!
//! Two data paths (ARCHITECTURE.md, "Data path"):
//! - objects of at most `INLINE_BYTES_MAX` bytes travel inside a `PutInline` entry;
//! - larger objects are cut into `STORAGE_CHUNK_BYTES` chunks that the leader writes
//!   to every member's blob store *outside* the log; once a majority holds them
//!   durably, one small `Commit` entry (metadata and per-chunk CRCs) makes the
//!   version visible. Members that missed chunks repair them from the others.
//!
//! Key layout inside a group's application space (`a`) and local space (`r`):
//!
//! | key | value |
//! |---|---|
//! | `a` `n` tenant `\0` container | [`ContainerRecord`] |
//! | `a` `o` tenant `\0` container `\0` key | [`ObjectMeta`] (with the wrapped data key) |
//! | `a` `i` version (u128 BE) | [`inline_store::InlineRecord`]: length and CRC of the inline bytes (ciphertext + tag), and where this replica keeps them (its own) |
//! | `a` `k` version | [`ChunkList`]: CRC-32 of each chunk |
//! | `r` `p` version | a chunked version whose local chunks need repair |
//! | `a` `u` tenant `\0` first seq (u64 BE) | a page of consecutive audit records (`Vec<AuditRecord>`) |
//! | `a` `U` tenant | [`AuditHead`]: the chain's last seq and hash |
//!
//! Containers live here too, with the tenant's objects rather than in the directory:
//! "the container exists", "the container is empty" and "this object commits" are
//! then ordered by one log, so a container deleted while an upload is open can never
//! receive it.
//!
//! **Architecture Invariant:** an object becomes visible only through `Commit` or
//! `PutInline` into an existing container, and a `Commit` is proposed only after a
//! majority of the group holds every chunk durably; nothing else makes a version
//! reachable.

pub mod chunks;
pub mod geo;
pub mod geo_apply;
pub mod inline_store;
pub mod reader;
pub mod store;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stratus_core::crypto::envelope::Envelope;
use stratus_core::placement::GroupId;

/// `tenant/container/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectId {
    pub tenant: String,
    pub container: String,
    pub key: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.container, self.key)
    }
}

/// A container of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub tenant: String,
    pub name: String,
    pub created_ms: u64,
}

/// Where a version's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// In the metadata engine, next to the metadata (`INLINE_BYTES_MAX` or less).
    Inline,
    /// In the blob store, in `chunks` chunks of `STORAGE_CHUNK_BYTES` (the last one shorter).
    Chunked { chunks: u32 },
}

/// Everything known about one stored object version, except its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Content bytes (plaintext); the stored chunks are each `TAG_BYTES` longer.
    pub size: u64,
    /// CRC-32 of the whole content (plaintext; the client checks it on get).
    pub crc32: u32,
    /// Random id of this version; also names its bytes.
    pub version: u128,
    pub layout: Layout,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// The version's wrapped data key: every version is encrypted (inline bytes
    /// and chunks alike hold only ciphertext).
    pub encryption: Envelope,
}

impl ObjectMeta {
    /// The ETag clients use for conditional requests.
    pub fn etag(&self) -> String {
        etag_of(self.version)
    }

    /// Number of stored chunks (0 for inline objects).
    pub fn chunks(&self) -> u32 {
        match self.layout {
            Layout::Inline => 0,
            Layout::Chunked { chunks } => chunks,
        }
    }
}

/// The committed CRC-32 of every chunk of a chunked version, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkList {
    pub crcs: Vec<u32>,
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

    /// Whether any condition is set.
    pub fn is_conditional(&self) -> bool {
        self.if_match.is_some() || self.if_none_match.is_some()
    }
}

/// ETags compare without their quotes, so `abc` and `"abc"` are the same tag.
fn normalize_etag(e: &str) -> &str {
    e.trim().trim_matches('"')
}

/// A change to a group's object store, replicated through its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ObjectCommand {
    /// Creates an empty container.
    CreateContainer {
        tenant: String,
        name: String,
        now_ms: u64,
    },
    /// Removes a container, only if it holds no object.
    DeleteContainer { tenant: String, name: String },
    /// Stores a small object whose bytes travel in the entry.
    PutInline {
        object: ObjectId,
        meta: ObjectMeta,
        data: Bytes,
        conditions: Conditions,
    },
    /// Makes a chunked version visible; its chunks are already on a majority.
    Commit {
        object: ObjectId,
        meta: ObjectMeta,
        chunk_crcs: Vec<u32>,
        conditions: Conditions,
    },
    /// Removes an object.
    Delete {
        object: ObjectId,
        if_match: Option<String>,
    },
    /// Replaces the wrapped data key of `version` of `object` (a KEK rotation's
    /// background re-wrap); a no-op if the object moved on to another version.
    Rewrap {
        object: ObjectId,
        version: u128,
        encryption: Envelope,
    },
    /// Destroys up to `limit` of `tenant`'s objects (metadata, inline bytes and
    /// chunk lists; the sweep removes the chunk blobs), and its containers once no
    /// object is left: what follows a purge of the tenant's keys, so objects under
    /// customer-provided keys are unrecoverable too. Repeated until `Shredded`
    /// reports nothing left.
    ShredTenant { tenant: String, limit: u32 },
    /// Changes `tenant`'s role in this group (see [`geo`]).
    SetRole {
        tenant: String,
        change: geo::RoleChange,
    },
    /// Entries shipped by the primary `from`, starting at `first_seq`; every write
    /// it acknowledged before `as_of_ms` is in them or earlier.
    GeoApply {
        tenant: String,
        epoch: u64,
        from: GroupId,
        first_seq: u64,
        entries: Vec<geo::GeoEntry>,
        as_of_ms: u64,
    },
    /// Part of the first full copy of a tenant (absolute operations, no sequence).
    GeoSeed {
        tenant: String,
        epoch: u64,
        from: GroupId,
        ops: Vec<geo::GeoOp>,
    },
    /// The first full copy is complete: outbox entries continue at `next_seq`.
    GeoSeedDone {
        tenant: String,
        epoch: u64,
        from: GroupId,
        next_seq: u64,
        as_of_ms: u64,
    },
    /// On the primary: the secondary applied everything up to `seq` (and holds a
    /// full copy when `seeded`); older outbox entries go.
    GeoAcked {
        tenant: String,
        epoch: u64,
        seq: u64,
        last_sync_ms: u64,
        seeded: bool,
    },
    /// Installs versions recovered from a former primary (a reprotect), as they are.
    Recover { ops: Vec<geo::GeoOp> },
    /// Appends audit events to the tenant's hash chain: batch `batch` of node
    /// `node` in its run `incarnation` (a batch a node sends again after a lost
    /// answer is applied once).
    Audit {
        tenant: String,
        node: u64,
        incarnation: u64,
        batch: u64,
        events: Vec<stratus_core::audit::AuditEvent>,
    },
}

impl ObjectCommand {
    /// The tenant of a write a client asked for (acknowledged to it, so fenced by
    /// the tenant's write lease); `None` for the node's own commands.
    pub fn client_write_tenant(&self) -> Option<&str> {
        match self {
            ObjectCommand::CreateContainer { tenant, .. }
            | ObjectCommand::DeleteContainer { tenant, .. } => Some(tenant),
            ObjectCommand::PutInline { object, .. }
            | ObjectCommand::Commit { object, .. }
            | ObjectCommand::Delete { object, .. } => Some(&object.tenant),
            _ => None,
        }
    }
}

/// The outcome of an [`ObjectCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectResponse {
    Stored(ObjectMeta),
    Deleted {
        version: u128,
    },
    NotFound,
    PreconditionFailed(String),
    Container(ContainerRecord),
    ContainerDeleted,
    ContainerExists,
    ContainerNotFound,
    /// The container still holds objects (at least this one).
    ContainerNotEmpty {
        example: String,
    },
    /// A command that does not describe a well-formed version (a bug in the proposer).
    Malformed(String),
    /// What a `ShredTenant` removed, and whether anything of the tenant is left.
    Shredded {
        objects: u64,
        containers: u64,
        done: bool,
    },
    /// This group does not take writes for the tenant: it is its `role` here.
    NotPrimary {
        role: String,
        epoch: u64,
    },
    /// The tenant's role after a `SetRole`.
    Role(Box<geo::TenantRole>),
    /// A secondary's answer to shipped entries or seed operations.
    Geo(geo::GeoReply),
    /// The audit chain's last record after an `Audit` command.
    Audited {
        seq: u64,
    },
}

/// The end of a tenant's audit chain, and the last batch applied per node (so a
/// batch sent again is not appended twice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: [u8; 32],
    /// Node → (incarnation, last batch applied).
    pub batches: std::collections::BTreeMap<u64, (u64, u64)>,
}

/// Records stored under one audit page key, at most. A tenant's chain is kept in
/// pages of consecutive records (one page per applied batch of events, split at
/// this size), not one key per record: every audited request, reads included,
/// cost each replica an engine write of its own, and that showed as most of a
/// follower's work under a 4 KiB GET load.
pub const AUDIT_PAGE_RECORDS_MAX: usize = 128;

/// What a tenant stores in a group: bytes and count of its current versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUsage {
    pub bytes: u64,
    pub objects: u64,
}

pub(crate) mod layout {
    //! Keys of the object store.
    use crate::raft::keys;

    pub fn object(group: u64, tenant: &str, container: &str, key: &str) -> Vec<u8> {
        let mut k = objects_prefix(group, tenant, container);
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub fn container(group: u64, tenant: &str, name: &str) -> Vec<u8> {
        let mut k = containers_prefix(group, tenant);
        k.extend_from_slice(name.as_bytes());
        k
    }

    pub fn containers_prefix(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'n');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k
    }

    pub fn tenant_objects_prefix(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'o');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k
    }

    pub fn objects_prefix(group: u64, tenant: &str, container: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'o');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(container.as_bytes());
        k.push(0);
        k
    }

    fn versioned(mut prefix: Vec<u8>, space: u8, version: u128) -> Vec<u8> {
        prefix.push(space);
        prefix.extend_from_slice(&version.to_be_bytes());
        prefix
    }

    pub fn inline(group: u64, version: u128) -> Vec<u8> {
        versioned(keys::app(group), b'i', version)
    }

    /// The first key of every inline record of a group.
    pub fn inline_prefix(group: u64) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'i');
        k
    }

    pub fn chunk_list(group: u64, version: u128) -> Vec<u8> {
        versioned(keys::app(group), b'k', version)
    }

    /// A tenant's role in the group.
    pub fn role(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = roles_prefix(group);
        k.extend_from_slice(tenant.as_bytes());
        k
    }

    pub fn roles_prefix(group: u64) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'r');
        k
    }

    /// Outbox entry `seq` of a geo-redundant tenant.
    pub fn outbox(group: u64, tenant: &str, seq: u64) -> Vec<u8> {
        let mut k = outbox_prefix(group, tenant);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    pub fn outbox_prefix(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'x');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k
    }

    /// The page of a tenant's audit chain whose first record is `first_seq`
    /// ([`super::AUDIT_PAGE_RECORDS_MAX`] consecutive records at most).
    pub fn audit_page(group: u64, tenant: &str, first_seq: u64) -> Vec<u8> {
        let mut k = audit_prefix(group, tenant);
        k.extend_from_slice(&first_seq.to_be_bytes());
        k
    }

    pub fn audit_prefix(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'u');
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k
    }

    /// A tenant's usage ([`super::TenantUsage`]).
    pub fn usage(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'q');
        k.extend_from_slice(tenant.as_bytes());
        k
    }

    /// The head of a tenant's audit chain ([`super::AuditHead`]).
    pub fn audit_head(group: u64, tenant: &str) -> Vec<u8> {
        let mut k = keys::app(group);
        k.push(b'U');
        k.extend_from_slice(tenant.as_bytes());
        k
    }

    /// A chunked version an outbox entry still needs (the sweep keeps its blob).
    pub fn geo_hold(group: u64, version: u128) -> Vec<u8> {
        versioned(keys::app(group), b'h', version)
    }

    pub fn repair(group: u64, version: u128) -> Vec<u8> {
        versioned(keys::local(group), b'p', version)
    }

    pub fn repairs_prefix(group: u64) -> Vec<u8> {
        let mut k = keys::local(group);
        k.push(b'p');
        k
    }
}

#[cfg(test)]
mod tests;
