//! The limits of the gRPC edge, each a node config value with a default (see
//! `crate::config`): message size, streams and in-flight requests per connection,
//! request deadline, request metadata size and per-tenant quotas.
//!
//! Where each is enforced:
//! - message size: tonic's decoder reads a message's 5-byte length prefix and
//!   refuses it before buffering its body; [`LimitsLayer`] turns tonic's
//!   OutOfRange into ResourceExhausted `message-too-large` naming the setting;
//! - streams per connection: HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`;
//! - requests per connection: [`LimitsLayer`] counts the requests in service on
//!   each connection (`transport::ConnInfo::in_flight`, one count per accepted
//!   connection) and refuses one more at once, nothing queued: ResourceExhausted
//!   `too-many-requests`, which the SDK retries after a pause. (tonic's own
//!   concurrency limit with load shedding refused with a message that named no
//!   setting and no Stratus code.)
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

/// Enforces the metadata size, the requests in service per connection and the
/// deadline, and names the message limit.
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
        // Held until the handler answered (a stream's body may flow on after).
        let in_service = match request
            .extensions()
            .get::<crate::transport::ConnInfo>()
            .map(|c| c.in_flight.try_enter(limits.requests_per_connection_max))
        {
            Some(None) => {
                let message = too_many_requests(limits.requests_per_connection_max);
                return Box::pin(async move {
                    Ok(refuse(Code::ResourceExhausted, TOO_MANY_REQUESTS, message))
                });
            }
            Some(Some(guard)) => Some(guard),
            None => None, // not from a node's listener (unit tests)
        };
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
            drop(in_service);
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

/// The Stratus code of a request refused because its connection had
/// `requests_per_connection_max` requests in service.
pub const TOO_MANY_REQUESTS: &str = "too-many-requests";

/// The message of a request refused by the per-connection limit.
fn too_many_requests(limit: usize) -> String {
    format!(
        "this connection already has {limit} requests in service, this node's limit (requests_per_connection_max); nothing was done: retry after a pause, or spread the calls over more connections"
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    fn limited(
        delay: Duration,
        headers: &'static [(&'static str, &'static str)],
    ) -> Limited<
        tower::util::BoxCloneService<
            http::Request<()>,
            http::Response<String>,
            std::convert::Infallible,
        >,
    > {
        let inner = tower::service_fn(move |_r: http::Request<()>| async move {
            tokio::time::sleep(delay).await;
            let mut response = http::Response::new(String::new());
            for (k, v) in headers {
                response
                    .headers_mut()
                    .insert(*k, v.parse().expect("header"));
            }
            Ok::<_, std::convert::Infallible>(response)
        });
        Limited {
            inner: tower::util::BoxCloneService::new(inner),
            limits: ServiceLimits {
                request_deadline: Duration::from_secs(1),
                ..ServiceLimits::default()
            },
        }
    }

    fn status_of(r: &http::Response<String>) -> (String, String) {
        let get = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (get("grpc-status"), get(stratus_proto::ERROR_CODE_KEY))
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .body(())
            .expect("request")
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_unary_calls_but_not_uploads_or_peer_calls() {
        let mut s = limited(Duration::from_secs(5), &[]);
        let r = s
            .ready()
            .await
            .unwrap()
            .call(request("/stratus.v1.AdminService/ListTenants"))
            .await
            .unwrap();
        assert_eq!(status_of(&r), ("4".into(), "deadline-exceeded".into()));
        for exempt in [
            "/stratus.v1.ObjectService/PutObject",
            "/stratus.v1.ObjectService/GetObject",
            "/stratus.v1.PeerService/Raft",
        ] {
            let r = s
                .ready()
                .await
                .unwrap()
                .call(request(exempt))
                .await
                .unwrap();
            assert_eq!(status_of(&r).0, "", "{exempt} was cut");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_beyond_its_requests_in_service_is_refused_and_its_count_recovers() {
        let mut s = limited(Duration::from_millis(100), &[]);
        s.limits.requests_per_connection_max = 2;
        let conn = |info: &crate::transport::ConnInfo| {
            let mut r = request("/stratus.v1.ObjectService/HeadObject");
            r.extensions_mut().insert(info.clone());
            r
        };
        let info = crate::transport::ConnInfo {
            remote: None,
            security: crate::transport::Security::Plaintext,
            in_flight: Default::default(),
        };
        let other = crate::transport::ConnInfo {
            in_flight: Default::default(),
            ..info.clone()
        };
        let first = s.ready().await.unwrap().call(conn(&info));
        let second = s.ready().await.unwrap().call(conn(&info));
        assert_eq!(info.in_flight.current(), 2);
        let third = s.ready().await.unwrap().call(conn(&info)).await.unwrap();
        assert_eq!(status_of(&third), ("8".into(), TOO_MANY_REQUESTS.into()));
        let message = third
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("requests_per_connection_max"), "{message}");
        // Another connection has its own count.
        let elsewhere = s.ready().await.unwrap().call(conn(&other)).await.unwrap();
        assert_eq!(status_of(&elsewhere).0, "");
        // Answered requests leave the count; the connection is served again.
        for r in [first.await.unwrap(), second.await.unwrap()] {
            assert_eq!(status_of(&r).0, "");
        }
        assert_eq!(info.in_flight.current(), 0);
        let again = s.ready().await.unwrap().call(conn(&info)).await.unwrap();
        assert_eq!(status_of(&again).0, "");
        assert_eq!(info.in_flight.current(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_metadata_and_messages_are_resource_exhausted_naming_the_limit() {
        let mut s = limited(Duration::ZERO, &[]);
        let mut big = request("/stratus.v1.ObjectService/HeadObject");
        big.headers_mut()
            .insert("x-pad", "p".repeat(20_000).parse().unwrap());
        let r = s.ready().await.unwrap().call(big).await.unwrap();
        assert_eq!(status_of(&r), ("8".into(), "metadata-too-large".into()));
        let mut s = limited(
            Duration::ZERO,
            &[
                ("grpc-status", "11"),
                (
                    "grpc-message",
                    "Error,%20decoded%20message%20length%20too%20large",
                ),
            ],
        );
        let r = s
            .ready()
            .await
            .unwrap()
            .call(request("/stratus.v1.AdminService/CreateContainer"))
            .await
            .unwrap();
        assert_eq!(status_of(&r), ("8".into(), "message-too-large".into()));
        // Other OutOfRange answers (a byte range) pass unchanged.
        let mut s = limited(Duration::ZERO, &[("grpc-status", "11")]);
        let r = s
            .ready()
            .await
            .unwrap()
            .call(request("/stratus.v1.ObjectService/GetObject"))
            .await
            .unwrap();
        assert_eq!(status_of(&r).0, "11");
    }
}
