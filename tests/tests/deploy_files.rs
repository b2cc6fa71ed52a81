//! The files of `deploy/` match their generator (`stratus_tests::deploy`), and every
//! config shipped there loads with the node's own config loader.
//!
//! `STRATUS_BLESS=1` rewrites the generated files instead of comparing.

use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use stratus_core::topology::{Topology, DEFAULT_TOPOLOGY};
use stratus_node::config::NodeConfig;
use stratus_tests::deploy;

#[test]
fn generated_files_are_up_to_date() -> anyhow::Result<()> {
    let dir = deploy::deploy_dir();
    let bless = std::env::var("STRATUS_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (rel, content) in deploy::generated_files()? {
        let path = dir.join(&rel);
        if bless {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &content)
                .with_context(|| format!("cannot write {}", path.display()))?;
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(found) if found == content => {}
            _ => stale.push(rel.display().to_string()),
        }
    }
    anyhow::ensure!(
        stale.is_empty(),
        "deploy/ files differ from tests/src/deploy.rs: {}. Regenerate with \
         STRATUS_BLESS=1 cargo test -p stratus-tests --test deploy_files, and review the diff",
        stale.join(", ")
    );
    Ok(())
}

/// The deployment runs the default topology: the same regions, zones, facilities
/// and node ids, only the addresses differ.
#[test]
fn the_deployed_topology_is_the_default_one_at_service_names() -> anyhow::Result<()> {
    let dir = deploy::deploy_dir();
    let text = std::fs::read_to_string(dir.join("topology.toml"))?;
    let deployed = Topology::parse(&text).context("deploy/topology.toml")?;
    let default = Topology::parse(DEFAULT_TOPOLOGY)?;
    assert_eq!(deployed.regions(), default.regions());
    assert_eq!(deployed.facilities(), default.facilities());
    assert_eq!(deployed.nodes().len(), default.nodes().len());
    for (id, node) in deployed.nodes() {
        let expected = default.node(*id).context("node of the default topology")?;
        assert_eq!(node.addr, deploy::advertised_addr(*id));
        assert_eq!(
            (&node.region, &node.zone, &node.facility),
            (&expected.region, &expected.zone, &expected.facility)
        );
    }
    Ok(())
}

/// STYLE: a test loads every config file shipped in `deploy/`. This reaches into
/// `stratus_node::config` (pure file parsing), so the files are checked by the
/// very code the containers run.
#[test]
fn every_node_config_loads() -> anyhow::Result<()> {
    let dir = deploy::deploy_dir().join("nodes");
    let topology = Topology::parse(&std::fs::read_to_string(
        deploy::deploy_dir().join("topology.toml"),
    )?)?;
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let config = NodeConfig::load(&path).with_context(|| format!("{}", path.display()))?;
        config
            .load_topology()
            .with_context(|| format!("topology of {}", path.display()))?;
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(deploy::service(config.node_id).as_str()),
            "{} names another node",
            path.display()
        );
        assert_eq!(config.listen.as_deref(), Some("0.0.0.0:7100"));
        assert_eq!(config.data_dir, std::path::Path::new("/data"));
        seen.push(config.node_id);
    }
    seen.sort_unstable();
    let all: Vec<u64> = topology.nodes().keys().copied().collect();
    assert_eq!(seen, all, "one config per node of the topology");
    Ok(())
}

#[test]
fn scripts_are_executable_and_the_project_name_is_set() -> anyhow::Result<()> {
    let dir = deploy::deploy_dir();
    for script in ["build-image.sh", "up.sh"] {
        let mode = std::fs::metadata(dir.join(script))
            .with_context(|| format!("deploy/{script}"))?
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "deploy/{script} is not executable");
    }
    let env = std::fs::read_to_string(dir.join(".env")).context("deploy/.env")?;
    assert!(env.contains("COMPOSE_PROJECT_NAME=stratus"), "{env}");
    Ok(())
}
