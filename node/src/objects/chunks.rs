//! Stored chunks of chunked object versions, in the blob store.
//!
//! Each version whose object is larger than `INLINE_BYTES_MAX` owns one blob,
//! `g{group}/v/{xx}/{version}`, in which chunk `i` sits at `i * CHUNK_STRIDE`:
//! a 16-byte header (`SCK1`, index, length, CRC-32 of the data) then the data. The
//! frames are self-describing, so a replica can tell a missing, torn or flipped chunk
//! from a good one without any metadata, and repair it from another member.
//!
//! Must not: decide what a version means (that is the object store) or talk to peers.

use crate::storage::{BlobRef, StorageError};
use stratus_core::limits::STORAGE_CHUNK_BYTES;

const MAGIC: &[u8; 4] = b"SCK1";
/// Bytes of the frame header in front of every stored chunk.
pub const CHUNK_HEADER_BYTES: usize = 16;
/// Room after the data for per-chunk overhead added later (an authentication tag).
pub const CHUNK_SLACK_BYTES: usize = 64;
/// Largest data part of one stored chunk.
pub const CHUNK_DATA_MAX: usize = STORAGE_CHUNK_BYTES + CHUNK_SLACK_BYTES;
/// Distance between the starts of two consecutive chunks in a version's blob.
pub const CHUNK_STRIDE: u64 = (CHUNK_HEADER_BYTES + CHUNK_DATA_MAX) as u64;

/// The state of one stored chunk on this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRead {
    /// The chunk's data, with its CRC checked.
    Intact(Vec<u8>),
    /// Not stored here (never written, or a hole).
    Missing,
    /// Present but damaged; the reason says how.
    Corrupt(String),
}

/// The chunks of one replica group on this node.
#[derive(Clone)]
pub struct ChunkStore {
    blobs: BlobRef,
    group: u64,
}

/// Prefix of every version blob of `group`.
pub fn group_prefix(group: u64) -> String {
    format!("g{group:016x}/v/")
}

/// The blob holding `version`'s chunks.
pub fn blob_name(group: u64, version: u128) -> String {
    format!(
        "{}{:02x}/{version:032x}",
        group_prefix(group),
        (version >> 120) as u8
    )
}

/// The version a blob name holds, if it is a version blob.
pub fn version_of(name: &str) -> Option<u128> {
    let hex = name.rsplit('/').next()?;
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

impl ChunkStore {
    pub fn new(blobs: BlobRef, group: u64) -> Self {
        Self { blobs, group }
    }

    pub fn group(&self) -> u64 {
        self.group
    }

    pub fn blobs(&self) -> &BlobRef {
        &self.blobs
    }

    /// Stores chunk `index` of `version` (not durable until the blob store syncs).
    pub fn write(&self, version: u128, index: u32, data: &[u8]) -> Result<(), StorageError> {
        if data.len() > CHUNK_DATA_MAX {
            return Err(StorageError::Io(format!(
                "chunk {index} of version {version:032x} holds {} bytes, over the {CHUNK_DATA_MAX}-byte frame",
                data.len()
            )));
        }
        let mut frame = Vec::with_capacity(CHUNK_HEADER_BYTES + data.len());
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&index.to_le_bytes());
        frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        frame.extend_from_slice(data);
        let name = blob_name(self.group, version);
        self.blobs
            .write_at(&name, u64::from(index) * CHUNK_STRIDE, &frame)
    }

    /// Reads chunk `index` of `version`; `expected_crc`, when known, must match too.
    pub fn read(
        &self,
        version: u128,
        index: u32,
        expected_crc: Option<u32>,
    ) -> Result<ChunkRead, StorageError> {
        let name = blob_name(self.group, version);
        let offset = u64::from(index) * CHUNK_STRIDE;
        let Some(frame) = self.blobs.read_at(&name, offset, CHUNK_STRIDE as usize)? else {
            return Ok(ChunkRead::Missing);
        };
        Ok(parse_frame(&frame, index, expected_crc))
    }

    /// Indexes among `0..count` that are not intact here.
    pub fn damaged(
        &self,
        version: u128,
        count: u32,
        expected: Option<&[u32]>,
    ) -> Result<Vec<u32>, StorageError> {
        let mut bad = Vec::new();
        for index in 0..count {
            let crc = expected.and_then(|e| e.get(index as usize).copied());
            if !matches!(self.read(version, index, crc)?, ChunkRead::Intact(_)) {
                bad.push(index);
            }
        }
        Ok(bad)
    }

    /// Indexes among `0..count` whose frame header is absent, malformed or (when
    /// `crcs` is given) disagrees with the committed CRC list. Reads 16 bytes per
    /// chunk: the data was CRC-checked when written and is checked on every read.
    pub fn damaged_frames(
        &self,
        version: u128,
        count: u32,
        crcs: Option<&[u32]>,
    ) -> Result<Vec<u32>, StorageError> {
        let name = blob_name(self.group, version);
        let mut bad = Vec::new();
        for index in 0..count {
            let header = self
                .blobs
                .read_at(&name, u64::from(index) * CHUNK_STRIDE, CHUNK_HEADER_BYTES)?
                .unwrap_or_default();
            let word = |at: usize| {
                header
                    .get(at..at + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes)
            };
            let crc_ok = match crcs {
                Some(crcs) => crcs.get(index as usize).copied() == word(12),
                None => true,
            };
            let ok = header.get(..4) == Some(&MAGIC[..])
                && word(4) == Some(index)
                && word(8).is_some_and(|len| len as usize <= CHUNK_DATA_MAX)
                && crc_ok;
            if !ok {
                bad.push(index);
            }
        }
        Ok(bad)
    }

    /// Removes every chunk of `version`.
    pub fn remove(&self, version: u128) -> Result<(), StorageError> {
        self.blobs.remove(&blob_name(self.group, version))
    }

    /// Every version with a blob here, in blob-name order.
    pub fn versions(&self) -> Result<Vec<(u128, String)>, StorageError> {
        Ok(self
            .blobs
            .list(&group_prefix(self.group))?
            .into_iter()
            .filter_map(|n| version_of(&n).map(|v| (v, n)))
            .collect())
    }
}

fn parse_frame(frame: &[u8], index: u32, expected_crc: Option<u32>) -> ChunkRead {
    if frame.len() < CHUNK_HEADER_BYTES || frame[..CHUNK_HEADER_BYTES].iter().all(|b| *b == 0) {
        return ChunkRead::Missing;
    }
    let word =
        |at: usize| u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    if &frame[..4] != MAGIC {
        return ChunkRead::Corrupt("bad frame magic".into());
    }
    if word(4) != index {
        return ChunkRead::Corrupt(format!("frame says chunk {}, expected {index}", word(4)));
    }
    let len = word(8) as usize;
    if len > CHUNK_DATA_MAX || CHUNK_HEADER_BYTES + len > frame.len() {
        return ChunkRead::Corrupt(format!(
            "frame length {len} does not fit ({} bytes stored)",
            frame.len()
        ));
    }
    let data = &frame[CHUNK_HEADER_BYTES..CHUNK_HEADER_BYTES + len];
    let stored = word(12);
    let actual = crc32fast::hash(data);
    if stored != actual {
        return ChunkRead::Corrupt(format!(
            "CRC-32 mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    if let Some(want) = expected_crc.filter(|w| *w != stored) {
        return ChunkRead::Corrupt(format!(
            "CRC-32 {stored:08x} is not the committed {want:08x}"
        ));
    }
    ChunkRead::Intact(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_shard() {
        let v = 0xab00_0000_0000_0000_0000_0000_0000_0042u128;
        let name = blob_name(7, v);
        assert_eq!(name, format!("g0000000000000007/v/ab/{v:032x}"));
        assert_eq!(version_of(&name), Some(v));
        assert_eq!(version_of("g0000000000000007/v/ab/xyz"), None);
    }

    #[test]
    fn frames_detect_every_kind_of_damage() {
        let data = b"chunk bytes".to_vec();
        let mut frame = Vec::new();
        frame.extend_from_slice(MAGIC);
        frame.extend_from_slice(&3u32.to_le_bytes());
        frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        frame.extend_from_slice(&data);
        assert_eq!(
            parse_frame(&frame, 3, None),
            ChunkRead::Intact(data.clone())
        );
        assert_eq!(
            parse_frame(&frame, 3, Some(crc32fast::hash(&data))),
            ChunkRead::Intact(data)
        );
        assert!(
            matches!(parse_frame(&frame, 4, None), ChunkRead::Corrupt(_)),
            "misplaced"
        );
        assert!(
            matches!(parse_frame(&frame, 3, Some(1)), ChunkRead::Corrupt(_)),
            "not the committed CRC"
        );
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            assert!(
                !matches!(parse_frame(&bad, 3, None), ChunkRead::Intact(_)),
                "flip at {i} undetected"
            );
        }
        assert!(
            !matches!(
                parse_frame(&frame[..frame.len() - 1], 3, None),
                ChunkRead::Intact(_)
            ),
            "torn"
        );
        assert_eq!(parse_frame(&[0u8; 32], 3, None), ChunkRead::Missing, "hole");
        assert_eq!(parse_frame(&[], 3, None), ChunkRead::Missing);
    }
}
