//! Geo-replication inside a replica group: each tenant's role in the group, the
//! outbox a primary fills as it applies writes, and the operations a secondary
//! applies from its primary.
//!
//! Roles are part of the group's replicated state, so fencing is decided at apply
//! time on every replica alike: a group whose role for a tenant is `Secondary` or
//! `Fenced` refuses every client write for it ([`ObjectResponse::NotPrimary`]).
//! The directory decides roles; `crate::geo::reconcile` turns its decisions into
//! `SetRole` entries here.
//!
//! **Invariant:** a primary appends one outbox entry per applied write (and per
//! audit batch) of a geo-redundant tenant, numbered without gaps (`next_seq`), and removes entries
//! only once its secondary applied them (`GeoAcked`). A secondary applies shipped
//! entries strictly in sequence order, each at most once.
//!
//! [`ObjectResponse::NotPrimary`]: super::ObjectResponse::NotPrimary

use super::{ContainerRecord, ObjectId, ObjectMeta};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stratus_core::audit::AuditRecord;
use stratus_core::crypto::envelope::Envelope;
use stratus_core::placement::GroupId;

/// Outbox entries a `GeoApply` carries at most.
pub const SHIP_OPS_MAX: usize = 256;
/// Inline bytes a `GeoApply` carries at most (entries are cut before exceeding it).
pub const SHIP_BYTES_MAX: usize = 2 * 1024 * 1024;

/// A tenant's role in this group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantRole {
    /// Takes client writes; with `ship_to`, records them in the outbox for the
    /// secondary group.
    Primary {
        epoch: u64,
        ship_to: Option<GroupId>,
        /// Sequence number of the next outbox entry.
        next_seq: u64,
        /// Every entry up to this one was applied by the secondary.
        acked_seq: u64,
        /// The secondary's last sync time as last acknowledged (ms since the epoch).
        last_sync_ms: u64,
        /// The secondary holds a full copy (its seed finished).
        seeded: bool,
    },
    /// Applies only what `from` ships.
    Secondary {
        epoch: u64,
        from: GroupId,
        applied_seq: u64,
        /// Every write the primary acknowledged before this time is applied here.
        as_of_ms: u64,
        seeded: bool,
    },
    /// Was primary until a failover moved the tenant away: refuses writes and keeps
    /// its data and unshipped outbox entries until the tenant is re-protected.
    Fenced {
        epoch: u64,
        next_seq: u64,
        acked_seq: u64,
    },
}

impl TenantRole {
    /// The role of a tenant with no role record: a primary that ships nothing.
    pub fn implicit() -> TenantRole {
        TenantRole::Primary {
            epoch: 0,
            ship_to: None,
            next_seq: 1,
            acked_seq: 0,
            last_sync_ms: 0,
            seeded: true,
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            TenantRole::Primary { epoch, .. }
            | TenantRole::Secondary { epoch, .. }
            | TenantRole::Fenced { epoch, .. } => *epoch,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            TenantRole::Primary { .. } => "primary",
            TenantRole::Secondary { .. } => "secondary",
            TenantRole::Fenced { .. } => "fenced",
        }
    }

    /// Where this primary ships, if it is one that does.
    pub fn ship_to(&self) -> Option<GroupId> {
        match self {
            TenantRole::Primary { ship_to, .. } => *ship_to,
            _ => None,
        }
    }
}

/// A change of a tenant's role, decided from the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleChange {
    /// Become (or stay) primary at `epoch`, shipping to `ship_to`. A secondary
    /// taking over continues the sequence after what it applied; a new shipping
    /// target starts unseeded, its outbox from the current sequence.
    Primary {
        epoch: u64,
        ship_to: Option<GroupId>,
    },
    /// Become secondary of `from` at `epoch`. `reset`: the group holds no data of
    /// the tenant (the reconciler cleared it) and waits for a seed; otherwise (a
    /// planned failover swapped the roles after shipping drained) the data stays
    /// and the sequence continues.
    Secondary {
        epoch: u64,
        from: GroupId,
        reset: bool,
    },
    /// Stop taking writes: a failover moved the tenant to another group.
    Fence { epoch: u64 },
    /// Forget the tenant (its data was cleared): the group is no longer its
    /// primary or secondary.
    Drop,
}

/// One write, as shipped: the absolute state it produced, so a secondary reaches
/// the primary's state by applying entries in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeoOp {
    /// `object` now is version `meta`: inline with `inline` bytes, or chunked with
    /// these chunk CRCs (the chunks travel ahead of the entry).
    Put {
        object: ObjectId,
        meta: ObjectMeta,
        inline: Option<Bytes>,
        chunk_crcs: Option<Vec<u32>>,
    },
    Delete {
        object: ObjectId,
    },
    CreateContainer {
        record: ContainerRecord,
    },
    DeleteContainer {
        tenant: String,
        name: String,
    },
    /// The wrapped data key of `version` changed (re-wrap after a rotation).
    Rewrap {
        object: ObjectId,
        version: u128,
        encryption: Envelope,
    },
    /// A purge's shredding step.
    Shred {
        tenant: String,
        limit: u32,
    },
    /// Records of the tenant's audit chain, exactly as the primary chained them
    /// (seq, previous hash, hash, event), in order; `batches` are the
    /// (node → incarnation, batch) they came from, so a batch a node sends again
    /// after a failover is not appended twice. The secondary stores the records
    /// verbatim and moves its audit head to the last, so a promoted secondary
    /// continues the same chain.
    Audit {
        tenant: String,
        records: Vec<AuditRecord>,
        batches: BTreeMap<u64, (u64, u64)>,
    },
}

impl GeoOp {
    /// Bytes the entry carries inline (for batching).
    pub fn weight(&self) -> usize {
        match self {
            GeoOp::Put { inline, .. } => 512 + inline.as_ref().map_or(0, Bytes::len),
            GeoOp::Audit { records, .. } => {
                256 + records
                    .iter()
                    .map(|r| {
                        256 + r.event.principal.len()
                            + r.event.operation.len()
                            + r.event.resource.len()
                            + r.event.result.len()
                    })
                    .sum::<usize>()
            }
            _ => 256,
        }
    }

    /// The chunked version whose blob the entry needs, with its CRCs.
    pub fn chunks(&self) -> Option<(u128, &[u32])> {
        match self {
            GeoOp::Put {
                meta,
                chunk_crcs: Some(crcs),
                ..
            } => Some((meta.version, crcs)),
            _ => None,
        }
    }
}

/// An outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoEntry {
    pub seq: u64,
    pub op: GeoOp,
}

/// What a secondary answers to shipped entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeoReply {
    /// Everything up to `applied_seq` is applied here.
    Applied { applied_seq: u64 },
    /// The secondary does not take entries from this sender at this epoch (yet).
    Refused(String),
}
