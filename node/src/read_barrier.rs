//! Coalesced leadership confirmation for linearizable reads.
//!
//! openraft's `ensure_linearizable` sends one heartbeat round to the group's voters
//! per call, so 64 concurrent reads cost 128 RPCs. A [`ReadBarrier`] lets every read
//! that arrives while a confirmation is under way wait for the *next* one instead: a
//! read is released only by a confirmation that started after the read arrived,
//! which is exactly what linearizability asks of the read index. The rounds run in a
//! spawned task, so a cancelled request never leaves the others waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What one confirmation round concluded, shared by every read it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Still the leader, and the state machine has applied up to the read index.
    Confirmed,
    /// Not (or no longer) the leader.
    NotLeader,
    /// No answer from a quorum in time, or the group stopped.
    Unavailable(String),
}

type Round = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Confirmation> + Send>> + Send + Sync>;

#[derive(Default)]
struct Tickets {
    next: u64,
    running: bool,
}

/// One group's coalescing read barrier.
pub struct ReadBarrier {
    tickets: Mutex<Tickets>,
    /// `(covers, outcome)`: the latest round released every ticket below `covers`.
    done: watch::Sender<(u64, Confirmation)>,
    round: Round,
}

impl ReadBarrier {
    /// A barrier whose rounds run `round` (one `ensure_linearizable` with a timeout).
    pub fn new(round: Round) -> Arc<Self> {
        let (done, _) = watch::channel((0, Confirmation::NotLeader));
        Arc::new(Self {
            tickets: Mutex::new(Tickets::default()),
            done,
            round,
        })
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a confirmation round that started after this call.
    pub async fn confirm(self: &Arc<Self>) -> Confirmation {
        let mut done = self.done.subscribe();
        let (ticket, start) = {
            let mut t = self.tickets();
            let ticket = t.next;
            t.next += 1;
            let start = !t.running;
            t.running = true;
            (ticket, start)
        };
        if start {
            tokio::spawn(self.clone().run_rounds());
        }
        loop {
            {
                let (covers, outcome) = &*done.borrow_and_update();
                if *covers > ticket {
                    return outcome.clone();
                }
            }
            if done.changed().await.is_err() {
                return Confirmation::Unavailable("the group is shutting down".into());
            }
        }
    }

    async fn run_rounds(self: Arc<Self>) {
        loop {
            // Every ticket below `covers` was issued before this round began.
            let covers = self.tickets().next;
            let outcome = (self.round)().await;
            self.done.send_replace((covers, outcome));
            let mut t = self.tickets();
            if t.next == covers {
                t.running = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_reads_share_rounds_and_each_waits_for_a_later_one() {
        let rounds = Arc::new(AtomicU64::new(0));
        let counter = rounds.clone();
        let barrier = ReadBarrier::new(Arc::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Confirmation::Confirmed
            })
        }));
        let reads: Vec<_> = (0..64)
            .map(|_| {
                let b = barrier.clone();
                tokio::spawn(async move { b.confirm().await })
            })
            .collect();
        for r in reads {
            assert_eq!(r.await.unwrap(), Confirmation::Confirmed);
        }
        let used = rounds.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&used),
            "64 concurrent reads took {used} rounds"
        );
        // A read after everything settled starts a round of its own.
        assert_eq!(barrier.confirm().await, Confirmation::Confirmed);
        assert_eq!(rounds.load(Ordering::SeqCst), used + 1);
    }

    #[tokio::test]
    async fn a_read_is_never_released_by_a_round_that_began_before_it() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicU64::new(0));
        let (g, s) = (gate.clone(), started.clone());
        let barrier = ReadBarrier::new(Arc::new(move || {
            let (g, s) = (g.clone(), s.clone());
            Box::pin(async move {
                let n = s.fetch_add(1, Ordering::SeqCst);
                g.notified().await;
                if n == 0 {
                    Confirmation::NotLeader
                } else {
                    Confirmation::Confirmed
                }
            })
        }));
        let first = tokio::spawn({
            let b = barrier.clone();
            async move { b.confirm().await }
        });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Arrives while round 0 (which will say NotLeader) is in flight.
        let second = tokio::spawn({
            let b = barrier.clone();
            async move { b.confirm().await }
        });
        tokio::task::yield_now().await;
        gate.notify_one();
        assert_eq!(first.await.unwrap(), Confirmation::NotLeader);
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(
            second.await.unwrap(),
            Confirmation::Confirmed,
            "released by round 1, not round 0"
        );
    }
}
