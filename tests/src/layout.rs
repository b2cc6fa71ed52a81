//! Topology and node-config files for test clusters.
//!
//! The layouts are the topologies the project ships, with every node moved to a
//! free loopback port: [`Layout::OneRegion`] is `core/topologies/one-region.toml`
//! (5 nodes, 3 zones: group 1 is LRS on nodes 1-3, group 2 is ZRS on nodes 1, 4, 5,
//! the directory votes on 1, 4, 5), [`Layout::TwoRegions`] is `dev.toml` (two
//! paired regions of 5 nodes each plus a one-node witness region).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use stratus_core::topology::{NodeId, Topology, DEFAULT_TOPOLOGY, ONE_REGION_TOPOLOGY};

/// A cluster shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `one-region.toml`: region `local`, 5 nodes in 3 zones.
    OneRegion,
    /// `dev.toml`: regions `eu-west` and `eu-north` (5 nodes each) and a witness.
    TwoRegions,
}

/// The storage region of [`Layout::OneRegion`].
pub const ONE_REGION: &str = "local";

impl Layout {
    fn template(self) -> &'static str {
        match self {
            Layout::OneRegion => ONE_REGION_TOPOLOGY,
            Layout::TwoRegions => DEFAULT_TOPOLOGY,
        }
    }

    /// Nodes in this layout.
    pub fn node_count(self) -> anyhow::Result<usize> {
        Ok(Topology::parse(self.template())?.nodes().len())
    }

    /// The topology file text with node `i` (in id order) on `127.0.0.1:ports[i]`,
    /// and its parsed form.
    pub fn render(self, ports: &[u16]) -> anyhow::Result<(String, Topology)> {
        let template = Topology::parse(self.template()).context("shipped topology")?;
        if template.nodes().len() != ports.len() {
            bail!(
                "{self:?} has {} nodes but {} ports were given",
                template.nodes().len(),
                ports.len()
            );
        }
        let mut text = self.template().to_owned();
        for (node, port) in template.nodes().values().zip(ports) {
            let old = format!("addr = \"{}\"", node.addr);
            if text.matches(&old).count() != 1 {
                bail!("{self:?}: `{old}` does not appear exactly once in the template");
            }
            text = text.replace(&old, &format!("addr = \"127.0.0.1:{port}\""));
        }
        let topology = Topology::parse(&text).context("rendered topology")?;
        Ok((text, topology))
    }
}

/// One node's config file (`stratus-node --config FILE`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub topology: PathBuf,
    pub data_dir: PathBuf,
    /// The cluster's root key file.
    pub root_key_file: PathBuf,
    /// The cluster's bootstrap operator secret file.
    pub operator_secret_file: Option<PathBuf>,
    /// The node's largest accepted object; the node's default when `None`.
    pub object_bytes_max: Option<u64>,
    /// Shortest key-delete retention, seconds; the node's default when `None`.
    pub key_retention_min_s: Option<u64>,
    /// Wait before a superseded KEK version may be retired, seconds.
    pub key_retire_grace_s: Option<u64>,
    /// The node's TLS files; `None` runs it with `insecure_plaintext = true`.
    pub tls: Option<stratus_node::tls::TlsFiles>,
    /// More `key = value` lines, as they are.
    pub extra: Vec<String>,
}

/// A TOML basic string holding `path`.
fn toml_path(path: &Path) -> anyhow::Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl NodeConfig {
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut text = format!(
            "# Written by the stratus integration tests.\nnode_id = {}\ntopology = {}\ndata_dir = {}\nroot_key_file = {}\n",
            self.node_id,
            toml_path(&self.topology)?,
            toml_path(&self.data_dir)?,
            toml_path(&self.root_key_file)?
        );
        if let Some(p) = &self.operator_secret_file {
            text.push_str(&format!("operator_secret_file = {}\n", toml_path(p)?));
        }
        if let Some(max) = self.object_bytes_max {
            text.push_str(&format!("object_bytes_max = {max}\n"));
        }
        if let Some(s) = self.key_retention_min_s {
            text.push_str(&format!("key_retention_min_s = {s}\n"));
        }
        if let Some(s) = self.key_retire_grace_s {
            text.push_str(&format!("key_retire_grace_s = {s}\n"));
        }
        match &self.tls {
            Some(f) => text.push_str(&format!(
                "tls_ca_file = {}\ntls_cert_file = {}\ntls_key_file = {}\n",
                toml_path(&f.ca)?,
                toml_path(&f.cert)?,
                toml_path(&f.key)?
            )),
            None => text.push_str("insecure_plaintext = true\n"),
        }
        for line in &self.extra {
            text.push_str(line);
            text.push('\n');
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_render_on_the_given_ports() -> anyhow::Result<()> {
        for layout in [Layout::OneRegion, Layout::TwoRegions] {
            let n = layout.node_count()?;
            let ports: Vec<u16> = (0..n as u16).map(|i| 21_000 + i).collect();
            let (text, topology) = layout.render(&ports)?;
            let addrs: Vec<&str> = topology.nodes().values().map(|n| n.addr.as_str()).collect();
            let expected: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            assert_eq!(addrs, expected);
            assert!(!text.contains(":7101") && !text.contains(":7201"));
            assert!(layout.render(&ports[1..]).is_err());
        }
        Ok(())
    }

    #[test]
    fn node_config_names_every_field() -> anyhow::Result<()> {
        let c = NodeConfig {
            node_id: 4,
            topology: "/t/topology.toml".into(),
            data_dir: "/t/nodes/4/data".into(),
            root_key_file: "/t/root.key".into(),
            operator_secret_file: Some("/t/operator.secret".into()),
            object_bytes_max: Some(1024),
            key_retention_min_s: None,
            key_retire_grace_s: None,
            tls: None,
            extra: Vec::new(),
        };
        assert_eq!(
            c.to_toml()?,
            "# Written by the stratus integration tests.\nnode_id = 4\ntopology = \"/t/topology.toml\"\ndata_dir = \"/t/nodes/4/data\"\nroot_key_file = \"/t/root.key\"\noperator_secret_file = \"/t/operator.secret\"\nobject_bytes_max = 1024\ninsecure_plaintext = true\n"
        );
        Ok(())
    }
}
