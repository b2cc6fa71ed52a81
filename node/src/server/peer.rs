//! The internal node-to-node service: Raft messages for every group, local status,
//! commands and queries forwarded to a group's leader ([`crate::forward`]) and the
//! chunk data path ([`super::peer_chunks`]).

use super::peer_chunks;
use crate::node::StratusNode;
use crate::raft::{decode, encode, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use std::sync::Arc;
use stratus_proto::v1 as pb;
use stratus_proto::v1::peer_service_server::PeerService;
use stratus_proto::v1::{
    GroupReplicaStatus, LocalStatusRequest, LocalStatusResponse, RaftKind, RaftMessage, RaftReply,
    ReplicaInfo,
};
use tonic::{Request, Response, Status};

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

    async fn propose(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let r = request.into_inner();
        let payload = self
            .node
            .serve_propose(r.group_id, &r.payload, r.relay.min(1))
            .await?;
        Ok(Response::new(pb::ForwardReply {
            payload: payload.into(),
        }))
    }

    async fn query(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let r = request.into_inner();
        let payload = self
            .node
            .serve_query(r.group_id, &r.payload, r.relay.min(1))
            .await?;
        Ok(Response::new(pb::ForwardReply {
            payload: payload.into(),
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
