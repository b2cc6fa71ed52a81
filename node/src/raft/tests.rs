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
    let app = ObjectStore::new(engine.clone(), blobs.clone(), 3);
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
