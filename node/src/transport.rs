//! The transport seam: the only module that binds listeners or dials peers.
//!
//! Real runs use TCP ([`TcpTransport`]); the simulation supplies its own
//! [`Transport`] over turmoil's network; [`crate::tls::TlsTransport`] wraps either
//! in TLS. Everything above sees boxed byte streams.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use stratus_core::topology::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS: a cluster run with `insecure_plaintext`, or the simulation.
    Plaintext,
    /// TLS; `peer_node` is the node the peer's certificate names, if it presented
    /// a certificate of one (SDK clients present none).
    Tls { peer_node: Option<NodeId> },
}

/// What a service learns of the connection a request came on (tonic puts it in
/// every request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<std::net::SocketAddr>,
    pub security: Security,
    /// The requests in service on this connection, shared by all of them (the
    /// edge's per-connection limit, `crate::server::limits`).
    pub in_flight: InFlight,
}

/// A count of requests in service on one connection.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// One request counted in an [`InFlight`] until dropped.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request, unless `max` are in service already.
    pub fn try_enter(&self, max: usize) -> Option<InFlightGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlightGuard(self.0.clone()))
    }

    /// Requests in service now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection accepted by or dialled from a node.
pub struct Conn {
    io: Box<dyn Io>,
    remote: Option<std::net::SocketAddr>,
    security: Security,
    in_flight: InFlight,
}

impl Conn {
    /// Wraps a plaintext stream.
    pub fn new(io: impl Io, remote: Option<std::net::SocketAddr>) -> Self {
        Self {
            io: Box::new(io),
            remote,
            security: Security::Plaintext,
            in_flight: InFlight::default(),
        }
    }

    /// The same connection, marked as protected by `security`.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// The remote address, when known.
    pub fn remote(&self) -> Option<std::net::SocketAddr> {
        self.remote
    }

    /// How this connection is protected.
    pub fn security(&self) -> Security {
        self.security
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    // Forwarded, not left to the trait's defaults: without them every layer above
    // (rustls, h2) saw a stream that writes one buffer per call, so each HTTP/2
    // frame part and each TLS record cost its own `send` (measured: 2.7 sends per
    // 4 KiB GET response on the leader).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            remote: self.remote,
            security: self.security,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// A stream of accepted connections.
pub type Incoming = BoxStream<'static, io::Result<Conn>>;

/// Binds listeners and dials peers.
pub trait Transport: Send + Sync + 'static {
    /// Starts listening on `addr` (`host:port`).
    fn listen(&self, addr: &str) -> BoxFuture<'static, io::Result<Incoming>>;
    /// Opens a connection to `addr` (`host:port`).
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>>;
}

/// Shared transport handle.
pub type TransportRef = Arc<dyn Transport>;

/// Plain TCP, for real processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    fn listen(&self, addr: &str) -> BoxFuture<'static, io::Result<Incoming>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                let hint = if e.kind() == io::ErrorKind::AddrInUse {
                    ": the port is already in use; stop the process holding it or change the node's address in the topology"
                } else {
                    ""
                };
                io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"))
            })?;
            let stream = futures::stream::unfold(listener, |listener| async move {
                let next = listener.accept().await.map(|(s, remote)| {
                    let _ = s.set_nodelay(true);
                    Conn::new(s, Some(remote))
                });
                Some((next, listener))
            });
            Ok(Box::pin(stream) as Incoming)
        })
    }

    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(&addr).await?;
            s.set_nodelay(true)?;
            let remote = s.peer_addr().ok();
            Ok(Conn::new(s, remote))
        })
    }
}

/// How often an HTTP/2 PING checks a peer connection.
pub const PEER_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a PING may go unanswered before the connection is dropped.
pub const PEER_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A tonic channel to `addr` that dials through `transport`, connecting lazily.
pub fn channel(
    transport: &TransportRef,
    addr: &str,
    connect_timeout: std::time::Duration,
) -> tonic::transport::Channel {
    let transport = transport.clone();
    // The URI only names the authority; the connector below does the dialling.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| tonic::transport::Endpoint::from_static("http://invalid.invalid:1"))
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A connection that silently lost traffic (a partition, a NAT timeout) must
        // be torn down and redialled, or every later RPC on it times out: found by
        // the simulation (leader-isolation), where an isolated leader never caught
        // up after its links came back.
        .http2_keep_alive_interval(PEER_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(PEER_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
        let transport = transport.clone();
        async move {
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let conn = transport.connect(&authority).await?;
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(conn))
        }
    }))
}
