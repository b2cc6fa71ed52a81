//! Generated types and services of the Stratus gRPC API (`stratus.v1`).
//!
//! Owns nothing but the wire contract: no conversions to domain types live here
//! (those sit at the edge of `stratus-node` and `stratus-client`).
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("stratus.v1");
}

mod redact;

/// Encoded `FileDescriptorSet` of the API, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/stratus_descriptor.bin"));

/// Metadata key carrying the stable Stratus error code on every error status.
pub const ERROR_CODE_KEY: &str = "stratus-error";
/// Metadata key with the node id of the group leader, on `not-leader` errors.
pub const LEADER_ID_KEY: &str = "stratus-leader-id";
/// Metadata key with the address of the group leader, on `not-leader` errors.
pub const LEADER_ADDR_KEY: &str = "stratus-leader-addr";
/// Metadata key carrying the caller's credential: `Bearer <credential>`.
pub const AUTHORIZATION_KEY: &str = "authorization";
