//! openraft's network over the peer gRPC service: every message carries its group id
//! and travels, postcard-encoded, on the one channel this node keeps per peer.

use super::{decode, encode, TypeConfig};
use crate::peers::Peers;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use stratus_proto::v1::{RaftKind, RaftMessage};

/// Creates per-target clients for one group.
pub struct GroupNetwork {
    peers: Arc<Peers>,
    group: u64,
    me: u64,
}

impl GroupNetwork {
    pub fn new(peers: Arc<Peers>, group: u64, me: u64) -> Self {
        Self { peers, group, me }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        PeerLink {
            peers: self.peers.clone(),
            group: self.group,
            me: self.me,
            target,
        }
    }
}

/// Sends one group's Raft messages to one target node.
pub struct PeerLink {
    peers: Arc<Peers>,
    group: u64,
    me: u64,
    target: u64,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, E>>;

impl PeerLink {
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(mut client) = self.peers.client(self.target) else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(format!("node {} is not in the topology", self.target)),
            )));
        };
        let message = RaftMessage {
            group_id: self.group,
            kind: kind as i32,
            payload: encode(request).into(),
            from: self.me,
        };
        // Transport failures and timeouts are "unreachable": openraft then backs off
        // instead of retrying in a tight loop (STACK.md).
        let reply = match tokio::time::timeout(option.hard_ttl(), client.raft(message)).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Err(elapsed) => {
                self.peers.reset_after_timeout(self.target);
                return Err(RPCError::Unreachable(Unreachable::new(&elapsed)));
            }
        };
        let result: Result<Resp, E> =
            decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        self.call(RaftKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.call(RaftKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        self.call(RaftKind::Vote, &rpc, &option).await
    }
}
