//! Nodes that recently did not answer, so operations try the others first.
//!
//! When a region goes down (or is cut off), every connection attempt to one of its
//! nodes costs a connect timeout. Without a memory, each new operation (an admin
//! call, a re-resolve of a placement, a long failover call) walked the endpoint list
//! from the same place and paid that timeout again for every dead node before it
//! reached a live one. [`Unreachable`] remembers, per client, the addresses whose
//! last attempt failed at the transport level for [`UNREACHABLE_MEMORY`]; address
//! lists are then ordered with those last (keeping their order otherwise), and an
//! address leaves the list as soon as a call to it succeeds. It only reorders:
//! when every node is marked, every node is still tried.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;
use tokio::time::Instant;

/// How long a node that did not answer is tried after the others.
pub(crate) const UNREACHABLE_MEMORY: Duration = Duration::from_secs(30);

/// Addresses whose last attempt failed at the transport level, with when.
#[derive(Debug, Default)]
pub(crate) struct Unreachable {
    since: RwLock<HashMap<String, Instant>>,
}

impl Unreachable {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Instant>> {
        self.since
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that `addr` did not answer.
    pub(crate) fn mark(&self, addr: &str) {
        self.write().insert(addr.to_owned(), Instant::now());
    }

    /// Notes that `addr` answered.
    pub(crate) fn clear(&self, addr: &str) {
        let known = self
            .since
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(addr);
        if known {
            self.write().remove(addr);
        }
    }

    /// Whether `addr` failed within [`UNREACHABLE_MEMORY`].
    pub(crate) fn is_recent(&self, addr: &str) -> bool {
        self.since
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(addr)
            .is_some_and(|at| at.elapsed() < UNREACHABLE_MEMORY)
    }

    /// Moves the addresses that recently failed to the back, keeping the order of
    /// the others (and of the failed ones among themselves).
    pub(crate) fn order(&self, addrs: &mut [String]) {
        // A stable sort on a bool key: `false` (answering) first.
        addrs.sort_by_key(|a| self.is_recent(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failed_nodes_go_last_until_they_answer_or_are_forgotten() {
        let u = Unreachable::default();
        let mut list = addrs(&["a", "b", "c", "d"]);
        u.order(&mut list);
        assert_eq!(
            list,
            addrs(&["a", "b", "c", "d"]),
            "nothing known: as given"
        );

        u.mark("a");
        u.mark("c");
        u.order(&mut list);
        assert_eq!(list, addrs(&["b", "d", "a", "c"]));

        // Every node marked: all are still tried, in the given order.
        u.mark("b");
        u.mark("d");
        let mut all = addrs(&["a", "b", "c", "d"]);
        u.order(&mut all);
        assert_eq!(all, addrs(&["a", "b", "c", "d"]));

        // One answers again: it goes first.
        u.clear("c");
        u.order(&mut all);
        assert_eq!(all, addrs(&["c", "a", "b", "d"]));

        // After the memory, the others are tried in their own order again.
        tokio::time::advance(UNREACHABLE_MEMORY).await;
        let mut list = addrs(&["a", "b", "c", "d"]);
        u.order(&mut list);
        assert_eq!(list, addrs(&["a", "b", "c", "d"]));
    }
}
