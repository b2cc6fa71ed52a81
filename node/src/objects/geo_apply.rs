//! How the object store applies geo-replication: role checks on client writes, the
//! outbox of a primary, and shipped, seeded and recovered operations (see
//! [`super::geo`] for the model and its invariants).

use super::geo::{GeoEntry, GeoOp, GeoReply, RoleChange, TenantRole};
use super::reader::ObjectReader;
use super::store::ObjectStore;
use super::{layout, ChunkList, ContainerRecord, ObjectCommand, ObjectId, ObjectResponse};
use crate::raft::encode;
use crate::storage::overlay::Overlay;
use crate::storage::{frame, EngineRef, StorageError, WriteBatch};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use stratus_core::crypto::envelope::Envelope;
use stratus_core::placement::GroupId;

/// Each tenant's role in one group, shared between the group's state machine
/// (which changes it on apply) and the node's services (which read it).
///
/// A change is *staged* while the apply call that makes it runs and *published*
/// only once the call's batch reached the engine: services read roles and then
/// the engine, so a role published earlier could claim more than the stored
/// state shows (the simulation caught a read from the secondary whose last sync
/// time covered a write its objects did not have yet).
#[derive(Debug, Clone, Default)]
pub struct Roles {
    published: Arc<RwLock<BTreeMap<String, TenantRole>>>,
    /// Changes of the apply call under way (`None`: the record is removed).
    staged: Arc<RwLock<BTreeMap<String, Option<TenantRole>>>>,
}

impl Roles {
    /// The tenant's role as the engine holds it (the implicit non-shipping
    /// primary when it has no record).
    pub fn get(&self, tenant: &str) -> TenantRole {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
            .unwrap_or_else(TenantRole::implicit)
    }

    /// Every tenant with a role record, as the engine holds them.
    pub fn all(&self) -> BTreeMap<String, TenantRole> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The role with the apply call's staged changes: what the state machine sees.
    pub(super) fn applying(&self, tenant: &str) -> TenantRole {
        let staged = self.staged.read().unwrap_or_else(|p| p.into_inner());
        match staged.get(tenant) {
            Some(Some(r)) => r.clone(),
            Some(None) => TenantRole::implicit(),
            None => self.get(tenant),
        }
    }

    pub(super) fn set(&self, tenant: &str, role: Option<TenantRole>) {
        self.staged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), role);
    }

    /// Makes the staged changes visible (their batch is in the engine).
    pub(super) fn publish(&self) {
        let staged = std::mem::take(&mut *self.staged.write().unwrap_or_else(|p| p.into_inner()));
        let mut map = self.published.write().unwrap_or_else(|p| p.into_inner());
        for (tenant, role) in staged {
            match role {
                Some(r) => map.insert(tenant, r),
                None => map.remove(&tenant),
            };
        }
    }

    pub(super) fn replace(&self, roles: BTreeMap<String, TenantRole>) {
        self.staged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = roles;
    }
}

/// What a client write will ship once applied, before its outcome is known.
pub(super) enum Pending {
    Put {
        object: ObjectId,
        inline: Option<Bytes>,
        chunk_crcs: Option<Vec<u32>>,
    },
    Delete {
        object: ObjectId,
    },
    CreateContainer,
    DeleteContainer {
        tenant: String,
        name: String,
    },
    Rewrap {
        object: ObjectId,
        version: u128,
        encryption: Envelope,
    },
    Shred {
        tenant: String,
        limit: u32,
    },
    /// An audit batch of `node` (its records are what `ObjectStore::audit` chained).
    Audit {
        node: u64,
        incarnation: u64,
        number: u64,
    },
}

/// The tenant a client write is for (`None` for geo-replication's own commands).
fn written_tenant(command: &ObjectCommand) -> Option<&str> {
    match command {
        ObjectCommand::CreateContainer { tenant, .. }
        | ObjectCommand::DeleteContainer { tenant, .. }
        | ObjectCommand::ShredTenant { tenant, .. } => Some(tenant),
        ObjectCommand::PutInline { object, .. }
        | ObjectCommand::Commit { object, .. }
        | ObjectCommand::Delete { object, .. }
        | ObjectCommand::Rewrap { object, .. } => Some(&object.tenant),
        ObjectCommand::SetRole { .. }
        | ObjectCommand::GeoApply { .. }
        | ObjectCommand::GeoSeed { .. }
        | ObjectCommand::GeoSeedDone { .. }
        | ObjectCommand::GeoAcked { .. }
        | ObjectCommand::Recover { .. } => None,
        // Only the primary extends a tenant's audit chain (a secondary or fenced
        // group appending its own records would fork it); the records ship with
        // the tenant's other writes.
        ObjectCommand::Audit { tenant, .. } => Some(tenant),
    }
}

impl ObjectStore {
    fn put_role(&mut self, batch: &mut WriteBatch, tenant: &str, role: TenantRole) {
        batch.put(
            layout::role(self.group(), tenant),
            frame::encode(&encode(&role)),
        );
        self.roles.set(tenant, Some(role));
    }

    /// A client write refused because this group is not the tenant's primary.
    pub(super) fn refuse_if_not_primary(
        &mut self,
        command: &ObjectCommand,
    ) -> Option<ObjectResponse> {
        if matches!(command, ObjectCommand::ShredTenant { .. }) {
            // The node's own clearing of a tenant's data (a purge, or a group
            // becoming a fresh secondary or dropping the tenant) runs in any role.
            return None;
        }
        let tenant = written_tenant(command)?;
        let role = self.roles.applying(tenant);
        if matches!(role, TenantRole::Primary { .. }) {
            return None;
        }
        if let ObjectCommand::Commit { meta, .. } = command {
            // The staged chunks will never be reachable here.
            self.refuse_version(meta.version);
        }
        Some(ObjectResponse::NotPrimary {
            role: role.name().into(),
            epoch: role.epoch(),
        })
    }

    /// What `command` ships if it succeeds, when its tenant is geo-replicated here.
    pub(super) fn shipping(&self, command: &ObjectCommand) -> Option<(String, Pending)> {
        let tenant = written_tenant(command)?;
        self.roles.applying(tenant).ship_to()?;
        let pending = match command {
            ObjectCommand::PutInline { object, data, .. } => Pending::Put {
                object: object.clone(),
                inline: Some(data.clone()),
                chunk_crcs: None,
            },
            ObjectCommand::Commit {
                object, chunk_crcs, ..
            } => Pending::Put {
                object: object.clone(),
                inline: None,
                chunk_crcs: Some(chunk_crcs.clone()),
            },
            ObjectCommand::Delete { object, .. } => Pending::Delete {
                object: object.clone(),
            },
            ObjectCommand::CreateContainer { .. } => Pending::CreateContainer,
            ObjectCommand::DeleteContainer { tenant, name } => Pending::DeleteContainer {
                tenant: tenant.clone(),
                name: name.clone(),
            },
            ObjectCommand::Rewrap {
                object,
                version,
                encryption,
            } => Pending::Rewrap {
                object: object.clone(),
                version: *version,
                encryption: encryption.clone(),
            },
            ObjectCommand::ShredTenant { tenant, limit } => Pending::Shred {
                tenant: tenant.clone(),
                limit: *limit,
            },
            ObjectCommand::Audit {
                node,
                incarnation,
                batch,
                ..
            } => Pending::Audit {
                node: *node,
                incarnation: *incarnation,
                number: *batch,
            },
            _ => return None,
        };
        Some((tenant.to_string(), pending))
    }

    /// Appends the outbox entry of a write that succeeded.
    pub(super) fn record_outbox(
        &mut self,
        batch: &mut WriteBatch,
        (tenant, pending): (String, Pending),
        response: &ObjectResponse,
    ) -> Result<(), StorageError> {
        let op = match (pending, response) {
            (
                Pending::Put {
                    object,
                    inline,
                    chunk_crcs,
                },
                ObjectResponse::Stored(meta),
            ) => GeoOp::Put {
                object,
                meta: meta.clone(),
                inline,
                chunk_crcs,
            },
            (Pending::Delete { object }, ObjectResponse::Deleted { .. }) => {
                GeoOp::Delete { object }
            }
            (Pending::CreateContainer, ObjectResponse::Container(record)) => {
                GeoOp::CreateContainer {
                    record: record.clone(),
                }
            }
            (Pending::DeleteContainer { tenant, name }, ObjectResponse::ContainerDeleted) => {
                GeoOp::DeleteContainer { tenant, name }
            }
            (
                Pending::Rewrap {
                    object,
                    version,
                    encryption,
                },
                ObjectResponse::Stored(_),
            ) => GeoOp::Rewrap {
                object,
                version,
                encryption,
            },
            (
                Pending::Shred { tenant, limit },
                ObjectResponse::Shredded {
                    objects,
                    containers,
                    ..
                },
            ) if objects + containers > 0 => GeoOp::Shred { tenant, limit },
            (
                Pending::Audit {
                    node,
                    incarnation,
                    number,
                },
                ObjectResponse::Audited { .. },
            ) => {
                // Empty when the batch was applied before (a resend): nothing new.
                let records = std::mem::take(&mut self.audited);
                if records.is_empty() {
                    return Ok(());
                }
                GeoOp::Audit {
                    tenant: tenant.clone(),
                    records,
                    batches: BTreeMap::from([(node, (incarnation, number))]),
                }
            }
            _ => return Ok(()),
        };
        let TenantRole::Primary {
            epoch,
            ship_to,
            next_seq,
            acked_seq,
            last_sync_ms,
            seeded,
        } = self.roles.applying(&tenant)
        else {
            return Ok(());
        };
        let group = self.group();
        if let Some((version, _)) = op.chunks() {
            batch.put(layout::geo_hold(group, version), frame::encode(&[]));
        }
        let entry = GeoEntry { seq: next_seq, op };
        batch.put(
            layout::outbox(group, &tenant, next_seq),
            frame::encode(&encode(&entry)),
        );
        self.put_role(
            batch,
            &tenant,
            TenantRole::Primary {
                epoch,
                ship_to,
                next_seq: next_seq + 1,
                acked_seq,
                last_sync_ms,
                seeded,
            },
        );
        Ok(())
    }

    /// Removes outbox entries `from..=to` of `tenant` and the holds they kept.
    fn trim_outbox(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StorageError> {
        if from > to {
            return Ok(());
        }
        let group = self.group();
        for entry in self.reader.outbox(tenant, from, usize::MAX)? {
            if entry.seq > to {
                break;
            }
            if let Some((version, _)) = entry.op.chunks() {
                batch.remove(layout::geo_hold(group, version));
            }
            batch.remove(layout::outbox(group, tenant, entry.seq));
        }
        Ok(())
    }

    pub(super) fn set_role(
        &mut self,
        batch: &mut WriteBatch,
        tenant: String,
        change: RoleChange,
    ) -> Result<ObjectResponse, StorageError> {
        let current = self.roles.applying(&tenant);
        let stale = |epoch: u64| epoch < current.epoch();
        let next = match change {
            RoleChange::Primary { epoch, .. }
            | RoleChange::Secondary { epoch, .. }
            | RoleChange::Fence { epoch }
                if stale(epoch) =>
            {
                return Ok(ObjectResponse::Role(Box::new(current)));
            }
            RoleChange::Primary { epoch, ship_to } => {
                let next_seq = match &current {
                    TenantRole::Primary { next_seq, .. } | TenantRole::Fenced { next_seq, .. } => {
                        *next_seq
                    }
                    TenantRole::Secondary { applied_seq, .. } => applied_seq + 1,
                };
                match &current {
                    // Same target: shipping continues where it was.
                    TenantRole::Primary {
                        ship_to: s,
                        acked_seq,
                        last_sync_ms,
                        seeded,
                        ..
                    } if *s == ship_to => TenantRole::Primary {
                        epoch,
                        ship_to,
                        next_seq,
                        acked_seq: *acked_seq,
                        last_sync_ms: *last_sync_ms,
                        seeded: *seeded,
                    },
                    // A secondary taking over in a planned failover ships to the old
                    // primary, which holds everything up to here.
                    TenantRole::Secondary { from, as_of_ms, .. } if Some(*from) == ship_to => {
                        TenantRole::Primary {
                            epoch,
                            ship_to,
                            next_seq,
                            acked_seq: next_seq - 1,
                            last_sync_ms: *as_of_ms,
                            seeded: true,
                        }
                    }
                    // A new target (or none): what was queued for another goes; a new
                    // target gets a full copy first.
                    _ => {
                        if let TenantRole::Primary { acked_seq, .. }
                        | TenantRole::Fenced { acked_seq, .. } = &current
                        {
                            self.trim_outbox(batch, &tenant, acked_seq + 1, u64::MAX)?;
                        }
                        TenantRole::Primary {
                            epoch,
                            ship_to,
                            next_seq,
                            acked_seq: next_seq - 1,
                            last_sync_ms: 0,
                            seeded: ship_to.is_none(),
                        }
                    }
                }
            }
            RoleChange::Secondary { epoch, from, reset } => {
                let applied_seq = match (&current, reset) {
                    (
                        TenantRole::Primary {
                            next_seq,
                            acked_seq,
                            ..
                        },
                        false,
                    ) => {
                        self.trim_outbox(batch, &tenant, acked_seq + 1, u64::MAX)?;
                        next_seq - 1
                    }
                    (TenantRole::Secondary { applied_seq, .. }, false) => *applied_seq,
                    _ => 0,
                };
                let as_of_ms = match &current {
                    TenantRole::Secondary { as_of_ms, .. } if !reset => *as_of_ms,
                    _ => 0,
                };
                if reset {
                    // The seed brings the primary's chain from genesis: a chain
                    // left here (a former primary's, with records it never
                    // shipped) must not mix with it.
                    self.clear_audit(batch, &tenant);
                }
                TenantRole::Secondary {
                    epoch,
                    from,
                    applied_seq,
                    as_of_ms,
                    seeded: !reset,
                }
            }
            RoleChange::Fence { epoch } => match &current {
                TenantRole::Primary {
                    next_seq,
                    acked_seq,
                    ..
                }
                | TenantRole::Fenced {
                    next_seq,
                    acked_seq,
                    ..
                } => TenantRole::Fenced {
                    epoch,
                    next_seq: *next_seq,
                    acked_seq: *acked_seq,
                },
                TenantRole::Secondary { .. } => return Ok(ObjectResponse::Role(Box::new(current))),
            },
            RoleChange::Drop => {
                self.trim_outbox(batch, &tenant, 0, u64::MAX)?;
                if matches!(current, TenantRole::Secondary { .. }) {
                    // A secondary's copy of the chain; the primary keeps the log.
                    self.clear_audit(batch, &tenant);
                }
                batch.remove(layout::role(self.group(), &tenant));
                self.roles.set(&tenant, None);
                return Ok(ObjectResponse::Role(Box::new(TenantRole::implicit())));
            }
        };
        self.put_role(batch, &tenant, next.clone());
        Ok(ObjectResponse::Role(Box::new(next)))
    }

    /// The secondary role `tenant` must have for a sender, or why not.
    fn secondary_of(
        &self,
        tenant: &str,
        epoch: u64,
        from: GroupId,
    ) -> Result<TenantRole, GeoReply> {
        match self.roles.applying(tenant) {
            r @ TenantRole::Secondary {
                epoch: e, from: f, ..
            } if e == epoch && f == from => Ok(r),
            other => Err(GeoReply::Refused(format!(
                "group {} is {} of tenant {tenant:?} at epoch {}, not the secondary of group {from} at epoch {epoch}",
                self.group(),
                other.name(),
                other.epoch()
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn geo_apply(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        epoch: u64,
        from: GroupId,
        first_seq: u64,
        entries: Vec<GeoEntry>,
        as_of_ms: u64,
    ) -> Result<ObjectResponse, StorageError> {
        let role = match self.secondary_of(tenant, epoch, from) {
            Ok(r) => r,
            Err(refusal) => return Ok(ObjectResponse::Geo(refusal)),
        };
        let TenantRole::Secondary {
            mut applied_seq,
            as_of_ms: mut as_of,
            seeded,
            ..
        } = role
        else {
            return Ok(ObjectResponse::Geo(GeoReply::Refused(
                "not a secondary".into(),
            )));
        };
        if !seeded {
            return Ok(ObjectResponse::Geo(GeoReply::Refused(format!(
                "group {} waits for the first full copy of tenant {tenant:?}",
                self.group()
            ))));
        }
        // A gap (entries lost in transit, a new leader on either side): the answer
        // tells the sender where to resume.
        if first_seq <= applied_seq + 1 {
            let last = entries
                .last()
                .map_or(first_seq.saturating_sub(1), |e| e.seq);
            let mut ops = Vec::with_capacity(entries.len());
            for entry in entries {
                if entry.seq == applied_seq + 1 {
                    ops.push(entry.op);
                    applied_seq = entry.seq;
                }
            }
            self.apply_ops(batch, ops)?;
            if applied_seq >= last {
                as_of = as_of.max(as_of_ms);
            }
        }
        self.put_role(
            batch,
            tenant,
            TenantRole::Secondary {
                epoch,
                from,
                applied_seq,
                as_of_ms: as_of,
                seeded,
            },
        );
        Ok(ObjectResponse::Geo(GeoReply::Applied { applied_seq }))
    }

    pub(super) fn geo_seed(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        epoch: u64,
        from: GroupId,
        ops: Vec<GeoOp>,
    ) -> Result<ObjectResponse, StorageError> {
        let role = match self.secondary_of(tenant, epoch, from) {
            Ok(r) => r,
            Err(refusal) => return Ok(ObjectResponse::Geo(refusal)),
        };
        let TenantRole::Secondary {
            applied_seq,
            seeded,
            ..
        } = role
        else {
            return Ok(ObjectResponse::Geo(GeoReply::Refused(
                "not a secondary".into(),
            )));
        };
        if !seeded {
            self.apply_ops(batch, ops)?;
        }
        Ok(ObjectResponse::Geo(GeoReply::Applied { applied_seq }))
    }

    pub(super) fn geo_seed_done(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        epoch: u64,
        from: GroupId,
        next_seq: u64,
        as_of_ms: u64,
    ) -> Result<ObjectResponse, StorageError> {
        let role = match self.secondary_of(tenant, epoch, from) {
            Ok(r) => r,
            Err(refusal) => return Ok(ObjectResponse::Geo(refusal)),
        };
        let TenantRole::Secondary {
            applied_seq,
            seeded,
            ..
        } = role
        else {
            return Ok(ObjectResponse::Geo(GeoReply::Refused(
                "not a secondary".into(),
            )));
        };
        if seeded {
            return Ok(ObjectResponse::Geo(GeoReply::Applied { applied_seq }));
        }
        let applied_seq = next_seq.saturating_sub(1);
        self.put_role(
            batch,
            tenant,
            TenantRole::Secondary {
                epoch,
                from,
                applied_seq,
                as_of_ms,
                seeded: true,
            },
        );
        Ok(ObjectResponse::Geo(GeoReply::Applied { applied_seq }))
    }

    pub(super) fn geo_acked(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        epoch: u64,
        seq: u64,
        last_sync: u64,
        now_seeded: bool,
    ) -> Result<ObjectResponse, StorageError> {
        let current = self.roles.applying(tenant);
        let TenantRole::Primary {
            epoch: e,
            ship_to,
            next_seq,
            acked_seq,
            last_sync_ms,
            seeded,
        } = current
        else {
            return Ok(ObjectResponse::Role(Box::new(current)));
        };
        if e != epoch {
            return Ok(ObjectResponse::Role(Box::new(current)));
        }
        let seq = seq.min(next_seq - 1);
        self.trim_outbox(batch, tenant, acked_seq + 1, seq)?;
        let next = TenantRole::Primary {
            epoch,
            ship_to,
            next_seq,
            acked_seq: acked_seq.max(seq),
            last_sync_ms: last_sync_ms.max(last_sync),
            seeded: seeded || now_seeded,
        };
        self.put_role(batch, tenant, next.clone());
        Ok(ObjectResponse::Role(Box::new(next)))
    }

    pub(super) fn recover(
        &mut self,
        batch: &mut WriteBatch,
        ops: Vec<GeoOp>,
    ) -> Result<ObjectResponse, StorageError> {
        let n = ops.len() as u64;
        self.apply_ops(batch, ops)?;
        Ok(ObjectResponse::Shredded {
            objects: n,
            containers: 0,
            done: true,
        })
    }

    /// Applies shipped operations in order, each seeing the writes of those before
    /// it. The command's reader shows only earlier commands' writes, so without the
    /// nested overlay a put and then a delete of one key in one `GeoApply` read the
    /// key as absent at the delete and left the put in place (found by the
    /// simulation: a secondary kept serving a deleted object).
    fn apply_ops(&mut self, batch: &mut WriteBatch, ops: Vec<GeoOp>) -> Result<(), StorageError> {
        let outer = self.reader.clone();
        let nested = Overlay::new(outer.engine().clone());
        let view: EngineRef = nested.clone();
        self.reader = ObjectReader::new(view.clone(), outer.blobs().clone(), outer.group());
        let result = ops.into_iter().try_for_each(|op| {
            let mut one = WriteBatch::new();
            self.apply_op(&mut one, op)?;
            view.apply(one)
        });
        self.reader = outer;
        result?;
        batch.ops.extend(nested.take_batch().ops);
        Ok(())
    }

    /// Applies one shipped operation as the absolute state it describes.
    fn apply_op(&mut self, batch: &mut WriteBatch, op: GeoOp) -> Result<(), StorageError> {
        let group = self.group();
        match op {
            GeoOp::Put {
                object,
                meta,
                inline,
                chunk_crcs,
            } => {
                self.ensure_container(batch, &object.tenant, &object.container, meta.created_ms);
                let current = self.reader.head(&object)?;
                if let Some(data) = inline {
                    self.store_inline(batch, meta.version, &data)?;
                }
                if let Some(crcs) = chunk_crcs {
                    let damaged = self.chunks_damaged(meta.version, &crcs)?;
                    if damaged {
                        batch.put(layout::repair(group, meta.version), frame::encode(&[]));
                    }
                    batch.put(
                        layout::chunk_list(group, meta.version),
                        frame::encode(&encode(&ChunkList { crcs })),
                    );
                }
                self.install(batch, &object, meta, current)?;
            }
            GeoOp::Delete { object } => {
                self.delete(batch, object, None)?;
            }
            GeoOp::CreateContainer { record } => {
                self.ensure_container(batch, &record.tenant, &record.name, record.created_ms);
            }
            GeoOp::DeleteContainer { tenant, name } => {
                for (key, meta) in self.reader.list(&tenant, &name, "", None, usize::MAX)? {
                    let id = ObjectId {
                        tenant: tenant.clone(),
                        container: name.clone(),
                        key,
                    };
                    batch.remove(layout::object(group, &id.tenant, &id.container, &id.key));
                    self.count(&id.tenant, -(meta.size as i64), -1);
                    self.drop_version(batch, &meta)?;
                }
                batch.remove(layout::container(group, &tenant, &name));
                self.containers.remove(&(tenant, name));
            }
            GeoOp::Rewrap {
                object,
                version,
                encryption,
            } => {
                self.rewrap(batch, object, version, encryption)?;
            }
            GeoOp::Shred { tenant, limit } => {
                self.shred_tenant(batch, tenant, limit)?;
            }
            GeoOp::Audit {
                tenant,
                records,
                batches,
            } => {
                self.install_audit(batch, &tenant, records, batches)?;
            }
        }
        Ok(())
    }

    fn ensure_container(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        name: &str,
        created_ms: u64,
    ) {
        let key = (tenant.to_string(), name.to_string());
        if self.containers.contains(&key) {
            return;
        }
        let record = ContainerRecord {
            tenant: tenant.into(),
            name: name.into(),
            created_ms,
        };
        batch.put(
            layout::container(self.group(), tenant, name),
            frame::encode(&encode(&record)),
        );
        self.containers.insert(key);
    }
}
