//! The `stratus-node` command line: run a node from its config file, or check a
//! node's health. Lives in the library so the integration-test crate can build the
//! same program as its own binary.

use crate::clock::SystemClock;
use crate::config::{NodeConfig, TransportSecurity};
use crate::node::{NodeOptions, NodeSettings, StratusNode};
use crate::rng::NodeRng;
use crate::storage::fs_blob::FsBlobStore;
use crate::storage::sled_engine::SledEngine;
use crate::tls::{NodeTls, TlsTransport};
use crate::transport::{TcpTransport, Transport};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// How long open connections may take to finish after SIGTERM or SIGINT before
/// the node stops anyway: well inside `stratus dev`'s 10 s and docker's default
/// 10 s stop grace, leaving time for the final sync.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(4);

/// Where `healthcheck` looks without `--addr` or `--config`.
const HEALTHCHECK_ADDR_DEFAULT: &str = "127.0.0.1:7100";
/// Time the whole health check may take (connect and answer): a container runtime
/// kills a check that hangs, but then reports a timeout instead of our reason.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Parser)]
#[command(name = "stratus-node", version, about = "Stratus storage node")]
struct Cli {
    /// Node config file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node (the default).
    Run,
    /// Check that a node answers the gRPC health check; exit 0 if serving, 1 if not.
    /// With `--config` it checks the node that config runs (on loopback when the
    /// node listens on every interface): what container health checks use.
    Healthcheck {
        /// host:port of the node (default: from --config, else 127.0.0.1:7100).
        #[arg(long)]
        addr: Option<String>,
        /// The cluster CA certificate (PEM): check over TLS, verifying the node's
        /// certificate for the host of --addr. With --config the node's own TLS
        /// files are used instead.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Transport security material.
    #[command(subcommand)]
    Tls(TlsCmd),
}

#[derive(Subcommand)]
enum TlsCmd {
    /// Make a cluster CA and a certificate for every node of a topology, in one
    /// directory: ca.pem, ca.key, node-<id>.pem, node-<id>.key (keys mode 0600).
    /// Only what is missing is made: an existing CA and certificates are kept.
    Init {
        /// The cluster's topology file.
        #[arg(long)]
        topology: PathBuf,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Another host name or IP every node certificate should be valid for
        /// (repeatable); each node's topology host, localhost and loopback always are.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Written into the CA's name, to tell clusters apart.
        #[arg(long, default_value = "local")]
        label: String,
    },
}

/// Runs the `stratus-node` program with the process arguments.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,sled=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A health check runs every few seconds in every container: one worker is plenty.
    let workers = match cli.command {
        Some(Cmd::Healthcheck { .. }) => 1,
        // A config that does not load falls back to the default here; `run` then
        // reports what is wrong with it.
        _ => cli
            .config
            .as_deref()
            .and_then(|path| NodeConfig::load(path).ok())
            .map_or_else(NodeConfig::runtime_workers_default, |c| c.runtime_workers()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stratus-node: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Cmd::Run) {
            Cmd::Run => {
                run(cli
                    .config
                    .context("--config FILE is required to run a node")?)
                .await
            }
            Cmd::Healthcheck { addr, ca } => {
                let (addr, tls) = match (addr, cli.config) {
                    (Some(addr), None) => (addr, None),
                    (Some(addr), Some(config)) => (addr, health_tls(&config)?),
                    (None, Some(config)) => (local_addr(&config)?, health_tls(&config)?),
                    (None, None) => (HEALTHCHECK_ADDR_DEFAULT.to_owned(), None),
                };
                let tls = match (tls, ca) {
                    (Some(tls), _) => Some(tls),
                    (None, Some(ca)) => {
                        let pem = std::fs::read_to_string(&ca).with_context(|| {
                            format!("cannot read the CA certificate {}", ca.display())
                        })?;
                        let name = stratus_core::tls::server_name_of(&addr)?;
                        Some((stratus_core::tls::client_config(&pem)?, name))
                    }
                    (None, None) => None,
                };
                healthcheck(&addr, tls).await
            }
            Cmd::Tls(TlsCmd::Init {
                topology,
                out,
                hosts,
                label,
            }) => tls_init(&topology, &out, &hosts, &label),
        }
    });
    // Everything durable was synced inside `block_on`; tasks still running (a
    // connection past the drain, a blocking call) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stratus-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let config = NodeConfig::load(&config_path)?;
    let topology = Arc::new(config.load_topology()?);
    let me = topology
        .node(config.node_id)
        .context("node missing from topology")?
        .clone();
    let listen = config.listen.clone().unwrap_or_else(|| me.addr.clone());
    let transport: Arc<dyn Transport> = match &config.security {
        TransportSecurity::Tls(files) => Arc::new(TlsTransport::new(
            TcpTransport,
            NodeTls::load(files, config.node_id, &topology)?,
        )),
        TransportSecurity::InsecurePlaintext => {
            tracing::warn!("insecure_plaintext: clients and peers connect without TLS; anyone on the network can read and alter traffic");
            Arc::new(TcpTransport)
        }
    };
    // Bind before touching the data dir or starting Raft, so a busy port fails fast,
    // clearly, and leaves nothing behind.
    let incoming = transport.listen(&listen).await?;
    let root_key = crate::root_key::load(&config.root_key_file)?;
    let operator_secret = match &config.operator_secret_file {
        Some(path) => Some(crate::root_key::load_operator_secret(path)?),
        None => {
            tracing::warn!("no operator_secret_file configured: this node cannot bootstrap the cluster's operator secret");
            None
        }
    };
    let paths = crate::datadir::prepare(&config.data_dir, config.node_id, topology.fingerprint())?;
    let engine = Arc::new(SledEngine::open(&paths.store, config.cache_bytes)?);
    let blobs = Arc::new(FsBlobStore::open(&paths.blobs)?);
    let settings = NodeSettings {
        object_bytes_max: config.object_bytes_max,
        key_retention_min: std::time::Duration::from_secs(config.key_retention_min_s),
        key_retire_grace: std::time::Duration::from_secs(config.key_retire_grace_s),
        token_clock_skew: std::time::Duration::from_secs(config.token_clock_skew_s),
        limits: config.limits,
        ..Default::default()
    };
    let node = StratusNode::start(NodeOptions {
        id: config.node_id,
        topology,
        engine,
        blobs,
        transport,
        clock: Arc::new(SystemClock),
        rng: NodeRng::from_entropy(),
        root_key,
        operator_secret,
        settings,
    })
    .await?;
    tracing::info!(node = me.id, name = %me.name(), listen = %listen, "serving");
    let maintenance = tokio::spawn(node.clone().maintain());
    // After the signal, open connections get SHUTDOWN_DRAIN to finish their calls;
    // a client or peer that keeps a stream open past it must not keep the node
    // from stopping (a supervisor kills it after its own grace, losing the final
    // sync below).
    let (requested_tx, requested_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown_signal().await;
        let _ = requested_tx.send(());
    };
    let serve = crate::server::serve(node.clone(), incoming, signal);
    tokio::pin!(serve);
    let served = tokio::select! {
        served = &mut serve => served,
        () = async {
            if requested_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_DRAIN).await;
            } else {
                futures::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(drain_s = SHUTDOWN_DRAIN.as_secs(), "connections still open after the drain; closing them");
            Ok(())
        }
    };
    maintenance.abort();
    node.shutdown().await;
    tracing::info!(node = me.id, "stopped");
    served
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the node still stops when killed.
        return futures::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutdown requested");
}

/// The address on which the node of `config_path` answers from this host: its
/// `listen` address with an unspecified IP (0.0.0.0, ::) replaced by loopback, else
/// its address in the topology.
fn local_addr(config_path: &std::path::Path) -> anyhow::Result<String> {
    let config = NodeConfig::load(config_path)?;
    if let Some(listen) = &config.listen {
        let mut addr: std::net::SocketAddr = listen
            .parse()
            .with_context(|| format!("listen address {listen:?} is not IP:port"))?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        return Ok(addr.to_string());
    }
    let topology = config.load_topology()?;
    let me = topology
        .node(config.node_id)
        .context("node missing from topology")?;
    Ok(me.addr.clone())
}

/// What a TLS health check trusts and checks the node's certificate against.
type HealthTls = (
    Arc<stratus_core::tls::rustls::ClientConfig>,
    stratus_core::tls::ServerName<'static>,
);

/// The TLS settings of a health check of the node `config_path` runs: its own
/// certificate and CA, and its identity as the name to check.
fn health_tls(config_path: &std::path::Path) -> anyhow::Result<Option<HealthTls>> {
    let config = NodeConfig::load(config_path)?;
    let TransportSecurity::Tls(files) = &config.security else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let key = zeroize::Zeroizing::new(read(&files.key)?);
    let client =
        stratus_core::tls::node_client_config(&read(&files.ca)?, &read(&files.cert)?, &key)?;
    let name =
        stratus_core::tls::ServerName::try_from(stratus_core::tls::node_name(config.node_id))?;
    Ok(Some((client, name)))
}

fn tls_init(
    topology: &std::path::Path,
    out: &std::path::Path,
    hosts: &[String],
    label: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(topology)
        .with_context(|| format!("cannot read the topology {}", topology.display()))?;
    let parsed = stratus_core::topology::Topology::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", topology.display()))?;
    let made = crate::tls::ensure_files(out, &parsed, hosts, label)?;
    if made.ca {
        println!(
            "made the cluster CA {}",
            out.join(crate::tls::CA_CERT_FILE).display()
        );
    }
    for id in &made.nodes {
        println!(
            "made the certificate of node {id} ({})",
            stratus_core::tls::node_name(*id)
        );
    }
    if !made.ca && made.nodes.is_empty() {
        println!(
            "{} already holds the CA and every node's certificate",
            out.display()
        );
    }
    Ok(())
}

async fn healthcheck(addr: &str, tls: Option<HealthTls>) -> anyhow::Result<()> {
    tokio::time::timeout(HEALTHCHECK_TIMEOUT, check_health(addr, tls))
        .await
        .with_context(|| {
            format!(
                "{addr} did not answer the health check within {} s",
                HEALTHCHECK_TIMEOUT.as_secs()
            )
        })?
}

async fn check_health(addr: &str, tls: Option<HealthTls>) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(HEALTHCHECK_TIMEOUT);
    let channel = match tls {
        None => endpoint.connect().await,
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let target = addr.to_owned();
            endpoint
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let (connector, name, target) =
                        (connector.clone(), name.clone(), target.clone());
                    async move {
                        let tcp = tokio::net::TcpStream::connect(&target).await?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                    }
                }))
                .await
        }
    }
    .with_context(|| format!("cannot reach {addr}"))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .with_context(|| format!("{addr} did not answer the health check"))?;
    let status = reply.into_inner().status;
    anyhow::ensure!(
        status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "{addr} is not serving (status {status})"
    );
    println!("{addr} serving");
    Ok(())
}
