//! Applies [`ObjectCommand`]s to a group's object store.

use super::reader::ObjectReader;
use super::{
    layout, Conditions, ObjectCommand, ObjectId, ObjectMeta, ObjectResponse, UploadRecord,
};
use crate::raft::state_machine::Application;
use crate::raft::{encode, keys, Command, LogId, Response};
use crate::storage::{frame, EngineRef, StorageError, WriteBatch};
use std::ops::Bound;

/// Uploads reaped per `ReapUploads` command, so one entry's batch stays bounded.
const REAP_UPLOADS_MAX: usize = 256;

/// The object store of one group: the [`Application`] of replica groups.
pub struct ObjectStore {
    reader: ObjectReader,
}

impl ObjectStore {
    pub fn new(engine: EngineRef, group: u64) -> Self {
        Self {
            reader: ObjectReader::new(engine, group),
        }
    }

    fn group(&self) -> u64 {
        self.reader.group()
    }

    fn remove_version(&self, batch: &mut WriteBatch, version: u128) {
        let prefix = layout::version_prefix(self.group(), version);
        if let Some(end) = keys::prefix_end(&prefix) {
            batch.remove_range(prefix, end);
        }
    }

    fn put_meta(&self, batch: &mut WriteBatch, object: &ObjectId, meta: &ObjectMeta) {
        batch.put(
            layout::object(self.group(), &object.tenant, &object.container, &object.key),
            frame::encode(&encode(meta)),
        );
    }

    /// Replaces the current version (if any) with `meta`, keeping the creation time.
    fn install(
        &self,
        batch: &mut WriteBatch,
        object: &ObjectId,
        mut meta: ObjectMeta,
        current: Option<ObjectMeta>,
    ) -> ObjectResponse {
        if let Some(old) = current {
            meta.created_ms = old.created_ms;
            if old.version != meta.version {
                self.remove_version(batch, old.version);
            }
        }
        self.put_meta(batch, object, &meta);
        ObjectResponse::Stored(meta)
    }

    fn append_chunk(
        &self,
        batch: &mut WriteBatch,
        upload: u128,
        object: ObjectId,
        now_ms: u64,
        index: u32,
        data: &[u8],
    ) -> Result<ObjectResponse, StorageError> {
        let mut record = self.reader.upload(upload)?.unwrap_or(UploadRecord {
            object,
            started_ms: now_ms,
            touched_ms: now_ms,
            chunks: 0,
        });
        record.chunks += 1;
        record.touched_ms = record.touched_ms.max(now_ms);
        batch.put(
            layout::chunk(self.group(), upload, index),
            frame::encode(data),
        );
        batch.put(
            layout::upload(self.group(), upload),
            frame::encode(&encode(&record)),
        );
        Ok(ObjectResponse::Appended)
    }

    fn commit(
        &self,
        batch: &mut WriteBatch,
        upload: u128,
        object: ObjectId,
        meta: ObjectMeta,
        conditions: &Conditions,
    ) -> Result<ObjectResponse, StorageError> {
        let Some(record) = self.reader.upload(upload)? else {
            return Ok(ObjectResponse::UploadMissing);
        };
        batch.remove(layout::upload(self.group(), upload));
        if record.chunks != meta.chunks || record.object != object || meta.version != upload {
            self.remove_version(batch, upload);
            return Ok(ObjectResponse::Incomplete {
                expected: meta.chunks,
                appended: record.chunks,
            });
        }
        let current = self.reader.head(&object)?;
        if let Some(why) = conditions.check(current.as_ref()) {
            self.remove_version(batch, upload);
            return Ok(ObjectResponse::PreconditionFailed(why));
        }
        Ok(self.install(batch, &object, meta, current))
    }

    fn put_small(
        &self,
        batch: &mut WriteBatch,
        object: ObjectId,
        meta: ObjectMeta,
        data: &[u8],
        conditions: &Conditions,
    ) -> Result<ObjectResponse, StorageError> {
        let current = self.reader.head(&object)?;
        if let Some(why) = conditions.check(current.as_ref()) {
            return Ok(ObjectResponse::PreconditionFailed(why));
        }
        if meta.chunks == 1 {
            batch.put(
                layout::chunk(self.group(), meta.version, 0),
                frame::encode(data),
            );
        }
        Ok(self.install(batch, &object, meta, current))
    }

    fn delete(
        &self,
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
        self.remove_version(batch, current.version);
        Ok(ObjectResponse::Deleted {
            version: current.version,
        })
    }

    fn abort(&self, batch: &mut WriteBatch, upload: u128) -> ObjectResponse {
        batch.remove(layout::upload(self.group(), upload));
        self.remove_version(batch, upload);
        ObjectResponse::Aborted
    }

    fn reap(
        &self,
        batch: &mut WriteBatch,
        idle_before_ms: u64,
    ) -> Result<ObjectResponse, StorageError> {
        let prefix = layout::uploads_prefix(self.group());
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        let mut reaped = 0u32;
        for (key, record) in self.reader.engine().scan(
            Bound::Included(&prefix),
            Bound::Excluded(&end),
            usize::MAX,
        )? {
            if reaped as usize >= REAP_UPLOADS_MAX {
                break;
            }
            let record: UploadRecord = ObjectReader::decode_record(&key, &record)?;
            let Some(raw) = key
                .get(prefix.len()..prefix.len() + 16)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
            else {
                continue;
            };
            if record.touched_ms < idle_before_ms {
                self.abort(batch, u128::from_be_bytes(raw));
                reaped += 1;
            }
        }
        Ok(ObjectResponse::Reaped { uploads: reaped })
    }
}

impl Application for ObjectStore {
    fn apply(
        &mut self,
        command: Command,
        _log_id: LogId,
        batch: &mut WriteBatch,
    ) -> Result<Response, StorageError> {
        let Command::Object(command) = command else {
            return Err(StorageError::Corrupt {
                key: format!("group {}", self.group()),
                why: "directory command in a replica group's log".into(),
            });
        };
        let response = match command {
            ObjectCommand::AppendChunk {
                upload,
                object,
                now_ms,
                index,
                data,
            } => self.append_chunk(batch, upload, object, now_ms, index, &data)?,
            ObjectCommand::Commit {
                upload,
                object,
                meta,
                conditions,
            } => self.commit(batch, upload, object, meta, &conditions)?,
            ObjectCommand::PutSmall {
                object,
                meta,
                data,
                conditions,
            } => self.put_small(batch, object, meta, &data, &conditions)?,
            ObjectCommand::Abort { upload } => self.abort(batch, upload),
            ObjectCommand::Delete { object, if_match } => self.delete(batch, object, if_match)?,
            ObjectCommand::ReapUploads { idle_before_ms } => self.reap(batch, idle_before_ms)?,
        };
        Ok(Response::Object(response))
    }

    fn reload(&mut self) -> Result<(), StorageError> {
        // Nothing is cached in memory: every read goes to the engine.
        Ok(())
    }
}
