//! Local reads of a group's object store (no Raft involved: callers decide whether
//! to confirm leadership first).

use super::{layout, ObjectId, ObjectMeta, UploadRecord};
use crate::raft::{decode, keys};
use crate::storage::{frame, EngineRef, StorageError};
use std::ops::Bound;

/// Read access to one group's objects on this node.
#[derive(Clone)]
pub struct ObjectReader {
    engine: EngineRef,
    group: u64,
}

impl ObjectReader {
    pub fn new(engine: EngineRef, group: u64) -> Self {
        Self { engine, group }
    }

    pub fn group(&self) -> u64 {
        self.group
    }

    pub(crate) fn engine(&self) -> &EngineRef {
        &self.engine
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

    /// The current version of `object`.
    pub fn head(&self, object: &ObjectId) -> Result<Option<ObjectMeta>, StorageError> {
        let key = layout::object(self.group, &object.tenant, &object.container, &object.key);
        match self.engine.get(&key)? {
            Some(record) => Self::decode_record(&key, &record).map(Some),
            None => Ok(None),
        }
    }

    /// An upload in progress.
    pub fn upload(&self, upload: u128) -> Result<Option<UploadRecord>, StorageError> {
        let key = layout::upload(self.group, upload);
        match self.engine.get(&key)? {
            Some(record) => Self::decode_record(&key, &record).map(Some),
            None => Ok(None),
        }
    }

    /// Chunk `index` of `version`, CRC-checked. `None` if the version is gone
    /// (overwritten or deleted while a reader streamed it).
    pub fn chunk(&self, version: u128, index: u32) -> Result<Option<Vec<u8>>, StorageError> {
        let key = layout::chunk(self.group, version, index);
        match self.engine.get(&key)? {
            Some(record) => Ok(Some(frame::decode(&key, &record)?.to_vec())),
            None => Ok(None),
        }
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
        let base = layout::container_prefix(self.group, tenant, container);
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

    /// Whether the container holds any object in this group.
    pub fn container_has_objects(
        &self,
        tenant: &str,
        container: &str,
    ) -> Result<bool, StorageError> {
        Ok(!self.list(tenant, container, "", None, 1)?.is_empty())
    }
}
