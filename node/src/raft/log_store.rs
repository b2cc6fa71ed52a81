//! openraft log storage over the storage seam.
//!
//! Entries, the vote and the committed id live under the group's prefix (see
//! [`super::keys`]), each framed with a format version and CRC.
//!
//! **Durability:** `append` reports completion to openraft (its callback) only after
//! a [`crate::storage::Engine::sync`] that started after the write returned, and
//! `save_vote` syncs before returning.
//! Nothing is acknowledged to a client before the entry carrying it is durable on a
//! quorum.

use super::{decode, encode, keys, GroupCounters, LogId, StorageError, TypeConfig};
use crate::storage::group_commit::GroupCommit;
use crate::storage::{frame, EngineRef, WriteBatch};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogId, RaftLogReader,
    StorageIOError, Vote,
};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// The log of one group on one node.
#[derive(Clone)]
pub struct LogStore {
    engine: EngineRef,
    commit: Arc<GroupCommit>,
    group: u64,
    counters: Arc<GroupCounters>,
}

impl LogStore {
    pub fn new(
        engine: EngineRef,
        commit: Arc<GroupCommit>,
        group: u64,
        counters: Arc<GroupCounters>,
    ) -> Self {
        Self {
            engine,
            commit,
            group,
            counters,
        }
    }

    fn read_value<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &[u8],
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(record) = self
            .engine
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

    async fn write_synced(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        self.engine
            .apply(batch)
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.commit
            .sync()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }
}

/// Wraps any error as an openraft storage error.
pub fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn decode_entry(key: &[u8], record: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    let index = keys::log_index(key).unwrap_or_default();
    let payload = frame::decode(key, record)
        .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
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
        let end_key = match range.end_bound() {
            Bound::Included(i) => keys::log(self.group, i.saturating_add(1)),
            Bound::Excluded(i) => keys::log(self.group, *i),
            Bound::Unbounded => keys::log_end(self.group),
        };
        let start_key = keys::log(self.group, start);
        if start_key >= end_key {
            return Ok(Vec::new());
        }
        let rows = self
            .engine
            .scan(
                Bound::Included(&start_key),
                Bound::Excluded(&end_key),
                usize::MAX,
            )
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        rows.iter().map(|(k, v)| decode_entry(k, v)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            self.read_value(&keys::purged(self.group), ErrorSubject::Logs)?;
        let last = self
            .engine
            .last_in(&keys::log_start(self.group), &keys::log_end(self.group))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((k, v)) => Some(*decode_entry(&k, &v)?.get_log_id()),
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
        let mut batch = WriteBatch::new();
        batch.put(keys::vote(self.group), frame::encode(&encode(vote)));
        self.write_synced(batch, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.read_value(&keys::vote(self.group), ErrorSubject::Vote)
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
        Ok(self
            .read_value::<Option<LogId>>(&keys::committed(self.group), ErrorSubject::Store)?
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
        let mut batch = WriteBatch::new();
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in entries {
            let record = frame::encode(&encode(&entry));
            count += 1;
            bytes += record.len() as u64;
            batch.put(keys::log(self.group, entry.get_log_id().index), record);
        }
        self.counters.logged(count, bytes);
        self.engine
            .apply(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // The entries are readable now; durability is reported through the callback
        // by the node's group commit, whose next flush starts after this write.
        // Returning early lets openraft keep appending while a flush runs, and one
        // fsync then covers every entry queued meanwhile.
        self.commit.durable(Box::new(move |result| {
            callback.log_io_completed(result.map_err(std::io::Error::other));
        }));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.remove_range(
            keys::log(self.group, log_id.index),
            keys::log_end(self.group),
        );
        self.write_synced(batch, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(keys::purged(self.group), frame::encode(&encode(&log_id)));
        batch.remove_range(
            keys::log_start(self.group),
            keys::log(self.group, log_id.index.saturating_add(1)),
        );
        // The purge marker and the removal are one atomic batch; ordering against later
        // appends is kept by the engine, so no sync is needed here.
        self.engine
            .apply(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
