//! The replicated state machine of one group over the storage seams.
//!
//! Generic over the [`Application`] (the directory or the object store): this module
//! owns what every group shares (last applied id, membership, snapshots) and hands
//! each normal entry to the application.
//!
//! **Atomicity:** each entry's application writes and the new "last applied" marker
//! go into one engine batch, so a crash never leaves half an entry applied. State
//! machine writes are not synced on their own: the log is durable and replay is
//! deterministic. Installing a snapshot is made restartable by an "installing" marker
//! written (and synced) first; [`GroupStateMachine::open`] finishes an interrupted
//! install from the spool.
//!
//! Snapshots hold the application space only (see [`super::snapshot`]); building one
//! copies metadata, never chunk bytes.

use super::snapshot::{spool_name, spool_prefix, write_spool, BlobCursor, SpoolReader};
use super::{
    decode, encode, keys, log_store::io_err, Command, GroupCounters, LogId, Response, StorageError,
    TypeConfig,
};
use crate::storage::overlay::Overlay;
use crate::storage::{frame, BlobRef, EngineRef, WriteBatch, WriteOp};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type Local = crate::storage::StorageError;

/// What a group replicates: the directory or the object store.
pub trait Application: Send + Sync + 'static {
    /// Applies one command at `log_id`, adding its writes to `batch`. Reads must go
    /// through `view`, which shows every earlier command's writes (they may not have
    /// reached the engine yet). Errors returned here are fatal storage errors;
    /// rejections (not found, precondition failed) are part of the `Response`.
    fn apply(
        &mut self,
        command: Command,
        log_id: LogId,
        view: &EngineRef,
        batch: &mut WriteBatch,
    ) -> Result<Response, Local>;

    /// Side effects outside the engine (removing blobs), run after the entry's batch.
    fn finish_entry(&mut self) -> Result<(), Local> {
        Ok(())
    }

    /// Reloads any in-memory view after the application space changed wholesale
    /// (startup, snapshot install).
    fn reload(&mut self) -> Result<(), Local>;

    /// Reconciles replica-local state after a snapshot replaced the application space.
    fn after_install(&mut self) -> Result<(), Local> {
        Ok(())
    }

    /// Work on an apply call's pending writes before they reach the engine (through
    /// `view`, which shows them): the object store compacts inline segments here.
    fn before_flush(&mut self, _view: &EngineRef) -> Result<(), Local> {
        Ok(())
    }

    /// Whether blobs were written since the last call that rows about to reach the
    /// engine refer to: the state machine then syncs the blob store first, so no
    /// durable row points at bytes that are not.
    fn take_unsynced_blobs(&mut self) -> bool {
        false
    }

    /// Blobs to remove once the engine has durably applied the last batch.
    fn take_removals(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// The value a snapshot carries for application row `key` (without the
    /// application prefix): the object store puts inline bytes in place of their
    /// reference, since where a replica keeps them is its own business.
    fn spool_value(&self, _key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, Local> {
        Ok(value)
    }

    /// The value to store for a snapshot row, undoing [`Self::spool_value`]; may add
    /// replica-local rows to `batch`.
    fn install_value(
        &mut self,
        _key: &[u8],
        value: Vec<u8>,
        _batch: &mut WriteBatch,
    ) -> Result<Vec<u8>, Local> {
        Ok(value)
    }
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, BasicNode>,
}

/// The current (or being-installed) snapshot: its meta and the spool holding it.
#[derive(Serialize, Deserialize, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    spool: String,
}

/// Bytes of applied writes gathered before they go to the engine (always at an
/// entry boundary): bounds memory when a replica catches up on a long log.
const APPLY_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The state machine of one group on one node.
pub struct GroupStateMachine<A: Application> {
    engine: EngineRef,
    blobs: BlobRef,
    group: u64,
    app: A,
    meta: SmMeta,
    snapshot_seq: u64,
    counters: Arc<GroupCounters>,
}

fn batch_bytes(batch: &WriteBatch) -> usize {
    batch
        .ops
        .iter()
        .map(|op| match op {
            WriteOp::Put { key, value } => key.len() + value.len(),
            WriteOp::Remove { key } => key.len(),
            WriteOp::RemoveRange { start, end } => start.len() + end.len(),
        })
        .sum()
}

fn read_framed<T: for<'de> Deserialize<'de>>(
    engine: &EngineRef,
    key: &[u8],
) -> Result<Option<T>, Local> {
    let Some(record) = engine.get(key)? else {
        return Ok(None);
    };
    let payload = frame::decode(key, &record)?;
    decode(payload).map(Some).map_err(|e| Local::Corrupt {
        key: hex::encode(key),
        why: e.to_string(),
    })
}

fn sm_err(verb: ErrorVerb) -> impl Fn(Local) -> StorageError {
    move |e| io_err(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb) -> impl Fn(Local) -> StorageError {
    move |e| io_err(ErrorSubject::Snapshot(None), verb, e)
}

impl<A: Application> GroupStateMachine<A> {
    /// Applies one command through `view`; returns its response and the bytes it wrote.
    fn apply_one(
        &mut self,
        command: Command,
        log_id: LogId,
        view: &EngineRef,
    ) -> Result<(Response, usize), Local> {
        let mut batch = WriteBatch::new();
        let response = self.app.apply(command, log_id, view, &mut batch)?;
        let bytes = batch_bytes(&batch);
        view.apply(batch)?;
        Ok((response, bytes))
    }

    /// Sends the overlay's writes and the current "last applied" marker to the
    /// engine as one batch (after syncing blobs the batch refers to), then runs the
    /// application's side effects.
    async fn flush_applied(&mut self, overlay: &Arc<Overlay>) -> Result<(), Local> {
        let view: EngineRef = overlay.clone();
        self.app.before_flush(&view)?;
        if self.app.take_unsynced_blobs() {
            self.blobs.sync().await?;
        }
        let mut batch = overlay.take_batch();
        batch.put(
            keys::sm_meta(self.group),
            frame::encode(&encode(&self.meta)),
        );
        self.engine.apply(batch)?;
        let removals = self.app.take_removals();
        if !removals.is_empty() {
            self.engine.sync().await?;
            for name in removals {
                self.blobs.remove(&name)?;
            }
        }
        self.app.finish_entry()
    }

    /// Opens the state machine: finishes an interrupted snapshot install, loads the
    /// meta and the application's view, and drops spools nothing refers to.
    pub fn open(
        engine: EngineRef,
        blobs: BlobRef,
        group: u64,
        app: A,
        counters: Arc<GroupCounters>,
    ) -> Result<Self, StorageError> {
        let mut sm = Self {
            engine,
            blobs,
            group,
            app,
            meta: SmMeta::default(),
            snapshot_seq: 0,
            counters,
        };
        if let Some(stored) = read_framed::<StoredSnapshot>(&sm.engine, &keys::installing(group))
            .map_err(sm_err(ErrorVerb::Read))?
        {
            tracing::warn!(group, spool = %stored.spool, "finishing a snapshot install interrupted by a restart");
            sm.replace_state(&stored)
                .map_err(snap_err(ErrorVerb::Write))?;
        }
        sm.meta = read_framed(&sm.engine, &keys::sm_meta(group))
            .map_err(sm_err(ErrorVerb::Read))?
            .unwrap_or_default();
        sm.app.reload().map_err(sm_err(ErrorVerb::Read))?;
        sm.drop_stale_spools()
            .map_err(snap_err(ErrorVerb::Delete))?;
        Ok(sm)
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, Local> {
        read_framed(&self.engine, &keys::snapshot(self.group))
    }

    fn drop_stale_spools(&self) -> Result<(), Local> {
        let keep = self.current_snapshot()?.map(|s| s.spool);
        for name in self.blobs.list(&spool_prefix(self.group))? {
            if Some(&name) != keep.as_ref() {
                self.blobs.remove(&name)?;
            }
        }
        Ok(())
    }

    /// Replaces the application space with the spool's rows and makes `stored` the
    /// current snapshot. Idempotent, so an interrupted install can be redone.
    fn replace_state(&mut self, stored: &StoredSnapshot) -> Result<(), Local> {
        let previous = self.current_snapshot()?;
        let prefix = keys::app(self.group);
        let mut batch = WriteBatch::new();
        batch.remove_range(prefix.clone(), keys::app_end(self.group));
        let local = keys::local(self.group);
        if let Some(end) = keys::prefix_end(&local) {
            batch.remove_range(local, end);
        }
        self.engine.apply(batch)?;
        let mut reader = SpoolReader::new(&self.blobs, &stored.spool);
        while let Some(rows) = reader.next_rows()? {
            let mut batch = WriteBatch::new();
            for (k, v) in rows {
                let v = self.app.install_value(&k, v, &mut batch)?;
                let mut key = prefix.clone();
                key.extend_from_slice(&k);
                batch.put(key, v);
            }
            self.engine.apply(batch)?;
        }
        let meta = SmMeta {
            last_applied: stored.meta.last_log_id,
            membership: stored.meta.last_membership.clone(),
        };
        let mut batch = WriteBatch::new();
        batch.put(keys::sm_meta(self.group), frame::encode(&encode(&meta)));
        batch.put(keys::snapshot(self.group), frame::encode(&encode(stored)));
        batch.remove(keys::installing(self.group));
        self.engine.apply(batch)?;
        self.meta = meta;
        if let Some(old) = previous.filter(|p| p.spool != stored.spool) {
            self.blobs.remove(&old.spool)?;
        }
        Ok(())
    }
}

/// Finishes a snapshot whose rows were spooled on the state-machine task, so it is a
/// consistent point-in-time copy even though applies continue meanwhile.
pub struct GroupSnapshotBuilder {
    engine: EngineRef,
    blobs: BlobRef,
    group: u64,
    spooled: Result<u64, String>,
    stored: StoredSnapshot,
    counters: Arc<GroupCounters>,
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let len = self.spooled.clone().map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Write,
                std::io::Error::other(e),
            )
        })?;
        self.blobs
            .sync()
            .await
            .map_err(snap_err(ErrorVerb::Write))?;
        let previous: Option<StoredSnapshot> =
            read_framed(&self.engine, &keys::snapshot(self.group))
                .map_err(snap_err(ErrorVerb::Read))?;
        let mut batch = WriteBatch::new();
        batch.put(
            keys::snapshot(self.group),
            frame::encode(&encode(&self.stored)),
        );
        self.engine
            .apply(batch)
            .map_err(snap_err(ErrorVerb::Write))?;
        self.engine
            .sync()
            .await
            .map_err(snap_err(ErrorVerb::Write))?;
        if let Some(old) = previous.filter(|p| p.spool != self.stored.spool) {
            // A transfer of the old snapshot still in flight fails and is retried
            // with this one.
            self.blobs
                .remove(&old.spool)
                .map_err(snap_err(ErrorVerb::Delete))?;
        }
        self.counters.snapshot_built(len);
        tracing::info!(group = self.group, snapshot = %self.stored.meta.snapshot_id, bytes = len, "snapshot built");
        Ok(Snapshot {
            meta: self.stored.meta.clone(),
            snapshot: Box::new(BlobCursor::new(
                self.blobs.clone(),
                self.stored.spool.clone(),
            )),
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
        // Every entry of the call is applied through one overlay and reaches the
        // engine as one batch with the new "last applied" marker (split only
        // between entries, when the batch grows past APPLY_BATCH_BYTES).
        let overlay = Overlay::new(self.engine.clone());
        let view: EngineRef = overlay.clone();
        let mut pending_bytes = 0usize;
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let apply_err = move |e| io_err(ErrorSubject::Apply(log_id), ErrorVerb::Write, e);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    self.meta.membership = StoredMembership::new(Some(log_id), m);
                    Response::None
                }
                EntryPayload::Normal(Command::Batch(commands)) => {
                    let mut each = Vec::with_capacity(commands.len());
                    for command in commands {
                        let (response, bytes) =
                            self.apply_one(command, log_id, &view).map_err(apply_err)?;
                        pending_bytes += bytes;
                        each.push(response);
                    }
                    Response::Batch(each)
                }
                EntryPayload::Normal(command) => {
                    let (response, bytes) =
                        self.apply_one(command, log_id, &view).map_err(apply_err)?;
                    pending_bytes += bytes;
                    response
                }
            };
            self.meta.last_applied = Some(log_id);
            responses.push(response);
            if pending_bytes >= APPLY_BATCH_BYTES {
                self.flush_applied(&overlay).await.map_err(apply_err)?;
                pending_bytes = 0;
            }
        }
        if let Some(last) = self.meta.last_applied {
            let apply_err = move |e| io_err(ErrorSubject::Apply(last), ErrorVerb::Write, e);
            self.flush_applied(&overlay).await.map_err(apply_err)?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let last = self
            .meta
            .last_applied
            .map(|l| format!("{}-{}", l.leader_id.term, l.index))
            .unwrap_or_else(|| "0-0".into());
        let id = format!("{last}-{}", self.snapshot_seq);
        let spool = spool_name(self.group, &format!("built-{id}"));
        // Spooled here, on the state-machine task, so no apply interleaves.
        let app = &self.app;
        let spooled = write_spool(&self.engine, &self.blobs, self.group, &spool, &|k, v| {
            app.spool_value(k, v)
        })
        .map_err(|e| e.to_string());
        let meta = SnapshotMeta {
            last_log_id: self.meta.last_applied,
            last_membership: self.meta.membership.clone(),
            snapshot_id: id,
        };
        GroupSnapshotBuilder {
            engine: self.engine.clone(),
            blobs: self.blobs.clone(),
            group: self.group,
            spooled,
            stored: StoredSnapshot { meta, spool },
            counters: self.counters.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<BlobCursor>, StorageError> {
        self.snapshot_seq += 1;
        let name = spool_name(self.group, &format!("received-{}", self.snapshot_seq));
        self.blobs
            .remove(&name)
            .map_err(snap_err(ErrorVerb::Write))?;
        Ok(Box::new(BlobCursor::new(self.blobs.clone(), name)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<BlobCursor>,
    ) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let err = |verb| move |e| io_err(subject(), verb, e);
        let spool = if snapshot.is_in(&self.blobs) {
            snapshot.name().to_string()
        } else {
            self.snapshot_seq += 1;
            let name = spool_name(self.group, &format!("received-{}", self.snapshot_seq));
            snapshot
                .copy_to(&self.blobs, &name)
                .map_err(err(ErrorVerb::Write))?;
            name
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            spool,
        };
        self.blobs.sync().await.map_err(err(ErrorVerb::Write))?;
        let rows = SpoolReader::new(&self.blobs, &stored.spool)
            .verify()
            .map_err(err(ErrorVerb::Read))?;
        let mut batch = WriteBatch::new();
        batch.put(
            keys::installing(self.group),
            frame::encode(&encode(&stored)),
        );
        self.engine.apply(batch).map_err(err(ErrorVerb::Write))?;
        self.engine.sync().await.map_err(err(ErrorVerb::Write))?;
        self.replace_state(&stored).map_err(err(ErrorVerb::Write))?;
        // Rows of the new state name blobs written during the install.
        self.blobs.sync().await.map_err(err(ErrorVerb::Write))?;
        self.engine.sync().await.map_err(err(ErrorVerb::Write))?;
        self.app.reload().map_err(err(ErrorVerb::Read))?;
        self.app.after_install().map_err(err(ErrorVerb::Write))?;
        tracing::info!(group = self.group, snapshot = %meta.snapshot_id, rows, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = self.current_snapshot().map_err(snap_err(ErrorVerb::Read))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(BlobCursor::new(self.blobs.clone(), s.spool)),
        }))
    }
}
