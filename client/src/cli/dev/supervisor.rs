//! The supervisor: keeps each node process in the state its `desired` file asks
//! for, reports nodes that exit on their own, and stops everything on request.

use super::layout::{Desired, DevDir, NodeState};
use super::process::{describe, terminate, STOP_GRACE};
use crate::cli::output::tell;
use crate::cli::output::Out;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use stratus_core::topology::{NodeId, Topology};
use tokio::process::{Child, Command};

/// Lines of a node's log shown when it exits on its own.
const LOG_TAIL_LINES: usize = 8;

pub struct Supervisor {
    pub dir: DevDir,
    pub topology: Topology,
    node_bin: PathBuf,
    children: BTreeMap<NodeId, Child>,
    out: Out,
    /// Trusts the cluster CA, for health checks.
    tls: crate::TlsConfig,
}

/// The last `n` lines of a file (for showing why a node died).
pub fn tail(path: &std::path::Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

impl Supervisor {
    pub fn new(
        dir: DevDir,
        topology: Topology,
        node_bin: PathBuf,
        tls: crate::TlsConfig,
        out: Out,
    ) -> Supervisor {
        Supervisor {
            dir,
            topology,
            node_bin,
            children: BTreeMap::new(),
            out,
            tls,
        }
    }

    /// Prints a text line, or the JSON event in JSON mode.
    pub fn event(&self, text: &str, event: serde_json::Value) {
        if self.out.is_json() {
            let _ = self.out.json_line(&event);
        } else {
            tell!("{text}");
        }
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.topology.nodes().keys().copied().collect()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.children.contains_key(&id)
    }

    /// Starts node `id` with its output appended to its log.
    pub fn spawn(&mut self, id: NodeId) -> anyhow::Result<u32> {
        let log_path = self.dir.node_log(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone()?;
        let child = Command::new(&self.node_bin)
            .arg("--config")
            .arg(self.dir.node_config(id))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Own process group: a Ctrl-C in the terminal reaches the supervisor
            // only, which then stops the nodes in order.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.node_bin.display()))?;
        let pid = child.id().unwrap_or_default();
        self.children.insert(id, child);
        self.dir.set_state(id, &NodeState::Running(pid))?;
        tracing::debug!(node = id, pid, "node started");
        Ok(pid)
    }

    /// Stops node `id` (SIGTERM, then SIGKILL after the grace period).
    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            let how = terminate(&mut child, STOP_GRACE).await;
            tracing::debug!(node = id, %how, "node stopped");
        }
        self.dir.set_state(id, &NodeState::Stopped)
    }

    /// Notices children that exited on their own; returns their ids.
    pub fn reap(&mut self) -> Vec<NodeId> {
        let mut exited = Vec::new();
        for (id, child) in &mut self.children {
            match child.try_wait() {
                Ok(Some(status)) => exited.push((*id, describe(status))),
                Ok(None) => {}
                Err(e) => exited.push((*id, format!("unknown ({e})"))),
            }
        }
        for (id, how) in &exited {
            self.children.remove(id);
            let _ = self.dir.set_state(*id, &NodeState::Exited(how.clone()));
            let _ = self.dir.set_desired(*id, Desired::Down);
            let log = self.dir.node_log(*id);
            let last = tail(&log, LOG_TAIL_LINES);
            let mut text = format!(
                "node {id} exited ({how}); start it with `stratus dev node start {id}`\n  log: {}",
                log.display()
            );
            for line in &last {
                text.push_str(&format!("\n  | {line}"));
            }
            self.event(
                &text,
                json!({"event": "node-exited", "node": id, "status": how, "log": log, "log_tail": last}),
            );
        }
        exited.into_iter().map(|(id, _)| id).collect()
    }

    /// One pass of the control loop.
    pub async fn tick(&mut self) {
        self.reap();
        for id in self.node_ids() {
            match (self.dir.desired(id), self.is_running(id)) {
                (Desired::Up, false) => match self.spawn(id) {
                    Ok(pid) => self.event(
                        &format!("node {id} started (pid {pid})"),
                        json!({"event": "node-started", "node": id, "pid": pid}),
                    ),
                    Err(e) => {
                        let _ = self.dir.set_desired(id, Desired::Down);
                        let _ = self
                            .dir
                            .set_state(id, &NodeState::Exited(format!("not started: {e}")));
                        self.event(
                            &format!("node {id} could not be started: {e}"),
                            json!({"event": "node-failed", "node": id, "error": e.to_string()}),
                        );
                    }
                },
                (Desired::Down, true) => {
                    if let Err(e) = self.stop(id).await {
                        tracing::warn!(node = id, error = %e, "cannot record node state");
                    }
                    self.event(
                        &format!("node {id} stopped"),
                        json!({"event": "node-stopped", "node": id}),
                    );
                }
                _ => {}
            }
        }
    }

    /// Stops every node: SIGTERM to all at once, then waits for all.
    pub async fn shutdown(&mut self) {
        let children = std::mem::take(&mut self.children);
        let stops = children.into_iter().map(|(id, mut child)| async move {
            let how = terminate(&mut child, STOP_GRACE).await;
            (id, how)
        });
        for (id, how) in futures::future::join_all(stops).await {
            tracing::debug!(node = id, %how, "node stopped");
            let _ = self.dir.set_state(id, &NodeState::Stopped);
        }
    }

    /// Waits until every running node answers the gRPC health check, or
    /// `timeout`, while running the control loop; returns the nodes that are
    /// running but did not answer.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> BTreeSet<NodeId> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: BTreeSet<NodeId> = self.children.keys().copied().collect();
        while !pending.is_empty() && tokio::time::Instant::now() < deadline {
            // Keep honouring `stratus dev node start|stop` while waiting.
            self.tick().await;
            pending.retain(|id| self.children.contains_key(id));
            let checks = pending.iter().map(|id| {
                let addr = self
                    .topology
                    .node(*id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default();
                let tls = &self.tls;
                async move { (*id, is_serving(&addr, tls).await) }
            });
            for (id, ok) in futures::future::join_all(checks).await {
                if ok {
                    pending.remove(&id);
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        pending.retain(|id| self.is_running(*id));
        pending
    }
}

/// Whether the node at `addr` answers the standard gRPC health check as SERVING,
/// over TLS trusting the cluster CA.
pub async fn is_serving(addr: &str, tls: &crate::TlsConfig) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let channels =
        crate::channels::Channels::new(Duration::from_millis(500), None, Some(tls.clone()), None);
    let check = async {
        let channel = channels.get(addr).ok()?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(resp.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Some(true))
    )
}
