//! The directory: tenants and their placement on replica groups.
//!
//! It is group 0, with voters spread so it survives the loss of a region (or zone)
//! and every other node as a learner, so each node has a local, eventually
//! consistent copy for routing. Writes and linearizable reads go to its leader.
//!
//! Owns: [`TenantRecord`], each tenant's key vault ([`vault::KeyVault`]), access
//! control's state ([`access`]: signing keys, role assignments, issued tokens), the
//! commands that change them, their application ([`state::DirectoryState`]) and the
//! shared in-memory view ([`DirectoryView`]), which also caches unwrapped KEKs
//! (dropped whenever the tenant's vault changes).
//! Containers are not here: they live with the tenant's objects in its replica
//! group (see `crate::objects`), so their existence is ordered with object writes.

pub mod access;
pub mod geo;
pub mod state;
pub mod vault;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use stratus_core::crypto::{SecretKey, WrappedKey};
use stratus_core::placement::GroupId;
use stratus_core::Redundancy;
use vault::{KeyOp, KeyRefusal, KeyVault};

/// A tenant (Azure: storage account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// The primary region.
    pub region: String,
    pub redundancy: Redundancy,
    /// The primary replica group.
    pub group: GroupId,
    pub status: TenantStatus,
    pub created_ms: u64,
    /// Grows with every failover (see [`geo`]).
    pub epoch: u64,
    /// The paired-region copy of a geo-redundant tenant.
    pub secondary: Option<geo::Secondary>,
    /// Every failover, oldest first.
    pub failovers: Vec<geo::FailoverRecord>,
    /// Fail over by itself after the primary was unreachable this long.
    pub auto_failover_after_ms: Option<u64>,
    /// The last write lease granted to the primary (see [`geo::LeaseGrant`]).
    pub lease: Option<geo::LeaseGrant>,
}

/// Lifecycle of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantStatus {
    Active,
    /// A failover is under way: no write lease is granted (a planned one keeps the
    /// tenant readable while shipping drains).
    FailingOver {
        planned: bool,
        since_ms: u64,
    },
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::FailingOver { planned: true, .. } => "read-only",
            TenantStatus::FailingOver { planned: false, .. } => "failing-over",
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
        /// The tenant's first KEK, already wrapped by the root key (version 1).
        kek: WrappedKey,
        purge_protection: bool,
    },
    DeleteTenant {
        name: String,
    },
    /// A key operation on a tenant's vault, at the proposer's clock reading.
    Keys {
        tenant: String,
        op: KeyOp,
        now_ms: u64,
    },
    /// A class change (geo copy added or removed, read access toggled) and/or the
    /// automatic-failover policy (`Some(None)` turns it off).
    UpdateTenant {
        name: String,
        redundancy: Option<Redundancy>,
        auto_failover_after_ms: Option<Option<u64>>,
    },
    BeginFailover {
        name: String,
        planned: bool,
        now_ms: u64,
    },
    AbortFailover {
        name: String,
    },
    CompleteFailover {
        name: String,
        planned: bool,
        now_ms: u64,
        outcome: geo::FailoverOutcome,
    },
    CompleteReprotect {
        name: String,
        recovery_container: Option<String>,
        recovered_objects: u64,
    },
    /// A primary group's lease renewal: the directory grants (and records) a lease
    /// for each tenant it still names `group` primary of at the asked epoch.
    RenewLeases {
        group: GroupId,
        asks: Vec<geo::LeaseAsk>,
        now_ms: u64,
    },
    /// The secondary `group` holds the first full copy of the tenant at `epoch`.
    GeoSeeded {
        name: String,
        group: GroupId,
        epoch: u64,
    },
    /// A change to access control (signing keys, tokens, role assignments), at the
    /// proposer's clock reading.
    Access {
        op: access::AccessOp,
        now_ms: u64,
    },
}

/// The outcome of a [`DirectoryCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DirectoryResponse {
    Tenant(TenantRecord),
    /// A completed failover and the tenant after it.
    FailedOver {
        tenant: Box<TenantRecord>,
        record: Box<geo::FailoverRecord>,
    },
    Vault(KeyVault),
    /// Per tenant of a renewal: the sequence limit of its new lease, or `None`
    /// when refused.
    Leases(Vec<(String, Option<u64>)>),
    Deleted,
    Access(access::AccessOutcome),
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
    #[error("{0}")]
    Keys(KeyRefusal),
    #[error("{0}")]
    Geo(geo::GeoRefusal),
    #[error("{0}")]
    Access(access::AccessRefusal),
}

/// The directory's contents, in memory.
#[derive(Debug, Clone, Default)]
pub struct DirectoryData {
    pub tenants: BTreeMap<String, TenantRecord>,
    pub vaults: BTreeMap<String, KeyVault>,
    /// Signing keys, role assignments, issued tokens.
    pub access: access::AccessData,
}

impl DirectoryData {
    /// Tenants placed on each group.
    pub fn load(&self) -> BTreeMap<GroupId, usize> {
        let mut load = BTreeMap::new();
        for t in self.tenants.values() {
            *load.entry(t.group).or_default() += 1;
            if let Some(s) = &t.secondary {
                *load.entry(s.group).or_default() += 1;
            }
        }
        load
    }
}

/// Unwrapped KEKs by (tenant, version).
type KekCache = BTreeMap<(String, u32), Arc<SecretKey>>;

/// A shared, read-only handle on this node's copy of the directory.
#[derive(Clone, Default)]
pub struct DirectoryView {
    data: Arc<RwLock<DirectoryData>>,
    /// Unwrapped KEKs by (tenant, version); a tenant's entries go whenever its
    /// vault changes, so a revoked key stops being usable on apply.
    keks: Arc<Mutex<KekCache>>,
    /// Set when applying a command that destroyed key material (a purge, a tenant
    /// delete): the node then shreds the directory's log on this replica.
    shred_requested: Arc<std::sync::atomic::AtomicBool>,
    /// When this node applied each tenant's last lease grant (its own monotonic
    /// clock), with the grant: a failover coordinated here waits out the lease from
    /// then instead of from its own `BeginFailover` (see [`LeaseSeen`]).
    leases_seen: Arc<Mutex<BTreeMap<String, (geo::LeaseGrant, tokio::time::Instant)>>>,
    /// Woken when an applied command moved a tenant's primary (a completed
    /// failover or reprotect), so this node's geo reconciler acts at once instead
    /// of at its next round.
    geo_changed: Arc<tokio::sync::Notify>,
}

/// What this node knows of a tenant's last write lease, once a failover began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseSeen {
    /// This copy has not applied the tenant's `BeginFailover` yet, or did not
    /// apply its last grant itself (it came in a snapshot or before a restart).
    Unknown,
    /// The failover began and no lease was ever granted.
    Never,
    /// The failover began; the last grant was applied here at this instant (after
    /// it committed, so after its holder sent the request its lease runs from).
    AppliedAt(tokio::time::Instant),
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

    pub fn vault(&self, tenant: &str) -> Option<KeyVault> {
        self.read(|d| d.vaults.get(tenant).cloned())
    }

    fn keks(&self) -> std::sync::MutexGuard<'_, KekCache> {
        self.keks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached unwrapped KEK.
    pub(crate) fn cached_kek(&self, tenant: &str, version: u32) -> Option<Arc<SecretKey>> {
        self.keks().get(&(tenant.to_string(), version)).cloned()
    }

    pub(crate) fn cache_kek(&self, tenant: &str, version: u32, kek: Arc<SecretKey>) {
        self.keks().insert((tenant.to_string(), version), kek);
    }

    /// Drops every cached KEK of `tenant` (its vault changed).
    pub(crate) fn forget_keks(&self, tenant: &str) {
        self.keks().retain(|(t, _), _| t != tenant);
    }

    /// Asks the node to remove the directory's older log entries from disk.
    pub(crate) fn request_shred(&self) {
        self.shred_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes a pending shred request.
    pub fn take_shred_request(&self) -> bool {
        self.shred_requested
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Wakes the geo reconciler (see the field).
    pub(crate) fn notify_geo_changed(&self) {
        self.geo_changed.notify_one();
    }

    /// Resolves once a command that moved a tenant's primary was applied here
    /// (at once if one was applied since the last call).
    pub async fn geo_changed(&self) {
        self.geo_changed.notified().await;
    }

    /// Notes that this node just applied a lease grant for `tenant`.
    pub(crate) fn note_lease(&self, tenant: &str, grant: geo::LeaseGrant) {
        let now = tokio::time::Instant::now();
        self.leases_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), (grant, now));
    }

    /// Where the last lease of `tenant` stands on this copy, for a failover.
    pub fn lease_seen(&self, tenant: &str) -> LeaseSeen {
        let Some(record) = self.tenant(tenant) else {
            return LeaseSeen::Unknown;
        };
        if !matches!(record.status, TenantStatus::FailingOver { .. }) {
            return LeaseSeen::Unknown;
        }
        let Some(grant) = &record.lease else {
            return LeaseSeen::Never;
        };
        let seen = self.leases_seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(tenant) {
            Some((g, at)) if g == grant => LeaseSeen::AppliedAt(*at),
            _ => LeaseSeen::Unknown,
        }
    }

    /// How many KEKs are cached (for tests and status).
    pub fn cached_kek_count(&self) -> usize {
        self.keks().len()
    }
}
