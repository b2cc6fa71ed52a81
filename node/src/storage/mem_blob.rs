//! The in-memory blob store with crash semantics, for the deterministic simulation.
//!
//! Owns: per blob, what readers see and what is durable, plus the ordered operations
//! issued since the last successful sync. The fault-injection methods model a power
//! cut ([`MemBlobStore::crash`]), a torn last write ([`MemBlobStore::crash_torn`]),
//! failing fsyncs and writes, and bit rot ([`MemBlobStore::flip_byte`]).
//!
//! Must not: spawn threads, read the wall clock (timestamps come from the
//! [`ClockRef`]), draw randomness, or iterate in an unspecified order: the simulation
//! replays a seed exactly, so every map is a `BTreeMap` and faults happen only when the
//! simulation asks.

use super::blob::{check_len, validate_blob_name, validate_blob_prefix, write_end};
use super::{BlobStore, StorageError};
use crate::clock::ClockRef;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The unit a torn write is cut at: disks persist whole sectors.
pub const SECTOR_BYTES: usize = 512;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Blob {
    data: Vec<u8>,
    modified_ms: u64,
}

type Blobs = BTreeMap<String, Blob>;

/// One operation not yet covered by a successful sync. Offsets are already checked
/// against the blob limit, so replaying an operation cannot fail.
#[derive(Debug, Clone)]
enum Op {
    Write {
        name: String,
        offset: usize,
        data: Vec<u8>,
        at_ms: u64,
    },
    SetLen {
        name: String,
        len: usize,
        at_ms: u64,
    },
    Remove {
        name: String,
    },
}

fn replay(blobs: &mut Blobs, op: &Op) {
    match op {
        Op::Write {
            name,
            offset,
            data,
            at_ms,
        } => {
            let blob = blobs.entry(name.clone()).or_default();
            blob.modified_ms = *at_ms;
            if !data.is_empty() {
                let end = offset + data.len();
                if blob.data.len() < end {
                    blob.data.resize(end, 0);
                }
                blob.data[*offset..end].copy_from_slice(data);
            }
        }
        Op::SetLen { name, len, at_ms } => {
            let blob = blobs.entry(name.clone()).or_default();
            blob.modified_ms = *at_ms;
            blob.data.resize(*len, 0);
        }
        Op::Remove { name } => {
            blobs.remove(name);
        }
    }
}

/// Rejects creating `name` where a filesystem could not: under a blob, or over blobs.
fn check_creatable(blobs: &Blobs, name: &str) -> Result<(), StorageError> {
    if blobs.contains_key(name) {
        return Ok(());
    }
    let dir = format!("{name}/");
    if blobs
        .range(dir.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&dir))
    {
        return Err(StorageError::Io(format!(
            "cannot create blob {name}: it is a directory of other blobs"
        )));
    }
    for (i, _) in name.match_indices('/') {
        if blobs.contains_key(&name[..i]) {
            return Err(StorageError::Io(format!(
                "cannot create blob {name}: {} is a blob, not a directory",
                &name[..i]
            )));
        }
    }
    Ok(())
}

fn to_usize(name: &str, n: u64) -> Result<usize, StorageError> {
    usize::try_from(n)
        .map_err(|_| StorageError::Io(format!("blob {name}: {n} does not fit in memory")))
}

#[derive(Default)]
struct State {
    visible: Blobs,
    durable: Blobs,
    /// Issued, not yet durable, oldest first.
    pending: std::collections::VecDeque<Op>,
    /// Operations issued since the store was made or last crashed.
    issued: u64,
    /// How many of those became durable (`issued - pending.len()`).
    durable_upto: u64,
    /// Bumped by every crash, so a sync under way when it happened persists nothing.
    crashes: u64,
    /// How long a sync takes (zero: it completes at the call).
    sync_latency: std::time::Duration,
    fail_syncs: u32,
    fail_writes: u32,
}

impl State {
    fn forget_unsynced(&mut self) {
        self.pending.clear();
        self.visible = self.durable.clone();
        self.issued = 0;
        self.durable_upto = 0;
        self.crashes += 1;
    }
}

/// A cloneable handle on one in-memory blob store (clones share the store, so the
/// simulation can keep a "disk" across a node's crash and restart).
#[derive(Clone)]
pub struct MemBlobStore {
    state: Arc<Mutex<State>>,
    clock: ClockRef,
}

impl MemBlobStore {
    /// An empty store whose modification times come from `clock`.
    pub fn new(clock: ClockRef) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            clock,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A crash: everything not synced is lost.
    pub fn crash(&self) {
        self.with(State::forget_unsynced);
    }

    /// Makes every sync take `latency` (of the runtime's time; simulated time in the
    /// simulation): what a sync covers is fixed at the call and becomes durable only
    /// when it completes, so a crash in between loses it. Different latencies on
    /// different replicas let a follower's copy become durable before the leader's.
    pub fn set_sync_latency(&self, latency: std::time::Duration) {
        self.with(|s| s.sync_latency = latency);
    }

    /// A crash during the last unsynced write: everything else unsynced is lost, and
    /// that write persists only its first half, cut down to whole [`SECTOR_BYTES`]
    /// sectors (possibly nothing, in which case it does not even create the blob).
    pub fn crash_torn(&self) {
        self.with(|s| {
            let pending = std::mem::take(&mut s.pending);
            let last_write = pending
                .iter()
                .rev()
                .find(|op| matches!(op, Op::Write { .. }));
            if let Some(Op::Write {
                name,
                offset,
                data,
                at_ms,
            }) = last_write
            {
                let keep = data.len() / 2 / SECTOR_BYTES * SECTOR_BYTES;
                // The ops that made room for this name are lost; if the durable state
                // still has a conflicting blob, no filesystem could hold this write.
                if keep > 0 && check_creatable(&s.durable, name).is_ok() {
                    let torn = Op::Write {
                        name: name.clone(),
                        offset: *offset,
                        data: data[..keep].to_vec(),
                        at_ms: *at_ms,
                    };
                    replay(&mut s.durable, &torn);
                }
            }
            s.forget_unsynced();
        });
    }

    /// The next `n` syncs fail and persist nothing (the operations stay pending).
    pub fn fail_next_syncs(&self, n: u32) {
        self.with(|s| s.fail_syncs = n);
    }

    /// The next `n` `write_at` calls fail and change nothing.
    pub fn fail_next_writes(&self, n: u32) {
        self.with(|s| s.fail_writes = n);
    }

    /// Flips the lowest bit of the byte at `offset` of blob `name`, in both visible and
    /// durable state. Returns whether either copy had that byte.
    pub fn flip_byte(&self, name: &str, offset: u64) -> bool {
        let Ok(offset) = usize::try_from(offset) else {
            return false;
        };
        self.with(|s| {
            let mut hit = false;
            for blobs in [&mut s.visible, &mut s.durable] {
                if let Some(b) = blobs.get_mut(name).and_then(|b| b.data.get_mut(offset)) {
                    *b ^= 0x01;
                    hit = true;
                }
            }
            hit
        })
    }

    /// FNV-1a over (name, content) of the visible blobs under `prefix`, in name order,
    /// lengths included so boundaries are unambiguous. Equal digests on two replicas
    /// mean (with overwhelming probability) equal blobs.
    pub fn digest(&self, prefix: &str) -> u64 {
        self.with(|s| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let under = s.visible.range(prefix.to_string()..);
            for (name, blob) in under.take_while(|(n, _)| n.starts_with(prefix)) {
                let name_len = (name.len() as u64).to_le_bytes();
                let data_len = (blob.data.len() as u64).to_le_bytes();
                let bytes = name_len.iter().chain(name.as_bytes()).chain(&data_len);
                for b in bytes.chain(&blob.data) {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            h
        })
    }

    /// Every visible blob name, in order.
    pub fn names(&self) -> Vec<String> {
        self.with(|s| s.visible.keys().cloned().collect())
    }

    fn issue(&self, op: Op) -> Result<(), StorageError> {
        self.with(|s| {
            if let Op::Write { .. } = op {
                if s.fail_writes > 0 {
                    s.fail_writes -= 1;
                    return Err(StorageError::Io("injected write failure".into()));
                }
            }
            match &op {
                Op::Write { name, .. } | Op::SetLen { name, .. } => {
                    check_creatable(&s.visible, name)?
                }
                Op::Remove { .. } => {}
            }
            replay(&mut s.visible, &op);
            s.pending.push_back(op);
            s.issued += 1;
            Ok(())
        })
    }
}

impl BlobStore for MemBlobStore {
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        write_end(name, offset, data.len())?;
        self.issue(Op::Write {
            name: name.to_string(),
            offset: to_usize(name, offset)?,
            data: data.to_vec(),
            at_ms: self.clock.now_ms(),
        })
    }

    fn read_at(
        &self,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        validate_blob_name(name)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(self.with(|s| {
            s.visible.get(name).map(|b| {
                let start = start.min(b.data.len());
                let end = start.saturating_add(len).min(b.data.len());
                b.data[start..end].to_vec()
            })
        }))
    }

    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        validate_blob_name(name)?;
        Ok(self.with(|s| s.visible.get(name).map(|b| b.data.len() as u64)))
    }

    fn set_len(&self, name: &str, len: u64) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        check_len(name, len)?;
        self.issue(Op::SetLen {
            name: name.to_string(),
            len: to_usize(name, len)?,
            at_ms: self.clock.now_ms(),
        })
    }

    fn remove(&self, name: &str) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        self.issue(Op::Remove {
            name: name.to_string(),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_blob_prefix(prefix)?;
        Ok(self.with(|s| {
            s.visible
                .range(prefix.to_string()..)
                .take_while(|(n, _)| n.starts_with(prefix))
                .map(|(n, _)| n.clone())
                .collect()
        }))
    }

    fn modified_ms(&self, name: &str) -> Result<Option<u64>, StorageError> {
        validate_blob_name(name)?;
        Ok(self.with(|s| s.visible.get(name).map(|b| b.modified_ms)))
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        // Covers exactly what was issued before the call.
        let started = self.with(|s| {
            if s.fail_syncs > 0 {
                s.fail_syncs -= 1;
                return Err(StorageError::Io("injected fsync failure".into()));
            }
            Ok((s.issued, s.crashes, s.sync_latency))
        });
        Box::pin(async move {
            let (upto, crashes, latency) = started?;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            self.with(|s| {
                if s.crashes != crashes {
                    return Err(StorageError::Io("the store crashed during the sync".into()));
                }
                while s.durable_upto < upto {
                    let Some(op) = s.pending.pop_front() else {
                        break;
                    };
                    replay(&mut s.durable, &op);
                    s.durable_upto += 1;
                }
                Ok(())
            })
        })
    }

    fn size_bytes(&self) -> u64 {
        self.with(|s| s.visible.values().map(|b| b.data.len() as u64).sum())
    }
}
