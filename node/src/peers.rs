//! One gRPC channel per peer node, shared by every group (multi-Raft) and by the
//! internal RPCs. Channels dial through the transport seam and connect lazily.

use crate::transport::{self, TransportRef};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::limits::PEER_MESSAGE_BYTES_MAX;
use stratus_core::topology::{NodeId, Topology};
use stratus_proto::v1::peer_service_client::PeerServiceClient;
use tonic::transport::Channel;

/// How long dialling a peer may take.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Channels to every other node of the topology.
pub struct Peers {
    transport: TransportRef,
    topology: Arc<Topology>,
    channels: Mutex<BTreeMap<NodeId, Channel>>,
}

impl Peers {
    pub fn new(transport: TransportRef, topology: Arc<Topology>) -> Self {
        Self {
            transport,
            topology,
            channels: Mutex::new(BTreeMap::new()),
        }
    }

    /// The address of node `id`.
    pub fn addr(&self, id: NodeId) -> Option<String> {
        self.topology.node(id).map(|n| n.addr.clone())
    }

    /// The channel to node `id` (created on first use).
    pub fn channel(&self, id: NodeId) -> Option<Channel> {
        let addr = self.addr(id)?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            channels
                .entry(id)
                .or_insert_with(|| transport::channel(&self.transport, &addr, PEER_CONNECT_TIMEOUT))
                .clone(),
        )
    }

    /// A peer-service client for node `id`, with the peer message limits.
    pub fn client(&self, id: NodeId) -> Option<PeerServiceClient<Channel>> {
        self.channel(id).map(|c| {
            PeerServiceClient::new(c)
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
        })
    }
}
