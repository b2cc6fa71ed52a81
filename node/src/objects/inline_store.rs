//! The bytes of small (inline) objects, kept outside the engine in append-only
//! segment blobs of each group (`g{group}/il/{segment}`).
//!
//! Why: sled keeps values inside its tree nodes and splits a leaf only past 16
//! entries, so 4-8 KiB values made 64-128 KiB leaves that sled copied and rewrote on
//! every insert. With the bytes here, a small put costs the engine a few hundred
//! bytes (measured: CPU per 4 KiB put across the three replicas fell from 0.75 to
//! 0.47 ms, with the bytes left out altogether as the bound).
//!
//! One record describes an inline version: `a i version` → [`InlineRecord`], its
//! length and CRC-32 (the same on every replica) and where *this* replica stored
//! the bytes (segment, offset: its own). Snapshots carry the bytes instead of the
//! record and the receiver stores its own; the group digest hashes only the
//! length and CRC. (Until data format 5 the location had a key of its own in the
//! replica-local space: one more engine write per put and one more read per GET.)
//!
//! Each stored record carries a header (magic, version, length, data CRC, header
//! CRC), so a read checks it holds the right bytes. A replica starts a new segment
//! after every restart (a torn tail is never appended to) and the state machine
//! syncs the blobs before the engine batch naming the records, so no durable
//! location points at bytes that are not. Segments whose live bytes fell under a
//! quarter are compacted: their live records are copied forward and the segment is
//! removed once the new locations are durable.
//!
//! Must not: hold plaintext (records are sealed content, as in the engine before).

use crate::storage::{BlobRef, StorageError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A segment takes appends until it is this long.
pub const SEGMENT_BYTES_TARGET: u64 = 64 * 1024 * 1024;
/// Bytes of the header in front of every record.
pub const HEADER_BYTES: usize = 32;
const MAGIC: &[u8; 4] = b"SIL1";

/// What every replica records of an inline version (application space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineRef {
    pub len: u32,
    pub crc32: u32,
}

/// What a replica stores under `a i version`: the bytes' CRC-32 (the same on
/// every replica) and where this replica keeps them (its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineRecord {
    pub crc32: u32,
    pub loc: InlineLoc,
}

impl InlineRecord {
    /// The replica-independent part: length and CRC-32.
    pub fn reference(&self) -> InlineRef {
        InlineRef {
            len: self.loc.len,
            crc32: self.crc32,
        }
    }
}

/// Where this replica stored an inline version's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineLoc {
    pub segment: u64,
    pub offset: u64,
    /// Bytes of data (the record is [`HEADER_BYTES`] longer).
    pub len: u32,
}

pub fn segments_prefix(group: u64) -> String {
    format!("g{group:016x}/il/")
}

pub fn segment_name(group: u64, segment: u64) -> String {
    format!("g{group:016x}/il/{segment:016x}")
}

fn segment_id(name: &str) -> Option<u64> {
    u64::from_str_radix(name.rsplit('/').next()?, 16).ok()
}

/// Appends the stored form of one record to `out`.
fn put_record(out: &mut Vec<u8>, version: u128, data: &[u8]) {
    let start = out.len();
    out.reserve(HEADER_BYTES + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(data);
}

fn corrupt(group: u64, loc: InlineLoc, why: String) -> StorageError {
    StorageError::Corrupt {
        key: format!("{}@{}", segment_name(group, loc.segment), loc.offset),
        why,
    }
}

/// Reads the bytes of `version` stored at `loc`, checking the record is that
/// version's and intact. `Ok(None)` when the segment is gone (compacted away
/// meanwhile: look the location up again).
pub fn read(
    blobs: &BlobRef,
    group: u64,
    version: u128,
    r: InlineRef,
    loc: InlineLoc,
) -> Result<Option<Vec<u8>>, StorageError> {
    let want = HEADER_BYTES + r.len as usize;
    let Some(bytes) = blobs.read_at(&segment_name(group, loc.segment), loc.offset, want)? else {
        return Ok(None);
    };
    if bytes.len() < want {
        return Err(corrupt(
            group,
            loc,
            format!("record cut short ({} of {want} bytes)", bytes.len()),
        ));
    }
    let (header, data) = bytes.split_at(HEADER_BYTES);
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if &header[..4] != MAGIC || crc32fast::hash(&header[..28]) != word(28) {
        return Err(corrupt(group, loc, "damaged record header".into()));
    }
    let mut stored = [0u8; 16];
    stored.copy_from_slice(&header[4..20]);
    if u128::from_be_bytes(stored) != version || word(20) != r.len {
        return Err(corrupt(
            group,
            loc,
            format!("the record is not version {version:032x}"),
        ));
    }
    let crc = crc32fast::hash(data);
    if crc != word(24) || crc != r.crc32 {
        return Err(corrupt(
            group,
            loc,
            format!("data CRC-32 {crc:08x}, expected {:08x}", r.crc32),
        ));
    }
    Ok(Some(data.to_vec()))
}

/// A record found by a scan: its version, where it is, and its data.
pub type ScannedRecord = (u128, InlineLoc, Vec<u8>);

/// Live bytes and length of one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    pub len: u64,
    pub live: u64,
}

/// The writer of one group's inline segments (owned by the group's state machine).
///
/// Appends collect in memory and reach the active segment in one write at
/// [`InlineWriter::flush`] (the state machine flushes before the engine batch that
/// names them): a positional write per put was a visible share of every replica's
/// CPU under small puts. Nothing reads a record before that batch lands.
pub struct InlineWriter {
    blobs: BlobRef,
    group: u64,
    active: u64,
    segments: BTreeMap<u64, SegmentStats>,
    /// Records appended to the active segment but not written yet, starting at
    /// `pending_at` in it.
    pending: Vec<u8>,
    pending_at: u64,
    /// Appends since the last sync.
    unsynced: bool,
    /// A segment takes appends until it is this long.
    target: u64,
}

impl InlineWriter {
    /// Opens the group's segments; `live` lists every stored location. Appends go
    /// to a new segment.
    pub fn open(
        blobs: BlobRef,
        group: u64,
        live: impl IntoIterator<Item = InlineLoc>,
    ) -> Result<InlineWriter, StorageError> {
        let mut segments = BTreeMap::new();
        for name in blobs.list(&segments_prefix(group))? {
            let id = segment_id(&name).ok_or_else(|| StorageError::Corrupt {
                key: name.clone(),
                why: "not an inline segment name".into(),
            })?;
            let len = blobs.len(&name)?.unwrap_or(0);
            segments.insert(id, SegmentStats { len, live: 0 });
        }
        for loc in live {
            if let Some(s) = segments.get_mut(&loc.segment) {
                s.live += HEADER_BYTES as u64 + u64::from(loc.len);
            }
        }
        let active = segments.keys().next_back().map_or(1, |last| last + 1);
        Ok(InlineWriter {
            blobs,
            group,
            active,
            segments,
            pending: Vec::new(),
            pending_at: 0,
            unsynced: false,
            target: SEGMENT_BYTES_TARGET,
        })
    }

    /// Rolls segments at `bytes` instead of [`SEGMENT_BYTES_TARGET`] (tests).
    pub fn set_segment_target(&mut self, bytes: u64) {
        self.target = bytes;
    }

    /// Appends `data` as `version`; returns where it goes. The bytes are written at
    /// the next [`InlineWriter::flush`].
    pub fn append(&mut self, version: u128, data: &[u8]) -> Result<InlineLoc, StorageError> {
        let rec_len = (HEADER_BYTES + data.len()) as u64;
        let stats = self.segments.entry(self.active).or_default();
        if stats.len > 0 && stats.len + rec_len > self.target {
            self.flush()?;
            self.active += 1;
        }
        let stats = self.segments.entry(self.active).or_default();
        let loc = InlineLoc {
            segment: self.active,
            offset: stats.len,
            len: data.len() as u32,
        };
        if self.pending.is_empty() {
            self.pending_at = loc.offset;
        }
        put_record(&mut self.pending, version, data);
        stats.len += rec_len;
        stats.live += rec_len;
        self.unsynced = true;
        Ok(loc)
    }

    /// Writes the appended records to their segment.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.blobs.write_at(
            &segment_name(self.group, self.active),
            self.pending_at,
            &self.pending,
        )?;
        self.pending.clear();
        Ok(())
    }

    /// The record at `loc` is no longer referenced.
    pub fn forget(&mut self, loc: InlineLoc) {
        if let Some(s) = self.segments.get_mut(&loc.segment) {
            s.live = s
                .live
                .saturating_sub(HEADER_BYTES as u64 + u64::from(loc.len));
        }
    }

    /// Whether appends happened since the last call (the caller then syncs).
    pub fn take_unsynced(&mut self) -> bool {
        std::mem::take(&mut self.unsynced)
    }

    /// A sealed segment mostly dead, worth compacting.
    pub fn compaction_candidate(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|(id, s)| **id != self.active && s.live * 4 < s.len)
            .map(|(id, _)| *id)
    }

    /// The records of `segment` from `offset` on, up to about `budget` bytes:
    /// (version, location, data) each, and the offset to continue from (`None` at
    /// the end). Stops at the first damaged record (a torn tail).
    pub fn scan(
        &self,
        segment: u64,
        offset: u64,
        budget: usize,
    ) -> Result<(Vec<ScannedRecord>, Option<u64>), StorageError> {
        let name = segment_name(self.group, segment);
        let mut out = Vec::new();
        let mut at = offset;
        let mut read = 0usize;
        while read < budget {
            let Some(header) = self.blobs.read_at(&name, at, HEADER_BYTES)? else {
                return Ok((out, None));
            };
            if header.len() < HEADER_BYTES || &header[..4] != MAGIC {
                return Ok((out, None));
            }
            let len = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
            let crc = u32::from_le_bytes([header[24], header[25], header[26], header[27]]);
            let mut v = [0u8; 16];
            v.copy_from_slice(&header[4..20]);
            let version = u128::from_be_bytes(v);
            let loc = InlineLoc {
                segment,
                offset: at,
                len,
            };
            match read_unchecked(
                &self.blobs,
                self.group,
                version,
                InlineRef { len, crc32: crc },
                loc,
            )? {
                Some(data) => out.push((version, loc, data)),
                None => return Ok((out, None)),
            }
            at += (HEADER_BYTES as u64) + u64::from(len);
            read += HEADER_BYTES + len as usize;
        }
        Ok((out, Some(at)))
    }

    /// Removes a compacted segment (its live records were copied and the new
    /// locations are durable).
    pub fn remove_segment(&mut self, segment: u64) -> Result<(), StorageError> {
        self.blobs.remove(&segment_name(self.group, segment))?;
        self.drop_stats(segment);
        Ok(())
    }

    /// Forgets a segment the caller removes itself.
    pub fn drop_stats(&mut self, segment: u64) {
        self.segments.remove(&segment);
    }

    pub fn stats(&self) -> &BTreeMap<u64, SegmentStats> {
        &self.segments
    }
}

/// [`read`], treating a damaged record as the end of a scan.
fn read_unchecked(
    blobs: &BlobRef,
    group: u64,
    version: u128,
    r: InlineRef,
    loc: InlineLoc,
) -> Result<Option<Vec<u8>>, StorageError> {
    match read(blobs, group, version, r, loc) {
        Ok(v) => Ok(v),
        Err(StorageError::Corrupt { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::storage::mem_blob::MemBlobStore;
    use std::sync::Arc;

    fn store() -> (MemBlobStore, BlobRef) {
        let mem = MemBlobStore::new(Arc::new(TokioClock::starting_at(0)));
        (mem.clone(), Arc::new(mem))
    }

    fn reference(data: &[u8]) -> InlineRef {
        InlineRef {
            len: data.len() as u32,
            crc32: crc32fast::hash(data),
        }
    }

    #[tokio::test]
    async fn records_read_back_checked_and_survive_a_reopen() {
        let (_, blobs) = store();
        let mut w = InlineWriter::open(blobs.clone(), 3, []).unwrap();
        let a = w.append(7, b"seven").unwrap();
        let b = w.append(8, b"").unwrap();
        assert_eq!(read(&blobs, 3, 7, reference(b"seven"), a).unwrap(), None);
        w.flush().unwrap();
        assert!(w.take_unsynced() && !w.take_unsynced());
        assert_eq!(
            read(&blobs, 3, 7, reference(b"seven"), a).unwrap().unwrap(),
            b"seven"
        );
        assert_eq!(read(&blobs, 3, 8, reference(b""), b).unwrap().unwrap(), b"");
        // The wrong version or a wrong CRC is corruption, never other bytes.
        assert!(read(&blobs, 3, 8, reference(b"seven"), a).is_err());
        assert!(read(&blobs, 3, 7, reference(b"sever"), a).is_err());
        // A reopened writer appends to a new segment and counts live bytes.
        let w = InlineWriter::open(blobs.clone(), 3, [a]).unwrap();
        assert_eq!(w.active, 2);
        assert_eq!(w.stats()[&1].live, HEADER_BYTES as u64 + 5);
        assert_eq!(
            read(&blobs, 3, 7, reference(b"seven"), a).unwrap().unwrap(),
            b"seven"
        );
    }

    #[tokio::test]
    async fn a_flipped_byte_is_reported_as_corruption() {
        let (mem, blobs) = store();
        let mut w = InlineWriter::open(blobs.clone(), 1, []).unwrap();
        let loc = w.append(5, b"payload bytes").unwrap();
        w.flush().unwrap();
        assert!(mem.flip_byte(&segment_name(1, loc.segment), HEADER_BYTES as u64 + 3));
        match read(&blobs, 1, 5, reference(b"payload bytes"), loc) {
            Err(StorageError::Corrupt { why, .. }) => assert!(why.contains("CRC"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn dead_segments_are_found_scanned_and_removed() {
        let (_, blobs) = store();
        let mut w = InlineWriter::open(blobs.clone(), 2, []).unwrap();
        let data = vec![9u8; 1000];
        let locs: Vec<InlineLoc> = (0..5u128).map(|v| w.append(v, &data).unwrap()).collect();
        w.flush().unwrap();
        w.active += 1; // seal segment 1
        assert_eq!(w.compaction_candidate(), None);
        for loc in &locs[..3] {
            w.forget(*loc);
        }
        assert_eq!(w.compaction_candidate(), None, "two of five still live");
        w.forget(locs[3]);
        assert_eq!(w.compaction_candidate(), Some(1));
        let (records, next) = w.scan(1, 0, usize::MAX).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(next, None);
        assert_eq!(records[4].1, locs[4]);
        let (first, next) = w.scan(1, 0, 1).unwrap();
        assert_eq!((first.len(), next), (1, Some(locs[1].offset)));
        w.remove_segment(1).unwrap();
        assert!(blobs.list(&segments_prefix(2)).unwrap().is_empty());
        assert_eq!(read(&blobs, 2, 4, reference(&data), locs[4]).unwrap(), None);
    }
}
