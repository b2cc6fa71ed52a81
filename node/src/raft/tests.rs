//! openraft's own storage suite against our log store and state machine, over both
//! engines.

use super::log_store::LogStore;
use super::state_machine::GroupStateMachine;
use super::{StorageError, TypeConfig};
use crate::objects::store::ObjectStore;
use crate::storage::mem_engine::MemEngine;
use crate::storage::sled_engine::SledEngine;
use crate::storage::EngineRef;
use openraft::testing::{StoreBuilder, Suite};
use std::sync::Arc;

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, GroupStateMachine<ObjectStore>, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, GroupStateMachine<ObjectStore>), StorageError> {
        let engine: EngineRef = Arc::new(MemEngine::new());
        let sm = GroupStateMachine::open(engine.clone(), 3, ObjectStore::new(engine.clone(), 3))?;
        Ok(((), LogStore::new(engine, 3), sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, GroupStateMachine<ObjectStore>, tempfile::TempDir>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, GroupStateMachine<ObjectStore>), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| {
            super::log_store::io_err(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e)
        })?;
        let sled = SledEngine::open(dir.path(), 8 * 1024 * 1024).map_err(|e| {
            super::log_store::io_err(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e)
        })?;
        let engine: EngineRef = Arc::new(sled);
        let sm = GroupStateMachine::open(engine.clone(), 3, ObjectStore::new(engine.clone(), 3))?;
        Ok((dir, LogStore::new(engine, 3), sm))
    }
}

#[test]
fn openraft_suite_on_mem_engine() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}

#[test]
fn openraft_suite_on_sled_engine() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}
