//! `stratus dev`: a local multi-region cluster as separate `stratus-node`
//! processes on loopback, supervised by this command.
//!
//! Startup: choose and validate the topology, refuse a second supervisor on the
//! same directory, stop nodes a crashed supervisor left behind, check every port is
//! free, write each node's config and the client profile, start the nodes, wait for
//! their health checks, print where everything is. Then supervise until Ctrl-C or
//! SIGTERM, and stop every node. Running it again on the same directory brings the
//! same cluster back: the nodes reload their data.
//!
//! Submodules: [`layout`] (the files), [`process`] (signals), [`supervisor`] (the
//! control loop), [`control`] (`stratus dev node start|stop`).

pub mod control;
pub mod layout;
pub mod process;
pub mod supervisor;

use super::output::{render_table, Out};
use crate::cli::output::tell;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use layout::{Desired, DevDir, NodeState};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stratus_core::topology::{NodeId, Topology};
use supervisor::Supervisor;
use tokio::signal::unix::{signal, SignalKind};

/// Time the nodes get to answer their health checks at startup.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Period of the supervisor's control loop.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Data directory of the local cluster.
    #[arg(long, global = true, default_value = crate::profile::DEV_DATA_DIR, value_name = "DIR")]
    pub data: PathBuf,
    /// Topology file (default: the one from a previous run, else the embedded default).
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<DevCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Start or stop one node of a running `stratus dev` cluster.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start a stopped node (it catches up with its groups).
    Start { id: NodeId },
    /// Stop a node (SIGTERM); it stays stopped until started.
    Stop { id: NodeId },
}

pub async fn run(args: DevArgs, out: Out) -> anyhow::Result<()> {
    let dir = DevDir::new(&args.data);
    match args.command {
        Some(DevCommand::Node { command }) => {
            if args.topology.is_some() {
                bail!("--topology applies to `stratus dev` itself, not to `stratus dev node`");
            }
            match command {
                NodeCommand::Start { id } => control::set_node(&dir, id, Desired::Up, out).await,
                NodeCommand::Stop { id } => control::set_node(&dir, id, Desired::Down, out).await,
            }
        }
        None => supervise(dir, args.topology.as_deref(), out).await,
    }
}

/// Environment variable naming the `stratus-node` program to run instead of the one
/// next to this executable (the integration tests run `it-stratus-node` this way).
pub const NODE_BIN_ENV: &str = "STRATUS_NODE_BIN";

/// Shown after `stratus dev --help`.
pub const AFTER_HELP: &str = "\
Environment: STRATUS_NODE_BIN=FILE runs FILE as the node program instead of the \
stratus-node next to this executable (for example a debug build, or the \
integration tests' it-stratus-node).";

/// The node program: `$STRATUS_NODE_BIN` if set, else `stratus-node` next to this
/// executable.
fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the path of this executable")?;
    choose_node_binary(std::env::var_os(NODE_BIN_ENV), &exe)
}

/// [`node_binary`] given the override's value and this executable's path.
fn choose_node_binary(over: Option<std::ffi::OsString>, exe: &Path) -> anyhow::Result<PathBuf> {
    if let Some(bin) = over.filter(|v| !v.is_empty()) {
        let bin = super::absolute(Path::new(&bin));
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{NODE_BIN_ENV}={} is not a file: point it at a stratus-node program or unset it",
            bin.display()
        );
    }
    let bin = exe.with_file_name("stratus-node");
    if bin.is_file() {
        Ok(bin)
    } else {
        bail!(
            "stratus-node not found next to stratus (looked for {}); build both with `cargo build --release`, or set {NODE_BIN_ENV}",
            bin.display()
        )
    }
}

/// Fails if a live supervisor already owns `dir`.
fn check_no_supervisor(dir: &DevDir) -> anyhow::Result<()> {
    if let Some(pid) = dir.supervisor_pid() {
        if pid != std::process::id()
            && process::is_alive(pid)
            && process::command_mentions(pid, "stratus")
        {
            bail!(
                "a `stratus dev` supervisor (pid {pid}) is already running on {}: stop it with Ctrl-C in its terminal or `kill {pid}`",
                dir.root().display()
            );
        }
    }
    Ok(())
}

/// Stops nodes recorded as running by a supervisor that is gone.
async fn stop_leftover_nodes(dir: &DevDir, topology: &Topology) {
    for id in topology.nodes().keys() {
        if let Some(NodeState::Running(pid)) = dir.state(*id) {
            // Matched on the node's config path: whatever the program is called
            // (STRATUS_NODE_BIN), a recycled pid is not mistaken for our node.
            let config = dir.node_config(*id);
            if process::is_alive(pid) && process::command_mentions(pid, &config.to_string_lossy()) {
                eprintln!("stopping node {id} (pid {pid}) left running by a previous supervisor");
                process::terminate_pid(pid, process::STOP_GRACE).await;
            }
            let _ = dir.set_state(*id, &NodeState::Stopped);
        }
    }
}

/// Every node's port must be free before anything starts.
fn check_ports(topology: &Topology) -> anyhow::Result<()> {
    for n in topology.nodes().values() {
        let port = n.addr.rsplit_once(':').map_or("?", |(_, p)| p);
        match std::net::TcpListener::bind(&n.addr) {
            Ok(listener) => drop(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "port {port} for node {} is already in use: stop the process using it or pass --topology with other ports",
                n.id
            ),
            Err(e) => bail!(
                "cannot listen on {} for node {}: {e} (stratus dev runs every node on this machine)",
                n.addr,
                n.id
            ),
        }
    }
    Ok(())
}

/// Removes `supervisor.pid` when the supervisor ends, however it ends.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        layout::write_atomic(path, &format!("{}\n", std::process::id()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn supervise(dir: DevDir, topology_flag: Option<&Path>, out: Out) -> anyhow::Result<()> {
    let node_bin = node_binary()?;
    check_no_supervisor(&dir)?;
    let topology = dir.prepare_topology(topology_flag)?;
    stop_leftover_nodes(&dir, &topology).await;
    check_ports(&topology)?;
    let _pid_file = PidFile::create(&dir.pid_path())?;
    dir.write_node_files(&topology)?;
    let tls = dir.ensure_tls(&node_bin)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let mut sup = Supervisor::new(dir, topology, node_bin, tls, out);
    for id in sup.node_ids() {
        // A new supervisor brings the whole cluster back.
        sup.dir.set_desired(id, Desired::Up)?;
        if let Err(e) = sup.spawn(id) {
            sup.shutdown().await;
            return Err(e.context(format!("starting node {id}")));
        }
    }
    let unhealthy = tokio::select! {
        u = sup.wait_healthy(STARTUP_TIMEOUT) => u,
        _ = interrupt.recv() => return stop(&mut sup).await,
        _ = terminate.recv() => return stop(&mut sup).await,
    };
    if let Some(reason) = none_stayed_up(&sup) {
        sup.shutdown().await;
        bail!("{reason}");
    }
    print_ready(&sup, &unhealthy, out)?;

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => sup.tick().await,
        }
    }
    stop(&mut sup).await
}

/// When every node exited during startup (an old data format, a bad config, a
/// broken binary), why: the last line one of them logged. The supervisor then
/// stops with that message instead of sitting over a cluster of exited nodes.
fn none_stayed_up(sup: &Supervisor) -> Option<String> {
    let ids = sup.node_ids();
    if ids.iter().any(|id| sup.is_running(*id)) {
        return None;
    }
    let first = *ids.first()?;
    let log = sup.dir.node_log(first);
    let said = supervisor::tail(&log, 1).pop().unwrap_or_default();
    Some(format!(
        "no node stayed up: all {} exited during startup (their logs are under {}). Node {first} said: {}",
        ids.len(),
        sup.dir.root().join("nodes").display(),
        if said.is_empty() { "nothing" } else { said.trim() }
    ))
}

async fn stop(sup: &mut Supervisor) -> anyhow::Result<()> {
    eprintln!("stopping every node…");
    sup.shutdown().await;
    sup.event("stopped", json!({"event": "stopped"}));
    Ok(())
}

fn print_ready(
    sup: &Supervisor,
    unhealthy: &std::collections::BTreeSet<NodeId>,
    out: Out,
) -> anyhow::Result<()> {
    let profile = sup.dir.profile_path();
    let status = |id: &NodeId| match (sup.is_running(*id), unhealthy.contains(id)) {
        (false, _) => "exited",
        (true, true) => "not answering",
        (true, false) => "up",
    };
    if out.is_json() {
        let nodes: Vec<_> = sup
            .topology
            .nodes()
            .values()
            .map(|n| json!({"id": n.id, "region": n.region, "zone": n.zone, "facility": n.facility, "addr": n.addr, "status": status(&n.id)}))
            .collect();
        return out.json_line(&json!({"event": "ready", "data_dir": sup.dir.root(), "profile": profile, "nodes": nodes}));
    }
    let rows: Vec<Vec<String>> = sup
        .topology
        .nodes()
        .values()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.region.clone(),
                n.zone.clone(),
                n.facility.clone(),
                n.addr.clone(),
                status(&n.id).to_owned(),
            ]
        })
        .collect();
    let up = rows.iter().filter(|r| r[5] == "up").count();
    tell!("Stratus dev cluster: {up} of {} nodes up", rows.len());
    tell!(
        "{}",
        render_table(
            &["NODE", "REGION", "ZONE", "FACILITY", "ENDPOINT", "STATUS"],
            &rows
        )
    );
    for id in unhealthy {
        tell!(
            "warning: node {id} did not answer its health check within {} s; see {}",
            STARTUP_TIMEOUT.as_secs(),
            sup.dir.node_log(*id).display()
        );
    }
    tell!("\nData: {}", sup.dir.root().display());
    tell!("Client profile: {}", profile.display());
    tell!("  export STRATUS_PROFILE={}", profile.display());
    tell!("Try: stratus cluster status    |    stratus dev node stop 2    |    Ctrl-C stops the cluster");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_program_is_the_override_else_the_one_next_to_stratus() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let exe = tmp.path().join("stratus");
        let e = choose_node_binary(None, &exe).expect_err("no stratus-node yet");
        assert!(e.to_string().contains(NODE_BIN_ENV), "{e}");
        let beside = tmp.path().join("stratus-node");
        std::fs::write(&beside, "").expect("write");
        assert_eq!(choose_node_binary(None, &exe).expect("beside"), beside);
        assert_eq!(
            choose_node_binary(Some("".into()), &exe).expect("empty means unset"),
            beside
        );
        let custom = tmp.path().join("it-stratus-node");
        std::fs::write(&custom, "").expect("write");
        assert_eq!(
            choose_node_binary(Some(custom.clone().into()), &exe).expect("override"),
            custom
        );
        let missing = tmp.path().join("missing");
        let e = choose_node_binary(Some(missing.into()), &exe).expect_err("missing override");
        assert!(
            e.to_string().contains("STRATUS_NODE_BIN=") && e.to_string().contains("missing"),
            "{e}"
        );
    }
}
