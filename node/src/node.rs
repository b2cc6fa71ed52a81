//! A storage node: the groups it serves, its view of the directory, and the handles
//! (engine, transport, clock, RNG) everything else is built from.
//!
//! [`StratusNode::start`] is the one entry point the binary, the integration tests
//! and the simulation share; [`StratusNode::serve`] runs the gRPC services until
//! shutdown.

use crate::clock::ClockRef;
use crate::directory::state::DirectoryState;
use crate::directory::{DirectoryCommand, DirectoryResponse, DirectoryView, TenantRecord};
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery};
use crate::group::{GroupHandle, GroupStorage};
use crate::keyring::KeyRing;
use crate::objects::reader::ObjectReader;
use crate::objects::store::ObjectStore;
use crate::peers::Peers;
use crate::raft::{Command, RaftTiming, Response, SnapshotTrigger};
use crate::rng::NodeRng;
use crate::storage::group_commit::GroupCommit;
use crate::storage::{BlobRef, EngineRef};
use crate::transport::TransportRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stratus_core::crypto::SecretKey;
use stratus_core::limits::OBJECT_BYTES_MAX_DEFAULT;
use stratus_core::placement::{plan_groups, GroupId, GroupKind, GroupSpec, DIRECTORY_GROUP};
use stratus_core::topology::{NodeId, Topology};

/// How often the node checks directory learners and snapshot triggers.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(2);
/// How often the repair task looks for chunks to repair.
const REPAIR_EVERY: Duration = Duration::from_secs(1);
/// How long a node waits for its copy of the directory to catch up with the
/// leader after learning of a tenant from the leader.
pub const DIRECTORY_CATCH_UP_MAX: Duration = Duration::from_secs(3);
/// How long [`StratusNode::tenant_fresh`] may take to reach the directory's leader.
pub const DIRECTORY_FRESH_MAX: Duration = Duration::from_secs(3);
/// Error code of a node that cannot reach the directory's leader (cut off with a
/// failed region, say): clients ask another node.
pub const DIRECTORY_UNREACHABLE: &str = "directory-unreachable";

/// Tunables of a node that are not part of the topology.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Largest object accepted, in bytes.
    pub object_bytes_max: u64,
    pub timing: RaftTiming,
    /// When groups snapshot and purge their logs.
    pub snapshot: SnapshotTrigger,
    /// Chunk blobs no committed version refers to are removed once idle this long
    /// (an upload in progress writes at least this often).
    pub upload_idle_max: Duration,
    /// How long a dead version's chunks stay readable, so reads streaming it when
    /// it was overwritten or deleted finish.
    pub read_grace: Duration,
    /// How often the orphan sweep runs.
    pub sweep_every: Duration,
    /// Shortest retention a key delete may ask for (purge protection's floor).
    pub key_retention_min: Duration,
    /// How often the leader re-wraps data keys still under an older KEK version.
    pub rewrap_every: Duration,
    /// How long after a newer KEK version appeared an older one may be retired
    /// (uploads that began before the rotation commit within this time).
    pub key_retire_grace: Duration,
    /// How far a token's start and expiry may be off this node's clock.
    pub token_clock_skew: Duration,
    /// The gRPC edge's limits.
    pub limits: crate::server::limits::ServiceLimits,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            object_bytes_max: OBJECT_BYTES_MAX_DEFAULT,
            timing: RaftTiming::default(),
            snapshot: SnapshotTrigger::default(),
            upload_idle_max: Duration::from_secs(15 * 60),
            read_grace: Duration::from_secs(10 * 60),
            sweep_every: Duration::from_secs(60),
            key_retention_min: Duration::from_secs(7 * 24 * 3600),
            rewrap_every: Duration::from_secs(2),
            key_retire_grace: Duration::from_secs(30),
            token_clock_skew: Duration::from_millis(stratus_core::auth::CLOCK_SKEW_MS_DEFAULT),
            limits: Default::default(),
        }
    }
}

/// Everything a node is built from. The binary passes real handles; the simulation
/// passes simulated ones.
pub struct NodeOptions {
    pub id: NodeId,
    pub topology: Arc<Topology>,
    pub engine: EngineRef,
    pub blobs: BlobRef,
    pub transport: TransportRef,
    pub clock: ClockRef,
    pub rng: NodeRng,
    /// The cluster root key (the same on every node); wraps tenants' KEKs.
    pub root_key: SecretKey,
    /// The bootstrap operator secret (`sop1.`...), when this node was given one:
    /// the first directory leader that has one records its SHA-256.
    pub operator_secret: Option<String>,
    pub settings: NodeSettings,
}

/// A running node.
pub struct StratusNode {
    pub id: NodeId,
    pub topology: Arc<Topology>,
    pub plan: Arc<Vec<GroupSpec>>,
    pub groups: BTreeMap<GroupId, GroupHandle>,
    pub directory: DirectoryView,
    pub peers: Arc<Peers>,
    pub engine: EngineRef,
    pub blobs: BlobRef,
    pub clock: ClockRef,
    pub rng: NodeRng,
    /// Tenants' keys: the root key, unwrapped KEKs in cache, access checks.
    pub keys: KeyRing,
    pub settings: NodeSettings,
    /// What the orphan sweep remembers between rounds.
    pub sweep: crate::dataplane::sweep::SweepMemory,
    /// Counters and gauges this node exports (`stratus metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Geo-replication: roles, leases, shipping (see [`crate::geo`]).
    pub geo: crate::geo::Geo,
    /// Credentials: the cluster credential, signing keys in cache.
    pub auth: crate::auth::Auth,
    /// Audit events waiting to be appended to their tenants' chains.
    pub audit: crate::audit::AuditSink,
}

impl StratusNode {
    /// Starts every group this node belongs to.
    pub async fn start(options: NodeOptions) -> anyhow::Result<Arc<StratusNode>> {
        let NodeOptions {
            id,
            topology,
            engine,
            blobs,
            transport,
            clock,
            rng,
            root_key,
            operator_secret,
            settings,
        } = options;
        anyhow::ensure!(
            topology.node(id).is_some(),
            "node {id} is not in the topology"
        );
        crate::raft::runtime::seed_thread(rng.next_u64());
        let rng_incarnation = rng.next_u64();
        let plan = Arc::new(plan_groups(&topology));
        let auth = crate::auth::Auth::new(
            stratus_core::auth::cluster_credential(&root_key),
            operator_secret
                .as_deref()
                .map(|s| stratus_core::crypto::sha256(s.as_bytes())),
            settings.token_clock_skew.as_millis() as u64,
        );
        drop(operator_secret);
        let peers = Arc::new(Peers::new(
            id,
            transport,
            topology.clone(),
            auth.cluster_header(),
        ));
        let directory = DirectoryView::default();
        let storage = GroupStorage {
            engine: engine.clone(),
            blobs: blobs.clone(),
            commit: GroupCommit::new(engine.clone()),
        };
        let mut groups = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for spec in plan.iter().filter(|g| g.has_member(id)) {
            let handle = match spec.kind {
                GroupKind::Directory => {
                    let app = DirectoryState::new(
                        engine.clone(),
                        topology.clone(),
                        plan.clone(),
                        directory.clone(),
                    );
                    GroupHandle::start(
                        spec.clone(),
                        id,
                        storage.clone(),
                        peers.clone(),
                        settings.timing,
                        app,
                    )
                    .await?
                }
                GroupKind::Replica { .. } => {
                    let group_roles = crate::objects::geo_apply::Roles::default();
                    roles.insert(spec.id, group_roles.clone());
                    let app = ObjectStore::new(engine.clone(), blobs.clone(), spec.id, group_roles);
                    GroupHandle::start(
                        spec.clone(),
                        id,
                        storage.clone(),
                        peers.clone(),
                        settings.timing,
                        app,
                    )
                    .await?
                }
            };
            groups.insert(spec.id, handle);
        }
        tracing::info!(node = id, groups = ?groups.keys().collect::<Vec<_>>(), "node started");
        Ok(Arc::new(StratusNode {
            id,
            topology,
            plan,
            groups,
            peers,
            engine,
            blobs,
            clock,
            keys: KeyRing::new(root_key, directory.clone()),
            directory,
            rng,
            settings,
            sweep: Default::default(),
            metrics: Default::default(),
            geo: crate::geo::Geo {
                roles,
                ..Default::default()
            },
            auth,
            audit: crate::audit::AuditSink::new(rng_incarnation),
        }))
    }

    /// Runs the node's background work until the node shuts down: directory
    /// learners, snapshot triggers, chunk repair and the orphan sweep.
    pub async fn maintain(self: Arc<Self>) {
        tokio::join!(
            self.clone().maintain_groups(),
            self.clone().repair_chunks(),
            self.clone().sweep_orphans(),
            self.clone().rewrap_keys(),
            self.clone().geo_tasks(),
            self.clone().bootstrap_access(),
            self.clone().flush_audit()
        );
    }

    async fn maintain_groups(self: Arc<Self>) {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        // Directory log entries at or below this index must leave this disk.
        let mut shred: Option<u64> = None;
        loop {
            tick.tick().await;
            if let Some(dir) = self.groups.get(&DIRECTORY_GROUP) {
                dir.ensure_learners().await;
                if self.directory.take_shred_request() {
                    let applied = dir.state().applied_index;
                    shred = Some(shred.map_or(applied, |s| s.max(applied)));
                }
                if let Some(index) = shred {
                    if dir.shred_log_through(index).await {
                        tracing::info!(
                            index,
                            "directory log shredded: no entry at or below it is on disk"
                        );
                        shred = None;
                    }
                }
            }
            for g in self.groups.values() {
                g.maybe_snapshot(self.settings.snapshot).await;
            }
        }
    }

    async fn repair_chunks(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REPAIR_EVERY);
        loop {
            tick.tick().await;
            for g in self.groups.values().filter(|g| g.id() != DIRECTORY_GROUP) {
                match crate::dataplane::repair::repair_round(&self, g.id()).await {
                    Ok(0) => {}
                    Ok(fixed) => {
                        tracing::info!(group = g.id(), versions = fixed, "repaired chunks")
                    }
                    Err(e) => {
                        tracing::warn!(group = g.id(), error = %e, "chunk repair incomplete; retrying")
                    }
                }
            }
        }
    }

    /// Geo-replication's background work: role reconciliation, write leases,
    /// shipping and automatic failover, each on its own period.
    async fn geo_tasks(self: Arc<Self>) {
        let reconcile = async {
            let mut tick = tokio::time::interval(crate::geo::reconcile::RECONCILE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = self.directory.geo_changed() => {}
                }
                if crate::geo::reconcile::reconcile_round(&self).await {
                    self.geo.renew_now.notify_one();
                }
            }
        };
        let leases = async {
            let mut tick = tokio::time::interval(crate::geo::lease::LEASE_RENEW_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = self.geo.renew_now.notified() => {}
                }
                crate::geo::lease::renew_round(&self).await;
            }
        };
        let ship = async {
            let mut tick = tokio::time::interval(crate::geo::ship::SHIP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                crate::geo::ship::ship_round(&self).await;
            }
        };
        let auto = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut watch = BTreeMap::new();
            loop {
                tick.tick().await;
                crate::geo::failover::auto_round(&self, &mut watch).await;
            }
        };
        tokio::join!(reconcile, leases, ship, auto);
    }

    /// At the cluster's first start: once this node leads the directory, records
    /// the first token signing key (wrapped by the root key) and the operator
    /// secret's hash. Ends as soon as the directory holds all this node can add.
    async fn bootstrap_access(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let local = self.auth.local_operator_sha256;
            let done = self.directory.read(|d| {
                d.access
                    .root
                    .as_ref()
                    .is_some_and(|r| r.operator_sha256.is_some() || local.is_none())
            });
            if done {
                return;
            }
            let Some(dir) = self.groups.get(&DIRECTORY_GROUP) else {
                continue;
            };
            if !dir.is_leader() {
                continue;
            }
            let key = self.rng.secret_key();
            let command = DirectoryCommand::Access {
                op: crate::directory::access::AccessOp::Bootstrap {
                    signing_key: self.keys.wrap_signing_key(&self.rng, 1, &key),
                    operator_sha256: local,
                },
                now_ms: self.clock.now_ms(),
            };
            drop(key);
            match self.directory_write(command).await {
                Ok(_) => tracing::info!("access control bootstrapped"),
                Err(e) => {
                    tracing::debug!(error = %e, "access bootstrap not committed yet; retrying")
                }
            }
        }
    }

    async fn rewrap_keys(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.rewrap_every);
        let mut memory = crate::rewrap::RewrapMemory::default();
        let mut shredded = crate::shred::ShredMemory::default();
        loop {
            tick.tick().await;
            crate::rewrap::rewrap_round(&self, &mut memory).await;
            crate::shred::shred_round(&self, &mut shredded).await;
        }
    }

    async fn sweep_orphans(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.sweep_every);
        loop {
            tick.tick().await;
            let now_ms = self.clock.now_ms();
            for g in self.groups.values().filter(|g| g.id() != DIRECTORY_GROUP) {
                match crate::dataplane::sweep::sweep_group(&self, g.id(), now_ms) {
                    Ok(0) => {}
                    Ok(swept) => tracing::info!(
                        group = g.id(),
                        blobs = swept,
                        "swept unreferenced chunk blobs"
                    ),
                    Err(e) => tracing::warn!(group = g.id(), error = %e, "orphan sweep failed"),
                }
            }
        }
    }

    /// Stops every group (flushing the engine).
    pub async fn shutdown(&self) {
        for g in self.groups.values() {
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group = g.id(), error = %e, "raft shutdown failed");
            }
        }
        if let Err(e) = self.blobs.sync().await {
            tracing::warn!(error = %e, "final blob sync failed");
        }
        if let Err(e) = self.engine.sync().await {
            tracing::warn!(error = %e, "final sync failed");
        }
    }

    /// The directory group, if this node holds a replica of it.
    pub fn directory_group(&self) -> Option<&GroupHandle> {
        self.groups.get(&DIRECTORY_GROUP)
    }

    /// The planned spec of a group.
    pub fn spec(&self, group: GroupId) -> Option<&GroupSpec> {
        self.plan.get(group as usize)
    }

    /// A reader for a replica group this node holds.
    pub fn objects(&self, group: GroupId) -> ObjectReader {
        ObjectReader::new(self.engine.clone(), self.blobs.clone(), group)
    }

    /// Applies a directory command (at the directory's leader).
    pub async fn directory_write(
        &self,
        command: DirectoryCommand,
    ) -> NodeResult<DirectoryResponse> {
        match self
            .propose(DIRECTORY_GROUP, Command::Directory(command))
            .await?
        {
            Response::Directory(r) => Ok(r),
            other => Err(NodeError::Internal(format!(
                "unexpected directory response {other:?}"
            ))),
        }
    }

    /// The tenant's record, from the local copy or, if absent there, the leader.
    pub async fn tenant(&self, name: &str) -> NodeResult<TenantRecord> {
        if let Some(t) = self.directory.tenant(name) {
            return Ok(t);
        }
        match self
            .query(DIRECTORY_GROUP, GroupQuery::TenantAt(name.to_string()))
            .await?
        {
            GroupAnswer::TenantAt {
                tenant: Some(t),
                applied,
            } => {
                self.catch_up_directory(applied).await;
                Ok(t)
            }
            _ => Err(NodeError::TenantNotFound(name.to_string())),
        }
    }

    /// The tenant's record as the directory's leader has it now (this node's copy
    /// catches up to it). A node that cannot reach the leader within
    /// [`DIRECTORY_FRESH_MAX`] (cut off with its region, say) answers Unavailable
    /// with code `directory-unreachable` rather than a copy that may be stale, so a
    /// client asks another node instead of following an old placement.
    pub async fn tenant_fresh(&self, name: &str) -> NodeResult<TenantRecord> {
        let query = self.query(DIRECTORY_GROUP, GroupQuery::TenantAt(name.to_string()));
        let why = match tokio::time::timeout(DIRECTORY_FRESH_MAX, query).await {
            Ok(Ok(GroupAnswer::TenantAt {
                tenant: Some(t),
                applied,
            })) => {
                self.catch_up_directory(applied).await;
                return Ok(t);
            }
            Ok(Ok(_)) => return Err(NodeError::TenantNotFound(name.to_string())),
            Ok(Err(NodeError::Unavailable(e))) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => format!("no answer within {} s", DIRECTORY_FRESH_MAX.as_secs()),
        };
        Err(NodeError::UnavailableFor {
            code: DIRECTORY_UNREACHABLE,
            message: format!(
                "node {} cannot reach the directory's leader ({why}); is its region cut off? Ask a node in another region",
                self.id
            ),
        })
    }

    /// Waits (at most [`DIRECTORY_CATCH_UP_MAX`]) until this node's copy of the
    /// directory has applied `index`: a tenant just created elsewhere then has its
    /// key vault here too. A copy still behind afterwards makes the key check
    /// answer Unavailable, which clients retry.
    pub(crate) async fn catch_up_directory(&self, index: u64) {
        let Some(g) = self.groups.get(&DIRECTORY_GROUP) else {
            return;
        };
        let waited = g
            .raft
            .wait(Some(DIRECTORY_CATCH_UP_MAX))
            .applied_index_at_least(Some(index), "directory catch-up")
            .await;
        if let Err(e) = waited {
            tracing::debug!(index, error = %e, "directory copy still behind the leader");
        }
    }

    /// The local replica of a tenant's group, or `NotLeader` pointing at a member.
    pub fn replica_of(&self, tenant: &TenantRecord) -> NodeResult<&GroupHandle> {
        match self.groups.get(&tenant.group) {
            Some(g) => Ok(g),
            None => {
                // Not a member: point at the first member; it knows the leader.
                let member = self
                    .spec(tenant.group)
                    .and_then(|s| s.voters.first().copied());
                Err(NodeError::NotLeader {
                    me: self.id,
                    group: tenant.group,
                    leader_id: member,
                    leader_addr: member.and_then(|m| self.peers.addr(m)),
                })
            }
        }
    }
}
