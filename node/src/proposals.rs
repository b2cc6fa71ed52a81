//! Batching proposals: concurrent writes to one group become one Raft entry.
//!
//! openraft 0.9 handles each `client_write` on the group's single core task (append,
//! replication bookkeeping, commit), and measurement showed that task capping a
//! group near 1,200 writes/s whatever the concurrency. A [`ProposalQueue`] gathers
//! the commands that arrive while earlier batches are in flight and proposes them
//! as one [`Command::Batch`], applied in order and atomically on every replica. A
//! lone command is proposed as itself, so an idle group adds no latency.

use crate::raft::{Command, Raft, Response};
use openraft::error::{ClientWriteError, RaftError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Batches a group may have in flight at once (keeps the log pipeline full).
const IN_FLIGHT_MAX: usize = 2;
/// Commands per batch, at most.
const BATCH_COMMANDS_MAX: usize = 256;
/// Approximate bytes per batch, at most: keeps one entry, and one AppendEntries of
/// `APPEND_ENTRIES_MAX` entries, well under the peer message limit.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// What became of one proposed command.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Committed and applied.
    Applied(Response),
    /// This replica does not lead the group (nothing was proposed).
    NotLeader,
    /// The group stopped or refused the proposal.
    Failed(String),
    /// No commit within the timeout: the command may or may not take effect.
    Unknown,
}

type Waiter = (Command, oneshot::Sender<Outcome>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    in_flight: usize,
}

/// One group's proposal queue.
pub struct ProposalQueue {
    raft: Raft,
    timeout: Duration,
    queue: Mutex<Queue>,
}

/// Rough size of a command in the log (its bulk: inline bytes, CRC lists).
fn approx_bytes(command: &Command) -> usize {
    use crate::objects::ObjectCommand as O;
    const FIXED_BYTES: usize = 256;
    FIXED_BYTES
        + match command {
            Command::Object(O::PutInline { data, .. }) => data.len(),
            Command::Object(O::Commit { chunk_crcs, .. }) => chunk_crcs.len() * 4,
            Command::Batch(all) => all.iter().map(approx_bytes).sum(),
            _ => 0,
        }
}

impl ProposalQueue {
    pub fn new(raft: Raft, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            raft,
            timeout,
            queue: Mutex::new(Queue::default()),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes `command` (batched with others) and waits for its outcome.
    pub async fn propose(self: &Arc<Self>, command: Command) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue();
            q.waiting.push((command, tx));
            let start = q.in_flight < IN_FLIGHT_MAX;
            q.in_flight += usize::from(start);
            start
        };
        if start {
            // A spawned task, so a cancelled caller never strands the others.
            tokio::spawn(self.clone().run());
        }
        rx.await
            .unwrap_or(Outcome::Failed("the proposal queue stopped".into()))
    }

    /// Takes the next batch from the queue, or `None` (and steps down) when empty.
    fn next_batch(&self) -> Option<Vec<Waiter>> {
        let mut q = self.queue();
        if q.waiting.is_empty() {
            q.in_flight -= 1;
            return None;
        }
        let mut bytes = 0;
        let mut take = 0;
        for (command, _) in &q.waiting {
            let size = approx_bytes(command);
            if take > 0 && (take == BATCH_COMMANDS_MAX || bytes + size > BATCH_BYTES_MAX) {
                break;
            }
            bytes += size;
            take += 1;
        }
        Some(q.waiting.drain(..take).collect())
    }

    async fn run(self: Arc<Self>) {
        while let Some(batch) = self.next_batch() {
            let (commands, senders): (Vec<Command>, Vec<oneshot::Sender<Outcome>>) =
                batch.into_iter().unzip();
            let single = commands.len() == 1;
            let proposal = if single {
                commands.into_iter().next().expect("one command")
            } else {
                Command::Batch(commands)
            };
            let outcome = match tokio::time::timeout(self.timeout, self.raft.client_write(proposal))
                .await
            {
                Ok(Ok(reply)) => Outcome::Applied(reply.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    Outcome::NotLeader
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    Outcome::Failed(e.to_string())
                }
                Ok(Err(RaftError::Fatal(e))) => Outcome::Failed(format!("the group stopped: {e}")),
                Err(_) => Outcome::Unknown,
            };
            match outcome {
                Outcome::Applied(Response::Batch(each))
                    if !single && each.len() == senders.len() =>
                {
                    for (tx, response) in senders.into_iter().zip(each) {
                        let _ = tx.send(Outcome::Applied(response));
                    }
                }
                Outcome::Applied(other) if !single => {
                    let why = format!(
                        "a batch of {} commands was answered with {other:?}",
                        senders.len()
                    );
                    for tx in senders {
                        let _ = tx.send(Outcome::Failed(why.clone()));
                    }
                }
                outcome => {
                    for tx in senders {
                        let _ = tx.send(outcome.clone());
                    }
                }
            }
        }
    }
}
