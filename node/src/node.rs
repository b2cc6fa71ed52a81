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
use crate::group::GroupHandle;
use crate::objects::reader::ObjectReader;
use crate::objects::store::ObjectStore;
use crate::peers::Peers;
use crate::raft::{Command, RaftTiming, Response};
use crate::rng::NodeRng;
use crate::storage::EngineRef;
use crate::transport::TransportRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stratus_core::limits::OBJECT_BYTES_MAX_DEFAULT;
use stratus_core::placement::{plan_groups, GroupId, GroupKind, GroupSpec, DIRECTORY_GROUP};
use stratus_core::topology::{NodeId, Topology};

/// Uploads idle this long are reaped by the group leader.
pub const UPLOAD_IDLE_MAX: Duration = Duration::from_secs(15 * 60);
/// How often leaders run maintenance (learners, upload reaping).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(2);

/// Tunables of a node that are not part of the topology.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Largest object accepted, in bytes.
    pub object_bytes_max: u64,
    pub timing: RaftTiming,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            object_bytes_max: OBJECT_BYTES_MAX_DEFAULT,
            timing: RaftTiming::default(),
        }
    }
}

/// Everything a node is built from. The binary passes real handles; the simulation
/// passes simulated ones.
pub struct NodeOptions {
    pub id: NodeId,
    pub topology: Arc<Topology>,
    pub engine: EngineRef,
    pub transport: TransportRef,
    pub clock: ClockRef,
    pub rng: NodeRng,
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
    pub clock: ClockRef,
    pub rng: NodeRng,
    pub settings: NodeSettings,
}

impl StratusNode {
    /// Starts every group this node belongs to.
    pub async fn start(options: NodeOptions) -> anyhow::Result<Arc<StratusNode>> {
        let NodeOptions {
            id,
            topology,
            engine,
            transport,
            clock,
            rng,
            settings,
        } = options;
        anyhow::ensure!(
            topology.node(id).is_some(),
            "node {id} is not in the topology"
        );
        crate::raft::runtime::seed_thread(rng.next_u64());
        let plan = Arc::new(plan_groups(&topology));
        let peers = Arc::new(Peers::new(transport, topology.clone()));
        let directory = DirectoryView::default();
        let mut groups = BTreeMap::new();
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
                        engine.clone(),
                        peers.clone(),
                        settings.timing,
                        app,
                    )
                    .await?
                }
                GroupKind::Replica { .. } => {
                    let app = ObjectStore::new(engine.clone(), spec.id);
                    GroupHandle::start(
                        spec.clone(),
                        id,
                        engine.clone(),
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
            directory,
            peers,
            engine,
            clock,
            rng,
            settings,
        }))
    }

    /// Runs leader maintenance until the node shuts down: adds directory learners and
    /// reaps abandoned uploads.
    pub async fn maintain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        let mut reap_countdown = 0u32;
        loop {
            tick.tick().await;
            if let Some(dir) = self.groups.get(&DIRECTORY_GROUP) {
                dir.ensure_learners().await;
            }
            reap_countdown = reap_countdown.saturating_sub(1);
            if reap_countdown == 0 {
                reap_countdown = 30;
                let cutoff = self
                    .clock
                    .now_ms()
                    .saturating_sub(UPLOAD_IDLE_MAX.as_millis() as u64);
                for g in self
                    .groups
                    .values()
                    .filter(|g| g.id() != DIRECTORY_GROUP && g.is_leader())
                {
                    let cmd = Command::Object(crate::objects::ObjectCommand::ReapUploads {
                        idle_before_ms: cutoff,
                    });
                    if let Ok(Response::Object(crate::objects::ObjectResponse::Reaped {
                        uploads,
                    })) = g.propose(cmd).await
                    {
                        if uploads > 0 {
                            tracing::info!(group = g.id(), uploads, "reaped abandoned uploads");
                        }
                    }
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
        ObjectReader::new(self.engine.clone(), group)
    }

    /// The directory's leader, as far as this node knows.
    pub fn directory_leader(&self) -> Option<NodeId> {
        self.directory_group().and_then(|g| g.leader())
    }

    /// Applies a directory command: locally when this node leads the directory,
    /// otherwise forwarded to the leader.
    pub async fn directory_write(
        &self,
        command: DirectoryCommand,
    ) -> NodeResult<DirectoryResponse> {
        if let Some(dir) = self.directory_group().filter(|g| g.is_leader()) {
            return match dir.propose(Command::Directory(command)).await? {
                Response::Directory(r) => Ok(r),
                other => Err(NodeError::Internal(format!(
                    "unexpected directory response {other:?}"
                ))),
            };
        }
        let payload = crate::raft::encode(&command);
        let reply = self
            .call_directory_leader(
                |mut client, payload| async move {
                    client
                        .directory_write(stratus_proto::v1::DirectoryCommand { payload })
                        .await
                },
                payload,
            )
            .await?;
        decode_reply(&reply)
    }

    /// Answers a directory query with linearizable freshness (through the leader).
    pub async fn directory_read(
        &self,
        query: crate::server::peer::DirectoryQuery,
    ) -> NodeResult<crate::server::peer::DirectoryAnswer> {
        if let Some(dir) = self.directory_group().filter(|g| g.is_leader()) {
            dir.linearizable_barrier().await?;
            return Ok(crate::server::peer::answer(&self.directory, query));
        }
        let payload = crate::raft::encode(&query);
        let reply = self
            .call_directory_leader(
                |mut client, payload| async move {
                    client
                        .directory_read(stratus_proto::v1::DirectoryCommand { payload })
                        .await
                },
                payload,
            )
            .await?;
        decode_reply(&reply)
    }

    async fn call_directory_leader<F, Fut>(&self, call: F, payload: Vec<u8>) -> NodeResult<Vec<u8>>
    where
        F: Fn(
            stratus_proto::v1::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
            bytes::Bytes,
        ) -> Fut,
        Fut: std::future::Future<
            Output = Result<
                tonic::Response<stratus_proto::v1::DirectoryCommandReply>,
                tonic::Status,
            >,
        >,
    {
        let payload = bytes::Bytes::from(payload);
        // The leader may be changing: try the known leader, then each voter, briefly.
        let mut candidates: Vec<NodeId> = self.directory_leader().into_iter().collect();
        if let Some(spec) = self.spec(DIRECTORY_GROUP) {
            candidates.extend(
                spec.voters
                    .iter()
                    .copied()
                    .filter(|v| Some(*v) != self.directory_leader()),
            );
        }
        let mut last_error = String::from("no directory voter reachable");
        for _round in 0..3 {
            for id in &candidates {
                let Some(client) = self.peers.client(*id) else {
                    continue;
                };
                match tokio::time::timeout(Duration::from_secs(10), call(client, payload.clone()))
                    .await
                {
                    Ok(Ok(reply)) => return Ok(reply.into_inner().payload.to_vec()),
                    Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                        last_error = status.message().to_string()
                    }
                    Ok(Err(status)) => {
                        return Err(NodeError::Internal(format!(
                            "directory node {id} failed: {}",
                            status.message()
                        )))
                    }
                    Err(_) => last_error = format!("directory node {id} timed out"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(NodeError::Unavailable(format!(
            "the directory has no reachable leader ({last_error}); is a majority of its voters up?"
        )))
    }

    /// The tenant's record, from the local copy or, if absent there, the leader.
    pub async fn tenant(&self, name: &str) -> NodeResult<TenantRecord> {
        if let Some(t) = self.directory.tenant(name) {
            return Ok(t);
        }
        match self
            .directory_read(crate::server::peer::DirectoryQuery::Tenant(
                name.to_string(),
            ))
            .await?
        {
            crate::server::peer::DirectoryAnswer::Tenant(Some(t)) => Ok(t),
            _ => Err(NodeError::TenantNotFound(name.to_string())),
        }
    }

    /// Fails with `ContainerNotFound` unless the container exists (local copy first).
    pub async fn require_container(&self, tenant: &str, container: &str) -> NodeResult<()> {
        if self.directory.container(tenant, container).is_some() {
            return Ok(());
        }
        match self
            .directory_read(crate::server::peer::DirectoryQuery::Container(
                tenant.to_string(),
                container.to_string(),
            ))
            .await?
        {
            crate::server::peer::DirectoryAnswer::Container(Some(_)) => Ok(()),
            _ => Err(NodeError::ContainerNotFound {
                tenant: tenant.to_string(),
                container: container.to_string(),
            }),
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

fn decode_reply<T: for<'de> serde::Deserialize<'de>>(payload: &[u8]) -> NodeResult<T> {
    crate::raft::decode(payload)
        .map_err(|e| NodeError::Internal(format!("bad directory reply: {e}")))
}
