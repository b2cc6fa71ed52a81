//! The blob seam: named, byte-addressable blobs for bulk object bytes.
//!
//! Owns: the [`BlobStore`] trait, the blob name rules ([`validate_blob_name`]) and the
//! limits every implementation enforces the same way. Implementations:
//! [`super::fs_blob::FsBlobStore`] (one file per blob, real runs) and
//! [`super::mem_blob::MemBlobStore`] (crash semantics, the simulation).
//!
//! Why a second seam next to [`super::Engine`]: sled 0.34 keeps every large value
//! resident in memory while its key lives and reclaims its blob files late, so object
//! bytes live here and sled keeps only small metadata.
//!
//! Must not: frame or checksum contents (callers do, see below), know about objects,
//! or touch anything outside its root: names are validated before any IO.
//!
//! **Durability contract:** writes, `set_len` and `remove` are visible at once and
//! durable once a later [`BlobStore::sync`] returns `Ok`. After a crash, bytes that no
//! successful sync covered may hold the old content, the new one, or a mix at sector
//! granularity (a torn write), so callers must checksum what they store in blobs.

use super::StorageError;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Longest blob name, in bytes. Keeps `root/<name>` well under Linux's 4096-byte
/// `PATH_MAX` for any reasonable root.
pub const BLOB_NAME_BYTES_MAX: usize = 512;

/// Longest segment of a blob name: Linux's `NAME_MAX`.
pub const BLOB_SEGMENT_BYTES_MAX: usize = 255;

/// Largest blob, in bytes (16 TiB, ext4's file size limit with 4 KiB blocks). Bounds
/// offset arithmetic so `offset + len` can never overflow in any implementation.
pub const BLOB_BYTES_MAX: u64 = 16 << 40;

/// A store of named blobs. All methods may be called concurrently from many tasks.
///
/// Names are `/`-separated relative paths; see [`validate_blob_name`]. A name cannot be
/// both a blob and a directory of other blobs (`a` and `a/b`): creating the second
/// fails with [`StorageError::Io`], as it would on a filesystem, in every
/// implementation, so the simulation rejects what real runs reject.
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `data` at `offset`, creating the blob if missing (a gap reads as zeros).
    /// Visible to reads at once; durable only after a later successful `sync`. An empty
    /// `data` creates a missing blob but never extends one (as `pwrite` behaves).
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError>;

    /// Up to `len` bytes from `offset` (shorter at the end of the blob; empty past it).
    /// `Ok(None)` if the blob does not exist.
    fn read_at(&self, name: &str, offset: u64, len: usize)
        -> Result<Option<Vec<u8>>, StorageError>;

    /// Length in bytes, `None` if absent.
    fn len(&self, name: &str) -> Result<Option<u64>, StorageError>;

    /// Cuts or extends (with zeros) the blob to `len`; creates it if missing. Durable
    /// after sync.
    fn set_len(&self, name: &str, len: u64) -> Result<(), StorageError>;

    /// Removes the blob; no error if absent. Durable after sync.
    fn remove(&self, name: &str) -> Result<(), StorageError>;

    /// Every blob whose name starts with `prefix`, sorted by name. The prefix follows
    /// the name rules except that its last segment may be partial or empty (`a/`,
    /// `a/b`, `""`); see [`validate_blob_prefix`].
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// When the blob was last written (or resized), in ms since the Unix epoch, so a
    /// sweeper can find abandoned data; `None` if absent.
    fn modified_ms(&self, name: &str) -> Result<Option<u64>, StorageError>;

    /// Makes every write, set_len and remove issued before this call durable.
    /// Concurrent callers share flushes (group commit): a caller returns once a flush
    /// that started after its own call began has finished.
    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Bytes stored (an estimate is fine), for status.
    fn size_bytes(&self) -> u64;
}

/// A shared blob store handle, as the node passes it around.
pub type BlobRef = Arc<dyn BlobStore>;

fn invalid(name: &str, why: &str) -> StorageError {
    StorageError::Io(format!("invalid blob name {name:?}: {why}"))
}

fn segment_chars_ok(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

fn check_segment(name: &str, segment: &str) -> Result<(), StorageError> {
    if segment.is_empty() {
        return Err(invalid(
            name,
            "empty segment (leading, trailing or doubled '/')",
        ));
    }
    if segment == "." || segment == ".." {
        return Err(invalid(name, "'.' and '..' segments are not allowed"));
    }
    if segment.len() > BLOB_SEGMENT_BYTES_MAX {
        return Err(invalid(
            name,
            &format!("a segment is longer than {BLOB_SEGMENT_BYTES_MAX} bytes"),
        ));
    }
    if !segment_chars_ok(segment) {
        return Err(invalid(name, "segments may contain only [a-z0-9._-]"));
    }
    Ok(())
}

/// Checks a blob name: `/`-separated segments of `[a-z0-9._-]+`, none `.` or `..`, at
/// most [`BLOB_NAME_BYTES_MAX`] bytes. Such a name joined to a root can only name a path
/// under that root, whatever the platform's path rules, which is the point.
pub fn validate_blob_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() {
        return Err(invalid(name, "empty name"));
    }
    if name.len() > BLOB_NAME_BYTES_MAX {
        return Err(invalid(
            name,
            &format!("longer than {BLOB_NAME_BYTES_MAX} bytes"),
        ));
    }
    name.split('/')
        .try_for_each(|segment| check_segment(name, segment))
}

/// Checks a listing prefix: every complete segment (before the last `/`) follows the
/// name rules; the last one may be empty or partial, since it only filters names and
/// never becomes a path.
pub fn validate_blob_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.len() > BLOB_NAME_BYTES_MAX {
        return Err(invalid(
            prefix,
            &format!("longer than {BLOB_NAME_BYTES_MAX} bytes"),
        ));
    }
    let (dirs, last) = match prefix.rfind('/') {
        Some(i) => (&prefix[..i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    if !segment_chars_ok(last) {
        return Err(invalid(prefix, "segments may contain only [a-z0-9._-]"));
    }
    if prefix.contains('/') {
        dirs.split('/')
            .try_for_each(|segment| check_segment(prefix, segment))?;
    }
    Ok(())
}

/// Where a write of `len` bytes at `offset` ends, rejecting blobs over
/// [`BLOB_BYTES_MAX`].
pub(crate) fn write_end(name: &str, offset: u64, len: usize) -> Result<u64, StorageError> {
    offset
        .checked_add(len as u64)
        .filter(|end| *end <= BLOB_BYTES_MAX)
        .ok_or_else(|| {
            StorageError::Io(format!(
                "write of {len} bytes at offset {offset} to blob {name} would pass the \
                 {BLOB_BYTES_MAX}-byte blob limit"
            ))
        })
}

/// Rejects a length over [`BLOB_BYTES_MAX`].
pub(crate) fn check_len(name: &str, len: u64) -> Result<(), StorageError> {
    if len > BLOB_BYTES_MAX {
        return Err(StorageError::Io(format!(
            "length {len} for blob {name} passes the {BLOB_BYTES_MAX}-byte blob limit"
        )));
    }
    Ok(())
}
