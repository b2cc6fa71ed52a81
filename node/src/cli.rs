//! The `stratus-node` command line: run a node from its config file, or check a
//! node's health. Lives in the library so the integration-test crate can build the
//! same program as its own binary.

use crate::clock::SystemClock;
use crate::config::NodeConfig;
use crate::node::{NodeOptions, NodeSettings, StratusNode};
use crate::rng::NodeRng;
use crate::storage::fs_blob::FsBlobStore;
use crate::storage::sled_engine::SledEngine;
use crate::transport::{TcpTransport, Transport};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Runtime worker threads, at least. sled blocks the calling thread on some writes
/// (a full IO buffer); with one worker per core a couple of such calls would stall
/// Raft heartbeats on a two-core machine.
const RUNTIME_WORKERS_MIN: usize = 6;

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
        _ => RUNTIME_WORKERS_MIN.max(std::thread::available_parallelism().map_or(1, |n| n.get())),
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
            Cmd::Healthcheck { addr } => {
                let addr = match (addr, cli.config) {
                    (Some(addr), _) => addr,
                    (None, Some(config)) => local_addr(&config)?,
                    (None, None) => HEALTHCHECK_ADDR_DEFAULT.to_owned(),
                };
                healthcheck(&addr).await
            }
        }
    });
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
    let transport = Arc::new(TcpTransport);
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
    let served = crate::server::serve(node.clone(), incoming, shutdown_signal()).await;
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

async fn healthcheck(addr: &str) -> anyhow::Result<()> {
    tokio::time::timeout(HEALTHCHECK_TIMEOUT, check_health(addr))
        .await
        .with_context(|| {
            format!(
                "{addr} did not answer the health check within {} s",
                HEALTHCHECK_TIMEOUT.as_secs()
            )
        })?
}

async fn check_health(addr: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(HEALTHCHECK_TIMEOUT)
        .connect()
        .await
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
