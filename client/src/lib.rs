//! Stratus Rust SDK: talk to a Stratus cluster over gRPC.
//!
//! Owns: the [`Client`] (connection pool, cluster discovery, routing of object
//! operations to the tenant's replica-group leader, safe retries with backoff and a
//! deadline), streaming uploads and downloads with CRC-32 verification, the one
//! typed [`Error`] decoded from gRPC statuses, and the [`Profile`] file that tells
//! tools where a cluster is.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stratus_client::Error> {
//! use stratus_client::{Client, PutOptions, GetOptions};
//! let client = Client::connect(vec!["127.0.0.1:7101".into()]).await?;
//! client.put_bytes("acme", "photos", "a/b.jpg", b"hello".to_vec(), PutOptions::default()).await?;
//! let (info, bytes) = client.get_bytes("acme", "photos", "a/b.jpg", GetOptions::default()).await?;
//! assert_eq!(info.size, bytes.len() as u64);
//! # Ok(()) }
//! ```
//!
//! Module map: [`error`] (the error enum and the one status decoder), `convert`
//! (every proto ↔ domain conversion), [`model`] (domain types), `channels`
//! (one lazily connected gRPC channel per node), `retry` (backoff, deadline, what is
//! safe to retry), `routing` (placement cache and target selection), `health`
//! (nodes that recently did not answer, tried last), `client`
//! (connect and admin calls), `put` / `get` / `objects` (object operations),
//! [`profile`] (profile file and endpoint precedence), [`cli`] (the `stratus`
//! command-line program, here so other crates can build it as their own binary).
//!
//! **Architecture Invariant:** protobuf types never appear in this crate's public
//! API; they are converted in `convert` and nowhere else. Only `channels` dials.

mod access;
mod channels;
pub mod cli;
mod client;
mod convert;
pub mod credential;
pub mod error;
#[cfg(test)]
mod fake_cluster_tests;
mod geo;
mod get;
mod health;
mod keys;
pub mod model;
mod objects;
pub mod profile;
mod put;
mod retry;
mod routing;

pub use access::{AuditPage, Identity, NewToken, RoleAssignment, TokenInfo, TokenSpec};
pub use channels::{DialedIo, Dialer, TlsConfig};
pub use client::{Client, ClientConfig};
pub use credential::{Credential, TOKEN_ENV};
pub use error::Error;
pub use geo::{TenantUpdate, FAILOVER_TIMEOUT};
pub use get::{GetOptions, ObjectStream};
pub use keys::{EncryptionKey, KeyInfo, KeyOperation, KeyVersion};
pub use model::{
    ClusterStatus, Consistency, ContainerInfo, FailoverInfo, GeoStatus, GroupStatus, ListPage,
    Member, NodeStatus, ObjectInfo, Placement, RegionStatus, ReplicaStatus, TenantInfo,
};
pub use profile::{resolve_endpoints, resolve_profile, EndpointSources, Profile};
pub use put::{PutOptions, PutSource, PUT_CHUNK_BYTES, REPLAY_BYTES_MAX};
pub use stratus_core::auth::Role;
pub use stratus_core::Redundancy;

use std::sync::Arc;

/// Transfer progress, reported to a [`ProgressFn`] after every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred so far in the current attempt (restarts at 0 on a retry).
    pub done: u64,
    /// Total bytes expected, when known.
    pub total: Option<u64>,
}

/// Callback receiving [`Progress`] during a put or get.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;
