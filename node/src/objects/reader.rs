//! Local reads of a group's object store (no Raft involved: callers decide whether
//! to confirm leadership first).

use super::chunks::ChunkStore;
use super::inline_store::{self, InlineLoc, InlineRecord};
use super::{layout, ChunkList, ContainerRecord, ObjectId, ObjectMeta};
use crate::raft::{decode, keys};
use crate::storage::{frame, BlobRef, EngineRef, StorageError};
use std::ops::Bound;
use stratus_core::audit::AuditRecord;

/// Read access to one group's objects on this node.
#[derive(Clone)]
pub struct ObjectReader {
    engine: EngineRef,
    blobs: BlobRef,
    chunks: ChunkStore,
    group: u64,
}

impl ObjectReader {
    pub fn new(engine: EngineRef, blobs: BlobRef, group: u64) -> Self {
        Self {
            engine,
            chunks: ChunkStore::new(blobs.clone(), group),
            blobs,
            group,
        }
    }

    pub fn group(&self) -> u64 {
        self.group
    }

    /// The engine (or overlay) this reader reads.
    pub(crate) fn engine(&self) -> &EngineRef {
        &self.engine
    }

    /// The blob store this reader reads chunks from.
    pub(crate) fn blobs(&self) -> &BlobRef {
        &self.blobs
    }

    /// The group's stored chunks on this node.
    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    /// Decodes a framed postcard record, reporting corruption with its key.
    pub(crate) fn decode_record<T: for<'de> serde::Deserialize<'de>>(
        key: &[u8],
        record: &[u8],
    ) -> Result<T, StorageError> {
        let payload = frame::decode(key, record)?;
        decode(payload).map_err(|e| StorageError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            why: e.to_string(),
        })
    }

    fn get_record<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.engine.get(key)? {
            Some(record) => Self::decode_record(key, &record).map(Some),
            None => Ok(None),
        }
    }

    /// The current version of `object`.
    pub fn head(&self, object: &ObjectId) -> Result<Option<ObjectMeta>, StorageError> {
        self.get_record(&layout::object(
            self.group,
            &object.tenant,
            &object.container,
            &object.key,
        ))
    }

    /// The bytes of an inline version, CRC-checked (`None`: not an inline version
    /// here, or removed meanwhile).
    pub fn inline(&self, version: u128) -> Result<Option<Vec<u8>>, StorageError> {
        // A location can move once (a compaction copies the record forward and
        // then removes the old segment): look it up again if the segment is gone.
        for _ in 0..2 {
            let Some(record) = self.inline_record(version)? else {
                return Ok(None);
            };
            if let Some(data) = inline_store::read(
                &self.blobs,
                self.group,
                version,
                record.reference(),
                record.loc,
            )? {
                return Ok(Some(data));
            }
        }
        Err(StorageError::Corrupt {
            key: hex::encode(layout::inline(self.group, version)),
            why: format!("the segment holding inline version {version:032x} is gone"),
        })
    }

    /// The stored record of an inline version, if it is one.
    pub fn inline_record(&self, version: u128) -> Result<Option<InlineRecord>, StorageError> {
        self.get_record(&layout::inline(self.group, version))
    }

    /// Every stored inline location on this replica, with its version.
    pub fn inline_locs(&self) -> Result<Vec<(u128, InlineLoc)>, StorageError> {
        let prefix = layout::inline_prefix(self.group);
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&prefix), Bound::Excluded(&end), usize::MAX)?;
        rows.iter()
            .map(|(k, v)| {
                let record: InlineRecord = Self::decode_record(k, v)?;
                Ok((version_suffix(k)?, record.loc))
            })
            .collect()
    }

    /// The committed chunk CRCs of a chunked version.
    pub fn chunk_list(&self, version: u128) -> Result<Option<Vec<u32>>, StorageError> {
        Ok(self
            .get_record::<ChunkList>(&layout::chunk_list(self.group, version))?
            .map(|l| l.crcs))
    }

    /// Every committed chunked version with its CRC list, in version order.
    pub fn chunk_lists(&self) -> Result<Vec<(u128, Vec<u32>)>, StorageError> {
        let start = layout::chunk_list(self.group, 0);
        let end = keys::prefix_end(&start[..start.len() - 16])
            .unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&start), Bound::Excluded(&end), usize::MAX)?;
        rows.iter()
            .map(|(k, v)| {
                let version = version_suffix(k)?;
                Ok((version, Self::decode_record::<ChunkList>(k, v)?.crcs))
            })
            .collect()
    }

    /// Chunked versions this replica must repair, at most `limit`.
    pub fn repairs(&self, limit: usize) -> Result<Vec<u128>, StorageError> {
        let prefix = layout::repairs_prefix(self.group);
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        let rows = self
            .engine
            .scan(Bound::Included(&prefix), Bound::Excluded(&end), limit)?;
        rows.iter().map(|(k, _)| version_suffix(k)).collect()
    }

    /// Up to `limit` objects of a container whose keys start with `prefix` and sort
    /// after `start_after`, in key order.
    pub fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectMeta)>, StorageError> {
        let base = layout::objects_prefix(self.group, tenant, container);
        let mut scan_prefix = base.clone();
        scan_prefix.extend_from_slice(prefix.as_bytes());
        let end = keys::prefix_end(&scan_prefix).unwrap_or_else(|| keys::app_end(self.group));
        let after = start_after.map(|k| layout::object(self.group, tenant, container, k));
        let start = match &after {
            Some(a) if *a >= scan_prefix => Bound::Excluded(a.as_slice()),
            _ => Bound::Included(scan_prefix.as_slice()),
        };
        let rows = self.engine.scan(start, Bound::Excluded(&end), limit)?;
        rows.into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k[base.len()..]).into_owned();
                Ok((name, Self::decode_record(&k, &v)?))
            })
            .collect()
    }

    /// Up to `limit` objects of `tenant` (every container) after `start_after`
    /// (`container`, `key`), in (container, key) order.
    pub fn tenant_objects(
        &self,
        tenant: &str,
        start_after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, ObjectMeta)>, StorageError> {
        let prefix = layout::tenant_objects_prefix(self.group, tenant);
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let after = start_after.map(|(c, k)| layout::object(self.group, tenant, c, k));
        let start = match &after {
            Some(a) => Bound::Excluded(a.as_slice()),
            None => Bound::Included(prefix.as_slice()),
        };
        let rows = self.engine.scan(start, Bound::Excluded(&end), limit)?;
        rows.into_iter()
            .map(|(k, v)| {
                let rest = &k[prefix.len()..];
                let split =
                    rest.iter()
                        .position(|b| *b == 0)
                        .ok_or_else(|| StorageError::Corrupt {
                            key: String::from_utf8_lossy(&k).into_owned(),
                            why: "object key without a container separator".into(),
                        })?;
                let id = ObjectId {
                    tenant: tenant.to_string(),
                    container: String::from_utf8_lossy(&rest[..split]).into_owned(),
                    key: String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
                };
                Ok((id, Self::decode_record(&k, &v)?))
            })
            .collect()
    }

    /// A container, if it exists.
    pub fn container(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ContainerRecord>, StorageError> {
        self.get_record(&layout::container(self.group, tenant, name))
    }

    /// What `tenant` stores in this group.
    pub fn usage(&self, tenant: &str) -> Result<super::TenantUsage, StorageError> {
        Ok(self
            .get_record(&layout::usage(self.group, tenant))?
            .unwrap_or_default())
    }

    /// The head of `tenant`'s audit chain (`None`: no record yet).
    pub fn audit_head(&self, tenant: &str) -> Result<Option<super::AuditHead>, StorageError> {
        self.get_record(&layout::audit_head(self.group, tenant))
    }

    /// The audit page holding record `seq` of `tenant`, if this group holds it:
    /// the page's first seq and its records.
    pub fn audit_page_holding(
        &self,
        tenant: &str,
        seq: u64,
    ) -> Result<Option<(u64, Vec<AuditRecord>)>, StorageError> {
        let start = layout::audit_prefix(self.group, tenant);
        let end = layout::audit_page(self.group, tenant, seq.saturating_add(1));
        let Some((key, value)) = self.engine.last_in(&start, &end)? else {
            return Ok(None);
        };
        let records: Vec<AuditRecord> = Self::decode_record(&key, &value)?;
        let Some(first) = records.first().map(|r| r.seq) else {
            return Ok(None);
        };
        let holds = seq >= first && seq - first < records.len() as u64;
        Ok(holds.then_some((first, records)))
    }

    /// Record `seq` of `tenant`'s audit chain, if this group holds it.
    pub fn audit_record(
        &self,
        tenant: &str,
        seq: u64,
    ) -> Result<Option<AuditRecord>, StorageError> {
        Ok(self
            .audit_page_holding(tenant, seq)?
            .and_then(|(first, records)| records.into_iter().nth((seq - first) as usize)))
    }

    /// Up to `limit` audit records of `tenant` after `after_seq`, in order.
    pub fn audit_records(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        const PAGES_PER_SCAN: usize = 16;
        let want = after_seq.saturating_add(1);
        // The page holding the first wanted record may start before it.
        let first = match self.audit_page_holding(tenant, want)? {
            Some((first, _)) => first,
            None => want,
        };
        let end = keys::prefix_end(&layout::audit_prefix(self.group, tenant))
            .unwrap_or_else(|| keys::app_end(self.group));
        let mut from = layout::audit_page(self.group, tenant, first);
        let mut bound = Bound::Included(from.as_slice());
        let mut out = Vec::new();
        while out.len() < limit {
            let rows = self
                .engine
                .scan(bound, Bound::Excluded(&end), PAGES_PER_SCAN)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            let last = last.clone();
            for (key, value) in &rows {
                let records: Vec<AuditRecord> = Self::decode_record(key, value)?;
                let room = limit - out.len();
                out.extend(records.into_iter().filter(|r| r.seq >= want).take(room));
                if out.len() >= limit {
                    break;
                }
            }
            from = last;
            bound = Bound::Excluded(from.as_slice());
        }
        Ok(out)
    }

    /// Every container of every tenant in this group.
    pub fn all_containers(&self) -> Result<Vec<ContainerRecord>, StorageError> {
        let mut prefix = keys::app(self.group);
        prefix.push(b'n');
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&prefix), Bound::Excluded(&end), usize::MAX)?;
        rows.iter()
            .map(|(k, v)| Self::decode_record(k, v))
            .collect()
    }

    /// Every container of `tenant`, by name.
    pub fn containers(&self, tenant: &str) -> Result<Vec<ContainerRecord>, StorageError> {
        let prefix = layout::containers_prefix(self.group, tenant);
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&prefix), Bound::Excluded(&end), usize::MAX)?;
        rows.iter()
            .map(|(k, v)| Self::decode_record(k, v))
            .collect()
    }

    /// Every tenant's role record in this group.
    pub fn roles(
        &self,
    ) -> Result<std::collections::BTreeMap<String, super::geo::TenantRole>, StorageError> {
        let prefix = layout::roles_prefix(self.group);
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&prefix), Bound::Excluded(&end), usize::MAX)?;
        rows.iter()
            .map(|(k, v)| {
                let tenant = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((tenant, Self::decode_record(k, v)?))
            })
            .collect()
    }

    /// Up to `limit` outbox entries of `tenant` from sequence `from` on, in order.
    pub fn outbox(
        &self,
        tenant: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<super::geo::GeoEntry>, StorageError> {
        let prefix = layout::outbox_prefix(self.group, tenant);
        let start = layout::outbox(self.group, tenant, from);
        let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::app_end(self.group));
        let rows = self
            .engine
            .scan(Bound::Included(&start), Bound::Excluded(&end), limit)?;
        rows.iter()
            .map(|(k, v)| Self::decode_record(k, v))
            .collect()
    }

    /// Whether an outbox entry still needs the chunks of `version`.
    pub fn geo_hold(&self, version: u128) -> Result<bool, StorageError> {
        Ok(self
            .engine
            .get(&layout::geo_hold(self.group, version))?
            .is_some())
    }

    /// Whether the container holds any object in this group.
    pub fn container_has_objects(
        &self,
        tenant: &str,
        container: &str,
    ) -> Result<bool, StorageError> {
        Ok(!self.list(tenant, container, "", None, 1)?.is_empty())
    }
}

/// The version id in the last 16 bytes of a key.
fn version_suffix(key: &[u8]) -> Result<u128, StorageError> {
    key.len()
        .checked_sub(16)
        .and_then(|at| <[u8; 16]>::try_from(&key[at..]).ok())
        .map(u128::from_be_bytes)
        .ok_or_else(|| StorageError::Corrupt {
            key: hex::encode(key),
            why: "key too short for a version id".into(),
        })
}
