//! The Raft log of one group as append-only segment blobs.
//!
//! Measured: with entries in sled, every append was a sled insert (CPU on the
//! group's single core task), batched entries became sled blob files, and purged
//! entries left garbage sled reclaimed late. Here an append is one positional write
//! at the end of the current segment; durability is the blob store's (shared)
//! fsync. Segments are `g{group}/log/{first index}`; a record is
//! `[len u32 LE][crc32 u32 LE][index u64 LE][payload]`, the CRC covering index and
//! payload. Where each live entry sits is kept in memory and rebuilt at open.
//!
//! **Recovery:** a record that is cut short or fails its CRC at the end of the last
//! segment is a torn write (the entry was never acknowledged): the segment is cut
//! there. The same damage anywhere else is corruption and opening fails.

use crate::storage::{BlobRef, StorageError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A segment is closed and a new one started once it reaches this size.
pub const SEGMENT_BYTES_TARGET: u64 = 64 * 1024 * 1024;
const HEADER_BYTES: usize = 16;
/// Largest record accepted when reading (a damaged length must not allocate).
const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Bytes of recently appended payloads kept in memory: a leader replicates entries
/// right after appending them, and reading them back from the segment (a read, a
/// zero-filled buffer, a CRC) was a visible cost under load.
const RECENT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Where an entry's record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    segment: u64,
    offset: u64,
    len: u64,
}

/// The segments and live entries of one group's log on this node.
pub struct SegmentLog {
    blobs: BlobRef,
    group: u64,
    /// Live entries by index.
    slots: BTreeMap<u64, Slot>,
    /// Segments by first index, with their length (the next write offset).
    segments: BTreeMap<u64, u64>,
    /// Payloads of the most recent entries, at most `RECENT_BYTES_MAX` bytes.
    recent: BTreeMap<u64, Arc<Vec<u8>>>,
    recent_bytes: usize,
    /// A segment that takes no more appends (see [`SegmentLog::seal_current`]).
    sealed: Option<u64>,
}

fn prefix(group: u64) -> String {
    format!("g{group:016x}/log/")
}

fn segment_name(group: u64, first: u64) -> String {
    format!("{}{first:020}", prefix(group))
}

/// Appends the record of entry `index` to `out`, written in place: at a few hundred
/// KiB per batched entry, building it in its own buffers first cost three more copies
/// of every entry on every replica (seen in profiles under small puts).
fn put_record(out: &mut Vec<u8>, index: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&index.to_le_bytes());
    crc.update(payload);
    out.reserve(HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A record read back: its index and payload, or why it is not whole.
enum Read {
    Whole {
        index: u64,
        payload: Vec<u8>,
        len: u64,
    },
    End,
    Damaged(String),
}

impl SegmentLog {
    /// Opens the log, recovering from a torn last write. Entries at or below
    /// `purged` are not served (their segments go with the next purge).
    pub fn open(
        blobs: BlobRef,
        group: u64,
        purged: Option<u64>,
    ) -> Result<SegmentLog, StorageError> {
        let mut log = SegmentLog {
            blobs,
            group,
            slots: BTreeMap::new(),
            segments: BTreeMap::new(),
            recent: BTreeMap::new(),
            recent_bytes: 0,
            sealed: None,
        };
        let mut names: Vec<(u64, String)> = Vec::new();
        for name in log.blobs.list(&prefix(group))? {
            let first = name.rsplit('/').next().and_then(|n| n.parse::<u64>().ok());
            match first {
                Some(first) => names.push((first, name)),
                None => {
                    return Err(StorageError::Corrupt {
                        key: name,
                        why: "not a log segment name".into(),
                    })
                }
            }
        }
        names.sort();
        let last_segment = names.last().map(|(first, _)| *first);
        for (first, name) in names {
            let mut offset = 0u64;
            let mut expected = first;
            loop {
                match log.read_record(&name, offset)? {
                    Read::Whole {
                        index,
                        payload: _,
                        len,
                    } => {
                        if index != expected {
                            return Err(StorageError::Corrupt { key: name, why: format!("record at byte {offset} holds entry {index}, expected {expected}") });
                        }
                        if purged.is_none_or(|p| index > p) {
                            log.slots.insert(
                                index,
                                Slot {
                                    segment: first,
                                    offset,
                                    len,
                                },
                            );
                        }
                        offset += len;
                        expected += 1;
                    }
                    Read::End => break,
                    Read::Damaged(why) if Some(first) == last_segment => {
                        tracing::warn!(group, segment = %name, at = offset, why, "cutting a torn write off the end of the log");
                        log.blobs.set_len(&name, offset)?;
                        break;
                    }
                    Read::Damaged(why) => {
                        return Err(StorageError::Corrupt {
                            key: name,
                            why: format!("record at byte {offset}: {why}"),
                        })
                    }
                }
            }
            log.segments.insert(first, offset);
        }
        Ok(log)
    }

    fn read_record(&self, name: &str, offset: u64) -> Result<Read, StorageError> {
        let header = self
            .blobs
            .read_at(name, offset, HEADER_BYTES)?
            .unwrap_or_default();
        if header.is_empty() {
            return Ok(Read::End);
        }
        if header.len() < HEADER_BYTES {
            return Ok(Read::Damaged(format!(
                "header cut short ({} bytes)",
                header.len()
            )));
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > RECORD_BYTES_MAX {
            return Ok(Read::Damaged(format!("length {len} is not plausible")));
        }
        let body = self
            .blobs
            .read_at(name, offset + 8, 8 + len)?
            .unwrap_or_default();
        if body.len() < 8 + len {
            return Ok(Read::Damaged(format!(
                "record cut short ({} of {} bytes)",
                body.len(),
                8 + len
            )));
        }
        if crc32fast::hash(&body) != crc {
            return Ok(Read::Damaged("CRC-32 mismatch".into()));
        }
        let index = u64::from_le_bytes(
            body[..8]
                .try_into()
                .map_err(|_| StorageError::Io("short index".into()))?,
        );
        Ok(Read::Whole {
            index,
            payload: body[8..].to_vec(),
            len: (HEADER_BYTES + len) as u64,
        })
    }

    /// The highest live index.
    pub fn last_index(&self) -> Option<u64> {
        self.slots.keys().next_back().copied()
    }

    /// Appends entries `(index, payload)`, which must follow the last one.
    pub fn append(&mut self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), StorageError> {
        let Some((first, _)) = entries.first() else {
            return Ok(());
        };
        if let Some(last) = self.last_index() {
            if *first != last + 1 {
                return Err(StorageError::Io(format!(
                    "log of group {}: appending entry {first} after {last}",
                    self.group
                )));
            }
        }
        let current = self.segments.iter().next_back().map(|(s, len)| (*s, *len));
        let (segment, mut offset) = match current {
            Some((s, len)) if len < SEGMENT_BYTES_TARGET && self.sealed != Some(s) => (s, len),
            _ => {
                self.segments.insert(*first, 0);
                (*first, 0)
            }
        };
        let mut bytes = Vec::with_capacity(
            entries
                .iter()
                .map(|(_, p)| HEADER_BYTES + p.len())
                .sum::<usize>(),
        );
        let mut placed = Vec::with_capacity(entries.len());
        for (index, payload) in &entries {
            let before = bytes.len();
            put_record(&mut bytes, *index, payload);
            let len = (bytes.len() - before) as u64;
            placed.push((
                *index,
                Slot {
                    segment,
                    offset,
                    len,
                },
            ));
            offset += len;
        }
        let start = placed[0].1.offset;
        self.blobs
            .write_at(&segment_name(self.group, segment), start, &bytes)?;
        self.slots.extend(placed);
        self.segments.insert(segment, offset);
        for (index, payload) in entries {
            self.recent_bytes += payload.len();
            self.recent.insert(index, Arc::new(payload));
        }
        while self.recent_bytes > RECENT_BYTES_MAX {
            let Some((_, oldest)) = self.recent.pop_first() else {
                break;
            };
            self.recent_bytes -= oldest.len();
        }
        Ok(())
    }

    fn forget_recent(&mut self, keep: impl Fn(u64) -> bool) {
        let gone: Vec<u64> = self.recent.keys().copied().filter(|i| !keep(*i)).collect();
        for index in gone {
            if let Some(p) = self.recent.remove(&index) {
                self.recent_bytes -= p.len();
            }
        }
    }

    /// Payloads of the live entries with indexes in `[start, end)`, CRC-checked.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.range(start..end) {
            if let Some(payload) = self.recent.get(index) {
                out.push((*index, payload.as_ref().clone()));
                continue;
            }
            let name = segment_name(self.group, slot.segment);
            match self.read_record(&name, slot.offset)? {
                Read::Whole {
                    index: found,
                    payload,
                    ..
                } if found == *index => out.push((found, payload)),
                Read::Whole { index: found, .. } => {
                    return Err(StorageError::Corrupt {
                        key: name,
                        why: format!("entry {index} slot holds entry {found}"),
                    })
                }
                Read::End => {
                    return Err(StorageError::Corrupt {
                        key: name,
                        why: format!("entry {index} is missing"),
                    })
                }
                Read::Damaged(why) => {
                    return Err(StorageError::Corrupt {
                        key: name,
                        why: format!("entry {index}: {why}"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Removes entries from `from` on (a conflicting suffix); they are cut from the
    /// segment so a restart does not bring them back.
    pub fn truncate(&mut self, from: u64) -> Result<(), StorageError> {
        self.forget_recent(|i| i < from);
        let Some(slot) = self.slots.get(&from).copied() else {
            self.slots.split_off(&from);
            return Ok(());
        };
        for later in self.segments.split_off(&(slot.segment + 1)).into_keys() {
            self.blobs.remove(&segment_name(self.group, later))?;
        }
        self.blobs
            .set_len(&segment_name(self.group, slot.segment), slot.offset)?;
        self.segments.insert(slot.segment, slot.offset);
        self.slots.split_off(&from);
        Ok(())
    }

    /// The first index any stored segment still holds records from (purged or not):
    /// every record below it is gone from this node's disk.
    pub fn oldest_stored_index(&self) -> Option<u64> {
        self.segments.keys().next().copied()
    }

    /// Makes the next append start a new segment, so that a later purge past the
    /// current segment's last entry can remove it whole. Used to shred entries
    /// that must leave the disk (a purged key vault's wrapped keys) without
    /// rewriting a segment in place.
    pub fn seal_current(&mut self) {
        self.sealed = self.segments.keys().next_back().copied();
    }

    /// Seals the current segment if it holds records at or below `index`.
    pub fn seal_current_if_holds(&mut self, index: u64) {
        if self
            .segments
            .keys()
            .next_back()
            .is_some_and(|first| *first <= index)
        {
            self.seal_current();
        }
    }

    /// Forgets entries up to `upto` and removes the segments holding only those
    /// (the last segment stays: appends continue there).
    pub fn purge(&mut self, upto: u64) -> Result<(), StorageError> {
        self.slots = self.slots.split_off(&(upto + 1));
        self.forget_recent(|i| i > upto);
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            // Segment pair[0] holds entries below pair[1]'s first index.
            if pair[1] <= upto + 1 {
                self.blobs.remove(&segment_name(self.group, pair[0]))?;
                self.segments.remove(&pair[0]);
            }
        }
        // A sealed last segment takes no more appends: once every record in it is
        // purged it can go too (the next append starts a new one).
        if let Some(last) = self.segments.keys().next_back().copied() {
            if self.sealed == Some(last) && self.slots.range(last..).next().is_none() {
                self.blobs.remove(&segment_name(self.group, last))?;
                self.segments.remove(&last);
                self.sealed = None;
            }
        }
        Ok(())
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
        let blobs: BlobRef = Arc::new(mem.clone());
        (mem, blobs)
    }

    fn entries(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
        range
            .map(|i| (i, format!("entry {i}").into_bytes()))
            .collect()
    }

    #[tokio::test]
    async fn append_read_truncate_purge_and_reopen() {
        let (_mem, blobs) = store();
        let mut log = SegmentLog::open(blobs.clone(), 7, None).unwrap();
        log.append(entries(1..11)).unwrap();
        assert_eq!(log.read(3, 6).unwrap(), entries(3..6));
        assert!(log.append(entries(12..13)).is_err(), "a gap is refused");
        log.truncate(8).unwrap();
        assert_eq!(log.last_index(), Some(7));
        log.append(vec![(8, b"new 8".to_vec())]).unwrap();
        log.purge(4).unwrap();
        let expect: Vec<(u64, Vec<u8>)> = entries(5..8)
            .into_iter()
            .chain([(8, b"new 8".to_vec())])
            .collect();
        assert_eq!(log.read(0, 100).unwrap(), expect);
        let reopened = SegmentLog::open(blobs, 7, Some(4)).unwrap();
        assert_eq!(
            reopened.read(0, 100).unwrap(),
            expect,
            "the truncated entries do not come back"
        );
    }

    #[tokio::test]
    async fn a_torn_last_write_is_cut_and_everything_synced_survives() {
        let (mem, blobs) = store();
        let mut log = SegmentLog::open(blobs.clone(), 1, None).unwrap();
        log.append(entries(1..4)).unwrap();
        blobs.sync().await.unwrap();
        log.append(vec![(4, vec![9u8; 5000])]).unwrap();
        mem.crash_torn();
        let mut log = SegmentLog::open(blobs.clone(), 1, None).unwrap();
        assert_eq!(log.read(0, 100).unwrap(), entries(1..4));
        log.append(entries(4..6)).unwrap();
        assert_eq!(
            log.read(4, 6).unwrap(),
            entries(4..6),
            "appends continue after the cut"
        );
    }

    #[tokio::test]
    async fn damage_before_the_tail_is_reported_not_cut() {
        let (mem, blobs) = store();
        let mut log = SegmentLog::open(blobs.clone(), 1, None).unwrap();
        log.append(entries(1..4)).unwrap();
        // Force a second segment so the damage is not at the tail.
        log.segments.insert(1, SEGMENT_BYTES_TARGET);
        log.append(entries(4..6)).unwrap();
        blobs.sync().await.unwrap();
        assert!(mem.flip_byte(&segment_name(1, 1), 20));
        assert!(matches!(
            SegmentLog::open(blobs, 1, None),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn purge_drops_whole_segments_only() {
        let (mem, blobs) = store();
        let mut log = SegmentLog::open(blobs.clone(), 2, None).unwrap();
        for chunk in [1..3u64, 3..5, 5..7] {
            log.append(entries(chunk)).unwrap();
            let last = *log.segments.keys().next_back().unwrap();
            log.segments.insert(last, SEGMENT_BYTES_TARGET); // close it
        }
        assert_eq!(mem.names().len(), 3);
        log.purge(3).unwrap();
        assert_eq!(
            mem.names(),
            vec![segment_name(2, 3), segment_name(2, 5)],
            "segment 1..2 held only purged entries"
        );
        assert_eq!(log.read(0, 100).unwrap(), entries(4..7));
    }

    #[tokio::test]
    async fn a_sealed_segment_leaves_the_disk_once_purged_past_its_end() {
        let (mem, blobs) = store();
        let mut log = SegmentLog::open(blobs.clone(), 0, None).unwrap();
        let secret = b"wrapped-kek-bytes".to_vec();
        let holds_secret = |mem: &MemBlobStore| {
            mem.names().into_iter().any(|name| {
                let bytes = blobs
                    .read_at(&name, 0, 1 << 20)
                    .unwrap()
                    .unwrap_or_default();
                bytes.windows(secret.len()).any(|w| w == secret.as_slice())
            })
        };
        log.append(vec![(1, secret.clone()), (2, b"other".to_vec())])
            .unwrap();
        log.seal_current_if_holds(1);
        log.append(entries(3..5)).unwrap();
        assert_eq!(
            mem.names().len(),
            2,
            "the append after sealing opened a segment"
        );
        assert_eq!(log.oldest_stored_index(), Some(1));
        log.purge(2).unwrap();
        assert_eq!(log.oldest_stored_index(), Some(3));
        assert!(!holds_secret(&mem), "a purged entry is still on disk");
        assert_eq!(log.read(0, 100).unwrap(), entries(3..5));

        // Reopened, the log serves the same entries and appends after them.
        let mut log = SegmentLog::open(blobs.clone(), 0, Some(2)).unwrap();
        log.append(entries(5..6)).unwrap();
        assert_eq!(log.read(0, 100).unwrap(), entries(3..6));

        // A sealed last segment goes once everything in it is purged, even with no
        // newer segment after it.
        log.seal_current_if_holds(5);
        log.purge(5).unwrap();
        assert_eq!(log.oldest_stored_index(), None);
        assert!(mem.names().is_empty(), "{:?}", mem.names());
        log.append(entries(6..7)).unwrap();
        assert_eq!(log.read(0, 100).unwrap(), entries(6..7));
        assert_eq!(log.oldest_stored_index(), Some(6));
    }
}
