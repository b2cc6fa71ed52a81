//! The replicated state machine of one group over the storage seam.
//!
//! Generic over the [`Application`] (the directory or the object store): this module
//! owns what every group shares — last applied id, membership, snapshots — and hands
//! each normal entry to the application.
//!
//! **Atomicity:** each entry's application writes and the new "last applied" marker
//! go into one batch, so a crash never leaves half an entry applied, and restart
//! resumes exactly after the last whole entry. State-machine writes are not synced:
//! the log is durable, and replay after a crash is deterministic.

use super::{
    decode, encode, keys, log_store::io_err, Command, LogId, Response, StorageError, TypeConfig,
};
use crate::storage::{frame, EngineRef, WriteBatch};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::ops::Bound;

/// What a group replicates: the directory or the object store.
pub trait Application: Send + Sync + 'static {
    /// Applies one command at `log_id`, adding its writes to `batch`. Reads see the
    /// state after every earlier entry. Errors returned here are fatal storage errors;
    /// rejections (not found, precondition failed) are part of the `Response`.
    fn apply(
        &mut self,
        command: Command,
        log_id: LogId,
        batch: &mut WriteBatch,
    ) -> Result<Response, crate::storage::StorageError>;

    /// Reloads any in-memory view after the application space was replaced by a
    /// snapshot (or at startup).
    fn reload(&mut self) -> Result<(), crate::storage::StorageError>;
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, BasicNode>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    meta: SmMeta,
    /// Application keys relative to the group's application prefix.
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

/// The state machine of one group on one node.
pub struct GroupStateMachine<A: Application> {
    engine: EngineRef,
    group: u64,
    app: A,
    meta: SmMeta,
    snapshot_seq: u64,
}

impl<A: Application> GroupStateMachine<A> {
    /// Opens the state machine, loading its meta and the application's view.
    pub fn open(engine: EngineRef, group: u64, mut app: A) -> Result<Self, StorageError> {
        let meta = match engine
            .get(&keys::sm_meta(group))
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?
        {
            Some(record) => {
                let key = keys::sm_meta(group);
                let payload = frame::decode(&key, &record)
                    .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
                decode(payload)
                    .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?
            }
            None => SmMeta::default(),
        };
        app.reload()
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        Ok(Self {
            engine,
            group,
            app,
            meta,
            snapshot_seq: 0,
        })
    }

    fn image(&self) -> Result<SnapshotImage, StorageError> {
        let start = keys::app(self.group);
        let end = keys::app_end(self.group);
        let rows = self
            .engine
            .scan(Bound::Included(&start), Bound::Excluded(&end), usize::MAX)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
            .into_iter()
            .map(|(k, v)| (k[start.len()..].to_vec(), v))
            .collect();
        Ok(SnapshotImage {
            meta: self.meta.clone(),
            rows,
        })
    }
}

/// Builds a snapshot from an image captured on the state-machine task, so it is a
/// consistent point-in-time copy even though applies continue meanwhile.
pub struct GroupSnapshotBuilder {
    engine: EngineRef,
    group: u64,
    image: Result<Vec<u8>, String>,
    meta: SmMeta,
    snapshot_id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self.image.clone().map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Read,
                std::io::Error::other(e),
            )
        })?;
        let meta = SnapshotMeta {
            last_log_id: self.meta.last_applied,
            last_membership: self.meta.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let mut batch = WriteBatch::new();
        batch.put(keys::snapshot(self.group), frame::encode(&encode(&stored)));
        self.engine
            .apply(batch)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: Application> RaftStateMachine<TypeConfig> for GroupStateMachine<A> {
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let mut batch = WriteBatch::new();
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    self.meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::None
                }
                EntryPayload::Normal(command) => self
                    .app
                    .apply(command, entry.log_id, &mut batch)
                    .map_err(|e| io_err(ErrorSubject::Apply(entry.log_id), ErrorVerb::Write, e))?,
            };
            self.meta.last_applied = Some(entry.log_id);
            batch.put(
                keys::sm_meta(self.group),
                frame::encode(&encode(&self.meta)),
            );
            self.engine
                .apply(batch)
                .map_err(|e| io_err(ErrorSubject::Apply(entry.log_id), ErrorVerb::Write, e))?;
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let image = self.image().map(|i| encode(&i)).map_err(|e| e.to_string());
        let last = self
            .meta
            .last_applied
            .map(|l| format!("{}-{}", l.leader_id, l.index))
            .unwrap_or_else(|| "none".into());
        GroupSnapshotBuilder {
            engine: self.engine.clone(),
            group: self.group,
            image,
            meta: self.meta.clone(),
            snapshot_id: format!("{}-{last}-{}", self.group, self.snapshot_seq),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        let image: SnapshotImage =
            decode(&data).map_err(|e| io_err(subject(), ErrorVerb::Read, e))?;
        let prefix = keys::app(self.group);
        let mut batch = WriteBatch::new();
        batch.remove_range(prefix.clone(), keys::app_end(self.group));
        for (k, v) in image.rows {
            let mut key = prefix.clone();
            key.extend_from_slice(&k);
            batch.put(key, v);
        }
        let new_meta = SmMeta {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        batch.put(keys::sm_meta(self.group), frame::encode(&encode(&new_meta)));
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        batch.put(keys::snapshot(self.group), frame::encode(&encode(&stored)));
        self.engine
            .apply(batch)
            .map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
        self.engine
            .sync()
            .await
            .map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
        self.meta = new_meta;
        self.app
            .reload()
            .map_err(|e| io_err(subject(), ErrorVerb::Read, e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let key = keys::snapshot(self.group);
        let Some(record) = self
            .engine
            .get(&key)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let payload = frame::decode(&key, &record)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        let stored: StoredSnapshot = decode(payload)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
