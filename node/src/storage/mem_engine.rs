//! The in-memory engine with crash semantics, for the deterministic simulation.
//!
//! It keeps what readers see, what is durable, and the batches applied since the
//! last sync. [`MemEngine::crash`] drops the unsynced batches, like a power cut; the
//! fault-injection methods fail syncs or applies and flip stored bytes. No threads,
//! no time, no randomness: the simulation decides when faults happen.

use super::{Engine, StorageError, WriteBatch, WriteOp};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct State {
    visible: Map,
    durable: Map,
    pending: Vec<WriteBatch>,
    fail_syncs: u32,
    fail_applies: u32,
}

/// A cloneable handle on one in-memory store (clones share the store, so the
/// simulation can keep a "disk" across a node's crash and restart).
#[derive(Clone, Default)]
pub struct MemEngine {
    state: Arc<Mutex<State>>,
}

fn apply_to(map: &mut Map, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            WriteOp::Put { key, value } => {
                map.insert(key.clone(), value.clone());
            }
            WriteOp::Remove { key } => {
                map.remove(key);
            }
            WriteOp::RemoveRange { start, end } => {
                if start < end {
                    let doomed: Vec<Vec<u8>> = map
                        .range(start.clone()..end.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
    }
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A crash: everything not synced is lost.
    pub fn crash(&self) {
        self.crash_keeping(0);
    }

    /// A crash that happened to persist the first `n` unsynced batches whole.
    pub fn crash_keeping(&self, n: usize) {
        self.with(|s| {
            let pending = std::mem::take(&mut s.pending);
            for batch in pending.iter().take(n) {
                apply_to(&mut s.durable, batch);
            }
            s.visible = s.durable.clone();
        });
    }

    /// The next `n` syncs fail and persist nothing.
    pub fn fail_next_syncs(&self, n: u32) {
        self.with(|s| s.fail_syncs = n);
    }

    /// The next `n` applies fail and change nothing.
    pub fn fail_next_applies(&self, n: u32) {
        self.with(|s| s.fail_applies = n);
    }

    /// Flips one bit of byte `index` of the value under `key`, in visible and durable
    /// state. Returns whether the key existed (and was long enough).
    pub fn flip_byte(&self, key: &[u8], index: usize) -> bool {
        self.with(|s| {
            let mut hit = false;
            for map in [&mut s.visible, &mut s.durable] {
                if let Some(b) = map.get_mut(key).and_then(|v| v.get_mut(index)) {
                    *b ^= 0x01;
                    hit = true;
                }
            }
            hit
        })
    }

    /// Every visible key, in order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.with(|s| s.visible.keys().cloned().collect())
    }

    /// FNV-1a over the visible entries in key order, for convergence checks.
    pub fn state_hash(&self) -> u64 {
        self.with(|s| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for (k, v) in &s.visible {
                for b in (k.len() as u64)
                    .to_le_bytes()
                    .iter()
                    .chain(k)
                    .chain(&(v.len() as u64).to_le_bytes())
                    .chain(v)
                {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            h
        })
    }
}

impl Engine for MemEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.with(|s| s.visible.get(key).cloned()))
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let invalid = match (start, end) {
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                a > b
                    || (a == b && !matches!((start, end), (Bound::Included(_), Bound::Included(_))))
            }
            _ => false,
        };
        if invalid || limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self.with(|s| {
            s.visible
                .range::<[u8], _>((start, end))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    fn last_in(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        if start >= end {
            return Ok(None);
        }
        Ok(self.with(|s| {
            s.visible
                .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()))
        }))
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.with(|s| {
            if s.fail_applies > 0 {
                s.fail_applies -= 1;
                return Err(StorageError::Io("injected write failure".into()));
            }
            apply_to(&mut s.visible, &batch);
            s.pending.push(batch);
            Ok(())
        })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        let result = self.with(|s| {
            if s.fail_syncs > 0 {
                s.fail_syncs -= 1;
                return Err(StorageError::Io("injected fsync failure".into()));
            }
            let pending = std::mem::take(&mut s.pending);
            for batch in &pending {
                apply_to(&mut s.durable, batch);
            }
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn size_bytes(&self) -> u64 {
        self.with(|s| {
            s.visible
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum()
        })
    }
}
