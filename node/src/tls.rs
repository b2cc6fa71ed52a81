//! Transport security for real processes: TLS on the node's listener and mutual
//! TLS on its connections to peers, as a [`Transport`] wrapped around another.
//!
//! - Accepted connections are handshaken off the accept loop (a slow or silent
//!   client cannot hold up others) within [`HANDSHAKE_TIMEOUT`]; a client
//!   certificate, when presented, must chain to the cluster CA, and the node it
//!   names ([`stratus_core::tls::identify_node`]) travels with the connection in
//!   [`ConnInfo`] to the peer gate (`crate::auth::PeerGate`).
//! - Dialled connections check the server's certificate against the identity of
//!   the node that address belongs to in the topology, not just the CA: a node
//!   answering at a peer's address with its own valid certificate is refused.
//!
//! The simulation runs plain transports, without TLS. Files on disk
//! ([`TlsFiles`], `stratus-node tls init`) live here too.

use crate::transport::{Conn, Incoming, Security, Transport};
use anyhow::Context;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stratus_core::tls::{self, ServerName};
use stratus_core::topology::{NodeId, Topology};

/// Longest a TLS handshake may take, either way.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 128;

/// The three files of a node's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), naming the node ([`tls::node_name`]).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `stratus-node tls init` writes for node `id` into `dir`.
    pub fn in_dir(dir: &Path, id: NodeId) -> TlsFiles {
        TlsFiles {
            ca: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("node-{id}.pem")),
            key: dir.join(format!("node-{id}.key")),
        }
    }
}

/// The CA certificate's file name in a TLS directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name in a TLS directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

fn read(path: &Path, what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// A node's TLS configuration, both directions.
pub struct NodeTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    /// Every node of the topology: the identities a peer certificate may carry.
    nodes: Vec<NodeId>,
    /// Peer address (`host:port` as in the topology) → its node.
    node_at: BTreeMap<String, NodeId>,
}

impl NodeTls {
    /// Loads node `id`'s files and checks its certificate carries its identity.
    pub fn load(files: &TlsFiles, id: NodeId, topology: &Topology) -> anyhow::Result<NodeTls> {
        let ca = read(&files.ca, "CA certificate")?;
        let cert = read(&files.cert, "node certificate")?;
        let key = read(&files.key, "node private key")?;
        let server = tls::server_config(&ca, &cert, &key)
            .with_context(|| format!("TLS files {}", files.cert.display()))?;
        let client = tls::node_client_config(&ca, &cert, &key)
            .with_context(|| format!("TLS files {}", files.cert.display()))?;
        let der = {
            use stratus_core::tls::rustls::pki_types::pem::PemObject;
            tls::CertificateDer::from_pem_slice(cert.as_bytes())
                .with_context(|| format!("cannot parse {}", files.cert.display()))?
        };
        anyhow::ensure!(
            tls::identify_node(&der, [id]).is_some(),
            "{} is not node {id}'s certificate (it does not name {}): give each node its own certificate (`stratus-node tls init`)",
            files.cert.display(),
            tls::node_name(id)
        );
        Ok(NodeTls {
            acceptor: tokio_rustls::TlsAcceptor::from(server),
            connector: tokio_rustls::TlsConnector::from(client),
            nodes: topology.nodes().keys().copied().collect(),
            node_at: topology
                .nodes()
                .values()
                .map(|n| (n.addr.clone(), n.id))
                .collect(),
        })
    }
}

/// A transport whose every connection is TLS: `inner` carries the bytes.
pub struct TlsTransport<T> {
    inner: T,
    tls: Arc<NodeTls>,
}

impl<T: Transport> TlsTransport<T> {
    pub fn new(inner: T, tls: NodeTls) -> Self {
        TlsTransport {
            inner,
            tls: Arc::new(tls),
        }
    }
}

/// Handshakes one accepted connection; `None` when it failed (logged).
async fn handshake(tls: &NodeTls, conn: Conn) -> Option<Conn> {
    let remote = conn.remote();
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(conn)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(remote = ?remote, error = %e, "refused a connection: TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(remote = ?remote, "refused a connection: no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs());
            return None;
        }
    };
    let peer_node = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| tls::identify_node(cert, tls.nodes.iter().copied()));
    Some(Conn::new(stream, remote).with_security(Security::Tls { peer_node }))
}

impl<T: Transport> Transport for TlsTransport<T> {
    fn listen(&self, addr: &str) -> BoxFuture<'static, io::Result<Incoming>> {
        let listening = self.inner.listen(addr);
        let tls = self.tls.clone();
        Box::pin(async move {
            let mut incoming = listening.await?;
            let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(ACCEPTED_QUEUE);
            tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        next = incoming.next() => next,
                        () = tx.closed() => return,
                    };
                    match next {
                        None => return,
                        Some(Err(e)) => {
                            if tx.send(Err(e)).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(conn)) => {
                            let (tls, tx) = (tls.clone(), tx.clone());
                            tokio::spawn(async move {
                                if let Some(conn) = handshake(&tls, conn).await {
                                    let _ = tx.send(Ok(conn)).await;
                                }
                            });
                        }
                    }
                }
            });
            Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as Incoming)
        })
    }

    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>> {
        let tls = self.tls.clone();
        let addr = addr.to_owned();
        let Some(&peer) = tls.node_at.get(&addr) else {
            return Box::pin(async move {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr} is not a node of the topology: nodes dial only their peers"),
                ))
            });
        };
        let dialling = self.inner.connect(&addr);
        Box::pin(async move {
            let conn = dialling.await?;
            let remote = conn.remote();
            let name = ServerName::try_from(tls::node_name(peer))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connector.connect(name, conn))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no TLS handshake with node {peer} at {addr} within {} s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    )
                })?
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("TLS handshake with node {peer} at {addr} failed: {e}"),
                    )
                })?;
            Ok(Conn::new(stream, remote).with_security(Security::Tls {
                peer_node: Some(peer),
            }))
        })
    }
}

/// What `stratus-node tls init` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Generated {
    /// Whether a new CA was made.
    pub ca: bool,
    /// Nodes that got a new certificate.
    pub nodes: Vec<NodeId>,
}

/// Makes `dir` hold a cluster CA and a certificate for every node of `topology`,
/// creating only what is missing: an existing CA and existing certificates are
/// kept (the cluster already trusts them). Each node certificate names the node,
/// the host of its topology address, loopback, and `extra_hosts`. Private keys
/// are written owner-only.
pub fn ensure_files(
    dir: &Path,
    topology: &Topology,
    extra_hosts: &[String],
    label: &str,
) -> anyhow::Result<Generated> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let year = current_year();
    let (ca_cert, ca_key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    let mut generated = Generated::default();
    if !ca_cert.exists() {
        anyhow::ensure!(
            !ca_key.exists(),
            "{} exists without {}: remove it or restore the certificate",
            ca_key.display(),
            ca_cert.display()
        );
        let ca = tls::generate_ca(label, year)?;
        write_file(&ca_key, ca.key_pem.as_bytes(), true)?;
        write_file(&ca_cert, ca.cert_pem.as_bytes(), false)?;
        generated.ca = true;
    }
    let mut ca: Option<tls::CertifiedPem> = None;
    for node in topology.nodes().values() {
        let files = TlsFiles::in_dir(dir, node.id);
        if files.cert.exists() && files.key.exists() {
            continue;
        }
        if ca.is_none() {
            let key = read(&ca_key, "CA private key").with_context(|| {
                format!(
                    "a certificate for node {} is missing and only the CA key can issue one",
                    node.id
                )
            })?;
            ca = Some(tls::CertifiedPem {
                cert_pem: read(&ca_cert, "CA certificate")?.to_string(),
                key_pem: key,
            });
        }
        let Some(ca) = &ca else { continue };
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some((host, _)) = node.addr.rsplit_once(':') {
            hosts.push(host.to_owned());
        }
        hosts.extend(extra_hosts.iter().cloned());
        let issued = tls::issue_node_cert(ca, node.id, &hosts, year)?;
        write_file(&files.key, issued.key_pem.as_bytes(), true)?;
        write_file(&files.cert, issued.cert_pem.as_bytes(), false)?;
        generated.nodes.push(node.id);
    }
    Ok(generated)
}

/// The current UTC year, from the system clock (certificate validity only).
fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days to civil year (proleptic Gregorian), exact: 146,097 days per 400 years.
    let days = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let year = yoe + era * 400 + i64::from(mp >= 10);
    i32::try_from(year).unwrap_or(2026)
}

/// Writes `path` atomically; private files are owner-only from their creation.
fn write_file(path: &Path, content: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TcpTransport;
    use stratus_core::topology::Topology;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOPOLOGY: &str = r#"
[[region]]
name = "r1"
[[facility]]
name = "f1"
region = "r1"
zone = "1"
[[facility]]
name = "f2"
region = "r1"
zone = "2"
[[facility]]
name = "f3"
region = "r1"
zone = "3"
[[node]]
id = 1
facility = "f1"
addr = "127.0.0.1:9991"
[[node]]
id = 2
facility = "f2"
addr = "127.0.0.1:9992"
[[node]]
id = 3
facility = "f3"
addr = "127.0.0.1:9993"
"#;

    fn topology_at(addr: &str) -> Topology {
        Topology::parse(&TOPOLOGY.replace("127.0.0.1:9991", addr)).expect("topology")
    }

    #[test]
    fn files_are_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let topology = topology_at("127.0.0.1:7101");
        let first = ensure_files(dir.path(), &topology, &[], "t").expect("init");
        assert!(first.ca);
        assert_eq!(first.nodes, vec![1, 2, 3]);
        for name in [CA_KEY_FILE, "node-1.key", "node-3.key"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let before = std::fs::read(dir.path().join("node-2.pem")).expect("cert");
        std::fs::remove_file(dir.path().join("node-3.pem")).expect("rm");
        let second = ensure_files(dir.path(), &topology, &[], "t").expect("again");
        assert_eq!(
            second,
            Generated {
                ca: false,
                nodes: vec![3]
            }
        );
        assert_eq!(
            std::fs::read(dir.path().join("node-2.pem")).expect("cert"),
            before
        );
        // Each node's files load as its own, and only as its own.
        NodeTls::load(&TlsFiles::in_dir(dir.path(), 2), 2, &topology).expect("own cert");
        let mut swapped = TlsFiles::in_dir(dir.path(), 2);
        swapped.cert = dir.path().join("node-1.pem");
        swapped.key = dir.path().join("node-1.key");
        let e = NodeTls::load(&swapped, 2, &topology)
            .err()
            .expect("another node's certificate");
        assert!(e.to_string().contains("n2.node.stratus"), "{e}");
    }

    #[test]
    fn the_year_is_computed_from_the_clock() {
        let y = current_year();
        assert!((2024..2200).contains(&y), "{y}");
    }

    /// A node dialling node 1's address refuses a server that proves to be node 2,
    /// even with a certificate from the same CA; and the server learns who dialled.
    #[tokio::test]
    async fn peers_are_identified_by_node_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let topology = topology_at(&addr);
        ensure_files(dir.path(), &topology, &[], "t").expect("init");
        let load = |id: u64| {
            NodeTls::load(&TlsFiles::in_dir(dir.path(), id), id, &topology).expect("load")
        };
        // Node 2 serves at the address the topology gives node 1.
        let impostor = TlsTransport::new(TcpTransport, load(2));
        let mut incoming = impostor.listen(&addr).await.expect("listen");
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(Ok(mut conn)) = incoming.next().await {
                seen.push(conn.security());
                let mut b = [0u8; 1];
                if conn.read(&mut b).await.is_ok() {
                    let _ = conn.write_all(&b).await;
                }
                if seen.len() == 1 {
                    break;
                }
            }
            seen
        });
        let node3 = TlsTransport::new(TcpTransport, load(3));
        let e = node3
            .connect(&addr)
            .await
            .err()
            .expect("node 2's certificate at node 1's address is refused");
        assert!(e.to_string().contains("node 1"), "{e}");
        // A dial that expects whoever serves there (node 2 now) succeeds, and the
        // server sees node 3's identity.
        let topology2 =
            Topology::parse(&TOPOLOGY.replace("127.0.0.1:9992", &addr)).expect("topology");
        let node3 = TlsTransport::new(
            TcpTransport,
            NodeTls::load(&TlsFiles::in_dir(dir.path(), 3), 3, &topology2).expect("load"),
        );
        let mut conn = node3
            .connect(&addr)
            .await
            .expect("node 2 at its own address");
        conn.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).await.expect("echo");
        let seen = server.await.expect("server");
        assert_eq!(seen.last(), Some(&Security::Tls { peer_node: Some(3) }));
    }
}
