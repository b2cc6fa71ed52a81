//! One lazily connected gRPC channel per node address; the only module that dials.
//!
//! A tonic `Channel` multiplexes every request to one node over one HTTP/2
//! connection and reconnects by itself, so the pool only has to create each channel
//! once and hand out cheap clones. TCP by default; a [`Dialer`] replaces it (the
//! deterministic simulation dials through its simulated network).

use crate::credential::{AuthHeader, Credential};
use crate::error::Error;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::limits::CLIENT_MESSAGE_BYTES_MAX;
use stratus_proto::v1::access_service_client::AccessServiceClient;
use stratus_proto::v1::admin_service_client::AdminServiceClient;
use stratus_proto::v1::key_service_client::KeyServiceClient;
use stratus_proto::v1::object_service_client::ObjectServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Transport security of a [`crate::Client`]: the cluster CA every node's
/// certificate must chain to (and be valid for the host dialled).
#[derive(Clone)]
pub struct TlsConfig {
    connector: tokio_rustls::TlsConnector,
}

impl TlsConfig {
    /// Trusts the CA certificate(s) in `pem`.
    pub fn from_ca_pem(pem: &str) -> Result<TlsConfig, Error> {
        let config = stratus_core::tls::client_config(pem)
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        Ok(TlsConfig {
            connector: tokio_rustls::TlsConnector::from(config),
        })
    }

    /// Trusts the CA certificate(s) in the PEM file `path`.
    pub fn from_ca_file(path: &std::path::Path) -> Result<TlsConfig, Error> {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Error::io(
                format!("cannot read the cluster CA certificate {}", path.display()),
                e,
            )
        })?;
        TlsConfig::from_ca_pem(&pem).map_err(|e| Error::config(format!("{}: {e}", path.display())))
    }

    /// Runs the TLS handshake over `io`, checking the server is `addr`'s host.
    async fn handshake(
        &self,
        addr: &str,
        io: Box<dyn DialedIo>,
    ) -> std::io::Result<Box<dyn DialedIo>> {
        let name = stratus_core::tls::server_name_of(addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = self.connector.connect(name, io).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("TLS handshake with {addr} failed: {e} (is the profile's ca_file this cluster's CA? a cluster run with insecure_plaintext needs --insecure)"),
            )
        })?;
        Ok(Box::new(stream))
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(cluster CA)")
    }
}

/// A byte stream a [`Dialer`] returns.
pub trait DialedIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> DialedIo for T {}

type DialFn =
    dyn Fn(String) -> BoxFuture<'static, std::io::Result<Box<dyn DialedIo>>> + Send + Sync;

/// Opens connections to `host:port` addresses in place of TCP.
#[derive(Clone)]
pub struct Dialer(Arc<DialFn>);

impl Dialer {
    /// A dialer from a function of the address.
    pub fn new(
        dial: impl Fn(String) -> BoxFuture<'static, std::io::Result<Box<dyn DialedIo>>>
            + Send
            + Sync
            + 'static,
    ) -> Dialer {
        Dialer(Arc::new(dial))
    }
}

impl Dialer {
    /// TCP, but an address listed in `address_map` is dialled at its mapped address
    /// instead (`advertised host:port` → `reachable host:port`). For clusters whose
    /// nodes advertise addresses the client cannot reach itself, such as containers
    /// that know each other by service name while the host reaches them through
    /// published ports. Addresses not in the map are dialled as they are.
    pub fn tcp_with_address_map(address_map: BTreeMap<String, String>) -> Dialer {
        let map: Arc<BTreeMap<String, String>> = Arc::new(
            address_map
                .into_iter()
                .map(|(from, to)| (normalize_addr(&from), normalize_addr(&to)))
                .collect(),
        );
        Dialer::new(move |addr: String| {
            let target = map.get(&addr).cloned().unwrap_or(addr);
            Box::pin(async move {
                let stream = tokio::net::TcpStream::connect(&target).await?;
                stream.set_nodelay(true)?;
                Ok(Box::new(stream) as Box<dyn DialedIo>)
            })
        })
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dialer(custom)")
    }
}

/// A channel that adds the caller's credential to every call.
pub(crate) type Conn = InterceptedService<Channel, AuthHeader>;

/// Channels by `host:port`.
#[derive(Debug)]
pub(crate) struct Channels {
    connect_timeout: Duration,
    dialer: Option<Dialer>,
    tls: Option<TlsConfig>,
    by_addr: Mutex<HashMap<String, Channel>>,
    auth: AuthHeader,
}

/// `http://host:port` or `host:port` → `host:port`.
pub(crate) fn normalize_addr(addr: &str) -> String {
    let a = addr.trim();
    let a = a.strip_prefix("http://").unwrap_or(a);
    a.trim_end_matches('/').to_owned()
}

impl Channels {
    pub(crate) fn new(
        connect_timeout: Duration,
        dialer: Option<Dialer>,
        tls: Option<TlsConfig>,
        credential: Option<Credential>,
    ) -> Channels {
        Channels {
            connect_timeout,
            dialer,
            tls,
            by_addr: Mutex::new(HashMap::new()),
            auth: AuthHeader::new(credential),
        }
    }

    fn conn(&self, addr: &str) -> Result<Conn, Error> {
        Ok(InterceptedService::new(self.get(addr)?, self.auth.clone()))
    }

    /// The channel to `addr`, created on first use (no connection is made until a
    /// request is sent).
    pub(crate) fn get(&self, addr: &str) -> Result<Channel, Error> {
        let mut map = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::config(format!("invalid endpoint {addr:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let ch = match (&self.dialer, &self.tls) {
            (None, None) => endpoint.connect_lazy(),
            (dialer, tls) => {
                let dial = dialer
                    .clone()
                    .unwrap_or_else(|| Dialer::tcp_with_address_map(BTreeMap::new()))
                    .0;
                let tls = tls.clone();
                endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: http::Uri| {
                    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                    let connecting = dial(authority.clone());
                    let tls = tls.clone();
                    async move {
                        let io = connecting.await?;
                        let io = match &tls {
                            Some(tls) => tls.handshake(&authority, io).await?,
                            None => io,
                        };
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
                    }
                }))
            }
        };
        map.insert(addr.to_owned(), ch.clone());
        Ok(ch)
    }

    /// Drops the channel to `addr`, so the next request dials a new connection. A
    /// request that timed out may sit on a connection that silently stopped moving
    /// data (a lost segment, a dead NAT entry); HTTP/2 keepalive would notice only
    /// after its own timeout, and every request in between would wait on it too.
    pub(crate) fn reset(&self, addr: &str) {
        self.by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(addr);
    }

    pub(crate) fn objects(&self, addr: &str) -> Result<ObjectServiceClient<Conn>, Error> {
        Ok(ObjectServiceClient::new(self.conn(addr)?)
            .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX))
    }

    pub(crate) fn keys(&self, addr: &str) -> Result<KeyServiceClient<Conn>, Error> {
        Ok(KeyServiceClient::new(self.conn(addr)?))
    }

    pub(crate) fn access(&self, addr: &str) -> Result<AccessServiceClient<Conn>, Error> {
        Ok(AccessServiceClient::new(self.conn(addr)?))
    }

    pub(crate) fn admin(&self, addr: &str) -> Result<AdminServiceClient<Conn>, Error> {
        Ok(AdminServiceClient::new(self.conn(addr)?)
            .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_address_map_redirects_only_listed_addresses() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let real = listener.local_addr().expect("local addr").to_string();
        let accept = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await;
        });
        let Dialer(dial) = Dialer::tcp_with_address_map(BTreeMap::from([(
            "node1:7100".to_owned(),
            format!("http://{real}/"),
        )]));
        let conn = dial("node1:7100".to_owned()).await;
        assert!(conn.is_ok(), "mapped address must be dialled at {real}");
        drop(conn);
        accept.await.expect("accepted");
        // An unmapped name is dialled as is (and here cannot resolve).
        assert!(dial("no-such-host.invalid:1".to_owned()).await.is_err());
    }

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(normalize_addr(" http://127.0.0.1:7101/ "), "127.0.0.1:7101");
        assert_eq!(normalize_addr("node1:7101"), "node1:7101");
    }
}
