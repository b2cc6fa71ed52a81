//! The internal node-to-node service: Raft messages for every group, local status,
//! and directory commands forwarded to the directory leader.

use super::peer_chunks;
use crate::directory::{ContainerRecord, DirectoryCommand, DirectoryView, TenantRecord};
use crate::error::NodeError;
use crate::node::StratusNode;
use crate::raft::{decode, encode, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use stratus_proto::v1 as pb;
use stratus_proto::v1::peer_service_server::PeerService;
use stratus_proto::v1::{
    DirectoryCommandReply, GroupReplicaStatus, LocalStatusRequest, LocalStatusResponse, RaftKind,
    RaftMessage, RaftReply, ReplicaInfo,
};
use tonic::{Request, Response, Status};

/// A read of the directory answered by its leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DirectoryQuery {
    Tenant(String),
    Tenants,
    Container(String, String),
    Containers(String),
}

/// The answer to a [`DirectoryQuery`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DirectoryAnswer {
    Tenant(Option<TenantRecord>),
    Tenants(Vec<TenantRecord>),
    Container(Option<ContainerRecord>),
    /// `None` when the tenant does not exist.
    Containers(Option<Vec<ContainerRecord>>),
}

/// Answers a query from a directory copy.
pub fn answer(view: &DirectoryView, query: DirectoryQuery) -> DirectoryAnswer {
    view.read(|d| match query {
        DirectoryQuery::Tenant(name) => DirectoryAnswer::Tenant(d.tenants.get(&name).cloned()),
        DirectoryQuery::Tenants => DirectoryAnswer::Tenants(d.tenants.values().cloned().collect()),
        DirectoryQuery::Container(t, c) => {
            DirectoryAnswer::Container(d.containers.get(&(t, c)).cloned())
        }
        DirectoryQuery::Containers(t) => DirectoryAnswer::Containers(
            d.tenants
                .contains_key(&t)
                .then(|| d.containers_of(&t).cloned().collect()),
        ),
    })
}

/// The peer service of one node.
pub struct PeerApi {
    pub node: Arc<StratusNode>,
}

fn bad_payload(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer payload: {e}"))
}

#[tonic::async_trait]
impl PeerService for PeerApi {
    async fn raft(&self, request: Request<RaftMessage>) -> Result<Response<RaftReply>, Status> {
        let m = request.into_inner();
        let Some(group) = self.node.groups.get(&m.group_id) else {
            return Err(Status::not_found(format!(
                "node {} holds no replica of group {}",
                self.node.id, m.group_id
            )));
        };
        if !group.spec.has_member(m.from) {
            return Err(Status::permission_denied(format!(
                "node {} is not a member of group {}",
                m.from, m.group_id
            )));
        }
        let payload = match RaftKind::try_from(m.kind) {
            Ok(RaftKind::Append) => {
                let req: AppendEntriesRequest<TypeConfig> =
                    decode(&m.payload).map_err(bad_payload)?;
                encode(&group.raft.append_entries(req).await)
            }
            Ok(RaftKind::Vote) => {
                let req: VoteRequest<u64> = decode(&m.payload).map_err(bad_payload)?;
                encode(&group.raft.vote(req).await)
            }
            Ok(RaftKind::Snapshot) => {
                let req: InstallSnapshotRequest<TypeConfig> =
                    decode(&m.payload).map_err(bad_payload)?;
                encode(&group.raft.install_snapshot(req).await)
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unknown raft message kind {}",
                    m.kind
                )))
            }
        };
        Ok(Response::new(RaftReply {
            payload: payload.into(),
        }))
    }

    async fn local_status(
        &self,
        _request: Request<LocalStatusRequest>,
    ) -> Result<Response<LocalStatusResponse>, Status> {
        let groups = self
            .node
            .groups
            .values()
            .map(|g| {
                let s = g.state();
                GroupReplicaStatus {
                    group_id: g.id(),
                    leader_id: s.leader.unwrap_or(0),
                    voters: s.voters.clone(),
                    replica: Some(ReplicaInfo {
                        node_id: self.node.id,
                        role: s.role.to_string(),
                        term: s.term,
                        last_log_index: s.last_log_index,
                        applied_index: s.applied_index,
                        voter: s.voter,
                    }),
                }
            })
            .collect();
        Ok(Response::new(LocalStatusResponse {
            node_id: self.node.id,
            groups,
        }))
    }

    async fn directory_write(
        &self,
        request: Request<stratus_proto::v1::DirectoryCommand>,
    ) -> Result<Response<DirectoryCommandReply>, Status> {
        let command: DirectoryCommand =
            decode(&request.into_inner().payload).map_err(bad_payload)?;
        let Some(dir) = self.node.directory_group().filter(|g| g.is_leader()) else {
            return Err(NodeError::Unavailable(format!(
                "node {} does not lead the directory",
                self.node.id
            ))
            .into());
        };
        match dir
            .propose(crate::raft::Command::Directory(command))
            .await?
        {
            crate::raft::Response::Directory(r) => Ok(Response::new(DirectoryCommandReply {
                payload: encode(&r).into(),
            })),
            other => Err(Status::internal(format!(
                "unexpected directory response {other:?}"
            ))),
        }
    }

    async fn directory_read(
        &self,
        request: Request<stratus_proto::v1::DirectoryCommand>,
    ) -> Result<Response<DirectoryCommandReply>, Status> {
        let query: DirectoryQuery = decode(&request.into_inner().payload).map_err(bad_payload)?;
        let Some(dir) = self.node.directory_group().filter(|g| g.is_leader()) else {
            return Err(NodeError::Unavailable(format!(
                "node {} does not lead the directory",
                self.node.id
            ))
            .into());
        };
        dir.linearizable_barrier().await?;
        Ok(Response::new(DirectoryCommandReply {
            payload: encode(&answer(&self.node.directory, query)).into(),
        }))
    }

    async fn write_chunk(
        &self,
        request: Request<pb::WriteChunkRequest>,
    ) -> Result<Response<pb::WriteChunkReply>, Status> {
        Ok(Response::new(peer_chunks::write_chunk(
            &self.node,
            request.into_inner(),
        )?))
    }

    async fn sync_chunks(
        &self,
        request: Request<pb::SyncChunksRequest>,
    ) -> Result<Response<pb::SyncChunksReply>, Status> {
        Ok(Response::new(
            peer_chunks::sync_chunks(&self.node, request.into_inner()).await?,
        ))
    }

    async fn drop_chunks(
        &self,
        request: Request<pb::DropChunksRequest>,
    ) -> Result<Response<pb::DropChunksReply>, Status> {
        Ok(Response::new(peer_chunks::drop_chunks(
            &self.node,
            request.into_inner(),
        )?))
    }

    async fn fetch_chunk(
        &self,
        request: Request<pb::FetchChunkRequest>,
    ) -> Result<Response<pb::FetchChunkReply>, Status> {
        Ok(Response::new(peer_chunks::fetch_chunk(
            &self.node,
            request.into_inner(),
        )?))
    }
}
