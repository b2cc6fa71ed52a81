//! Group commit: many appends, one flush.
//!
//! openraft 0.9 hands the log store one append per client write. Flushing each on
//! its own capped writes at the engine's flush rate whatever the concurrency. A
//! [`GroupCommit`] keeps at most one flush of the engine in flight: appends that
//! arrive while it runs queue their completions, and the next flush (which starts
//! after their writes were applied) completes them all at once.

use super::EngineRef;
use std::sync::{Arc, Mutex};

/// What to call once the writes applied before [`GroupCommit::durable`] are durable.
pub type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

#[derive(Default)]
struct Queue {
    waiting: Vec<Completion>,
    flushing: bool,
}

/// One engine's flusher, shared by every group on the node.
pub struct GroupCommit {
    engine: EngineRef,
    queue: Mutex<Queue>,
}

impl GroupCommit {
    pub fn new(engine: EngineRef) -> Arc<Self> {
        Arc::new(Self {
            engine,
            queue: Mutex::new(Queue::default()),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `done` once everything applied to the engine before this call is
    /// durable (or the flush failed).
    pub fn durable(self: &Arc<Self>, done: Completion) {
        let start = {
            let mut q = self.queue();
            q.waiting.push(done);
            !std::mem::replace(&mut q.flushing, true)
        };
        if start {
            tokio::spawn(self.clone().flush_until_idle());
        }
    }

    /// Waits until everything applied to the engine before this call is durable.
    pub async fn sync(self: &Arc<Self>) -> Result<(), super::StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.durable(Box::new(move |result| {
            let _ = tx.send(result);
        }));
        match rx.await {
            Ok(result) => result.map_err(super::StorageError::Io),
            Err(_) => Err(super::StorageError::Io("the flusher stopped".into())),
        }
    }

    async fn flush_until_idle(self: Arc<Self>) {
        loop {
            let batch = {
                let mut q = self.queue();
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            // Every completion taken here was queued after its writes were applied,
            // so this flush, which starts now, covers them all.
            let result = self.engine.sync().await.map_err(|e| e.to_string());
            for done in batch {
                done(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem_engine::MemEngine;
    use crate::storage::WriteBatch;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn queued_appends_share_flushes_and_all_become_durable() {
        let mem = MemEngine::new();
        let engine: EngineRef = Arc::new(mem.clone());
        let commit = GroupCommit::new(engine.clone());
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..100u32 {
            let mut batch = WriteBatch::new();
            batch.put(i.to_be_bytes().to_vec(), b"v".to_vec());
            engine.apply(batch).unwrap();
            let (done, tx) = (done.clone(), tx.clone());
            commit.durable(Box::new(move |r| {
                r.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
            }));
        }
        for _ in 0..100 {
            rx.recv().await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 100);
        mem.crash();
        assert_eq!(
            mem.keys().len(),
            100,
            "everything acknowledged survived the crash"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported_to_every_waiter() {
        let mem = MemEngine::new();
        let commit = GroupCommit::new(Arc::new(mem.clone()));
        mem.fail_next_syncs(1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        commit.durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        assert!(rx.await.unwrap().is_err());
    }
}
