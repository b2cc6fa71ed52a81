//! One gRPC channel per peer node, shared by every group (multi-Raft) and by the
//! internal RPCs. Channels dial through the transport seam and connect lazily.

use crate::auth::ClusterCredential;
use crate::transport::{self, TransportRef};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::limits::PEER_MESSAGE_BYTES_MAX;
use stratus_core::topology::{NodeId, Topology};
use stratus_proto::v1::peer_service_client::PeerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How long dialling a peer may take.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel is replaced after a timed-out call at most this often, so an
/// overloaded (rather than stalled) peer does not cause a reconnection storm.
pub const PEER_RESET_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// A channel and when it was made.
struct PeerChannel {
    channel: Channel,
    made: tokio::time::Instant,
}

/// A peer-service client that presents the cluster credential on every call.
pub type PeerClient = PeerServiceClient<InterceptedService<Channel, ClusterCredential>>;

/// Channels to every other node of the topology.
pub struct Peers {
    transport: TransportRef,
    topology: Arc<Topology>,
    channels: Mutex<BTreeMap<NodeId, PeerChannel>>,
    /// `Bearer <cluster credential>` and this node's id, added to every peer call.
    credential: ClusterCredential,
}

impl Peers {
    pub fn new(
        me: NodeId,
        transport: TransportRef,
        topology: Arc<Topology>,
        credential: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    ) -> Self {
        Self {
            transport,
            topology,
            channels: Mutex::new(BTreeMap::new()),
            credential: ClusterCredential::new(credential, me),
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
                .or_insert_with(|| PeerChannel {
                    channel: transport::channel(&self.transport, &addr, PEER_CONNECT_TIMEOUT),
                    made: tokio::time::Instant::now(),
                })
                .channel
                .clone(),
        )
    }

    /// Replaces the channel to node `id` after a call on it timed out (unless it
    /// is younger than [`PEER_RESET_INTERVAL_MIN`]). A connection that silently
    /// stopped delivering (a lost segment, a dead middlebox entry) holds every
    /// request multiplexed on it until keepalive gives up; calls in flight on the
    /// old connection finish or time out on their own.
    pub fn reset_after_timeout(&self, id: NodeId) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels
            .get(&id)
            .is_some_and(|c| c.made.elapsed() >= PEER_RESET_INTERVAL_MIN)
        {
            channels.remove(&id);
        }
    }

    /// A peer-service client for node `id`, with the peer message limits.
    pub fn client(&self, id: NodeId) -> Option<PeerClient> {
        self.channel(id).map(|c| {
            PeerServiceClient::with_interceptor(c, self.credential.clone())
                .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
        })
    }
}
