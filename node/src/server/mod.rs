//! gRPC services of a node, wired onto one listener: the public object, admin, key
//! and access services (each call authenticated, see `crate::auth`), the internal
//! peer service (behind the cluster-credential gate), gRPC health and reflection
//! (open).
//!
//! Limits (message sizes, streams, per-connection concurrency) are set here, once.

pub mod access;
pub mod admin;
pub mod convert;
pub mod keys;
pub mod limits;
pub mod objects;
pub mod peer;
mod peer_chunks;
pub mod put;
pub mod status;

use crate::node::StratusNode;
use crate::transport::Incoming;
use std::future::Future;
use std::sync::Arc;
use stratus_core::limits::PEER_MESSAGE_BYTES_MAX;
use stratus_proto::v1::access_service_server::AccessServiceServer;
use stratus_proto::v1::admin_service_server::AdminServiceServer;
use stratus_proto::v1::key_service_server::KeyServiceServer;
use stratus_proto::v1::object_service_server::ObjectServiceServer;
use stratus_proto::v1::peer_service_server::PeerServiceServer;
use tonic::service::interceptor::InterceptedService;

/// Serves every service on `incoming` until `shutdown` resolves.
pub async fn serve(
    node: Arc<StratusNode>,
    incoming: Incoming,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = node.settings.limits;
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(stratus_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let objects = ObjectServiceServer::new(objects::ObjectApi { node: node.clone() })
        .max_decoding_message_size(limits.message_bytes_max);
    let admin = AdminServiceServer::new(admin::AdminApi { node: node.clone() })
        .max_decoding_message_size(limits.message_bytes_max);
    let keys = KeyServiceServer::new(keys::KeyApi { node: node.clone() })
        .max_decoding_message_size(limits.message_bytes_max);
    let audit_node = node.clone();
    let access = AccessServiceServer::new(access::AccessApi { node: node.clone() })
        .max_decoding_message_size(limits.message_bytes_max);
    // Only nodes holding the cluster's root key get past the peer gate.
    let peer = InterceptedService::new(
        PeerServiceServer::new(peer::PeerApi { node: node.clone() })
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
        crate::auth::PeerGate(node),
    );
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.streams_per_connection_max))
        .http2_max_header_list_size(
            u32::try_from(limits.metadata_bytes_max * 4).unwrap_or(u32::MAX),
        )
        .layer(crate::audit::AuditLayer(audit_node))
        // Also limits the requests in service per connection (named refusal).
        .layer(limits::LimitsLayer(limits))
        .add_service(objects)
        .add_service(admin)
        .add_service(keys)
        .add_service(access)
        .add_service(peer)
        .add_service(health)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
