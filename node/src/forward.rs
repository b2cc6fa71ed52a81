//! Getting a command or a linearizable query to a group's leader from any node.
//!
//! Clients may call any node; a node that does not lead the group a request needs
//! proposes or reads locally when it leads it, and otherwise forwards the request
//! over the peer service to the leader it knows of, then to each voter in turn,
//! for a bounded number of rounds.

use crate::directory::vault::KeyVault;
use crate::directory::TenantRecord;
use crate::error::{NodeError, NodeResult};
use crate::node::StratusNode;
use crate::objects::reader::ObjectReader;
use crate::objects::ContainerRecord;
use crate::raft::{decode, encode, Command, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use stratus_core::crypto::envelope::KeySource;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};
use stratus_proto::v1 as pb;

/// How long one forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(25);
/// Rounds over the candidates before giving up.
const FORWARD_ROUNDS: usize = 3;
/// Pause between rounds, while an election settles.
const FORWARD_PAUSE: Duration = Duration::from_millis(400);

/// A linearizable read of a group's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GroupQuery {
    /// Directory: one tenant.
    Tenant(String),
    /// Directory: every tenant.
    Tenants,
    /// Replica group: a tenant's containers.
    Containers { tenant: String },
    /// Replica group: one container.
    Container { tenant: String, name: String },
    /// Directory: a tenant's key vault.
    Vault(String),
    /// Directory: one tenant and the leader's applied index (see [`GroupAnswer::TenantAt`]).
    TenantAt(String),
    /// Replica group: which keys protect a tenant's objects.
    KeyUsage { tenant: String },
}

/// How many of a tenant's object versions each key protects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// Objects per KEK version.
    pub kek_versions: BTreeMap<u32, u64>,
    /// Objects protected by a customer-provided key.
    pub customer: u64,
}

/// The answer to a [`GroupQuery`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GroupAnswer {
    Tenant(Option<TenantRecord>),
    Tenants(Vec<TenantRecord>),
    Containers(Vec<ContainerRecord>),
    Container(Option<ContainerRecord>),
    Vault(Option<KeyVault>),
    KeyUsage(KeyUsage),
    /// A tenant with the directory index the leader had applied when it answered:
    /// a node that learnt of the tenant this way waits until its own copy of the
    /// directory reaches that index, so the tenant's key vault is local too.
    TenantAt {
        tenant: Option<TenantRecord>,
        applied: u64,
    },
}

/// Answers `query` from this node's copy of `group` (the caller confirmed leadership).
pub fn answer_locally(
    node: &StratusNode,
    group: GroupId,
    query: GroupQuery,
) -> NodeResult<GroupAnswer> {
    let view = &node.directory;
    let objects = || node.objects(group);
    Ok(match query {
        GroupQuery::Tenant(name) => GroupAnswer::Tenant(view.tenant(&name)),
        GroupQuery::Tenants => {
            GroupAnswer::Tenants(view.read(|d| d.tenants.values().cloned().collect()))
        }
        GroupQuery::Containers { tenant } => {
            GroupAnswer::Containers(objects().containers(&tenant)?)
        }
        GroupQuery::Container { tenant, name } => {
            GroupAnswer::Container(objects().container(&tenant, &name)?)
        }
        GroupQuery::Vault(tenant) => GroupAnswer::Vault(view.vault(&tenant)),
        GroupQuery::TenantAt(name) => GroupAnswer::TenantAt {
            tenant: view.tenant(&name),
            applied: node
                .groups
                .get(&DIRECTORY_GROUP)
                .map(|g| g.state().applied_index)
                .unwrap_or(0),
        },
        GroupQuery::KeyUsage { tenant } => GroupAnswer::KeyUsage(key_usage(&objects(), &tenant)?),
    })
}

/// Objects scanned per page when counting key usage.
const USAGE_PAGE: usize = 1024;

/// Counts which key protects each of `tenant`'s objects in this replica.
fn key_usage(objects: &ObjectReader, tenant: &str) -> NodeResult<KeyUsage> {
    let mut usage = KeyUsage::default();
    let mut after = None;
    loop {
        let page = objects.tenant_objects(tenant, after.as_ref(), USAGE_PAGE)?;
        for (_, meta) in &page {
            match meta.encryption.source {
                KeySource::Tenant { kek_version } => {
                    *usage.kek_versions.entry(kek_version).or_default() += 1
                }
                KeySource::Customer { .. } => usage.customer += 1,
            }
        }
        match page.last() {
            Some((id, _)) if page.len() == USAGE_PAGE => {
                after = Some((id.container.clone(), id.key.clone()))
            }
            _ => return Ok(usage),
        }
    }
}

fn check_group(node: &StratusNode, group: GroupId, query: &GroupQuery) -> NodeResult<()> {
    let directory_query = matches!(
        query,
        GroupQuery::Tenant(_)
            | GroupQuery::TenantAt(_)
            | GroupQuery::Tenants
            | GroupQuery::Vault(_)
    );
    if directory_query != (group == DIRECTORY_GROUP) || node.spec(group).is_none() {
        return Err(NodeError::InvalidArgument(format!(
            "group {group} cannot answer {query:?}"
        )));
    }
    Ok(())
}

impl StratusNode {
    /// Proposes `command` to `group`: here when this node leads it, otherwise at its
    /// leader. Waits until it is committed and applied.
    pub async fn propose(&self, group: GroupId, command: Command) -> NodeResult<Response> {
        if let Some(g) = self.groups.get(&group).filter(|g| g.is_leader()) {
            return g.propose(command).await;
        }
        let payload = encode(&command);
        let reply = self
            .forward(group, payload, |mut client, request| async move {
                client.propose(request).await
            })
            .await?;
        decode(&reply).map_err(|e| NodeError::Internal(format!("bad forwarded reply: {e}")))
    }

    /// Answers `query` with linearizable freshness, through `group`'s leader.
    pub async fn query(&self, group: GroupId, query: GroupQuery) -> NodeResult<GroupAnswer> {
        check_group(self, group, &query)?;
        if let Some(g) = self.groups.get(&group).filter(|g| g.is_leader()) {
            g.linearizable_barrier().await?;
            return answer_locally(self, group, query);
        }
        let payload = encode(&query);
        let reply = self
            .forward(group, payload, |mut client, request| async move {
                client.query(request).await
            })
            .await?;
        decode(&reply).map_err(|e| NodeError::Internal(format!("bad forwarded reply: {e}")))
    }

    /// Serves a forwarded proposal: only the group's leader accepts it.
    pub async fn serve_propose(&self, group: GroupId, payload: &[u8]) -> NodeResult<Vec<u8>> {
        let command: Command = decode(payload)
            .map_err(|e| NodeError::InvalidArgument(format!("undecodable command: {e}")))?;
        let g = self.groups.get(&group).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {} holds no replica of group {group}",
                self.id
            ))
        })?;
        g.require_leader()?;
        Ok(encode(&g.propose(command).await?))
    }

    /// Serves a forwarded query: only the group's leader answers it.
    pub async fn serve_query(&self, group: GroupId, payload: &[u8]) -> NodeResult<Vec<u8>> {
        let query: GroupQuery = decode(payload)
            .map_err(|e| NodeError::InvalidArgument(format!("undecodable query: {e}")))?;
        check_group(self, group, &query)?;
        let g = self.groups.get(&group).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {} holds no replica of group {group}",
                self.id
            ))
        })?;
        g.require_leader()?;
        g.linearizable_barrier().await?;
        Ok(encode(&answer_locally(self, group, query)?))
    }

    async fn forward<F, Fut>(
        &self,
        group: GroupId,
        payload: Vec<u8>,
        call: F,
    ) -> NodeResult<Vec<u8>>
    where
        F: Fn(
            pb::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
            pb::ForwardRequest,
        ) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::ForwardReply>, tonic::Status>>,
    {
        let request = pb::ForwardRequest {
            group_id: group,
            payload: payload.into(),
        };
        let spec = self
            .spec(group)
            .ok_or_else(|| NodeError::InvalidArgument(format!("group {group} is not planned")))?;
        let known = self
            .groups
            .get(&group)
            .and_then(|g| g.leader())
            .filter(|l| *l != self.id);
        let mut candidates: Vec<u64> = known.into_iter().collect();
        candidates.extend(
            spec.voters
                .iter()
                .copied()
                .filter(|v| Some(*v) != known && *v != self.id),
        );
        let mut last_error = String::from("no voter reachable");
        for round in 0..FORWARD_ROUNDS {
            if round > 0 {
                tokio::time::sleep(FORWARD_PAUSE).await;
            }
            for id in &candidates {
                let Some(client) = self.peers.client(*id) else {
                    continue;
                };
                match tokio::time::timeout(FORWARD_TIMEOUT, call(client, request.clone())).await {
                    Ok(Ok(reply)) => return Ok(reply.into_inner().payload.to_vec()),
                    Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                        last_error = format!("node {id}: {}", status.message())
                    }
                    Ok(Err(status)) => return Err(NodeError::from_forwarded(&status)),
                    Err(_) => {
                        self.peers.reset_after_timeout(*id);
                        last_error = format!("node {id} timed out")
                    }
                }
            }
        }
        Err(NodeError::Unavailable(format!(
            "group {group} has no reachable leader ({last_error}); is a majority of its voters up?"
        )))
    }
}
