//! What is safe to retry, and how long to keep trying.
//!
//! Every operation runs under an [`Attempts`] budget: exponential backoff (50 ms
//! doubling to 1 s by default) bounded by an overall deadline (30 s by default).
//! Whether a given failure may be retried depends on the operation's
//! [`RetryClass`]; operations with state (uploads) decide per failure themselves
//! and report it as a [`Failure`].

use crate::client::ClientConfig;
use crate::error::Error;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How an operation may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryClass {
    /// No side effect (get, head, list, resolve, admin reads): retry on every
    /// transient failure.
    Read,
    /// Creates: retried like reads. If a retry answers AlreadyExists, the first
    /// attempt may have succeeded; the caller sees AlreadyExists (documented).
    Create,
    /// Side effects a node rejects before acting when it is not the leader (deletes):
    /// retry on not-leader and on requests that never left this machine.
    Mutation,
}

impl RetryClass {
    /// Whether `e` may be retried for an operation of this class.
    pub(crate) fn allows(self, e: &Error) -> bool {
        match self {
            RetryClass::Read | RetryClass::Create => is_transient(e),
            RetryClass::Mutation => is_rejected_before_acting(e),
        }
    }
}

/// Failures that may go away by trying again, possibly elsewhere.
pub(crate) fn is_transient(e: &Error) -> bool {
    matches!(
        e,
        Error::NotLeader { .. }
            | Error::Unavailable { .. }
            | Error::Transport { .. }
            | Error::DeadlineExceeded { .. }
    ) || is_shed(e)
}

/// A node refused the request before serving it because this connection had
/// too many requests in service (`requests_per_connection_max`): safe to send
/// again after a pause. (Quotas and size limits carry a Stratus code and are not.)
pub(crate) fn is_shed(e: &Error) -> bool {
    matches!(e, Error::ResourceExhausted { code: Some(code), .. } if code == "too-many-requests")
}

/// Failures that guarantee the node did nothing (see
/// [`Error::rejected_before_acting`]), or a request shed by the connection limit.
pub(crate) fn is_rejected_before_acting(e: &Error) -> bool {
    e.rejected_before_acting() || is_shed(e)
}

/// One failed attempt, and whether the operation allows another.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Try again (elsewhere if the error says so).
    Retry(Error),
    /// Give up with this error.
    Fatal(Error),
}

impl Failure {
    /// Classifies `e` for an operation of class `class`.
    pub(crate) fn classify(e: Error, class: RetryClass) -> Failure {
        if class.allows(&e) {
            Failure::Retry(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

/// Backoff and deadline of one operation.
#[derive(Debug)]
pub(crate) struct Attempts {
    started: Instant,
    deadline: Duration,
    next_delay: Duration,
    delay_max: Duration,
    /// Consecutive retries made without sleeping (following fresh leader hints).
    hops: u32,
    /// Attempts made so far.
    pub(crate) count: u32,
}

/// Leader hints followed immediately before backoff applies again (guards against
/// two nodes pointing at each other).
const IMMEDIATE_HOPS_MAX: u32 = 2;

impl Attempts {
    pub(crate) fn new(config: &ClientConfig) -> Attempts {
        Attempts {
            started: Instant::now(),
            deadline: config.deadline,
            next_delay: config.backoff_initial,
            delay_max: config.backoff_max,
            hops: 0,
            count: 1,
        }
    }

    /// Time since the operation started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// The pause before the next attempt, or `None` when the deadline leaves no
    /// room for one. `immediate` asks to skip the pause (a fresh leader hint).
    pub(crate) fn next(&mut self, immediate: bool) -> Option<Duration> {
        let delay = if immediate && self.hops < IMMEDIATE_HOPS_MAX {
            self.hops += 1;
            Duration::ZERO
        } else {
            self.hops = 0;
            let d = self.next_delay;
            self.next_delay = (self.next_delay * 2).min(self.delay_max);
            d
        };
        if delay >= self.remaining() {
            return None;
        }
        self.count += 1;
        Some(delay)
    }
}

/// Runs one attempt's future with a timeout; a timeout is a transport failure
/// (the request may have been sent).
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    addr: &str,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Transport {
            addr: addr.to_owned(),
            message: format!("no reply within {} ms", limit.as_millis()),
            sent: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(deadline_ms: u64) -> ClientConfig {
        ClientConfig {
            deadline: Duration::from_millis(deadline_ms),
            ..ClientConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_the_cap_and_stops_at_the_deadline() {
        let mut a = Attempts::new(&config(3_000));
        let delays: Vec<u64> = std::iter::from_fn(|| a.next(false))
            .map(|d| d.as_millis() as u64)
            .take(10)
            .collect();
        // Time is paused, so the whole budget stays available; the cap is 1 s.
        assert_eq!(delays[..6], [50, 100, 200, 400, 800, 1000]);
        let mut a2 = Attempts::new(&config(3_000));
        tokio::time::advance(Duration::from_millis(2_990)).await;
        assert_eq!(a2.next(false), None, "no room left before the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn leader_hints_are_followed_immediately_but_not_forever() {
        let mut a = Attempts::new(&config(30_000));
        assert_eq!(a.next(true), Some(Duration::ZERO));
        assert_eq!(a.next(true), Some(Duration::ZERO));
        assert_eq!(a.next(true), Some(Duration::from_millis(50)));
        assert_eq!(a.count, 4);
    }

    #[test]
    fn classes_decide_what_is_retried() {
        let not_leader = Error::NotLeader {
            leader_id: None,
            leader_addr: None,
            message: String::new(),
        };
        let sent = Error::Transport {
            addr: "a".into(),
            message: "reset".into(),
            sent: true,
        };
        let unsent = Error::Transport {
            addr: "a".into(),
            message: "refused".into(),
            sent: false,
        };
        let precondition = Error::FailedPrecondition {
            message: "etag".into(),
            code: None,
        };
        assert!(RetryClass::Read.allows(&sent));
        assert!(RetryClass::Mutation.allows(&not_leader));
        assert!(RetryClass::Mutation.allows(&unsent));
        assert!(!RetryClass::Mutation.allows(&sent));
        assert!(!RetryClass::Read.allows(&precondition));
        let shed = Error::ResourceExhausted {
            message: "this connection already has 512 requests in service".into(),
            code: Some("too-many-requests".into()),
        };
        let quota = Error::ResourceExhausted {
            message: "tenant \"t\" holds 5 objects".into(),
            code: Some("tenant-objects-quota".into()),
        };
        assert!(RetryClass::Mutation.allows(&shed) && RetryClass::Read.allows(&shed));
        assert!(!RetryClass::Read.allows(&quota) && !RetryClass::Mutation.allows(&quota));
    }
}
