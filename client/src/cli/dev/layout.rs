//! The `stratus dev` data directory and the small files through which the
//! supervisor and `stratus dev node start|stop` talk:
//!
//! ```text
//! DIR/topology.toml            the cluster's topology (default or --topology)
//! DIR/profile.toml             client profile listing every node's address
//! DIR/supervisor.pid           pid of the running supervisor
//! DIR/tls/                     cluster CA and node certificates (`stratus-node tls init`)
//! DIR/nodes/<id>/node.toml     node config read by `stratus-node --config`
//! DIR/nodes/<id>/data/         the node's own data (created by the node)
//! DIR/nodes/<id>/node.log      the node's stdout and stderr, appended
//! DIR/nodes/<id>/desired       "up" or "down", written by `stratus dev node …`
//! DIR/nodes/<id>/state         "running <pid>", "stopped" or "exited <status>"
//! ```
//!
//! Small files are replaced atomically (write a temporary file, rename), so a
//! reader never sees half a value.

use crate::Profile;
use anyhow::{anyhow, bail, Context};
use std::fmt;
use std::path::{Path, PathBuf};
use stratus_core::topology::{NodeId, Topology, DEFAULT_TOPOLOGY};

/// What the user asked a node to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    Up,
    Down,
}

/// What the supervisor last observed of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Running(u32),
    Stopped,
    Exited(String),
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Running(pid) => write!(f, "running {pid}"),
            NodeState::Stopped => f.write_str("stopped"),
            NodeState::Exited(status) => write!(f, "exited {status}"),
        }
    }
}

impl NodeState {
    pub fn parse(s: &str) -> Option<NodeState> {
        let s = s.trim();
        if s == "stopped" {
            return Some(NodeState::Stopped);
        }
        if let Some(pid) = s.strip_prefix("running ") {
            return pid.trim().parse().ok().map(NodeState::Running);
        }
        s.strip_prefix("exited ")
            .map(|st| NodeState::Exited(st.trim().to_owned()))
    }
}

/// A `stratus dev` data directory.
#[derive(Debug, Clone)]
pub struct DevDir {
    root: PathBuf,
}

/// Replaces `path`'s content atomically.
pub fn write_atomic(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Like [`write_atomic`], but the file is owner-only (mode 0600) from its creation.
pub fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

impl DevDir {
    /// `root` made absolute, so printed paths work from anywhere.
    pub fn new(root: &Path) -> DevDir {
        DevDir {
            root: super::super::absolute(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn topology_path(&self) -> PathBuf {
        self.root.join("topology.toml")
    }
    /// The cluster root key every dev node reads (32 random bytes, mode 0600).
    pub fn root_key_path(&self) -> PathBuf {
        self.root.join("root.key")
    }

    /// Generates the root key on first use; an existing key is kept, since it is
    /// the only way to read what the cluster stored.
    fn ensure_root_key(&self) -> anyhow::Result<()> {
        use rand::RngCore;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.root_key_path();
        if path.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create the root key {}", path.display()))?;
        file.write_all(key.as_ref())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the root key {}", path.display()))
    }

    /// The cluster's bootstrap operator secret (`sop1.` + 64 hex digits, mode 0600).
    pub fn operator_secret_path(&self) -> PathBuf {
        self.root.join("operator.secret")
    }

    /// Generates the operator secret on first use (kept afterwards: the cluster
    /// recorded its hash at its first start) and returns it.
    fn ensure_operator_secret(&self) -> anyhow::Result<crate::Credential> {
        use rand::RngCore;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.operator_secret_path();
        if !path.exists() {
            let mut random = zeroize::Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(random.as_mut());
            let secret = zeroize::Zeroizing::new(stratus_core::auth::operator_secret_from(&random));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create the operator secret {}", path.display()))?;
            file.write_all(format!("{}\n", secret.as_str()).as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the operator secret {}", path.display()))?;
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        );
        let secret = stratus_core::auth::parse_operator_secret(&text)
            .map_err(|why| anyhow!("{}: {why}", path.display()))?;
        Ok(crate::Credential::new(&secret)?)
    }

    /// The cluster's TLS material: `ca.pem`, `ca.key`, `node-<id>.pem|key`.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Makes the cluster CA and every node's certificate on first use (kept
    /// afterwards: nodes and clients trust that CA), with `node_bin tls init`, and
    /// returns the client side trusting the CA.
    pub fn ensure_tls(&self, node_bin: &Path) -> anyhow::Result<crate::TlsConfig> {
        let dir = self.tls_dir();
        let output = std::process::Command::new(node_bin)
            .arg("tls")
            .arg("init")
            .arg("--topology")
            .arg(self.topology_path())
            .arg("--out")
            .arg(&dir)
            .arg("--label")
            .arg("stratus-dev")
            .output()
            .with_context(|| format!("cannot run {} tls init", node_bin.display()))?;
        if !output.status.success() {
            bail!(
                "{} tls init failed: {}",
                node_bin.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(crate::TlsConfig::from_ca_file(&dir.join("ca.pem"))?)
    }

    pub fn profile_path(&self) -> PathBuf {
        self.root.join(crate::profile::PROFILE_FILE)
    }
    pub fn pid_path(&self) -> PathBuf {
        self.root.join("supervisor.pid")
    }
    pub fn node_dir(&self, id: NodeId) -> PathBuf {
        self.root.join("nodes").join(id.to_string())
    }
    pub fn node_config(&self, id: NodeId) -> PathBuf {
        self.node_dir(id).join("node.toml")
    }
    pub fn node_log(&self, id: NodeId) -> PathBuf {
        self.node_dir(id).join("node.log")
    }

    /// The desired state; a missing or unreadable file means up.
    pub fn desired(&self, id: NodeId) -> Desired {
        match std::fs::read_to_string(self.node_dir(id).join("desired")) {
            Ok(s) if s.trim() == "down" => Desired::Down,
            _ => Desired::Up,
        }
    }

    pub fn set_desired(&self, id: NodeId, d: Desired) -> anyhow::Result<()> {
        let value = match d {
            Desired::Up => "up\n",
            Desired::Down => "down\n",
        };
        write_atomic(&self.node_dir(id).join("desired"), value)
    }

    pub fn state(&self, id: NodeId) -> Option<NodeState> {
        let s = std::fs::read_to_string(self.node_dir(id).join("state")).ok()?;
        NodeState::parse(&s)
    }

    pub fn set_state(&self, id: NodeId, s: &NodeState) -> anyhow::Result<()> {
        write_atomic(&self.node_dir(id).join("state"), &format!("{s}\n"))
    }

    /// The supervisor pid recorded in the directory, if any.
    pub fn supervisor_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Reads the topology stored in the directory.
    pub fn load_topology(&self) -> anyhow::Result<Topology> {
        let path = self.topology_path();
        let src = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a `stratus dev` data dir?",
                path.display(),
                self.root.display()
            )
        })?;
        Topology::parse(&src).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Chooses the topology: `--topology FILE` if given (copied in), else the one
    /// from a previous run, else the embedded default. Validates it.
    pub fn prepare_topology(&self, flag: Option<&Path>) -> anyhow::Result<Topology> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let path = self.topology_path();
        let (src, origin) = match flag {
            Some(f) => (
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                f.to_path_buf(),
            ),
            None if path.exists() => (
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                path.clone(),
            ),
            None => (
                DEFAULT_TOPOLOGY.to_owned(),
                PathBuf::from("the embedded default topology"),
            ),
        };
        let topology = Topology::parse(&src).map_err(|e| anyhow!("{}: {e}", origin.display()))?;
        if origin != path {
            write_atomic(&path, &src)?;
        }
        Ok(topology)
    }

    /// Writes every node's directory and config, and the client profile.
    pub fn write_node_files(&self, topology: &Topology) -> anyhow::Result<()> {
        self.ensure_root_key()?;
        let operator = self.ensure_operator_secret()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = dev_runtime_workers(topology.nodes().len(), cores);
        for id in topology.nodes().keys() {
            let dir = self.node_dir(*id);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_atomic(&self.node_config(*id), &node_config(*id, workers))?;
        }
        let profile = Profile {
            token: Some(operator),
            ca_file: Some(self.tls_dir().join("ca.pem")),
            ..Profile::of_endpoints(topology.nodes().values().map(|n| n.addr.clone()).collect())
        };
        // The profile holds the operator secret: owner-only, like the secret file.
        write_private(&self.profile_path(), &profile.to_toml())
    }

    /// Fails unless `id` is a node of this directory's topology.
    pub fn check_node(&self, topology: &Topology, id: NodeId) -> anyhow::Result<()> {
        if topology.node(id).is_some() {
            return Ok(());
        }
        let ids: Vec<String> = topology.nodes().keys().map(u64::to_string).collect();
        bail!(
            "node {id} is not in the topology of {} (nodes: {})",
            self.root.display(),
            ids.join(", ")
        )
    }
}

/// Async worker threads per node when `nodes` nodes share `cores` cores: the
/// cores' share, at least 2 and at most the node's own default floor. Measured on
/// 2 cores with the 11-node default: 4 KiB puts at 3,150-3,440 ops/s with 1-2
/// workers per node against 2,780-2,850 with 6, which spend their time waking
/// each other.
pub fn dev_runtime_workers(nodes: usize, cores: usize) -> usize {
    cores
        .div_ceil(nodes.max(1))
        .clamp(2, DEV_RUNTIME_WORKERS_MAX)
}

/// The node's own default floor (`RUNTIME_WORKERS_MIN_DEFAULT` in `stratus-node`).
const DEV_RUNTIME_WORKERS_MAX: usize = 6;

/// The `node.toml` of node `id` (paths relative to the file's directory).
pub fn node_config(id: NodeId, runtime_workers: usize) -> String {
    format!(
        "# Written by `stratus dev`; paths are relative to this file's directory.\n\
         node_id = {id}\n\
         runtime_workers = {runtime_workers}\n\
         topology = \"../../topology.toml\"\n\
         data_dir = \"data\"\n\
         root_key_file = \"../../root.key\"\n\
         operator_secret_file = \"../../operator.secret\"\n\
         tls_ca_file = \"../../tls/ca.pem\"\n\
         tls_cert_file = \"../../tls/node-{id}.pem\"\n\
         tls_key_file = \"../../tls/node-{id}.key\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            NodeState::Running(42),
            NodeState::Stopped,
            NodeState::Exited("killed by SIGKILL".into()),
        ] {
            assert_eq!(NodeState::parse(&format!("{s}\n")), Some(s));
        }
        assert_eq!(NodeState::parse("garbage"), None);
    }

    #[test]
    fn dev_nodes_share_the_cores_with_two_to_six_workers_each() {
        assert_eq!(dev_runtime_workers(11, 2), 2);
        assert_eq!(dev_runtime_workers(11, 32), 3);
        assert_eq!(dev_runtime_workers(11, 128), 6);
        assert_eq!(dev_runtime_workers(0, 1), 2);
    }

    #[test]
    fn layout_files_are_written_and_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DevDir::new(&tmp.path().join("dev"));
        let topology = dir.prepare_topology(None).expect("default topology");
        dir.write_node_files(&topology).expect("node files");
        assert!(dir.topology_path().exists());
        let profile = Profile::load(&dir.profile_path()).expect("profile");
        assert_eq!(profile.endpoints.len(), topology.nodes().len());
        let cfg = std::fs::read_to_string(dir.node_config(3)).expect("node.toml");
        assert!(
            cfg.contains("node_id = 3") && cfg.contains("../../topology.toml"),
            "{cfg}"
        );
        assert!(cfg.contains("root_key_file = \"../../root.key\""), "{cfg}");
        assert!(cfg.contains("runtime_workers = "), "{cfg}");
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.root_key_path()).expect("root key");
            assert_eq!(meta.len(), 32);
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            // Written once: a second preparation keeps the key.
            let before = std::fs::read(dir.root_key_path()).expect("read");
            dir.write_node_files(&topology).expect("again");
            assert_eq!(std::fs::read(dir.root_key_path()).expect("read"), before);
        }
        assert_eq!(dir.desired(3), Desired::Up);
        dir.set_desired(3, Desired::Down).expect("desired");
        assert_eq!(dir.desired(3), Desired::Down);
        dir.set_state(3, &NodeState::Running(7)).expect("state");
        assert_eq!(dir.state(3), Some(NodeState::Running(7)));
        assert!(dir.check_node(&topology, 99).is_err());

        // A bad --topology is rejected with the file name and the rule.
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, "[[node]]\nid = 0\n").expect("write");
        let e = dir
            .prepare_topology(Some(&bad))
            .expect_err("invalid topology");
        assert!(e.to_string().contains("bad.toml"), "{e}");
        // The previous topology is kept and reused.
        assert_eq!(dir.prepare_topology(None).expect("reuse"), topology);
    }
}
