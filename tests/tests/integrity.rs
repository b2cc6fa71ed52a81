//! Tampering with stored data on real node processes: a flipped byte in one
//! replica's stored chunk is never served; the read repairs it from a healthy
//! replica, and the damage shows in the node's log and metrics. With every copy
//! damaged, the read fails with DataLoss naming the object.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stratus_client::{Client, Error, GetOptions, PutOptions, Redundancy};
use stratus_node::objects::chunks::{CHUNK_HEADER_BYTES, CHUNK_STRIDE};
use stratus_tests::poll::poll;
use stratus_tests::{bins, Cluster, ClusterOptions};

const TENANT: &str = "tamper";
const CONTAINER: &str = "evidence";

/// Every regular file under `dir`.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The one version blob of `group` on a node (the test stores one chunked object).
fn version_blob(cluster: &Cluster, node: u64, group: u64) -> Result<PathBuf> {
    let dir = cluster
        .data_dir(node)
        .join("blobs")
        .join(format!("g{group:016x}"))
        .join("v");
    let mut files = Vec::new();
    files_under(&dir, &mut files)?;
    match files.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!(
            "node {node}: expected one version blob in {}, found {other:?}",
            dir.display()
        ),
    }
}

/// Offset of a byte inside the data of chunk `index`.
fn data_offset(index: u64) -> u64 {
    index * CHUNK_STRIDE + CHUNK_HEADER_BYTES as u64 + 1000
}

fn flip_byte(path: &Path, offset: u64) -> Result<u8> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&[b[0] ^ 0x5a])?;
    f.sync_all()?;
    Ok(b[0])
}

fn byte_at(path: &Path, offset: u64) -> Result<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut b)?;
    Ok(b[0])
}

async fn get_all(client: &Client, key: &str) -> Result<Bytes, Error> {
    client
        .get_bytes(TENANT, CONTAINER, key, GetOptions::default())
        .await
        .map(|(_, b)| b)
}

/// The value of one metric series of node `addr` (summed over its labels).
async fn metric(client: &Client, addr: &str, name: &str) -> Result<f64> {
    let (_, text) = client.node_metrics(addr).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_chunk_is_repaired_or_reported_never_served() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    cluster
        .create_tenant(&client, TENANT, Redundancy::Lrs, CONTAINER)
        .await?;
    let data: Bytes = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    client
        .put_bytes(
            TENANT,
            CONTAINER,
            "obj",
            data.clone(),
            PutOptions::default(),
        )
        .await?;
    let (group, members) = cluster.tenant_group(TENANT).await?;
    let leader = cluster
        .group_leader(group, None, Duration::from_secs(10))
        .await?;
    // Every member holds all four chunks before anything is damaged.
    let blob_len = 3 * CHUNK_STRIDE + CHUNK_HEADER_BYTES as u64;
    for &m in &members {
        poll(
            &format!("node {m} holds the chunks"),
            Duration::from_secs(10),
            || async {
                let path = version_blob(&cluster, m, group)?;
                let len = std::fs::metadata(&path)?.len();
                ensure!(len > blob_len, "{} is {len} bytes", path.display());
                Ok(())
            },
        )
        .await?;
    }
    let leader_addr = cluster.addr(leader)?;

    // One damaged copy, on the leader that serves strong reads.
    let blob = version_blob(&cluster, leader, group)?;
    let original = flip_byte(&blob, data_offset(1))?;
    let back = get_all(&client, "obj").await?;
    ensure!(
        back == data,
        "a read with one damaged copy returned other bytes"
    );
    ensure!(
        byte_at(&blob, data_offset(1))? == original,
        "the damaged copy was not repaired in place"
    );
    let corrupt = metric(&client, &leader_addr, "stratus_chunks_corrupt_total").await?;
    let repaired = metric(&client, &leader_addr, "stratus_chunks_repaired_total").await?;
    ensure!(
        corrupt >= 1.0 && repaired >= 1.0,
        "corrupt {corrupt}, repaired {repaired}"
    );
    let log = cluster.log(leader)?;
    ensure!(
        log.contains("damaged chunk on this replica"),
        "the leader's log does not report the damage"
    );

    // Every copy damaged: DataLoss naming the object, never the damaged bytes.
    for &m in &members {
        flip_byte(&version_blob(&cluster, m, group)?, data_offset(2))?;
    }
    match get_all(&client, "obj").await {
        Err(Error::DataLoss { message, .. }) => ensure!(
            message.contains(&format!("{TENANT}/{CONTAINER}/obj")) && message.contains("chunk 2"),
            "{message}"
        ),
        Err(other) => bail!("expected DataLoss, got {other}"),
        Ok(b) => bail!("a read with every copy damaged returned {} bytes", b.len()),
    }
    let leader_now = cluster
        .group_leader(group, None, Duration::from_secs(10))
        .await?;
    let lost = metric(
        &client,
        &cluster.addr(leader_now)?,
        "stratus_chunks_unrecoverable_total",
    )
    .await
    .context("metrics")?;
    ensure!(lost >= 1.0, "unrecoverable chunks counted: {lost}");
    Ok(())
}
