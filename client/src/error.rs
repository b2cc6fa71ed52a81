//! The one error type of the SDK and the one function that decodes a gRPC status.
//!
//! Every server error carries a stable code in the `stratus-error` metadata (for
//! example `not-leader`, `tenant-not-found`); [`Error::from_status`] keeps it next to
//! the server's message so tools can branch on the code and show the message.
//! Errors produced inside the client (CRC mismatch, IO, configuration) have no code.

use std::error::Error as StdError;
use stratus_proto::{ERROR_CODE_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY};

/// Stable code the nodes send when a request reached a node that does not lead the
/// replica group it needs.
pub const NOT_LEADER_CODE: &str = "not-leader";

/// Stable codes of `unavailable` refusals a node sends before proposing a write
/// (`geo::lease::check_writable`); after proposing it uses other codes
/// (`lease-lapsed-after-write`), so these mean nothing was written.
pub const REFUSED_BEFORE_ACTING: &[&str] = &["lease-lapsed", "geo-role-pending", "lease-limit"];

/// Everything that can go wrong talking to Stratus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tenant, container or object does not exist.
    #[error("{what} not found: {message}")]
    NotFound {
        /// What is missing (`tenant`, `container`, `object`, or `resource` when unknown).
        what: String,
        message: String,
        code: Option<String>,
    },
    /// The resource already exists. Note: when a create call was retried after a
    /// lost reply, this may mean our own first attempt succeeded.
    #[error("already exists: {message}")]
    AlreadyExists {
        message: String,
        code: Option<String>,
    },
    /// The request is malformed (bad name, bad range, oversized object, ...).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        message: String,
        code: Option<String>,
    },
    /// A condition did not hold (stale ETag, container not empty, ...).
    #[error("precondition failed: {message}")]
    FailedPrecondition {
        message: String,
        code: Option<String>,
    },
    #[error("permission denied: {message}")]
    PermissionDenied {
        message: String,
        code: Option<String>,
    },
    #[error("not authenticated: {message}")]
    Unauthenticated {
        message: String,
        code: Option<String>,
    },
    #[error("resource exhausted: {message}; slow down or retry later")]
    ResourceExhausted {
        message: String,
        code: Option<String>,
    },
    /// The server detected corruption or loss (for example a chunk CRC mismatch on upload).
    #[error("data loss: {message}")]
    DataLoss {
        message: String,
        code: Option<String>,
    },
    /// The node that answered does not lead the replica group; the SDK follows the
    /// hint itself and only returns this when its deadline ran out.
    #[error("node is not the group leader (leader: {}): {message}", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
        message: String,
    },
    /// The cluster cannot serve the request right now (election, lost quorum, shutdown).
    #[error("service unavailable: {message}; this is usually transient, retry in a few seconds")]
    Unavailable {
        message: String,
        code: Option<String>,
    },
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded {
        message: String,
        code: Option<String>,
    },
    /// A write failed after the server may already have applied it, and it was not
    /// safe to retry (conditional put after its trailer was sent, one-shot source).
    #[error("outcome unknown: {operation} may or may not have been applied ({cause}); check with `stratus head` before retrying")]
    OutcomeUnknown {
        operation: String,
        cause: Box<Error>,
    },
    /// The client detected corrupt or incomplete data (CRC or size mismatch).
    #[error("integrity check failed on {what}: expected {expected}, got {actual}; nothing was accepted, retry the transfer")]
    Integrity {
        what: String,
        expected: String,
        actual: String,
    },
    /// The connection to a node failed or timed out.
    #[error("cannot reach node {addr}: {message}; is the cluster running (`stratus dev`) and the endpoint right?")]
    Transport {
        addr: String,
        message: String,
        /// Whether the request may have reached the node. `false` only when the
        /// connection could not even be established, which makes any retry safe.
        sent: bool,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bad local configuration (no endpoint, unreadable profile, ...).
    #[error("{message}")]
    Config { message: String },
    /// Any other gRPC status.
    #[error("server error ({grpc_code:?}): {message}")]
    Other {
        grpc_code: tonic::Code,
        message: String,
        code: Option<String>,
    },
}

impl Error {
    /// Decodes a gRPC status received from (or produced while calling) `addr`.
    /// The one place where statuses become errors.
    pub fn from_status(status: &tonic::Status, addr: &str) -> Error {
        let meta = status.metadata();
        let code = meta
            .get(ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let message = status.message().to_owned();
        if code.as_deref() == Some(NOT_LEADER_CODE) {
            let leader_id = meta
                .get(LEADER_ID_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|id| *id != 0);
            let leader_addr = meta
                .get(LEADER_ADDR_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned);
            return Error::NotLeader {
                leader_id,
                leader_addr,
                message,
            };
        }
        // Statuses decoded from the wire have no source; statuses tonic builds from a
        // local failure (connect, reset, timeout) keep the failure as their source.
        if code.is_none() && status.source().is_some() {
            return Error::Transport {
                addr: addr.to_owned(),
                message: transport_message(status),
                sent: !is_connect_error(status),
            };
        }
        use tonic::Code as C;
        match status.code() {
            C::NotFound => Error::NotFound {
                what: not_found_what(code.as_deref()),
                message,
                code,
            },
            C::AlreadyExists => Error::AlreadyExists { message, code },
            C::InvalidArgument | C::OutOfRange => Error::InvalidArgument { message, code },
            C::FailedPrecondition | C::Aborted => Error::FailedPrecondition { message, code },
            C::PermissionDenied => Error::PermissionDenied { message, code },
            C::Unauthenticated => Error::Unauthenticated { message, code },
            C::ResourceExhausted => Error::ResourceExhausted { message, code },
            C::DataLoss => Error::DataLoss { message, code },
            C::Unavailable => Error::Unavailable { message, code },
            C::DeadlineExceeded => Error::DeadlineExceeded { message, code },
            other => Error::Other {
                grpc_code: other,
                message,
                code,
            },
        }
    }

    /// An IO error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::Config {
            message: message.into(),
        }
    }

    /// A request the client refuses to send (bad name, bad option).
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            message: message.into(),
            code: None,
        }
    }

    /// The stable Stratus error code sent by the server, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::NotFound { code, .. }
            | Error::AlreadyExists { code, .. }
            | Error::InvalidArgument { code, .. }
            | Error::FailedPrecondition { code, .. }
            | Error::PermissionDenied { code, .. }
            | Error::Unauthenticated { code, .. }
            | Error::ResourceExhausted { code, .. }
            | Error::DataLoss { code, .. }
            | Error::Unavailable { code, .. }
            | Error::DeadlineExceeded { code, .. }
            | Error::Other { code, .. } => code.as_deref(),
            Error::NotLeader { .. } => Some(NOT_LEADER_CODE),
            Error::OutcomeUnknown { cause, .. } => cause.code(),
            Error::Integrity { .. }
            | Error::Transport { .. }
            | Error::Io { .. }
            | Error::Config { .. } => None,
        }
    }

    /// Whether the error guarantees the node did nothing: a not-leader rejection,
    /// a request that could not even be sent, or a geo write refusal the node
    /// sends before proposing (no valid write lease, a new primary still taking
    /// over, the lease's write limit reached: see [`REFUSED_BEFORE_ACTING`]).
    pub fn rejected_before_acting(&self) -> bool {
        match self {
            Error::NotLeader { .. } | Error::Transport { sent: false, .. } => true,
            Error::Unavailable { code: Some(c), .. } => REFUSED_BEFORE_ACTING.contains(&c.as_str()),
            _ => false,
        }
    }

    /// A short, stable name of the error class (used in JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not-found",
            Error::AlreadyExists { .. } => "already-exists",
            Error::InvalidArgument { .. } => "invalid-argument",
            Error::FailedPrecondition { .. } => "failed-precondition",
            Error::PermissionDenied { .. } => "permission-denied",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::ResourceExhausted { .. } => "resource-exhausted",
            Error::DataLoss { .. } => "data-loss",
            Error::NotLeader { .. } => "not-leader",
            Error::Unavailable { .. } => "unavailable",
            Error::DeadlineExceeded { .. } => "deadline-exceeded",
            Error::OutcomeUnknown { .. } => "outcome-unknown",
            Error::Integrity { .. } => "integrity",
            Error::Transport { .. } => "transport",
            Error::Io { .. } => "io",
            Error::Config { .. } => "config",
            Error::Other { .. } => "other",
        }
    }
}

/// `tenant-not-found` → `tenant`; no code → `resource`.
fn not_found_what(code: Option<&str>) -> String {
    code.and_then(|c| c.strip_suffix("-not-found"))
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('-', " "))
        .unwrap_or_else(|| "resource".to_owned())
}

/// The innermost useful description of a local transport failure.
fn transport_message(status: &tonic::Status) -> String {
    let mut parts = vec![status.message().to_owned()];
    let mut source = status.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.retain(|p| !p.is_empty());
    let mut message = parts.join(": ");
    // A plaintext HTTP/2 client reads a TLS node's alert as a malformed frame.
    if message.contains("frame with invalid size") {
        message.push_str(" (the node may speak TLS while this client talks plaintext: give the cluster's CA with --ca or the profile's ca_file instead of --insecure)");
    }
    message
}

fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn status_with(code: tonic::Code, msg: &str, meta: &[(&'static str, &str)]) -> tonic::Status {
        let mut s = tonic::Status::new(code, msg);
        for (k, v) in meta {
            let value: MetadataValue<_> = v.parse().expect("ascii test value");
            s.metadata_mut().insert(*k, value);
        }
        s
    }

    #[test]
    fn not_leader_with_hint() {
        let s = status_with(
            tonic::Code::Unavailable,
            "group 7 is led elsewhere",
            &[
                (ERROR_CODE_KEY, "not-leader"),
                (LEADER_ID_KEY, "3"),
                (LEADER_ADDR_KEY, "127.0.0.1:7103"),
            ],
        );
        match Error::from_status(&s, "127.0.0.1:7101") {
            Error::NotLeader {
                leader_id,
                leader_addr,
                message,
            } => {
                assert_eq!(leader_id, Some(3));
                assert_eq!(leader_addr.as_deref(), Some("127.0.0.1:7103"));
                assert_eq!(message, "group 7 is led elsewhere");
            }
            other => panic!("expected NotLeader, got {other:?}"),
        }
    }

    #[test]
    fn not_leader_without_hint() {
        let s = status_with(
            tonic::Code::Unavailable,
            "election",
            &[
                (ERROR_CODE_KEY, "not-leader"),
                (LEADER_ID_KEY, "0"),
                (LEADER_ADDR_KEY, ""),
            ],
        );
        let e = Error::from_status(&s, "n1");
        assert!(matches!(
            e,
            Error::NotLeader {
                leader_id: None,
                leader_addr: None,
                ..
            }
        ));
        assert_eq!(e.code(), Some("not-leader"));
    }

    #[test]
    fn codes_map_to_variants_and_keep_message_and_code() {
        let s = status_with(
            tonic::Code::NotFound,
            "tenant \"acme\" does not exist",
            &[(ERROR_CODE_KEY, "tenant-not-found")],
        );
        let e = Error::from_status(&s, "n1");
        match &e {
            Error::NotFound {
                what,
                message,
                code,
            } => {
                assert_eq!(what, "tenant");
                assert_eq!(message, "tenant \"acme\" does not exist");
                assert_eq!(code.as_deref(), Some("tenant-not-found"));
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "tenant not found: tenant \"acme\" does not exist"
        );

        let cases = [
            (tonic::Code::AlreadyExists, "already-exists"),
            (tonic::Code::InvalidArgument, "invalid-argument"),
            (tonic::Code::FailedPrecondition, "failed-precondition"),
            (tonic::Code::PermissionDenied, "permission-denied"),
            (tonic::Code::Unauthenticated, "unauthenticated"),
            (tonic::Code::ResourceExhausted, "resource-exhausted"),
            (tonic::Code::DataLoss, "data-loss"),
            (tonic::Code::Unavailable, "unavailable"),
            (tonic::Code::Internal, "other"),
        ];
        for (code, kind) in cases {
            let s = status_with(code, "m", &[(ERROR_CODE_KEY, "x-y")]);
            let e = Error::from_status(&s, "n1");
            assert_eq!(e.kind(), kind, "{code:?}");
            assert_eq!(e.code(), Some("x-y"));
        }
        let plain = Error::from_status(&tonic::Status::not_found("gone"), "n1");
        assert!(
            matches!(plain, Error::NotFound { ref what, code: None, .. } if what == "resource")
        );
    }

    #[test]
    fn local_failures_are_transport_errors() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = tonic::ConnectError(Box::new(refused));
        let s = tonic::Status::from_error(Box::new(connect));
        match Error::from_status(&s, "127.0.0.1:7101") {
            Error::Transport {
                addr,
                sent,
                message,
            } => {
                assert_eq!(addr, "127.0.0.1:7101");
                assert!(!sent, "a connect failure never sent the request");
                assert!(message.contains("refused"), "{message}");
            }
            other => panic!("expected Transport, got {other:?}"),
        }

        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let s = tonic::Status::from_error(Box::new(reset));
        assert!(matches!(
            Error::from_status(&s, "n1"),
            Error::Transport { sent: true, .. }
        ));
    }
}
