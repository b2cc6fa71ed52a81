//! The directory: tenants and their placement on replica groups.
//!
//! It is group 0, with voters spread so it survives the loss of a region (or zone)
//! and every other node as a learner, so each node has a local, eventually
//! consistent copy for routing. Writes and linearizable reads go to its leader.
//!
//! Owns: [`TenantRecord`], the commands that change tenants, their application
//! ([`state::DirectoryState`]) and the shared in-memory view ([`DirectoryView`]).
//! Containers are not here: they live with the tenant's objects in its replica
//! group (see `crate::objects`), so their existence is ordered with object writes.

pub mod state;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use stratus_core::placement::GroupId;
use stratus_core::Redundancy;

/// A tenant (Azure: storage account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    pub region: String,
    pub redundancy: Redundancy,
    pub group: GroupId,
    pub status: TenantStatus,
    pub created_ms: u64,
}

/// Lifecycle of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantStatus {
    Active,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
        }
    }
}

/// A change to the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DirectoryCommand {
    CreateTenant {
        name: String,
        region: String,
        redundancy: Redundancy,
        now_ms: u64,
    },
    DeleteTenant {
        name: String,
    },
}

/// The outcome of a [`DirectoryCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DirectoryResponse {
    Tenant(TenantRecord),
    Deleted,
    Rejected(DirectoryRejection),
}

/// Why the directory refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DirectoryRejection {
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("tenant {0:?} not found")]
    TenantNotFound(String),
    #[error("{0}")]
    Placement(String),
}

/// The directory's contents, in memory.
#[derive(Debug, Clone, Default)]
pub struct DirectoryData {
    pub tenants: BTreeMap<String, TenantRecord>,
}

impl DirectoryData {
    /// Tenants placed on each group.
    pub fn load(&self) -> BTreeMap<GroupId, usize> {
        let mut load = BTreeMap::new();
        for t in self.tenants.values() {
            *load.entry(t.group).or_default() += 1;
        }
        load
    }
}

/// A shared, read-only handle on this node's copy of the directory.
#[derive(Clone, Default)]
pub struct DirectoryView {
    data: Arc<RwLock<DirectoryData>>,
}

impl DirectoryView {
    /// Runs `f` on the current contents.
    pub fn read<T>(&self, f: impl FnOnce(&DirectoryData) -> T) -> T {
        let guard = self.data.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut DirectoryData) -> T) -> T {
        let mut guard = self.data.write().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn tenant(&self, name: &str) -> Option<TenantRecord> {
        self.read(|d| d.tenants.get(name).cloned())
    }
}
