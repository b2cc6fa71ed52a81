//! `stratus dev`, the local cluster supervisor, run as `it-stratus dev` with
//! `STRATUS_NODE_BIN` pointing at `it-stratus-node`, on a one-region topology on
//! free ports.

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_tests::cli::Program;
use stratus_tests::poll::poll;
use stratus_tests::ports::free_ports;
use stratus_tests::process::{pid_exists, signal};
use stratus_tests::{bins, random_bytes, Layout};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Time the supervisor gets to start every node and print where they are.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Time it gets to stop every node after SIGINT (nodes get 10 s each, in parallel).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `it-stratus dev` and everything it printed on stdout so far.
struct Supervisor {
    child: tokio::process::Child,
    data: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Supervisor {
    async fn start(
        cli: &Program,
        data: &Path,
        topology: Option<&Path>,
        log: &Path,
    ) -> Result<Supervisor> {
        let mut args = vec![OsStr::new("dev"), OsStr::new("--data"), data.as_os_str()];
        if let Some(t) = topology {
            args.extend([OsStr::new("--topology"), t.as_os_str()]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = cli
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().context("stdout pipe")?;
        let lines = stdout.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let sup = Supervisor {
            child,
            data: data.to_path_buf(),
            stdout,
        };
        Ok(sup)
    }

    fn printed(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for the "Client profile: PATH" line; returns everything printed.
    async fn wait_ready(&mut self) -> Result<Vec<String>> {
        let me = &*self;
        poll(
            "the supervisor prints its client profile",
            READY_TIMEOUT,
            || async {
                let lines = me.printed();
                if lines.iter().any(|l| l.starts_with("Client profile: ")) {
                    Ok(lines)
                } else {
                    Err(format!("printed so far: {lines:?}"))
                }
            },
        )
        .await
    }

    /// The pid each node's `state` file records as running.
    fn node_pids(&self) -> Result<Vec<(u64, u32)>> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.data.join("nodes"))? {
            let entry = entry?;
            let id: u64 = entry.file_name().to_string_lossy().parse()?;
            let state = std::fs::read_to_string(entry.path().join("state")).unwrap_or_default();
            if let Some(pid) = state.trim().strip_prefix("running ") {
                pids.push((id, pid.parse()?));
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// SIGINT, then waits for a clean exit.
    async fn interrupt(&mut self) -> Result<()> {
        signal(
            self.child.id().context("supervisor already reaped")?,
            Signal::SIGINT,
        )?;
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .context("the supervisor did not stop after SIGINT")??;
        ensure!(status.success(), "the supervisor exited with {status}");
        Ok(())
    }
}

impl Drop for Supervisor {
    /// On a failed test: stop the supervisor, then any node it left behind.
    fn drop(&mut self) {
        let pids = self.node_pids().unwrap_or_default();
        if let Some(pid) = self.child.id() {
            let _ = signal(pid, Signal::SIGKILL);
        }
        for (_, pid) in pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("it-stratus-node") {
                let _ = signal(pid, Signal::SIGKILL);
            }
        }
        eprintln!("supervisor stdout:\n{}", self.printed().join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_a_cluster_that_works_stops_and_comes_back() -> Result<()> {
    let bins = bins!();
    let work = tempfile::tempdir()?;
    let data = work.path().join("dev");
    let topology = work.path().join("topology.toml");
    let ports = free_ports(Layout::OneRegion.node_count()?)?;
    let (text, parsed) = Layout::OneRegion.render(&ports)?;
    std::fs::write(&topology, text)?;
    let supervisor_cli = Program::new(&bins.cli, work.path()).env("STRATUS_NODE_BIN", &bins.node);
    let sup_log = work.path().join("supervisor.log");

    let mut sup = Supervisor::start(&supervisor_cli, &data, Some(&topology), &sup_log).await?;
    let printed = sup
        .wait_ready()
        .await
        .with_context(|| std::fs::read_to_string(&sup_log).unwrap_or_default())?;
    let text = printed.join("\n");
    for node in parsed.nodes().values() {
        ensure!(
            text.contains(&node.addr),
            "endpoint {} not printed:\n{text}",
            node.addr
        );
    }
    let profile = data.join("profile.toml");
    ensure!(
        text.contains(&format!("Client profile: {}", profile.display())),
        "profile path not printed:\n{text}"
    );
    ensure!(profile.is_file());

    let cli = Program::new(&bins.cli, work.path()).env("STRATUS_PROFILE", &profile);
    cli.run(&[
        "tenant",
        "create",
        "devt",
        "--region",
        "local",
        "--redundancy",
        "zrs",
    ])
    .await?
    .ok()?;
    cli.run(&["container", "create", "devt/box"]).await?.ok()?;
    let payload = random_bytes(300_000, 8);
    let file = work.path().join("payload.bin");
    std::fs::write(&file, &payload)?;
    let file_arg = file.to_str().context("utf-8 path")?;
    cli.run(&["put", file_arg, "devt/box/payload"])
        .await?
        .ok()?;
    let got = cli.run(&["get", "devt/box/payload"]).await?;
    ensure!(got.ok()?.stdout == payload, "get returned other bytes");

    // Stop and start one node through the supervisor.
    let data_arg = data.to_str().context("utf-8 path")?;
    let before = sup.node_pids()?;
    let old_pid = before
        .iter()
        .find(|(id, _)| *id == 2)
        .context("node 2 running")?
        .1;
    let out = cli
        .run(&["dev", "--data", data_arg, "node", "stop", "2"])
        .await?;
    ensure!(
        out.ok()?.stdout_text().contains("node 2 stopped"),
        "{out:?}"
    );
    ensure!(
        !pid_exists(old_pid),
        "node 2 (pid {old_pid}) still exists after `node stop 2`"
    );
    ensure!(std::fs::read_to_string(data.join("nodes/2/state"))?.trim() == "stopped");
    let out = cli
        .run(&["dev", "--data", data_arg, "node", "start", "2"])
        .await?;
    ensure!(
        out.ok()?.stdout_text().contains("node 2 started"),
        "{out:?}"
    );
    let (_, new_pid) = *sup
        .node_pids()?
        .iter()
        .find(|(id, _)| *id == 2)
        .context("node 2 running again")?;
    ensure!(new_pid != old_pid && pid_exists(new_pid));

    // Ctrl-C stops every node.
    let pids = sup.node_pids()?;
    ensure!(pids.len() == parsed.nodes().len(), "running: {pids:?}");
    sup.interrupt().await?;
    let alive: Vec<_> = pids.iter().filter(|(_, pid)| pid_exists(*pid)).collect();
    ensure!(
        alive.is_empty(),
        "nodes still running after SIGINT: {alive:?}"
    );
    ensure!(
        !data.join("supervisor.pid").exists(),
        "supervisor.pid left behind"
    );
    drop(sup);

    // The same directory brings the object back.
    let mut sup = Supervisor::start(&supervisor_cli, &data, None, &sup_log).await?;
    sup.wait_ready().await?;
    let got = cli.run(&["get", "devt/box/payload"]).await?;
    ensure!(got.ok()?.stdout == payload, "the object did not come back");
    let pids = sup.node_pids()?;
    sup.interrupt().await?;
    if let Some(alive) = pids.iter().find(|(_, pid)| pid_exists(*pid)) {
        bail!("node {} still running after the second SIGINT", alive.0);
    }
    drop(sup);

    // A data dir of an older format: every node refuses it, so the supervisor
    // stops with their reason instead of supervising exited nodes, and no node
    // writes a byte.
    let mut markers = Vec::new();
    for id in parsed.nodes().keys() {
        let marker = data.join(format!("nodes/{id}/data/FORMAT"));
        let text = std::fs::read_to_string(&marker)
            .with_context(|| format!("reading {}", marker.display()))?;
        let (first, rest) = text.split_once('\n').context("FORMAT has lines")?;
        ensure!(first.starts_with("stratus-data-format "), "{text}");
        let old = format!("stratus-data-format 4\n{rest}");
        std::fs::write(&marker, &old)?;
        markers.push((marker, old));
    }
    std::fs::write(&sup_log, "")?;
    let mut sup = Supervisor::start(&supervisor_cli, &data, None, &sup_log).await?;
    let status = tokio::time::timeout(READY_TIMEOUT, sup.child.wait())
        .await
        .context("the supervisor kept running over nodes that refused their data")??;
    let said = std::fs::read_to_string(&sup_log)?;
    ensure!(!status.success(), "exited with {status}: {said}");
    ensure!(
        said.contains("no node stayed up")
            && said.contains("data format 4")
            && said.contains("left untouched"),
        "the supervisor's error does not give the nodes' reason:\n{said}"
    );
    ensure!(
        !sup.printed()
            .iter()
            .any(|l| l.starts_with("Client profile: ")),
        "the cluster was reported ready: {:?}",
        sup.printed()
    );
    for (marker, old) in &markers {
        ensure!(
            &std::fs::read_to_string(marker)? == old,
            "{} was rewritten",
            marker.display()
        );
    }
    Ok(())
}
