//! The member side of the chunk data path: store, sync, drop and serve chunks of a
//! group's versions for the other members (see [`crate::dataplane`]).
//!
//! Every request names its group and sender; both are checked against the plan, so
//! a node only ever stores or serves chunks of groups it belongs to, for members.

use crate::dataplane::version_from_wire;
use crate::error::{NodeError, NodeResult};
use crate::node::StratusNode;
use crate::objects::chunks::{ChunkRead, CHUNK_DATA_MAX};
use crate::objects::reader::ObjectReader;
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use stratus_proto::v1 as pb;

/// Checks that this node is a member of `group`, that `from` is a node of the
/// cluster (a member of the group, or a geo shipper in another region writing to
/// it), and parses the version.
fn admit_from_cluster(
    node: &StratusNode,
    group: u64,
    from: u64,
    version: &[u8],
) -> NodeResult<(ObjectReader, u128)> {
    if node.topology.node(from).is_none() {
        return Err(NodeError::InvalidArgument(format!(
            "node {from} is not in this cluster's topology"
        )));
    }
    if !node.groups.contains_key(&group) {
        return Err(NodeError::InvalidArgument(format!(
            "node {} holds no replica of group {group}",
            node.id
        )));
    }
    let version = version_from_wire(version)
        .ok_or_else(|| NodeError::InvalidArgument("a version id is 16 bytes".into()))?;
    Ok((node.objects(group), version))
}

/// Checks that this node and `from` are members of `group` and parses the version.
fn admit(
    node: &StratusNode,
    group: u64,
    from: u64,
    version: &[u8],
) -> NodeResult<(ObjectReader, u128)> {
    let Some(handle) = node.groups.get(&group) else {
        return Err(NodeError::InvalidArgument(format!(
            "node {} holds no replica of group {group}",
            node.id
        )));
    };
    if !handle.spec.has_member(from) {
        return Err(NodeError::InvalidArgument(format!(
            "node {from} is not a member of group {group}"
        )));
    }
    let version = version_from_wire(version)
        .ok_or_else(|| NodeError::InvalidArgument("a version id is 16 bytes".into()))?;
    Ok((node.objects(group), version))
}

pub fn write_chunk(
    node: &StratusNode,
    r: pb::WriteChunkRequest,
) -> NodeResult<pb::WriteChunkReply> {
    let (reader, version) = admit_from_cluster(node, r.group_id, r.from, &r.version)?;
    if r.data.len() > CHUNK_DATA_MAX {
        return Err(NodeError::InvalidArgument(format!(
            "a stored chunk holds at most {CHUNK_DATA_MAX} bytes, got {}",
            r.data.len()
        )));
    }
    let chunks_max = node
        .settings
        .object_bytes_max
        .div_ceil(STORAGE_CHUNK_BYTES as u64);
    if u64::from(r.index) >= chunks_max {
        return Err(NodeError::InvalidArgument(format!(
            "chunk index {} is beyond the largest object this node accepts",
            r.index
        )));
    }
    let actual = crc32fast::hash(&r.data);
    if actual != r.crc32 {
        return Err(NodeError::CrcMismatch(format!(
            "chunk {} arrived with CRC-32 {actual:08x}, sent as {:08x}",
            r.index, r.crc32
        )));
    }
    reader.chunks().write(version, r.index, &r.data)?;
    Ok(pb::WriteChunkReply {})
}

pub async fn sync_chunks(
    node: &StratusNode,
    r: pb::SyncChunksRequest,
) -> NodeResult<pb::SyncChunksReply> {
    let (reader, version) = admit_from_cluster(node, r.group_id, r.from, &r.version)?;
    node.blobs.sync().await?;
    // Each chunk's data was CRC-checked when written; after the sync a frame header
    // that is present and well formed means the chunk is durable.
    let missing = reader.chunks().damaged_frames(version, r.count, None)?;
    Ok(pb::SyncChunksReply { missing })
}

pub fn drop_chunks(
    node: &StratusNode,
    r: pb::DropChunksRequest,
) -> NodeResult<pb::DropChunksReply> {
    let (reader, version) = admit(node, r.group_id, r.from, &r.version)?;
    // Never drop a committed version, whatever a (confused) leader asks.
    if reader.chunk_list(version)?.is_none() {
        reader.chunks().remove(version)?;
    }
    Ok(pb::DropChunksReply {})
}

pub fn fetch_chunk(
    node: &StratusNode,
    r: pb::FetchChunkRequest,
) -> NodeResult<pb::FetchChunkReply> {
    // Members repair from each other; a reprotect reads a former primary's copy.
    let (reader, version) = admit_from_cluster(node, r.group_id, r.from, &r.version)?;
    let expected = reader
        .chunk_list(version)?
        .and_then(|crcs| crcs.get(r.index as usize).copied());
    match reader.chunks().read(version, r.index, expected)? {
        ChunkRead::Intact(data) => Ok(pb::FetchChunkReply {
            crc32: crc32fast::hash(&data),
            data: data.into(),
        }),
        ChunkRead::Missing => Err(NodeError::DataLoss(format!(
            "node {} does not hold chunk {} of version {version:032x}",
            node.id, r.index
        ))),
        ChunkRead::Corrupt(why) => Err(NodeError::DataLoss(format!(
            "node {}'s copy of chunk {} of version {version:032x} is damaged: {why}",
            node.id, r.index
        ))),
    }
}
