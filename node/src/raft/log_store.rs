//! openraft log storage: entries in append-only segment blobs ([`SegmentLog`]), the
//! vote, the committed id and the purge marker in the engine (framed, CRC-checked).
//!
//! **Durability:** `append` reports completion to openraft (its callback) only
//! after a blob-store sync that started after the write returned; `save_vote` and
//! `truncate` sync before returning. Nothing is acknowledged to a client before the
//! entry carrying it is durable on a quorum.

use super::segments::SegmentLog;
use super::{decode, encode, keys, GroupCounters, LogId, StorageError, TypeConfig};
use crate::storage::group_commit::GroupCommit;
use crate::storage::{frame, BlobRef, EngineRef, WriteBatch};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogId, RaftLogReader,
    StorageIOError, Vote,
};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

/// The log of one group on one node. Clones share the log (openraft reads it
/// through a clone).
#[derive(Clone)]
pub struct LogStore {
    engine: EngineRef,
    blobs: BlobRef,
    commit: Arc<GroupCommit>,
    group: u64,
    counters: Arc<GroupCounters>,
    log: Arc<Mutex<SegmentLog>>,
}

/// Wraps any error as an openraft storage error.
pub fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn logs_err(verb: ErrorVerb) -> impl Fn(crate::storage::StorageError) -> StorageError {
    move |e| io_err(ErrorSubject::Logs, verb, e)
}

impl LogStore {
    /// Opens the group's log, cutting a torn last write.
    pub fn open(
        engine: EngineRef,
        blobs: BlobRef,
        commit: Arc<GroupCommit>,
        group: u64,
        counters: Arc<GroupCounters>,
    ) -> Result<Self, StorageError> {
        let purged: Option<LogId> = read_value(&engine, &keys::purged(group), ErrorSubject::Logs)?;
        let log = SegmentLog::open(blobs.clone(), group, purged.map(|p| p.index))
            .map_err(logs_err(ErrorVerb::Read))?;
        Ok(Self {
            engine,
            blobs,
            commit,
            group,
            counters,
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// See [`SegmentLog::oldest_stored_index`].
    pub fn oldest_stored_index(&self) -> Option<u64> {
        self.log().oldest_stored_index()
    }

    /// See [`SegmentLog::seal_current_if_holds`].
    pub fn seal_segment_holding(&self, index: u64) {
        self.log().seal_current_if_holds(index)
    }

    /// Turns a stored committed vote for `me` back into a plain vote for itself,
    /// so the replica restarts as a follower and leads again only after winning an
    /// election in a new term.
    ///
    /// openraft 0.9 otherwise restores a restarted leader at once. That is unsafe
    /// here: a leader replicates entries before its own write of them is durable,
    /// so after a crash its log can be shorter than what a quorum acknowledged.
    /// Restored, it would serve reads from before acknowledged writes and write new
    /// entries under log ids its followers already hold with other contents. Found
    /// by the simulation (fuzz seed 27: a whole facility crashed and the first read
    /// after the restart returned a value overwritten before the crash).
    pub async fn forget_own_leadership(&mut self, me: u64) -> Result<(), StorageError> {
        match self.read_vote().await? {
            Some(vote) if vote.is_committed() && vote.leader_id().voted_for() == Some(me) => {
                let demoted = Vote::new(vote.leader_id().get_term(), me);
                tracing::debug!(group = self.group, %vote, "restarting as a follower, not as the stored leader");
                self.save_vote(&demoted).await
            }
            _ => Ok(()),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, SegmentLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn put_synced(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.engine
            .apply(batch)
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.commit
            .sync()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }
}

fn read_value<T: for<'de> serde::Deserialize<'de>>(
    engine: &EngineRef,
    key: &[u8],
    subject: ErrorSubject<u64>,
) -> Result<Option<T>, StorageError> {
    let Some(record) = engine
        .get(key)
        .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?
    else {
        return Ok(None);
    };
    let payload =
        frame::decode(key, &record).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?;
    decode(payload)
        .map(Some)
        .map_err(|e| io_err(subject, ErrorVerb::Read, e))
}

fn decode_entry(index: u64, payload: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    decode(payload).map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let rows = self
            .log()
            .read(start, end)
            .map_err(logs_err(ErrorVerb::Read))?;
        rows.iter()
            .map(|(i, payload)| decode_entry(*i, payload))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            read_value(&self.engine, &keys::purged(self.group), ErrorSubject::Logs)?;
        let last = {
            let log = self.log();
            match log.last_index() {
                Some(i) => log.read(i, i + 1).map_err(logs_err(ErrorVerb::Read))?.pop(),
                None => None,
            }
        };
        let last_log_id = match last {
            Some((i, payload)) => Some(*decode_entry(i, &payload)?.get_log_id()),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_synced(
            keys::vote(self.group),
            frame::encode(&encode(vote)),
            ErrorSubject::Vote,
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        read_value(&self.engine, &keys::vote(self.group), ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying from the last applied id.
        let mut batch = WriteBatch::new();
        batch.put(
            keys::committed(self.group),
            frame::encode(&encode(&committed)),
        );
        self.engine
            .apply(batch)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(read_value::<Option<LogId>>(
            &self.engine,
            &keys::committed(self.group),
            ErrorSubject::Store,
        )?
        .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.get_log_id().index, encode(&e)))
            .collect();
        let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();
        self.counters.logged(records.len() as u64, bytes as u64);
        self.log()
            .append(records)
            .map_err(logs_err(ErrorVerb::Write))?;
        // The entries are readable now; durability is reported through the callback
        // once a blob-store sync that starts after this write finishes. Returning
        // early lets openraft keep appending while it runs; the store's syncs are
        // single-flight, so one fsync covers every append queued meanwhile.
        let blobs = self.blobs.clone();
        tokio::spawn(async move {
            let result = blobs.sync().await.map_err(std::io::Error::other);
            callback.log_io_completed(result);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.log()
            .truncate(log_id.index)
            .map_err(logs_err(ErrorVerb::Delete))?;
        self.blobs.sync().await.map_err(logs_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The marker first: after a crash, entries at or below it are ignored even if
        // their segment was not removed yet.
        self.put_synced(
            keys::purged(self.group),
            frame::encode(&encode(&log_id)),
            ErrorSubject::Logs,
        )
        .await?;
        self.log()
            .purge(log_id.index)
            .map_err(logs_err(ErrorVerb::Delete))
    }
}
