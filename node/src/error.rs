//! The node's one error type and its one mapping to gRPC statuses.
//!
//! Every status carries the stable code in `stratus-error` metadata; `NotLeader` also
//! carries the leader hint. The client decodes these in one place.

use stratus_proto::{ERROR_CODE_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY};
use tonic::{Code, Status};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A request field breaks its rule.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("tenant {0:?} not found")]
    TenantNotFound(String),
    #[error("container {tenant}/{container} not found")]
    ContainerNotFound { tenant: String, container: String },
    #[error("object {tenant}/{container}/{key} not found")]
    ObjectNotFound {
        tenant: String,
        container: String,
        key: String,
    },
    /// Something other than a tenant, container or object is missing (a token, a
    /// role assignment).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// No credentials, or credentials this cluster does not accept.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    #[error("{0}")]
    AlreadyExists(String),
    /// A condition of the request does not hold (stale ETag, non-empty container).
    #[error("{message}")]
    FailedPrecondition { code: &'static str, message: String },
    /// The tenant's keys forbid the request (revoked, deleted, purged) or a
    /// customer-provided key does not match.
    #[error("{message}")]
    PermissionDenied { code: &'static str, message: String },
    /// A byte range outside the object.
    #[error("{0}")]
    OutOfRange(String),
    /// This node does not lead the group the request is for.
    #[error("node {me} is not the leader of group {group}{}", leader_addr.as_ref().map(|a| format!("; the leader is at {a}")).unwrap_or_else(|| "; no leader is known yet, retry shortly".into()))]
    NotLeader {
        me: u64,
        group: u64,
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// Data sent by the client failed its CRC.
    #[error("{0}")]
    CrcMismatch(String),
    /// A limit was exceeded.
    #[error("{message}")]
    ResourceExhausted { code: &'static str, message: String },
    /// Stored data failed its integrity check on every copy this node can read.
    #[error("{0}")]
    DataLoss(String),
    /// The object changed while it was being read.
    #[error("{0}")]
    Aborted(String),
    /// No quorum, a timeout or shutdown: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Unavailable for a reason with its own stable code (a write lease lapsed, a
    /// geo role still being set up): retry later.
    #[error("{message}")]
    UnavailableFor { code: &'static str, message: String },
    #[error("storage failure: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("internal error: {0}")]
    Internal(String),
    /// An error another node returned for a forwarded request, passed on unchanged.
    #[error("{message}")]
    Forwarded {
        grpc: Code,
        code: String,
        message: String,
    },
}

impl NodeError {
    /// The stable error code sent in `stratus-error`.
    pub fn code(&self) -> &str {
        match self {
            NodeError::InvalidArgument(_) => "invalid-argument",
            NodeError::TenantNotFound(_) => "tenant-not-found",
            NodeError::ContainerNotFound { .. } => "container-not-found",
            NodeError::ObjectNotFound { .. } => "object-not-found",
            NodeError::NotFound { code, .. } => code,
            NodeError::Unauthenticated { code, .. } => code,
            NodeError::AlreadyExists(_) => "already-exists",
            NodeError::FailedPrecondition { code, .. } => code,
            NodeError::PermissionDenied { code, .. } => code,
            NodeError::OutOfRange(_) => "range-not-satisfiable",
            NodeError::NotLeader { .. } => "not-leader",
            NodeError::CrcMismatch(_) => "crc-mismatch",
            NodeError::ResourceExhausted { code, .. } => code,
            NodeError::DataLoss(_) => "data-loss",
            NodeError::Aborted(_) => "aborted",
            NodeError::Unavailable(_) => "unavailable",
            NodeError::UnavailableFor { code, .. } => code,
            NodeError::Storage(crate::storage::StorageError::Corrupt { .. }) => "data-loss",
            NodeError::Storage(_) => "storage",
            NodeError::Internal(_) => "internal",
            NodeError::Forwarded { code, .. } => code,
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            NodeError::InvalidArgument(_) | NodeError::CrcMismatch(_) => Code::InvalidArgument,
            NodeError::TenantNotFound(_)
            | NodeError::ContainerNotFound { .. }
            | NodeError::ObjectNotFound { .. }
            | NodeError::NotFound { .. } => Code::NotFound,
            NodeError::Unauthenticated { .. } => Code::Unauthenticated,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::FailedPrecondition { .. } => Code::FailedPrecondition,
            NodeError::PermissionDenied { .. } => Code::PermissionDenied,
            NodeError::OutOfRange(_) => Code::OutOfRange,
            NodeError::NotLeader { .. }
            | NodeError::Unavailable(_)
            | NodeError::UnavailableFor { .. } => Code::Unavailable,
            NodeError::ResourceExhausted { .. } => Code::ResourceExhausted,
            NodeError::DataLoss(_) => Code::DataLoss,
            NodeError::Storage(crate::storage::StorageError::Corrupt { .. }) => Code::DataLoss,
            NodeError::Aborted(_) => Code::Aborted,
            NodeError::Storage(_) | NodeError::Internal(_) => Code::Internal,
            NodeError::Forwarded { grpc, .. } => *grpc,
        }
    }
}

impl NodeError {
    /// The error a peer returned for a forwarded request, so the client sees the
    /// same status and stable code as if it had called that peer itself.
    pub fn from_forwarded(status: &Status) -> NodeError {
        let code = status
            .metadata()
            .get(ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("internal")
            .to_string();
        NodeError::Forwarded {
            grpc: status.code(),
            code,
            message: status.message().to_string(),
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let mut status = Status::new(e.grpc_code(), e.to_string());
        let md = status.metadata_mut();
        if let Ok(v) = e.code().parse() {
            md.insert(ERROR_CODE_KEY, v);
        }
        if let NodeError::NotLeader {
            leader_id,
            leader_addr,
            ..
        } = &e
        {
            if let Some(Ok(v)) = leader_id.map(|id| id.to_string().parse()) {
                md.insert(LEADER_ID_KEY, v);
            }
            if let Some(Ok(v)) = leader_addr.as_ref().map(|a| a.parse()) {
                md.insert(LEADER_ADDR_KEY, v);
            }
        }
        status
    }
}

impl From<stratus_core::names::NameError> for NodeError {
    fn from(e: stratus_core::names::NameError) -> Self {
        NodeError::InvalidArgument(e.to_string())
    }
}

/// Result alias for node operations.
pub type NodeResult<T> = Result<T, NodeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_carries_hint_metadata() {
        let s: Status = NodeError::NotLeader {
            me: 1,
            group: 2,
            leader_id: Some(3),
            leader_addr: Some("127.0.0.1:7103".into()),
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.metadata().get(ERROR_CODE_KEY).unwrap(), "not-leader");
        assert_eq!(s.metadata().get(LEADER_ID_KEY).unwrap(), "3");
        assert_eq!(s.metadata().get(LEADER_ADDR_KEY).unwrap(), "127.0.0.1:7103");
        assert!(s.message().contains("127.0.0.1:7103"));
    }

    #[test]
    fn not_found_names_what() {
        let s: Status = NodeError::ObjectNotFound {
            tenant: "t1x".into(),
            container: "c1x".into(),
            key: "k".into(),
        }
        .into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("t1x/c1x/k"));
        assert_eq!(
            s.metadata().get(ERROR_CODE_KEY).unwrap(),
            "object-not-found"
        );
    }
}
