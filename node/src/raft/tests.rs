//! openraft's own storage suite against our log store and state machine, over both
//! pairs of stores (in-memory, and sled with files).

use super::log_store::{io_err, LogStore};
use super::state_machine::GroupStateMachine;
use super::{GroupCounters, StorageError, TypeConfig};
use crate::clock::TokioClock;
use crate::objects::store::ObjectStore;
use crate::storage::fs_blob::FsBlobStore;
use crate::storage::mem_blob::MemBlobStore;
use crate::storage::mem_engine::MemEngine;
use crate::storage::sled_engine::SledEngine;
use crate::storage::{BlobRef, EngineRef};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};
use std::sync::Arc;

type Sm = GroupStateMachine<ObjectStore>;

fn stores(engine: EngineRef, blobs: BlobRef) -> Result<(LogStore, Sm), StorageError> {
    let counters = Arc::new(GroupCounters::default());
    let blobs_for_log = blobs.clone();
    let app = ObjectStore::new(engine.clone(), blobs.clone(), 3, Default::default());
    let sm = GroupStateMachine::open(engine.clone(), blobs, 3, app, counters.clone())?;
    let commit = crate::storage::group_commit::GroupCommit::new(engine.clone());
    let log = LogStore::open(engine.clone(), blobs_for_log, commit, 3, counters)?;
    Ok((log, sm))
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, Sm, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, Sm), StorageError> {
        let blobs: BlobRef = Arc::new(MemBlobStore::new(Arc::new(TokioClock::starting_at(0))));
        let (log, sm) = stores(Arc::new(MemEngine::new()), blobs)?;
        Ok(((), log, sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, Sm, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Sm), StorageError> {
        fn failed(e: impl std::error::Error + 'static) -> StorageError {
            io_err(ErrorSubject::Store, ErrorVerb::Write, e)
        }
        let dir = tempfile::tempdir().map_err(failed)?;
        let engine: EngineRef =
            Arc::new(SledEngine::open(&dir.path().join("store"), 8 * 1024 * 1024).map_err(failed)?);
        let blobs: BlobRef =
            Arc::new(FsBlobStore::open(&dir.path().join("blobs")).map_err(failed)?);
        let (log, sm) = stores(engine, blobs)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_on_mem_stores() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}

#[test]
fn openraft_suite_on_sled_and_files() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

/// A restarted replica never resumes leadership from its stored vote: a committed
/// vote for itself comes back as a plain vote for itself in the same term (so it
/// must win a new election), while a vote for another leader is left alone.
#[tokio::test]
async fn a_restarted_leader_forgets_its_leadership() -> Result<(), StorageError> {
    use openraft::storage::RaftLogStorage;
    use openraft::Vote;
    let (mut log, _sm) = stores(
        Arc::new(MemEngine::new()),
        Arc::new(MemBlobStore::new(Arc::new(TokioClock::starting_at(0)))),
    )?;

    log.save_vote(&Vote::new_committed(7, 2)).await?;
    log.forget_own_leadership(1).await?;
    assert_eq!(
        log.read_vote().await?,
        Some(Vote::new_committed(7, 2)),
        "another node's leadership is kept"
    );

    log.forget_own_leadership(2).await?;
    let vote = log.read_vote().await?.expect("a vote");
    assert!(!vote.is_committed(), "{vote}");
    assert_eq!(
        (vote.leader_id().get_term(), vote.leader_id().voted_for()),
        (7, Some(2))
    );

    // Idempotent, and an uncommitted vote is left as it is.
    log.forget_own_leadership(2).await?;
    assert_eq!(log.read_vote().await?, Some(vote));
    Ok(())
}
