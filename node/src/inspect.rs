//! Read-only views of a node's stores, for tools that check replicas against each
//! other (the simulation's convergence and placement checkers). Works on the stores
//! directly, so it needs no running node.

use crate::objects::chunks::{ChunkRead, ChunkStore};
use crate::objects::inline_store::{self, InlineRecord};
use crate::objects::reader::ObjectReader;
use crate::raft::{decode, keys, LogId};
use crate::storage::{frame, BlobRef, EngineRef, StorageError};
use openraft::{BasicNode, StoredMembership};
use serde::Deserialize;
use std::ops::Bound;

#[derive(Deserialize, Default)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, BasicNode>,
}

fn sm_meta(engine: &EngineRef, group: u64) -> Result<SmMeta, StorageError> {
    let key = keys::sm_meta(group);
    match engine.get(&key)? {
        Some(record) => decode(frame::decode(&key, &record)?).map_err(|e| StorageError::Corrupt {
            key: format!("sm meta of group {group}"),
            why: e.to_string(),
        }),
        None => Ok(SmMeta::default()),
    }
}

/// The index of the last entry this replica applied to `group`'s state.
pub fn applied_index(engine: &EngineRef, group: u64) -> Result<u64, StorageError> {
    Ok(sm_meta(engine, group)?
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0))
}

/// The voters of `group` as this replica last applied them.
pub fn voters(engine: &EngineRef, group: u64) -> Result<Vec<u64>, StorageError> {
    Ok(sm_meta(engine, group)?
        .membership
        .membership()
        .voter_ids()
        .collect())
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// A digest of `group`'s replicated state on this replica: every application row
/// (metadata, inline lengths and CRCs, containers, chunk CRC lists), the bytes of every
/// inline object, and the bytes of every chunk of every committed version. Two replicas that applied the same entries and
/// hold intact chunks have the same digest; replica-local bookkeeping is excluded.
pub fn group_digest(engine: &EngineRef, blobs: &BlobRef, group: u64) -> Result<u64, StorageError> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let (start, end) = (keys::app(group), keys::app_end(group));
    let inline_prefix = crate::objects::layout::inline_prefix(group);
    for (k, v) in engine.scan(Bound::Included(&start), Bound::Excluded(&end), usize::MAX)? {
        fnv(&mut h, &k);
        let Some(version) = k
            .strip_prefix(inline_prefix.as_slice())
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
        else {
            fnv(&mut h, &v);
            continue;
        };
        // An inline record: its length and CRC (the location is this replica's
        // own), then the bytes it names.
        let Ok(record) = ObjectReader::decode_record::<InlineRecord>(&k, &v) else {
            fnv(&mut h, b"corrupt");
            continue;
        };
        let r = record.reference();
        fnv(&mut h, &r.len.to_le_bytes());
        fnv(&mut h, &r.crc32.to_le_bytes());
        let version = u128::from_be_bytes(version);
        match inline_store::read(blobs, group, version, r, record.loc) {
            Ok(Some(data)) => fnv(&mut h, &data),
            Ok(None) => fnv(&mut h, b"missing"),
            Err(_) => fnv(&mut h, b"corrupt"),
        }
    }
    let reader = ObjectReader::new(engine.clone(), blobs.clone(), group);
    let chunks = ChunkStore::new(blobs.clone(), group);
    for (version, crcs) in reader.chunk_lists()? {
        for (index, crc) in (0u32..).zip(&crcs) {
            match chunks.read(version, index, Some(*crc))? {
                ChunkRead::Intact(data) => fnv(&mut h, &data),
                ChunkRead::Missing => fnv(&mut h, b"missing"),
                ChunkRead::Corrupt(_) => fnv(&mut h, b"corrupt"),
            }
        }
    }
    Ok(h)
}
