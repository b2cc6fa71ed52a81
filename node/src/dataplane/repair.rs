//! Repairing chunks this replica lacks or holds damaged, from the other members.
//!
//! Used on the read path (a get meets a bad chunk: it is fetched, checked against
//! the committed CRC, stored and served; a damaged copy is never served) and by the
//! repair task, which works through the versions marked at commit or snapshot
//! install time. A fetched chunk is accepted only if its CRC-32 matches the one the
//! group committed.

use super::{version_to_wire, CHUNK_RPC_TIMEOUT};
use crate::error::{NodeError, NodeResult};
use crate::metrics;
use crate::node::StratusNode;
use crate::objects::chunks::ChunkRead;
use crate::objects::layout;
use crate::objects::reader::ObjectReader;
use crate::storage::WriteBatch;
use stratus_proto::v1 as pb;

/// Versions the repair task handles per group per round.
const REPAIRS_PER_ROUND: usize = 16;

/// Fetches chunk `index` of `version` from another voter of `group`, checks it
/// against `expected_crc`, stores it here and returns it.
pub async fn fetch_chunk(
    node: &StratusNode,
    group: u64,
    version: u128,
    index: u32,
    expected_crc: u32,
) -> NodeResult<Vec<u8>> {
    let voters = node
        .spec(group)
        .map(|s| s.voters.clone())
        .unwrap_or_default();
    let mut tried = Vec::new();
    for id in voters.into_iter().filter(|id| *id != node.id) {
        let Some(mut client) = node.peers.client(id) else {
            continue;
        };
        let request = pb::FetchChunkRequest {
            group_id: group,
            from: node.id,
            version: version_to_wire(version),
            index,
        };
        let reply = match tokio::time::timeout(CHUNK_RPC_TIMEOUT, client.fetch_chunk(request)).await
        {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                tried.push(format!("node {id}: {}", status.message()));
                continue;
            }
            Err(_) => {
                tried.push(format!("node {id}: timed out"));
                continue;
            }
        };
        let actual = crc32fast::hash(&reply.data);
        if actual != expected_crc || reply.crc32 != expected_crc {
            tried.push(format!(
                "node {id}: its copy has CRC-32 {actual:08x}, not the committed {expected_crc:08x}"
            ));
            continue;
        }
        node.objects(group)
            .chunks()
            .write(version, index, &reply.data)?;
        node.metrics
            .inc(metrics::CHUNKS_REPAIRED, &[("group", &group.to_string())]);
        tracing::debug!(group, version = %format!("{version:032x}"), chunk = index, from = id, "repaired chunk from a peer");
        return Ok(reply.data.to_vec());
    }
    node.metrics.inc(
        metrics::CHUNKS_UNRECOVERABLE,
        &[("group", &group.to_string())],
    );
    Err(NodeError::DataLoss(format!(
        "no member of group {group} holds an intact copy of chunk {index} of version {version:032x} ({})",
        if tried.is_empty() { "no other member reachable".to_string() } else { tried.join("; ") }
    )))
}

/// Reads chunk `index` of a version a reader started streaming, repairing it from
/// a peer if the local copy is missing or damaged. A version that died meanwhile
/// and whose chunks are already gone is reported as changed, never as data loss.
pub async fn read_chunk(
    node: &StratusNode,
    reader: &ObjectReader,
    version: u128,
    index: u32,
    expected_crc: u32,
) -> NodeResult<Vec<u8>> {
    let why = match reader.chunks().read(version, index, Some(expected_crc))? {
        ChunkRead::Intact(data) => return Ok(data),
        ChunkRead::Missing => None,
        ChunkRead::Corrupt(why) => Some(why),
    };
    if reader.chunk_list(version)?.is_none() {
        return Err(NodeError::Aborted(format!(
            "version {version:032x} was replaced or deleted while it was being read; retry"
        )));
    }
    if let Some(why) = why {
        node.metrics.inc(
            metrics::CHUNKS_CORRUPT,
            &[("group", &reader.group().to_string())],
        );
        tracing::error!(group = reader.group(), version = %format!("{version:032x}"), chunk = index, why, "damaged chunk on this replica; repairing from a peer");
    }
    fetch_chunk(node, reader.group(), version, index, expected_crc).await
}

/// One round of the repair task for `group`: every marked version is checked chunk
/// by chunk, repaired, synced and unmarked. Returns how many versions were fixed.
pub async fn repair_round(node: &StratusNode, group: u64) -> NodeResult<usize> {
    let reader = node.objects(group);
    let mut fixed = 0;
    for version in reader.repairs(REPAIRS_PER_ROUND)? {
        let key = layout::repair(group, version);
        let Some(crcs) = reader.chunk_list(version)? else {
            // The version died since it was marked.
            let mut batch = WriteBatch::new();
            batch.remove(key);
            node.engine.apply(batch)?;
            continue;
        };
        for (index, crc) in (0u32..).zip(&crcs) {
            match reader.chunks().read(version, index, Some(*crc))? {
                ChunkRead::Intact(_) => continue,
                ChunkRead::Missing => {}
                ChunkRead::Corrupt(why) => {
                    node.metrics
                        .inc(metrics::CHUNKS_CORRUPT, &[("group", &group.to_string())]);
                    tracing::error!(group, version = %format!("{version:032x}"), chunk = index, why, "damaged chunk on this replica; repairing from a peer");
                }
            }
            fetch_chunk(node, group, version, index, *crc).await?;
        }
        node.blobs.sync().await?;
        let mut batch = WriteBatch::new();
        batch.remove(key);
        node.engine.apply(batch)?;
        tracing::info!(group, version = %format!("{version:032x}"), chunks = crcs.len(), "version repaired from peers");
        fixed += 1;
    }
    Ok(fixed)
}
