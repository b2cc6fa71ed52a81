//! The limits of the gRPC edge, each a node config value with a default (see
//! `crate::config`): message size, streams and in-flight requests per connection,
//! request deadline, request metadata size and per-tenant quotas.
//!
//! Where each is enforced:
//! - message size: tonic's decoder reads a message's 5-byte length prefix and
//!   refuses it before buffering its body; [`LimitsLayer`] turns tonic's
//!   OutOfRange into ResourceExhausted `message-too-large` naming the setting;
//! - streams per connection: HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`;
//! - requests per connection: tonic's per-connection concurrency limit with load
//!   shedding (beyond it: ResourceExhausted at once, nothing queued);
//! - metadata: [`LimitsLayer`] (ResourceExhausted `metadata-too-large`), with the
//!   HTTP/2 header list size capped at 4x as a hard stop;
//! - deadline: [`LimitsLayer`] ends a call's handler after `request_deadline`
//!   (DeadlineExceeded); uploads, downloads and peer calls are bounded elsewhere
//!   (upload idle limit, client stream timeouts, each peer call's own timeout);
//! - tenant quotas: the put path (`super::put`), against the usage its replica
//!   group keeps (`objects::TenantUsage`).

use futures::future::BoxFuture;
use std::task::{Context, Poll};
use std::time::Duration;
use stratus_core::limits::CLIENT_MESSAGE_BYTES_MAX;
use tonic::{Code, Status};

/// Limits of the gRPC edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Largest message a client may send (`max_message_bytes`).
    pub message_bytes_max: usize,
    /// Concurrent HTTP/2 streams on one connection (`streams_per_connection_max`).
    pub streams_per_connection_max: u32,
    /// Requests one connection may have in service (`requests_per_connection_max`).
    pub requests_per_connection_max: usize,
    /// Longest a unary call may take (`request_deadline_s`).
    pub request_deadline: Duration,
    /// Largest request metadata (headers), in bytes (`max_metadata_bytes`).
    pub metadata_bytes_max: usize,
    /// Bytes one tenant may store, counting current versions (`tenant_bytes_max`).
    pub tenant_bytes_max: u64,
    /// Objects one tenant may hold (`tenant_objects_max`).
    pub tenant_objects_max: u64,
}

/// Default `streams_per_connection_max`.
pub const STREAMS_PER_CONNECTION_DEFAULT: u32 = 1024;
/// Default `requests_per_connection_max`.
pub const REQUESTS_PER_CONNECTION_DEFAULT: usize = 512;
/// Default `request_deadline_s`.
pub const REQUEST_DEADLINE_DEFAULT: Duration = Duration::from_secs(60);
/// Default `max_metadata_bytes`.
pub const METADATA_BYTES_DEFAULT: usize = 16 * 1024;
/// Default `tenant_bytes_max`: 1 TiB.
pub const TENANT_BYTES_DEFAULT: u64 = 1 << 40;
/// Default `tenant_objects_max`.
pub const TENANT_OBJECTS_DEFAULT: u64 = 10_000_000;

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            message_bytes_max: CLIENT_MESSAGE_BYTES_MAX,
            streams_per_connection_max: STREAMS_PER_CONNECTION_DEFAULT,
            requests_per_connection_max: REQUESTS_PER_CONNECTION_DEFAULT,
            request_deadline: REQUEST_DEADLINE_DEFAULT,
            metadata_bytes_max: METADATA_BYTES_DEFAULT,
            tenant_bytes_max: TENANT_BYTES_DEFAULT,
            tenant_objects_max: TENANT_OBJECTS_DEFAULT,
        }
    }
}

/// Calls whose handler may rightly run longer than the deadline.
fn exempt_from_deadline(path: &str) -> bool {
    path.starts_with("/stratus.v1.PeerService/")
        || path.ends_with("/PutObject")
        || path.ends_with("/GetObject")
        || path.ends_with("/Failover")
        || path.ends_with("/Reprotect")
}

/// A refusal as an HTTP response.
fn refuse<R: Default>(code: Code, stratus: &'static str, message: String) -> http::Response<R> {
    let mut status = Status::new(code, message);
    if let Ok(v) = stratus.parse() {
        status
            .metadata_mut()
            .insert(stratus_proto::ERROR_CODE_KEY, v);
    }
    status.into_http()
}

/// Enforces the metadata size and the deadline, and names the message limit.
#[derive(Clone, Copy)]
pub struct LimitsLayer(pub ServiceLimits);

impl<S> tower::Layer<S> for LimitsLayer {
    type Service = Limited<S>;
    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: self.0,
        }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: ServiceLimits,
}

impl<S, B, R> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limits = self.limits;
        let metadata_bytes: usize = request
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        if metadata_bytes > limits.metadata_bytes_max {
            let message = format!(
                "the request's metadata is {metadata_bytes} bytes, over this node's limit of {} (max_metadata_bytes): send fewer or shorter headers",
                limits.metadata_bytes_max
            );
            return Box::pin(async move {
                Ok(refuse(
                    Code::ResourceExhausted,
                    "metadata-too-large",
                    message,
                ))
            });
        }
        let deadline =
            (!exempt_from_deadline(request.uri().path())).then_some(limits.request_deadline);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let call = inner.call(request);
            let response = match deadline {
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Ok(refuse(
                            Code::DeadlineExceeded,
                            "deadline-exceeded",
                            format!(
                                "the call took longer than this node's request deadline of {} s (request_deadline_s); retry, or split the work",
                                d.as_secs()
                            ),
                        ))
                    }
                },
                None => call.await?,
            };
            if too_large(response.headers()) {
                return Ok(refuse(
                    Code::ResourceExhausted,
                    "message-too-large",
                    message_too_large(limits.message_bytes_max),
                ));
            }
            Ok(response)
        })
    }
}

/// Whether a response is tonic's refusal of an oversized message.
fn too_large(headers: &http::HeaderMap) -> bool {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()) == Some("11")
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("too%20large") || m.contains("too large"))
}

/// Whether a status is tonic's refusal of an oversized message.
pub fn is_too_large(status: &Status) -> bool {
    status.code() == Code::OutOfRange && status.message().contains("message length too large")
}

/// The message of a refused oversized message.
pub fn message_too_large(limit: usize) -> String {
    format!(
        "a message is larger than this node's limit of {limit} bytes (max_message_bytes): send object data in chunks of at most 1 MiB (the SDK and CLI do)"
    )
}
