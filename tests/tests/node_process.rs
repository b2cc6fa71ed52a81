//! `it-stratus-node` refusing to start: each case exits non-zero, quickly, with
//! a message that names what is wrong and where, and touches nothing.

use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::time::Duration;
use stratus_tests::cli::{Output, Program};
use stratus_tests::layout::NodeConfig;
use stratus_tests::ports::free_ports;
use stratus_tests::{bins, Layout};

/// A node that refuses to start must say so well within this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes a one-region topology on free ports and node 1's config into `dir`;
/// returns the topology text.
fn write_files(dir: &Path) -> Result<String> {
    let ports = free_ports(Layout::OneRegion.node_count()?)?;
    let (text, _) = Layout::OneRegion.render(&ports)?;
    std::fs::write(dir.join("topology.toml"), &text)?;
    stratus_tests::cluster::write_root_key(&dir.join("root.key"))?;
    write_config(dir, &node_config(dir).to_toml()?)?;
    Ok(text)
}

fn node_config(dir: &Path) -> NodeConfig {
    NodeConfig {
        node_id: 1,
        topology: dir.join("topology.toml"),
        data_dir: dir.join("data"),
        root_key_file: dir.join("root.key"),
        operator_secret_file: None,
        object_bytes_max: None,
        key_retention_min_s: None,
        key_retire_grace_s: None,
        tls: None,
        extra: Vec::new(),
    }
}

fn write_config(dir: &Path, text: &str) -> Result<()> {
    Ok(std::fs::write(dir.join("node.toml"), text)?)
}

/// Runs node 1 with `dir/node.toml`; it must exit non-zero.
async fn run_refused(dir: &Path) -> Result<Output> {
    let node = Program::new(&bins!().node, dir).timeout(REFUSAL_TIMEOUT);
    let config = dir.join("node.toml");
    let out = node
        .run(&[
            std::ffi::OsStr::new("--config"),
            config.as_os_str(),
            "run".as_ref(),
        ])
        .await
        .context("the node should refuse to start, not run")?;
    ensure!(
        out.code.is_some_and(|c| c != 0),
        "exit code {:?}; stderr:\n{}",
        out.code,
        out.stderr
    );
    Ok(out)
}

#[tokio::test]
async fn a_malformed_topology_is_refused_naming_the_entry_and_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = write_files(dir.path())?;

    // A rule broken by one entry: node 4 names a facility that does not exist.
    let bad = text.replacen(
        "facility = \"loc-2a\"\naddr",
        "facility = \"loc-9z\"\naddr",
        1,
    );
    ensure!(bad != text, "the template changed: cannot plant the error");
    let line = bad
        .lines()
        .position(|l| l == "id = 4")
        .context("node 4 in the topology")?
        + 1;
    std::fs::write(dir.path().join("topology.toml"), &bad)?;
    let out = run_refused(dir.path()).await?;
    for needle in ["node 4", &format!("line {line}"), "loc-9z"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }

    // A field the format does not have.
    let bad = text.replacen("zone = \"3\"", "zone = \"3\"\nrack = \"r1\"", 1);
    let line = bad
        .lines()
        .position(|l| l == "rack = \"r1\"")
        .context("planted field")?
        + 1;
    std::fs::write(dir.path().join("topology.toml"), &bad)?;
    let out = run_refused(dir.path()).await?;
    for needle in ["rack", &format!("line {line}")] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    ensure!(
        !dir.path().join("data").exists(),
        "a refused node created its data dir"
    );
    Ok(())
}

#[tokio::test]
async fn a_config_with_an_unknown_field_is_refused_naming_the_field_and_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_files(dir.path())?;
    let mut text = node_config(dir.path()).to_toml()?;
    text.push_str("listen_port = 7000\n");
    let line = text.lines().count();
    write_config(dir.path(), &text)?;
    let out = run_refused(dir.path()).await?;
    for needle in ["listen_port", &format!("line {line}"), "node.toml"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    ensure!(
        !dir.path().join("data").exists(),
        "a refused node created its data dir"
    );
    Ok(())
}

#[tokio::test]
async fn a_port_in_use_is_refused_naming_the_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_files(dir.path())?;
    let topology = stratus_core::topology::Topology::parse(&std::fs::read_to_string(
        dir.path().join("topology.toml"),
    )?)?;
    let addr = topology.node(1).context("node 1")?.addr.clone();
    let _holder = std::net::TcpListener::bind(&addr).with_context(|| format!("bind {addr}"))?;
    let out = run_refused(dir.path()).await?;
    let port = addr.rsplit_once(':').context("host:port")?.1;
    for needle in [port, "already in use"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_data_dir_of_another_format_version_is_refused_and_left_unchanged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_files(dir.path())?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)?;
    let marker = "stratus-data-format 99\nnode 1\ntopology 0123456789abcdef\n";
    std::fs::write(data.join("FORMAT"), marker)?;
    let out = run_refused(dir.path()).await?;
    for needle in ["format 99", "untouched"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    ensure!(
        std::fs::read_to_string(data.join("FORMAT"))? == marker,
        "FORMAT was changed"
    );
    let entries: Vec<_> = std::fs::read_dir(&data)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    ensure!(entries == ["FORMAT"], "the data dir now holds {entries:?}");
    Ok(())
}

#[tokio::test]
async fn a_data_dir_of_another_node_is_refused_and_left_unchanged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = write_files(dir.path())?;
    let fingerprint = stratus_core::topology::Topology::parse(&text)?.fingerprint();
    let data = dir.path().join("data");
    std::fs::create_dir(&data)?;
    let marker = format!(
        "stratus-data-format {}\nnode 2\ntopology {fingerprint:016x}\n",
        stratus_node::datadir::FORMAT_VERSION
    );
    std::fs::write(data.join("FORMAT"), &marker)?;
    let out = run_refused(dir.path()).await?;
    for needle in ["node 2", "node 1", "untouched"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    ensure!(
        std::fs::read_to_string(data.join("FORMAT"))? == marker,
        "FORMAT was changed"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_short_or_open_root_key_is_refused_naming_the_file_and_fix() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    write_files(dir.path())?;
    let key = dir.path().join("root.key");
    let path = key.display().to_string();

    std::fs::remove_file(&key)?;
    let out = run_refused(dir.path()).await?;
    for needle in [path.as_str(), "does not exist", "chmod 600"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }

    std::fs::write(&key, [1u8; 16])?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let out = run_refused(dir.path()).await?;
    for needle in [path.as_str(), "holds 16 bytes", "exactly 32"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }

    std::fs::write(&key, [1u8; 32])?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let out = run_refused(dir.path()).await?;
    for needle in [path.as_str(), "0640", "chmod 600"] {
        ensure!(
            out.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            out.stderr
        );
    }
    ensure!(
        !dir.path().join("data").exists(),
        "a refused node created its data dir"
    );
    Ok(())
}
