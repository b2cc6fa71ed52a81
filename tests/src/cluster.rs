//! A test cluster: one `it-stratus-node` process per node of a [`Layout`], on free
//! loopback ports, with its files in a temporary directory:
//!
//! ```text
//! DIR/topology.toml
//! DIR/nodes/<id>/node.toml   DIR/nodes/<id>/data/   DIR/nodes/<id>/node.log
//! ```
//!
//! [`Cluster::start`] returns once `ClusterStatus` shows every node up and every
//! group led. Dropping the cluster kills every node and prints the tail of every
//! log (shown by libtest only when the test failed).

use crate::grpc;
use crate::layout::{Layout, NodeConfig};
use crate::poll::poll;
use crate::ports::free_ports;
use crate::process::NodeProcess;
use crate::Bins;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stratus_client::{Client, ClientConfig, Credential, Redundancy};
use stratus_core::topology::{NodeId, Topology};
use stratus_proto::v1 as pb;

/// Time a cluster gets to elect every leader at startup (generous: a loaded
/// 2-core machine starts several clusters at once).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines of each node printed when a cluster drops.
pub const LOG_TAIL_LINES: usize = 25;
/// Set this environment variable to keep every cluster's directory (configs,
/// data, whole logs) after the test; the path is printed.
pub const KEEP_DIRS_ENV: &str = "STRATUS_IT_KEEP_DIRS";

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub layout: Layout,
    /// `object_bytes_max` in every node config (the node default when `None`).
    pub object_bytes_max: Option<u64>,
    /// `key_retention_min_s` in every node config (the node default when `None`).
    pub key_retention_min_s: Option<u64>,
    /// `key_retire_grace_s` in every node config (the node default when `None`).
    pub key_retire_grace_s: Option<u64>,
    /// More `key = value` lines for every node config.
    pub extra_config: Vec<String>,
    pub startup_timeout: Duration,
    /// Run without TLS (`insecure_plaintext`); by default nodes speak TLS with a
    /// CA and certificates made for the cluster.
    pub insecure: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            layout: Layout::OneRegion,
            object_bytes_max: None,
            key_retention_min_s: None,
            key_retire_grace_s: None,
            extra_config: Vec::new(),
            startup_timeout: STARTUP_TIMEOUT,
            insecure: false,
        }
    }
}

/// A running test cluster.
#[derive(Debug)]
pub struct Cluster {
    /// `None` only once dropped (when the directory is kept).
    dir: Option<tempfile::TempDir>,
    topology: Topology,
    nodes: BTreeMap<NodeId, NodeProcess>,
    /// The cluster's operator secret (the harness authenticates as operator).
    operator: String,
    /// Trusts the cluster's CA; `None` for an insecure cluster.
    tls: Option<stratus_client::TlsConfig>,
}

/// A group's leader as the cluster reports it: the replica that says it leads,
/// at the highest term any replica reports.
fn leader_of(group: &pb::GroupInfo) -> Option<NodeId> {
    let term = group.replicas.iter().map(|r| r.term).max()?;
    group
        .replicas
        .iter()
        .find(|r| r.role == "leader" && r.term == term)
        .map(|r| r.node_id)
}

/// `ClusterStatus` from the first of `addrs` that answers.
pub async fn status_from(addrs: Vec<String>) -> anyhow::Result<pb::ClusterStatusResponse> {
    let mut last = None;
    for addr in addrs {
        let call = async {
            let reply = grpc::admin(&addr)?
                .cluster_status(pb::ClusterStatusRequest {})
                .await?;
            anyhow::Ok(reply.into_inner())
        };
        match tokio::time::timeout(grpc::CALL_TIMEOUT, call).await {
            Ok(Ok(status)) => return Ok(status),
            Ok(Err(e)) => last = Some(format!("{addr}: {e:#}")),
            Err(_) => last = Some(format!("{addr}: no answer within {:?}", grpc::CALL_TIMEOUT)),
        }
    }
    bail!("no running node answered ClusterStatus; last: {last:?}")
}

/// Writes this process's operator secret ([`grpc::operator_secret`]) with mode
/// 0600 and returns it.
pub fn write_operator_secret(path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = grpc::operator_secret().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    Ok(secret)
}

/// Writes a fresh random root key with mode 0600.
pub fn write_root_key(path: &Path) -> anyhow::Result<()> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.as_ref())?;
    Ok(())
}

impl Cluster {
    /// Writes the files, starts every node and waits until the cluster is ready.
    pub async fn start(bins: &Bins, opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("stratus-it-").tempdir()?;
        let ports = free_ports(opts.layout.node_count()?)?;
        let (text, topology) = opts.layout.render(&ports)?;
        let topology_path = dir.path().join("topology.toml");
        std::fs::write(&topology_path, text)?;
        let root_key_file = dir.path().join("root.key");
        write_root_key(&root_key_file)?;
        let operator_secret_file = dir.path().join("operator.secret");
        let operator = write_operator_secret(&operator_secret_file)?;
        let tls_dir = dir.path().join("tls");
        let tls = if opts.insecure {
            None
        } else {
            stratus_node::tls::ensure_files(&tls_dir, &topology, &[], "it")?;
            let ca = tls_dir.join(stratus_node::tls::CA_CERT_FILE);
            for node in topology.nodes().values() {
                grpc::register_ca(&node.addr, &ca)?;
            }
            Some(stratus_client::TlsConfig::from_ca_file(&ca)?)
        };
        let mut nodes = BTreeMap::new();
        for node in topology.nodes().values() {
            let node_dir = dir.path().join("nodes").join(node.id.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let config = NodeConfig {
                node_id: node.id,
                topology: topology_path.clone(),
                data_dir: node_dir.join("data"),
                root_key_file: root_key_file.clone(),
                operator_secret_file: Some(operator_secret_file.clone()),
                object_bytes_max: opts.object_bytes_max,
                key_retention_min_s: opts.key_retention_min_s,
                key_retire_grace_s: opts.key_retire_grace_s,
                tls: tls
                    .is_some()
                    .then(|| stratus_node::tls::TlsFiles::in_dir(&tls_dir, node.id)),
                extra: opts.extra_config.clone(),
            };
            let config_path = node_dir.join("node.toml");
            std::fs::write(&config_path, config.to_toml()?)?;
            let process = NodeProcess::new(
                &bins.node,
                node.id,
                &node.addr,
                config_path,
                node_dir.join("node.log"),
            );
            nodes.insert(node.id, process);
        }
        let mut cluster = Cluster {
            dir: Some(dir),
            topology,
            nodes,
            operator,
            tls,
        };
        for id in cluster.node_ids() {
            cluster.start_node(id)?;
        }
        cluster.wait_ready(opts.startup_timeout).await?;
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new(""), tempfile::TempDir::path)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn node(&self, id: NodeId) -> anyhow::Result<&NodeProcess> {
        self.nodes
            .get(&id)
            .with_context(|| format!("node {id} is not in this cluster"))
    }

    fn node_mut(&mut self, id: NodeId) -> anyhow::Result<&mut NodeProcess> {
        self.nodes
            .get_mut(&id)
            .with_context(|| format!("node {id} is not in this cluster"))
    }

    /// `host:port` of node `id`.
    pub fn addr(&self, id: NodeId) -> anyhow::Result<String> {
        Ok(self.node(id)?.addr.clone())
    }

    /// The node's data directory.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir().join("nodes").join(id.to_string()).join("data")
    }

    /// Ids of the nodes whose process runs.
    pub fn running(&mut self) -> Vec<NodeId> {
        self.nodes
            .iter_mut()
            .filter_map(|(id, n)| n.is_running().then_some(*id))
            .collect()
    }

    /// Addresses of the running nodes.
    pub fn endpoints(&mut self) -> Vec<String> {
        self.nodes
            .values_mut()
            .filter_map(|n| n.is_running().then(|| n.addr.clone()))
            .collect()
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&mut self, id: NodeId) -> anyhow::Result<u32> {
        self.node_mut(id)?
            .pid()
            .with_context(|| format!("node {id} is not running"))
    }

    /// The cluster CA certificate file (for `--ca` / `STRATUS_CA`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("tls").join(stratus_node::tls::CA_CERT_FILE)
    }

    /// The SDK's TLS settings for this cluster (`None` when it is insecure).
    pub fn tls(&self) -> Option<stratus_client::TlsConfig> {
        self.tls.clone()
    }

    /// The cluster's operator secret.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// An SDK client seeded with every running node, authenticated as operator.
    pub async fn client(&mut self) -> anyhow::Result<Client> {
        let credential = Credential::new(&self.operator)?;
        self.client_with(Some(credential)).await
    }

    /// An SDK client with the given credential (or none).
    pub async fn client_with(&mut self, credential: Option<Credential>) -> anyhow::Result<Client> {
        let config = ClientConfig {
            credential,
            tls: self.tls.clone(),
            ..ClientConfig::default()
        };
        Ok(Client::connect_with(self.endpoints(), config).await?)
    }

    /// Starts node `id` (its process must not be running).
    pub fn start_node(&mut self, id: NodeId) -> anyhow::Result<u32> {
        self.node_mut(id)?.start()
    }

    /// Freezes node `id` (SIGSTOP): it neither answers nor loses anything, like a
    /// host cut off from the network; [`Cluster::resume`] lets it go on.
    pub fn pause(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.node_mut(id)?.send(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.node_mut(id)?.send(nix::sys::signal::Signal::SIGCONT)
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.node_mut(id)?.kill()
    }

    /// SIGTERMs node `id` and waits for its clean exit.
    pub async fn terminate(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.node_mut(id)?.terminate().await.map(drop)
    }

    /// SIGTERMs every running node at once, then waits for each to exit cleanly.
    pub async fn terminate_all(&mut self) -> anyhow::Result<()> {
        let ids = self.running();
        for id in &ids {
            self.node_mut(*id)?
                .send(nix::sys::signal::Signal::SIGTERM)?;
        }
        for id in ids {
            self.node_mut(id)?.wait_stopped().await?;
        }
        Ok(())
    }

    /// SIGTERMs node `id`, starts it again on the same data dir and waits until the
    /// cluster is ready again.
    pub async fn restart(&mut self, id: NodeId, timeout: Duration) -> anyhow::Result<()> {
        self.terminate(id).await?;
        self.start_node(id)?;
        self.wait_ready(timeout).await.map(drop)
    }

    /// `ClusterStatus` from the first running node that answers.
    pub async fn status(&mut self) -> anyhow::Result<pb::ClusterStatusResponse> {
        status_from(self.endpoints()).await
    }

    /// Waits until every running node is up and every group is led by a running
    /// node; returns that status. Fails at once if a node process exits.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<pb::ClusterStatusResponse> {
        let expected = self.running();
        let me = &mut *self;
        let ready = poll(
            "cluster ready (every node up, every group led)",
            timeout,
            || {
                let expected = expected.clone();
                let running = me.running();
                let exited: Vec<NodeId> = expected
                    .iter()
                    .copied()
                    .filter(|id| !running.contains(id))
                    .collect();
                let addrs = me.endpoints();
                async move {
                    if !exited.is_empty() {
                        // Not worth waiting for: stop polling (the logs say why).
                        return Ok(Err(anyhow::anyhow!(
                            "node(s) {exited:?} exited while the cluster was starting"
                        )));
                    }
                    let status = status_from(addrs).await?;
                    let down: Vec<u64> = status
                        .nodes
                        .iter()
                        .filter(|n| expected.contains(&n.id) && !n.up)
                        .map(|n| n.id)
                        .collect();
                    let leaderless: Vec<u64> = status
                        .groups
                        .iter()
                        .filter(|g| !leader_of(g).is_some_and(|l| expected.contains(&l)))
                        .map(|g| g.id)
                        .collect();
                    if down.is_empty() && leaderless.is_empty() {
                        Ok(Ok(status))
                    } else {
                        Err(anyhow::anyhow!(
                            "nodes down: {down:?}; groups without a leader: {leaderless:?}"
                        ))
                    }
                }
            },
        )
        .await?;
        ready
    }

    /// Waits until `group` has a leader other than `not`, and returns it.
    pub async fn group_leader(
        &mut self,
        group: u64,
        not: Option<NodeId>,
        timeout: Duration,
    ) -> anyhow::Result<NodeId> {
        let me = &mut *self;
        poll(&format!("a leader for group {group}"), timeout, || {
            let addrs = me.endpoints();
            async move {
                let status = status_from(addrs).await?;
                let g = status
                    .groups
                    .iter()
                    .find(|g| g.id == group)
                    .with_context(|| format!("group {group} is not in the plan"))?;
                match leader_of(g) {
                    Some(l) if Some(l) != not => Ok(l),
                    other => Err(anyhow::anyhow!("leader: {other:?}")),
                }
            }
        })
        .await
    }

    /// The group id and voters of the group holding `tenant`.
    pub async fn tenant_group(&mut self, tenant: &str) -> anyhow::Result<(u64, Vec<NodeId>)> {
        let status = self.status().await?;
        let g = status
            .groups
            .iter()
            .find(|g| g.tenants.iter().any(|t| t == tenant))
            .with_context(|| format!("no group lists tenant {tenant}"))?;
        Ok((g.id, g.members.clone()))
    }

    /// Creates `tenant` (in the first storage region) and `container`.
    pub async fn create_tenant(
        &mut self,
        client: &Client,
        tenant: &str,
        redundancy: Redundancy,
        container: &str,
    ) -> anyhow::Result<()> {
        let region = self
            .topology
            .regions()
            .iter()
            .find(|r| !r.witness)
            .map(|r| r.name.clone())
            .context("no storage region")?;
        client.create_tenant(tenant, &region, redundancy).await?;
        client.create_container(tenant, container).await?;
        Ok(())
    }

    /// The whole log of node `id` so far (empty if it has none yet).
    pub fn log(&self, id: NodeId) -> anyhow::Result<String> {
        let n = self
            .nodes
            .get(&id)
            .with_context(|| format!("node {id} is not in this cluster"))?;
        Ok(std::fs::read_to_string(&n.log).unwrap_or_default())
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            out.push_str(&format!(
                "----- node {} ({}) log {} (last {lines} lines)\n{}\n",
                n.id,
                n.addr,
                n.log.display(),
                n.log_tail(lines)
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            let _ = n.kill();
        }
        // Captured by libtest: shown only when the test fails.
        eprintln!("{}", self.log_tails(LOG_TAIL_LINES));
        match self.dir.take() {
            Some(dir) if std::env::var_os(KEEP_DIRS_ENV).is_some() => {
                eprintln!("cluster files kept in {}", dir.keep().display());
            }
            _ => eprintln!("(set {KEEP_DIRS_ENV}=1 to keep the whole logs and data)"),
        }
    }
}

/// Peak resident memory (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}
