//! Getting a command or a linearizable query to a group's leader from any node.
//!
//! Clients may call any node; a node that does not lead the group a request needs
//! proposes or reads locally when it leads it, and otherwise forwards the request
//! over the peer service to the leader it knows of, then to each voter in turn,
//! for a bounded number of rounds.

use crate::directory::vault::KeyVault;
use crate::directory::TenantRecord;
use crate::error::{NodeError, NodeResult};
use crate::group::GroupHandle;
use crate::node::StratusNode;
use crate::objects::reader::ObjectReader;
use crate::objects::{ContainerRecord, ObjectCommand, ObjectResponse};
use crate::raft::{decode, encode, Command, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use stratus_core::crypto::envelope::KeySource;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};
use stratus_proto::v1 as pb;
use stratus_proto::ERROR_CODE_KEY;

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
    /// Directory: the leader's applied index (a node catches its copy up to it).
    Applied,
    /// Directory: an issued token's claims.
    IssuedToken(u128),
    /// Directory: a tenant's role assignments.
    Grants(String),
    /// Replica group: a page of a tenant's audit chain and its head.
    Audit {
        tenant: String,
        after_seq: u64,
        limit: u32,
    },
    /// Replica group: its view of a tenant's geo-replication.
    GeoStatus { tenant: String },
    /// Replica group: outbox entries of a tenant from `from` on.
    Outbox {
        tenant: String,
        from: u64,
        limit: u32,
    },
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
    Geo(crate::geo::status::GeoView),
    Applied(u64),
    IssuedToken(Option<crate::directory::access::IssuedToken>),
    Grants(Vec<stratus_core::auth::RoleGrant>),
    Audit {
        records: Vec<stratus_core::audit::AuditRecord>,
        head: Option<(u64, [u8; 32])>,
    },
    Outbox(Vec<crate::objects::geo::GeoEntry>),
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
        GroupQuery::Audit {
            tenant,
            after_seq,
            limit,
        } => {
            let reader = objects();
            GroupAnswer::Audit {
                records: reader.audit_records(&tenant, after_seq, limit.min(1000) as usize)?,
                head: reader.audit_head(&tenant)?.map(|h| (h.seq, h.hash)),
            }
        }
        GroupQuery::IssuedToken(id) => {
            GroupAnswer::IssuedToken(view.read(|d| d.access.tokens.get(&id).cloned()))
        }
        GroupQuery::Grants(tenant) => GroupAnswer::Grants(
            view.read(|d| d.access.grants.get(&tenant).cloned().unwrap_or_default()),
        ),
        GroupQuery::Applied => GroupAnswer::Applied(
            node.groups
                .get(&DIRECTORY_GROUP)
                .map(|g| g.state().applied_index)
                .unwrap_or(0),
        ),
        GroupQuery::GeoStatus { tenant } => {
            GroupAnswer::Geo(crate::geo::status::answer(node, group, &tenant))
        }
        GroupQuery::Outbox {
            tenant,
            from,
            limit,
        } => GroupAnswer::Outbox(objects().outbox(&tenant, from, limit.min(1024) as usize)?),
    })
}

/// How many objects of `tenant` this replica holds.
pub fn count_objects(objects: &ObjectReader, tenant: &str) -> NodeResult<u64> {
    let mut count = 0;
    let mut after = None;
    loop {
        let page = objects.tenant_objects(tenant, after.as_ref(), USAGE_PAGE)?;
        count += page.len() as u64;
        match page.last() {
            Some((id, _)) if page.len() == USAGE_PAGE => {
                after = Some((id.container.clone(), id.key.clone()))
            }
            _ => return Ok(count),
        }
    }
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

/// How many times a request for `group` may be relayed by a member that does not
/// lead it: once for the directory, whose voters span regions (a node cut off from
/// the directory's leader, as in a cut between two storage regions, reaches it
/// through a member in a third); never for replica groups, whose traffic must not
/// cross a link that is down.
fn relay_budget(group: GroupId) -> u32 {
    u32::from(group == DIRECTORY_GROUP)
}

fn check_group(node: &StratusNode, group: GroupId, query: &GroupQuery) -> NodeResult<()> {
    let directory_query = matches!(
        query,
        GroupQuery::Tenant(_)
            | GroupQuery::TenantAt(_)
            | GroupQuery::Tenants
            | GroupQuery::Vault(_)
            | GroupQuery::Applied
            | GroupQuery::IssuedToken(_)
            | GroupQuery::Grants(_)
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
        self.propose_relayed(group, command, relay_budget(group))
            .await
    }

    /// Proposes a client write of `record`'s tenant on `g` (led here): refused
    /// unless this group may take it (role, epoch, lease, see
    /// `crate::geo::lease`); a state machine that finds it is not the tenant's
    /// primary makes it a redirect; acknowledged only if the lease still held.
    pub async fn propose_write(
        &self,
        g: &GroupHandle,
        record: &TenantRecord,
        command: Command,
    ) -> NodeResult<Response> {
        crate::geo::lease::check_writable(self, g.id(), record)?;
        let response = g.propose(command).await?;
        if let Response::Object(ObjectResponse::NotPrimary { .. }) = response {
            return Err(crate::geo::lease::redirect(self, record));
        }
        crate::geo::lease::confirm_ack(self, g.id(), record)?;
        Ok(response)
    }

    /// Proposes on `g` (led here), through [`Self::propose_write`] for a client write.
    async fn propose_here(&self, g: &GroupHandle, command: Command) -> NodeResult<Response> {
        if let Command::Object(ObjectCommand::Audit { tenant, .. }) = &command {
            // Only the tenant's primary, under its write lease when it needs one,
            // extends the audit chain: records it appends after a failover began
            // would be numbered past what the failover waited for (and a
            // secondary's own records would fork the chain). A refusal sends the
            // batch back to the sender, which retries at the primary.
            let record = self.tenant(tenant).await?;
            crate::geo::lease::check_writable(self, g.id(), &record)?;
            let response = g.propose(command).await?;
            if let Response::Object(ObjectResponse::NotPrimary { .. }) = response {
                return Err(crate::geo::lease::redirect(self, &record));
            }
            return Ok(response);
        }
        let tenant = match &command {
            Command::Object(c) => c.client_write_tenant().map(str::to_owned),
            _ => None,
        };
        match tenant {
            Some(t) => {
                let record = self.tenant(&t).await?;
                self.propose_write(g, &record, command).await
            }
            None => g.propose(command).await,
        }
    }

    async fn propose_relayed(
        &self,
        group: GroupId,
        command: Command,
        relay: u32,
    ) -> NodeResult<Response> {
        if let Some(g) = self.groups.get(&group).filter(|g| g.is_leader()) {
            return self.propose_here(g, command).await;
        }
        let payload = encode(&command);
        let reply = self
            .forward(group, payload, relay, |mut client, request| async move {
                client.propose(request).await
            })
            .await?;
        decode(&reply).map_err(|e| NodeError::Internal(format!("bad forwarded reply: {e}")))
    }

    /// Answers `query` with linearizable freshness, through `group`'s leader.
    pub async fn query(&self, group: GroupId, query: GroupQuery) -> NodeResult<GroupAnswer> {
        self.query_relayed(group, query, relay_budget(group)).await
    }

    async fn query_relayed(
        &self,
        group: GroupId,
        query: GroupQuery,
        relay: u32,
    ) -> NodeResult<GroupAnswer> {
        check_group(self, group, &query)?;
        if let Some(g) = self.groups.get(&group).filter(|g| g.is_leader()) {
            g.linearizable_barrier().await?;
            return answer_locally(self, group, query);
        }
        let payload = encode(&query);
        let reply = self
            .forward(group, payload, relay, |mut client, request| async move {
                client.query(request).await
            })
            .await?;
        decode(&reply).map_err(|e| NodeError::Internal(format!("bad forwarded reply: {e}")))
    }

    /// Serves a forwarded proposal: the group's leader accepts it; another member
    /// passes it on while the request may still be relayed.
    pub async fn serve_propose(
        &self,
        group: GroupId,
        payload: &[u8],
        relay: u32,
    ) -> NodeResult<Vec<u8>> {
        let command: Command = decode(payload)
            .map_err(|e| NodeError::InvalidArgument(format!("undecodable command: {e}")))?;
        let g = self.groups.get(&group).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {} holds no replica of group {group}",
                self.id
            ))
        })?;
        if !g.is_leader() && relay > 0 {
            return Ok(encode(
                &self.propose_relayed(group, command, relay - 1).await?,
            ));
        }
        g.require_leader()?;
        Ok(encode(&self.propose_here(g, command).await?))
    }

    /// Serves a forwarded query: the group's leader answers it; another member
    /// passes it on while the request may still be relayed.
    pub async fn serve_query(
        &self,
        group: GroupId,
        payload: &[u8],
        relay: u32,
    ) -> NodeResult<Vec<u8>> {
        let query: GroupQuery = decode(payload)
            .map_err(|e| NodeError::InvalidArgument(format!("undecodable query: {e}")))?;
        check_group(self, group, &query)?;
        let g = self.groups.get(&group).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node {} holds no replica of group {group}",
                self.id
            ))
        })?;
        if !g.is_leader() && relay > 0 {
            return Ok(encode(&self.query_relayed(group, query, relay - 1).await?));
        }
        g.require_leader()?;
        g.linearizable_barrier().await?;
        Ok(encode(&answer_locally(self, group, query)?))
    }

    async fn forward<F, Fut>(
        &self,
        group: GroupId,
        payload: Vec<u8>,
        relay: u32,
        call: F,
    ) -> NodeResult<Vec<u8>>
    where
        F: Fn(crate::peers::PeerClient, pb::ForwardRequest) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::ForwardReply>, tonic::Status>>,
    {
        let request = pb::ForwardRequest {
            group_id: group,
            payload: payload.into(),
            relay,
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
                    // Unavailable, or a status the transport made up (no error
                    // code from a node: the connection failed or broke): try the
                    // next candidate.
                    Ok(Err(status))
                        if status.code() == tonic::Code::Unavailable
                            || status.metadata().get(ERROR_CODE_KEY).is_none() =>
                    {
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
