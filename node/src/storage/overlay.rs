//! A read-your-writes view over an engine: writes collect in one pending batch,
//! reads see them before they reach the engine.
//!
//! The state machine applies every entry of an apply call (and every command of a
//! batched entry) through one [`Overlay`], then hands its batch to the engine at
//! once: one atomic engine write per apply call instead of one per command, and a
//! crash keeps all of the call or none of it.

use super::{Engine, EngineRef, Row, Rows, StorageError, WriteBatch, WriteOp};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Pending {
    batch: WriteBatch,
    /// The latest write of each key touched since the last range removal over it.
    latest: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges removed (base rows inside them are hidden unless written again).
    removed: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pending {
    fn hidden(&self, key: &[u8]) -> bool {
        self.removed
            .iter()
            .any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
    }
}

/// Pending writes over a base engine.
pub struct Overlay {
    base: EngineRef,
    pending: Mutex<Pending>,
}

fn in_bounds(key: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let after_start = match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

impl Overlay {
    pub fn new(base: EngineRef) -> Arc<Overlay> {
        Arc::new(Overlay {
            base,
            pending: Mutex::new(Pending::default()),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything written so far, in order, leaving the overlay empty.
    pub fn take_batch(&self) -> WriteBatch {
        std::mem::take(&mut *self.pending()).batch
    }
}

impl Engine for Overlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        {
            let p = self.pending();
            if let Some(v) = p.latest.get(key) {
                return Ok(v.clone());
            }
            if p.hidden(key) {
                return Ok(None);
            }
        }
        self.base.get(key)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Rows, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let p = self.pending();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        // Base rows in pages until `limit` visible ones are found past the pending
        // keys and removed ranges that may hide some of them.
        let mut from: Bound<Vec<u8>> = match start {
            Bound::Included(s) => Bound::Included(s.to_vec()),
            Bound::Excluded(s) => Bound::Excluded(s.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let page = limit.saturating_add(p.latest.len()).max(16);
        loop {
            let rows = self
                .base
                .scan(from.as_ref().map(Vec::as_slice), end, page)?;
            let exhausted = rows.len() < page;
            for (k, v) in rows {
                if !p.latest.contains_key(&k) && !p.hidden(&k) {
                    merged.insert(k.clone(), v);
                }
                from = Bound::Excluded(k);
            }
            if exhausted || merged.len() >= limit {
                break;
            }
        }
        for (k, v) in p.latest.iter().filter(|(k, _)| in_bounds(k, start, end)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Row>, StorageError> {
        let rows = self.scan(Bound::Included(start), Bound::Excluded(end), usize::MAX)?;
        Ok(rows.into_iter().next_back())
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut p = self.pending();
        for op in &batch.ops {
            match op {
                WriteOp::Put { key, value } => {
                    p.latest.insert(key.clone(), Some(value.clone()));
                }
                WriteOp::Remove { key } => {
                    p.latest.insert(key.clone(), None);
                }
                WriteOp::RemoveRange { start, end } => {
                    if start < end {
                        let doomed: Vec<Vec<u8>> = p
                            .latest
                            .range(start.clone()..end.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            p.latest.remove(&k);
                        }
                        p.removed.push((start.clone(), end.clone()));
                    }
                }
            }
        }
        p.batch.ops.extend(batch.ops);
        Ok(())
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async {
            Err(StorageError::Io(
                "an overlay is never synced: apply its batch to the engine".into(),
            ))
        })
    }

    fn size_bytes(&self) -> u64 {
        self.base.size_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem_engine::MemEngine;

    fn put(batch: &mut WriteBatch, k: &str, v: &str) {
        batch.put(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }

    #[tokio::test]
    async fn reads_see_pending_writes_and_the_engine_gets_them_in_one_batch() {
        let base = MemEngine::new();
        let base_ref: EngineRef = Arc::new(base.clone());
        let mut seed = WriteBatch::new();
        for k in ["a", "b", "c", "d", "e"] {
            put(&mut seed, k, "base");
        }
        base_ref.apply(seed).unwrap();

        let o = Overlay::new(base_ref.clone());
        let mut w = WriteBatch::new();
        put(&mut w, "b", "new");
        w.remove(b"c".to_vec());
        put(&mut w, "bb", "added");
        o.apply(w).unwrap();
        assert_eq!(o.get(b"b").unwrap(), Some(b"new".to_vec()));
        assert_eq!(o.get(b"c").unwrap(), None);
        assert_eq!(
            base_ref.get(b"c").unwrap(),
            Some(b"base".to_vec()),
            "base untouched until the batch is applied"
        );
        let keys = |rows: Rows| {
            rows.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(o.scan(Bound::Unbounded, Bound::Unbounded, 10).unwrap()),
            ["a", "b", "bb", "d", "e"]
        );
        assert_eq!(
            keys(
                o.scan(Bound::Excluded(b"a"), Bound::Excluded(b"e"), 2)
                    .unwrap()
            ),
            ["b", "bb"]
        );

        let mut w = WriteBatch::new();
        w.remove_range(b"a".to_vec(), b"d".to_vec());
        put(&mut w, "b", "again");
        o.apply(w).unwrap();
        assert_eq!(o.get(b"a").unwrap(), None, "hidden by the range removal");
        assert_eq!(
            o.get(b"b").unwrap(),
            Some(b"again".to_vec()),
            "written after the removal"
        );
        assert_eq!(
            keys(o.scan(Bound::Unbounded, Bound::Unbounded, 10).unwrap()),
            ["b", "d", "e"]
        );
        assert_eq!(
            o.last_in(b"a", b"e").unwrap().map(|(k, _)| k),
            Some(b"d".to_vec())
        );

        base_ref.apply(o.take_batch()).unwrap();
        assert_eq!(
            keys(
                base_ref
                    .scan(Bound::Unbounded, Bound::Unbounded, 10)
                    .unwrap()
            ),
            ["b", "d", "e"]
        );
        assert_eq!(base_ref.get(b"b").unwrap(), Some(b"again".to_vec()));
        assert!(o.take_batch().is_empty());
    }
}
