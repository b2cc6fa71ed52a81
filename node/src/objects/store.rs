//! Applies [`ObjectCommand`]s to a group's object store.
//!
//! Metadata, inline bytes, chunk CRC lists and containers change in the entry's
//! engine batch. Chunk blobs are never removed here while they could be read: a
//! version that dies (overwritten, deleted) loses its CRC list at once, but its blob
//! stays until the orphan sweep finds it unreferenced for a grace period, so a read
//! already streaming it finishes. Only the chunks of a version that never became
//! visible (refused commit) are removed right after the batch
//! ([`Application::finish_entry`]).

use super::chunks::ChunkStore;
use super::inline_store::{InlineRecord, InlineWriter};
use super::reader::ObjectReader;
use super::{
    layout, ChunkList, Conditions, ContainerRecord, Layout, ObjectCommand, ObjectId, ObjectMeta,
    ObjectResponse,
};
use crate::raft::state_machine::Application;
use crate::raft::{encode, Command, LogId, Response};
use crate::storage::{frame, BlobRef, EngineRef, StorageError, WriteBatch};
use std::collections::BTreeSet;
use stratus_core::crypto::envelope::Envelope;
use stratus_core::crypto::TAG_BYTES;
use stratus_core::limits::{INLINE_BYTES_MAX, STORAGE_CHUNK_BYTES};

/// The object store of one group: the [`Application`] of replica groups.
pub struct ObjectStore {
    /// Reads the state as the command being applied sees it (through the state
    /// machine's overlay while applying, the engine otherwise).
    pub(super) reader: ObjectReader,
    engine: EngineRef,
    blobs: BlobRef,
    chunks: ChunkStore,
    /// Never-visible versions whose chunks go once the current entry's batch is applied.
    refused: Vec<u128>,
    /// Every (tenant, container) of the group: checked on every write, so kept in
    /// memory rather than read from the engine each time (rebuilt by `reload`).
    pub(super) containers: BTreeSet<(String, String)>,
    /// Each tenant's role in this group, when it has a record (see `geo`); shared
    /// with the node so services see roles without reading the engine.
    pub(super) roles: super::geo_apply::Roles,
    /// Where inline bytes go (opened on first use; `reload` reopens it).
    inline: Option<InlineWriter>,
    /// A mostly dead inline segment being compacted, and how far.
    compacting: Option<(u64, u64)>,
    /// Compacted inline segments to remove once the engine is synced.
    removable: Vec<u64>,
    /// Changes to tenants' usage (bytes, objects) by the commands of the apply
    /// call under way, stored before its engine batch (`store_usage`).
    usage_delta: std::collections::BTreeMap<String, (i64, i64)>,
    /// Audit records chained by the command being applied (its outbox entry
    /// carries them when the tenant ships).
    pub(super) audited: Vec<stratus_core::audit::AuditRecord>,
}

/// The version of an application row key (without the application prefix) that
/// holds an inline reference (`i` + version).
fn inline_version(key: &[u8]) -> Option<u128> {
    match key {
        [b'i', rest @ ..] if rest.len() == 16 => rest.try_into().ok().map(u128::from_be_bytes),
        _ => None,
    }
}

/// Inline bytes one compaction step reads at most.
const COMPACT_STEP_BYTES: usize = 1024 * 1024;

/// Checks that `meta` (and the CRC list of a chunked version) describe a well-formed
/// version, so a bad proposal is refused identically on every replica.
fn check_shape(
    meta: &ObjectMeta,
    crcs: Option<&[u32]>,
    inline_len: Option<usize>,
) -> Option<String> {
    match (meta.layout, crcs, inline_len) {
        (Layout::Inline, None, Some(len))
            if len as u64 == meta.size + TAG_BYTES as u64
                && meta.size <= INLINE_BYTES_MAX as u64 =>
        {
            None
        }
        (Layout::Chunked { chunks }, Some(crcs), None) => {
            let expected = meta.size.div_ceil(STORAGE_CHUNK_BYTES as u64);
            (u64::from(chunks) != expected
                || crcs.len() != chunks as usize
                || meta.size <= INLINE_BYTES_MAX as u64)
                .then(|| {
                    format!(
                        "{} bytes cannot be {chunks} chunks with {} CRCs",
                        meta.size,
                        crcs.len()
                    )
                })
        }
        _ => Some(format!(
            "a {:?} version of {} bytes in the wrong command",
            meta.layout, meta.size
        )),
    }
}

impl ObjectStore {
    pub fn new(
        engine: EngineRef,
        blobs: BlobRef,
        group: u64,
        roles: super::geo_apply::Roles,
    ) -> Self {
        Self {
            reader: ObjectReader::new(engine.clone(), blobs.clone(), group),
            engine,
            chunks: ChunkStore::new(blobs.clone(), group),
            blobs,
            refused: Vec::new(),
            containers: BTreeSet::new(),
            roles,
            inline: None,
            compacting: None,
            removable: Vec::new(),
            usage_delta: Default::default(),
            audited: Vec::new(),
        }
    }

    /// Notes a change of `tenant`'s usage by the command being applied.
    pub(super) fn count(&mut self, tenant: &str, bytes: i64, objects: i64) {
        let d = self.usage_delta.entry(tenant.to_string()).or_default();
        d.0 += bytes;
        d.1 += objects;
    }

    /// Stores the usage changes of every command applied since the last call,
    /// through `view`: once per apply call (from `before_flush`), not once per
    /// command, so a batch of puts writes its tenant's usage row once. Nothing
    /// reads usage while an apply call runs (quotas are checked by the leader
    /// against the engine, before proposing).
    pub(super) fn store_usage(&mut self, view: &EngineRef) -> Result<(), StorageError> {
        if self.usage_delta.is_empty() {
            return Ok(());
        }
        let reader = ObjectReader::new(view.clone(), self.blobs.clone(), self.group());
        let mut batch = WriteBatch::new();
        for (tenant, (bytes, objects)) in std::mem::take(&mut self.usage_delta) {
            let mut u = reader.usage(&tenant)?;
            u.bytes = u.bytes.saturating_add_signed(bytes);
            u.objects = u.objects.saturating_add_signed(objects);
            batch.put(
                layout::usage(self.group(), &tenant),
                frame::encode(&encode(&u)),
            );
        }
        view.apply(batch)
    }

    /// The inline writer, opened from the stored locations on first use (reload
    /// reopens it whenever the state changed wholesale).
    fn inline_writer(&mut self) -> Result<&mut InlineWriter, StorageError> {
        if self.inline.is_none() {
            let reader = ObjectReader::new(self.engine.clone(), self.blobs.clone(), self.group());
            let locs = reader.inline_locs()?.into_iter().map(|(_, loc)| loc);
            self.inline = Some(InlineWriter::open(self.blobs.clone(), self.group(), locs)?);
        }
        self.inline
            .as_mut()
            .ok_or_else(|| StorageError::Io("inline store not open".into()))
    }

    /// Small inline segments, so tests see them roll and compact.
    #[cfg(test)]
    pub(crate) fn set_inline_segment_target(&mut self, bytes: u64) -> Result<(), StorageError> {
        self.inline_writer()?.set_segment_target(bytes);
        Ok(())
    }

    /// Stores the bytes of inline `version`: the record in an inline segment, its
    /// reference (application space) and location (local space) in `batch`.
    pub(super) fn store_inline(
        &mut self,
        batch: &mut WriteBatch,
        version: u128,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let group = self.group();
        // A replayed entry (after a crash) stores the bytes again and its earlier
        // copy still counts as live: that only delays its segment's compaction, and
        // saves a lookup on every put.
        let loc = self.inline_writer()?.append(version, data)?;
        let record = InlineRecord {
            crc32: crc32fast::hash(data),
            loc,
        };
        batch.put(
            layout::inline(group, version),
            frame::encode(&encode(&record)),
        );
        Ok(())
    }

    /// Writes the inline records appended since the last call to their segment.
    pub(super) fn flush_inline(&mut self) -> Result<(), StorageError> {
        match self.inline.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    /// One bounded step of compacting a mostly dead inline segment: its records
    /// still referenced here are copied to the active segment (their new locations
    /// go through `view`); once it is done the segment is queued for removal.
    fn compact_inline(&mut self, view: &EngineRef) -> Result<(), StorageError> {
        let group = self.group();
        if self.compacting.is_none() {
            self.compacting = self.inline_writer()?.compaction_candidate().map(|s| (s, 0));
        }
        let Some((segment, offset)) = self.compacting else {
            return Ok(());
        };
        let reader = ObjectReader::new(view.clone(), self.blobs.clone(), group);
        let (records, next) = self
            .inline_writer()?
            .scan(segment, offset, COMPACT_STEP_BYTES)?;
        let mut batch = WriteBatch::new();
        let mut moved = 0;
        for (version, loc, data) in records {
            let Some(record) = reader.inline_record(version)?.filter(|r| r.loc == loc) else {
                continue;
            };
            let writer = self.inline_writer()?;
            let new = InlineRecord {
                loc: writer.append(version, &data)?,
                ..record
            };
            writer.forget(loc);
            batch.put(layout::inline(group, version), frame::encode(&encode(&new)));
            moved += 1;
        }
        view.apply(batch)?;
        match next {
            Some(offset) => self.compacting = Some((segment, offset)),
            None => {
                tracing::info!(group, segment, moved, "inline segment compacted");
                self.removable.push(segment);
                self.compacting = None;
            }
        }
        Ok(())
    }

    /// Marks a version that will never become visible: its chunks go after the batch.
    pub(super) fn refuse_version(&mut self, version: u128) {
        self.refused.push(version);
    }

    /// Whether this replica lacks or holds damaged chunks of `version`.
    pub(super) fn chunks_damaged(&self, version: u128, crcs: &[u32]) -> Result<bool, StorageError> {
        Ok(!self
            .chunks
            .damaged_frames(version, crcs.len() as u32, Some(crcs))?
            .is_empty())
    }

    pub(super) fn group(&self) -> u64 {
        self.reader.group()
    }

    /// Drops `meta`'s metadata-side bytes: the inline row, or the CRC list and repair
    /// mark (the blob itself goes with the sweep, after in-flight reads).
    pub(super) fn drop_version(
        &mut self,
        batch: &mut WriteBatch,
        meta: &ObjectMeta,
    ) -> Result<(), StorageError> {
        match meta.layout {
            Layout::Inline => {
                if let Some(record) = self.reader.inline_record(meta.version)? {
                    self.inline_writer()?.forget(record.loc);
                }
                batch.remove(layout::inline(self.group(), meta.version));
            }
            Layout::Chunked { .. } => {
                batch.remove(layout::chunk_list(self.group(), meta.version));
                batch.remove(layout::repair(self.group(), meta.version));
            }
        }
        Ok(())
    }

    /// Replaces the current version (if any) with `meta`, keeping the creation time.
    pub(super) fn install(
        &mut self,
        batch: &mut WriteBatch,
        object: &ObjectId,
        mut meta: ObjectMeta,
        current: Option<ObjectMeta>,
    ) -> Result<ObjectResponse, StorageError> {
        match &current {
            None => self.count(&object.tenant, meta.size as i64, 1),
            Some(old) if old.version != meta.version => {
                self.count(&object.tenant, meta.size as i64 - old.size as i64, 0)
            }
            Some(_) => {}
        }
        if let Some(old) = current {
            meta.created_ms = old.created_ms;
            if old.version != meta.version {
                self.drop_version(batch, &old)?;
            }
        }
        let key = layout::object(self.group(), &object.tenant, &object.container, &object.key);
        batch.put(key, frame::encode(&encode(&meta)));
        Ok(ObjectResponse::Stored(meta))
    }

    /// Why a write to `object` cannot proceed before looking at the object itself.
    fn refuse_write(&self, object: &ObjectId) -> Result<Option<ObjectResponse>, StorageError> {
        let key = (object.tenant.clone(), object.container.clone());
        Ok((!self.containers.contains(&key)).then_some(ObjectResponse::ContainerNotFound))
    }

    fn put_inline(
        &mut self,
        batch: &mut WriteBatch,
        object: ObjectId,
        meta: ObjectMeta,
        data: &[u8],
        conditions: &Conditions,
    ) -> Result<ObjectResponse, StorageError> {
        if let Some(why) = check_shape(&meta, None, Some(data.len())) {
            return Ok(ObjectResponse::Malformed(why));
        }
        if let Some(refusal) = self.refuse_write(&object)? {
            return Ok(refusal);
        }
        let current = self.reader.head(&object)?;
        if let Some(why) = conditions.check(current.as_ref()) {
            return Ok(ObjectResponse::PreconditionFailed(why));
        }
        self.store_inline(batch, meta.version, data)?;
        self.install(batch, &object, meta, current)
    }

    fn commit(
        &mut self,
        batch: &mut WriteBatch,
        object: ObjectId,
        meta: ObjectMeta,
        crcs: Vec<u32>,
        conditions: &Conditions,
    ) -> Result<ObjectResponse, StorageError> {
        let current = self.reader.head(&object)?;
        let replayed = current.as_ref().map(|c| c.version) == Some(meta.version);
        let refusal = match check_shape(&meta, Some(&crcs), None) {
            Some(why) => Some(ObjectResponse::Malformed(why)),
            None => match self.refuse_write(&object)? {
                Some(refusal) => Some(refusal),
                None => conditions
                    .check(current.as_ref())
                    .map(ObjectResponse::PreconditionFailed),
            },
        };
        if let Some(refusal) = refusal {
            // The version will never be reachable: its staged chunks go.
            if !replayed {
                self.refused.push(meta.version);
            }
            return Ok(refusal);
        }
        let version = meta.version;
        if !self
            .chunks
            .damaged_frames(version, crcs.len() as u32, Some(&crcs))?
            .is_empty()
        {
            // This replica missed chunks (it was down or slow during the upload):
            // the repair task fetches them from the other members.
            batch.put(layout::repair(self.group(), version), frame::encode(&[]));
        }
        batch.put(
            layout::chunk_list(self.group(), version),
            frame::encode(&encode(&ChunkList { crcs })),
        );
        self.install(batch, &object, meta, current)
    }

    pub(super) fn delete(
        &mut self,
        batch: &mut WriteBatch,
        object: ObjectId,
        if_match: Option<String>,
    ) -> Result<ObjectResponse, StorageError> {
        let Some(current) = self.reader.head(&object)? else {
            return Ok(ObjectResponse::NotFound);
        };
        let conditions = Conditions {
            if_match,
            if_none_match: None,
        };
        if let Some(why) = conditions.check(Some(&current)) {
            return Ok(ObjectResponse::PreconditionFailed(why));
        }
        batch.remove(layout::object(
            self.group(),
            &object.tenant,
            &object.container,
            &object.key,
        ));
        self.count(&object.tenant, -(current.size as i64), -1);
        self.drop_version(batch, &current)?;
        Ok(ObjectResponse::Deleted {
            version: current.version,
        })
    }

    pub(super) fn rewrap(
        &mut self,
        batch: &mut WriteBatch,
        object: ObjectId,
        version: u128,
        encryption: Envelope,
    ) -> Result<ObjectResponse, StorageError> {
        match self.reader.head(&object)? {
            Some(mut meta) if meta.version == version => {
                meta.encryption = encryption;
                let key =
                    layout::object(self.group(), &object.tenant, &object.container, &object.key);
                batch.put(key, frame::encode(&encode(&meta)));
                Ok(ObjectResponse::Stored(meta))
            }
            _ => Ok(ObjectResponse::NotFound),
        }
    }

    pub(super) fn create_container(
        &mut self,
        batch: &mut WriteBatch,
        tenant: String,
        name: String,
        now_ms: u64,
    ) -> Result<ObjectResponse, StorageError> {
        if self.reader.container(&tenant, &name)?.is_some() {
            return Ok(ObjectResponse::ContainerExists);
        }
        let record = ContainerRecord {
            tenant,
            name,
            created_ms: now_ms,
        };
        batch.put(
            layout::container(self.group(), &record.tenant, &record.name),
            frame::encode(&encode(&record)),
        );
        self.containers
            .insert((record.tenant.clone(), record.name.clone()));
        Ok(ObjectResponse::Container(record))
    }

    pub(super) fn delete_container(
        &mut self,
        batch: &mut WriteBatch,
        tenant: String,
        name: String,
    ) -> Result<ObjectResponse, StorageError> {
        if self.reader.container(&tenant, &name)?.is_none() {
            return Ok(ObjectResponse::ContainerNotFound);
        }
        if let Some((example, _)) = self
            .reader
            .list(&tenant, &name, "", None, 1)?
            .into_iter()
            .next()
        {
            return Ok(ObjectResponse::ContainerNotEmpty { example });
        }
        batch.remove(layout::container(self.group(), &tenant, &name));
        self.containers.remove(&(tenant, name));
        Ok(ObjectResponse::ContainerDeleted)
    }

    pub(super) fn shred_tenant(
        &mut self,
        batch: &mut WriteBatch,
        tenant: String,
        limit: u32,
    ) -> Result<ObjectResponse, StorageError> {
        let limit = limit.clamp(1, SHRED_OBJECTS_MAX) as usize;
        // One past the limit tells whether objects remain after this batch.
        let mut page = self.reader.tenant_objects(&tenant, None, limit + 1)?;
        let more = page.len() > limit;
        page.truncate(limit);
        for (id, meta) in &page {
            batch.remove(layout::object(
                self.group(),
                &id.tenant,
                &id.container,
                &id.key,
            ));
            self.count(&id.tenant, -(meta.size as i64), -1);
            self.drop_version(batch, meta)?;
        }
        let mut containers = 0;
        if !more {
            let names: Vec<String> = self
                .containers
                .iter()
                .filter(|(t, _)| *t == tenant)
                .map(|(_, c)| c.clone())
                .collect();
            for name in names {
                batch.remove(layout::container(self.group(), &tenant, &name));
                self.containers.remove(&(tenant.clone(), name));
                containers += 1;
            }
        }
        Ok(ObjectResponse::Shredded {
            objects: page.len() as u64,
            containers,
            done: !more,
        })
    }
}

impl ObjectStore {
    /// Appends `events` to `tenant`'s audit chain, unless this batch of `node` was
    /// applied already.
    fn audit(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        node: u64,
        (incarnation, number): (u64, u64),
        events: Vec<stratus_core::audit::AuditEvent>,
    ) -> Result<ObjectResponse, StorageError> {
        let group = self.group();
        let mut head = self.audit_head_or_genesis(tenant)?;
        if let Some((inc, last)) = head.batches.get(&node) {
            if *inc == incarnation && *last >= number {
                return Ok(ObjectResponse::Audited { seq: head.seq });
            }
        }
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            let record = stratus_core::audit::chain(tenant, head.seq, &head.hash, event);
            head.seq = record.seq;
            head.hash = stratus_core::audit::parse_hash(&record.hash).ok_or_else(|| {
                StorageError::Corrupt {
                    key: format!("audit {tenant}"),
                    why: "a record hash is not 32 bytes of hex".into(),
                }
            })?;
            records.push(record);
        }
        put_audit_pages(batch, group, tenant, &records);
        self.audited.extend(records);
        head.batches.insert(node, (incarnation, number));
        batch.put(
            super::layout::audit_head(group, tenant),
            frame::encode(&encode(&head)),
        );
        Ok(ObjectResponse::Audited { seq: head.seq })
    }

    /// Stores audit records shipped by the tenant's primary verbatim, continuing
    /// this group's copy of the chain. Records this copy already holds are
    /// skipped (a seed and the outbox entries replayed after it overlap). Where
    /// the copy holds a different record at a shipped record's place (an old
    /// primary that appended after a planned failover's drain), the primary's
    /// chain wins: the copy is cut back to the shipped record's predecessor. A
    /// record that continues neither (a gap, another chain) stops the rest, so the
    /// copy stays a prefix of the primary's chain.
    pub(super) fn install_audit(
        &mut self,
        batch: &mut WriteBatch,
        tenant: &str,
        records: Vec<stratus_core::audit::AuditRecord>,
        batches: std::collections::BTreeMap<u64, (u64, u64)>,
    ) -> Result<(), StorageError> {
        let group = self.group();
        let mut head = self.audit_head_or_genesis(tenant)?;
        let mut added = 0;
        // Records to store, consecutive from the head at the time of the cut (if
        // any) or of the call; written as pages at the end.
        let mut pending: Vec<stratus_core::audit::AuditRecord> = Vec::new();
        let start = head.seq;
        for record in records {
            if record.seq <= head.seq {
                if record.seq > start {
                    continue; // a duplicate within this call
                }
                let here = self.reader.audit_record(tenant, record.seq)?;
                if here.is_some_and(|r| r.hash == record.hash) {
                    continue;
                }
                let prev = match record.seq {
                    0 => None,
                    1 => Some(stratus_core::audit::genesis(tenant)),
                    n => self
                        .reader
                        .audit_record(tenant, n - 1)?
                        .and_then(|r| stratus_core::audit::parse_hash(&r.hash)),
                };
                let Some(prev) = prev.filter(|p| hex::encode(p) == record.prev_hash) else {
                    tracing::warn!(
                        group,
                        tenant,
                        seq = record.seq,
                        "a shipped audit record differs from this copy's and does not follow its predecessor here; not stored"
                    );
                    break;
                };
                tracing::warn!(
                    group,
                    tenant,
                    seq = record.seq,
                    dropped = head.seq - record.seq + 1,
                    "this copy of the audit chain forked from the primary's; the primary's records replace it from here"
                );
                // Cut the page holding the record back to the records before it,
                // then drop every later page.
                if let Some((first, mut page)) =
                    self.reader.audit_page_holding(tenant, record.seq)?
                {
                    if first < record.seq {
                        page.truncate((record.seq - first) as usize);
                        batch.put(
                            super::layout::audit_page(group, tenant, first),
                            frame::encode(&encode(&page)),
                        );
                    }
                }
                let end =
                    crate::raft::keys::prefix_end(&super::layout::audit_prefix(group, tenant))
                        .unwrap_or_else(|| crate::raft::keys::app_end(group));
                batch.remove_range(super::layout::audit_page(group, tenant, record.seq), end);
                pending.retain(|r| r.seq < record.seq);
                head.seq = record.seq - 1;
                head.hash = prev;
                added += 1; // the head changes even if nothing follows
            }
            let hash = stratus_core::audit::parse_hash(&record.hash);
            let continues = record.tenant == tenant
                && record.seq == head.seq + 1
                && record.prev_hash == hex::encode(head.hash);
            let Some(hash) = hash.filter(|_| continues) else {
                tracing::warn!(
                    group,
                    tenant,
                    seq = record.seq,
                    head = head.seq,
                    "a shipped audit record does not continue this copy of the chain; not stored"
                );
                break;
            };
            head.seq = record.seq;
            head.hash = hash;
            pending.push(record);
            added += 1;
        }
        put_audit_pages(batch, group, tenant, &pending);
        if added > 0 {
            head.batches.extend(batches);
            batch.put(
                super::layout::audit_head(group, tenant),
                frame::encode(&encode(&head)),
            );
        }
        Ok(())
    }

    /// `tenant`'s audit head here, or the genesis head of an empty chain.
    fn audit_head_or_genesis(&self, tenant: &str) -> Result<super::AuditHead, StorageError> {
        Ok(self
            .reader
            .audit_head(tenant)?
            .unwrap_or_else(|| super::AuditHead {
                hash: stratus_core::audit::genesis(tenant),
                ..Default::default()
            }))
    }

    /// Removes this group's copy of `tenant`'s audit chain (records and head).
    pub(super) fn clear_audit(&mut self, batch: &mut WriteBatch, tenant: &str) {
        let group = self.group();
        let prefix = super::layout::audit_prefix(group, tenant);
        let end = crate::raft::keys::prefix_end(&prefix)
            .unwrap_or_else(|| crate::raft::keys::app_end(group));
        batch.remove_range(prefix, end);
        batch.remove(super::layout::audit_head(group, tenant));
    }
}

/// Stores `records` (consecutive, in order) of `tenant`'s audit chain as pages of
/// at most [`super::AUDIT_PAGE_RECORDS_MAX`] records, each under its first seq.
fn put_audit_pages(
    batch: &mut WriteBatch,
    group: u64,
    tenant: &str,
    records: &[stratus_core::audit::AuditRecord],
) {
    for page in records.chunks(super::AUDIT_PAGE_RECORDS_MAX) {
        batch.put(
            super::layout::audit_page(group, tenant, page[0].seq),
            frame::encode(&encode(&page)),
        );
    }
}

/// Objects one `ShredTenant` entry removes at most (bounds the entry's batch).
pub const SHRED_OBJECTS_MAX: u32 = 1024;

impl Application for ObjectStore {
    fn apply(
        &mut self,
        command: Command,
        _log_id: LogId,
        view: &EngineRef,
        batch: &mut WriteBatch,
    ) -> Result<Response, StorageError> {
        self.reader = ObjectReader::new(view.clone(), self.blobs.clone(), self.group());
        let Command::Object(command) = command else {
            return Err(StorageError::Corrupt {
                key: format!("group {}", self.group()),
                why: "directory command in a replica group's log".into(),
            });
        };
        self.audited.clear();
        if let Some(refusal) = self.refuse_if_not_primary(&command) {
            return Ok(Response::Object(refusal));
        }
        let shipped = self.shipping(&command);
        let response = match command {
            ObjectCommand::CreateContainer {
                tenant,
                name,
                now_ms,
            } => self.create_container(batch, tenant, name, now_ms)?,
            ObjectCommand::DeleteContainer { tenant, name } => {
                self.delete_container(batch, tenant, name)?
            }
            ObjectCommand::PutInline {
                object,
                meta,
                data,
                conditions,
            } => self.put_inline(batch, object, meta, &data, &conditions)?,
            ObjectCommand::Commit {
                object,
                meta,
                chunk_crcs,
                conditions,
            } => self.commit(batch, object, meta, chunk_crcs, &conditions)?,
            ObjectCommand::Delete { object, if_match } => self.delete(batch, object, if_match)?,
            ObjectCommand::Rewrap {
                object,
                version,
                encryption,
            } => self.rewrap(batch, object, version, encryption)?,
            ObjectCommand::ShredTenant { tenant, limit } => {
                self.shred_tenant(batch, tenant, limit)?
            }
            ObjectCommand::SetRole { tenant, change } => self.set_role(batch, tenant, change)?,
            ObjectCommand::GeoApply {
                tenant,
                epoch,
                from,
                first_seq,
                entries,
                as_of_ms,
            } => self.geo_apply(batch, &tenant, epoch, from, first_seq, entries, as_of_ms)?,
            ObjectCommand::GeoSeed {
                tenant,
                epoch,
                from,
                ops,
            } => self.geo_seed(batch, &tenant, epoch, from, ops)?,
            ObjectCommand::GeoSeedDone {
                tenant,
                epoch,
                from,
                next_seq,
                as_of_ms,
            } => self.geo_seed_done(batch, &tenant, epoch, from, next_seq, as_of_ms)?,
            ObjectCommand::GeoAcked {
                tenant,
                epoch,
                seq,
                last_sync_ms,
                seeded,
            } => self.geo_acked(batch, &tenant, epoch, seq, last_sync_ms, seeded)?,
            ObjectCommand::Recover { ops } => self.recover(batch, ops)?,
            ObjectCommand::Audit {
                tenant,
                node,
                incarnation,
                batch: number,
                events,
            } => self.audit(batch, &tenant, node, (incarnation, number), events)?,
        };
        if let Some(shipped) = shipped {
            self.record_outbox(batch, shipped, &response)?;
        }
        Ok(Response::Object(response))
    }

    fn before_flush(&mut self, view: &EngineRef) -> Result<(), StorageError> {
        self.store_usage(view)?;
        self.compact_inline(view)?;
        // The records appended since the last flush, before the batch naming them.
        self.flush_inline()
    }

    fn take_unsynced_blobs(&mut self) -> bool {
        self.inline
            .as_mut()
            .is_some_and(InlineWriter::take_unsynced)
    }

    fn take_removals(&mut self) -> Vec<String> {
        let group = self.group();
        let segments = std::mem::take(&mut self.removable);
        if let Some(writer) = self.inline.as_mut() {
            for s in &segments {
                writer.drop_stats(*s);
            }
        }
        segments
            .into_iter()
            .map(|s| super::inline_store::segment_name(group, s))
            .collect()
    }

    fn spool_value(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let Some(version) = inline_version(key) else {
            return Ok(value);
        };
        let reader = ObjectReader::new(self.engine.clone(), self.blobs.clone(), self.group());
        let data = reader
            .inline(version)?
            .ok_or_else(|| StorageError::Corrupt {
                key: hex::encode(key),
                why: "an inline reference without its bytes".into(),
            })?;
        Ok(frame::encode(&data))
    }

    fn install_value(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        _batch: &mut WriteBatch,
    ) -> Result<Vec<u8>, StorageError> {
        let Some(version) = inline_version(key) else {
            return Ok(value);
        };
        let data = frame::decode(key, &value)?.to_vec();
        let writer = self.inline_writer()?;
        let loc = writer.append(version, &data)?;
        // Written now: the install syncs the blobs once every row is in.
        writer.flush()?;
        let record = InlineRecord {
            crc32: crc32fast::hash(&data),
            loc,
        };
        Ok(frame::encode(&encode(&record)))
    }

    fn finish_entry(&mut self) -> Result<(), StorageError> {
        // The apply call's batch is in the engine: its role changes may show.
        self.roles.publish();
        for version in std::mem::take(&mut self.refused) {
            self.chunks.remove(version)?;
        }
        Ok(())
    }

    fn reload(&mut self) -> Result<(), StorageError> {
        // Only the container index lives in memory; everything else is read from
        // the engine.
        let reader = ObjectReader::new(self.engine.clone(), self.blobs.clone(), self.group());
        self.containers = reader
            .all_containers()?
            .into_iter()
            .map(|c| (c.tenant, c.name))
            .collect();
        self.roles.replace(reader.roles()?);
        let locs = reader.inline_locs()?.into_iter().map(|(_, loc)| loc);
        self.inline = Some(InlineWriter::open(self.blobs.clone(), self.group(), locs)?);
        self.compacting = None;
        Ok(())
    }

    fn after_install(&mut self) -> Result<(), StorageError> {
        // The snapshot replaced the metadata: mark every chunked version whose chunks
        // this replica lacks, so the repair task fetches them.
        let group = self.group();
        self.reader = ObjectReader::new(self.engine.clone(), self.blobs.clone(), group);
        let mut batch = WriteBatch::new();
        for (version, crcs) in self.reader.chunk_lists()? {
            if !self
                .chunks
                .damaged_frames(version, crcs.len() as u32, Some(&crcs))?
                .is_empty()
            {
                batch.put(layout::repair(group, version), frame::encode(&[]));
            }
        }
        self.engine.apply(batch)
    }
}
