//! Linearizability of each key's history (a register: absent, or the value of one
//! write), checked by a Wing & Gong search with memoisation.
//!
//! Known outcomes must take their place between invocation and completion;
//! `Unknown` writes may take effect once at any time after their invocation, or
//! never; unknown and failed reads are dropped, failed writes did nothing. Keys are
//! checked independently (linearizability is compositional).

use crate::history::{Cond, Event, Op, Outcome, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// States a search may visit per key before it gives up as inconclusive.
pub const SEARCH_STATES_MAX: usize = 2_000_000;

/// Why a key's history is not linearizable (or could not be decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    /// What went wrong, with the state reached and the operations that could not
    /// come next.
    pub detail: String,
    /// The search ran out of budget: neither proven nor refuted.
    pub inconclusive: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    op: Op,
    outcome: Outcome,
    invoked: Duration,
    /// `None`: never completed (unknown outcome): no real-time upper bound.
    completed: Option<Duration>,
    client: u32,
}

impl Entry {
    fn optional(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown(_))
    }

    /// The state after this operation at `state`, if it can happen there.
    fn step(&self, state: Value) -> Option<Value> {
        let cond_holds = |cond: &Cond| match cond {
            Cond::Always => true,
            Cond::IfMatch(w) => state == Some(*w),
            Cond::IfAbsent => state.is_none(),
        };
        match (&self.op, &self.outcome) {
            (Op::Get, Outcome::Read(v)) => (*v == state).then_some(state),
            (Op::Put { id, cond, .. }, Outcome::Done | Outcome::Unknown(_)) => {
                cond_holds(cond).then_some(Some(*id))
            }
            (Op::Put { cond, .. }, Outcome::Refused) => (!cond_holds(cond)).then_some(state),
            (Op::Delete { cond }, Outcome::Done | Outcome::Unknown(_)) => {
                (state.is_some() && cond_holds(cond)).then_some(None)
            }
            (Op::Delete { cond }, Outcome::Refused) => {
                (state.is_some() && !cond_holds(cond)).then_some(state)
            }
            (Op::Delete { .. }, Outcome::Absent) => state.is_none().then_some(state),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let done = self
            .completed
            .map(|c| format!("{}ms", c.as_millis()))
            .unwrap_or_else(|| "never".into());
        format!(
            "client {} {:?} -> {:?} [{}ms..{done}]",
            self.client,
            self.op,
            self.outcome,
            self.invoked.as_millis()
        )
    }
}

/// Operations that constrain the search: dropped are failed writes (no effect),
/// unknown reads (no information), corrupt reads (reported elsewhere) and reads
/// from the secondary copy (eventually consistent, checked by `crate::geo::check`).
fn entries(events: &[&Event]) -> Vec<Entry> {
    events
        .iter()
        .filter(|e| !matches!(e.op, Op::SecondaryGet { .. }))
        .filter(|e| {
            !matches!(
                (&e.op, &e.outcome),
                (_, Outcome::Failed(_) | Outcome::Corrupt(_)) | (Op::Get, Outcome::Unknown(_))
            )
        })
        .map(|e| Entry {
            op: e.op.clone(),
            outcome: e.outcome.clone(),
            invoked: e.invoked,
            completed: e.outcome.is_known().then_some(e.completed),
            client: e.client,
        })
        .collect()
}

struct Search<'a> {
    ops: &'a [Entry],
    failed: HashSet<(Vec<u64>, Value)>,
    visited: usize,
    /// The deepest point reached: (ops placed, state, index of ops not placeable).
    deepest: (usize, Value, Vec<usize>),
}

fn bit(set: &[u64], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

fn clear(set: &mut [u64], i: usize) {
    set[i / 64] &= !(1 << (i % 64));
}

impl Search<'_> {
    /// Whether the remaining operations (a bitset) can be linearized from `state`.
    /// `Err(())` when the budget ran out.
    fn go(
        &mut self,
        remaining: &mut Vec<u64>,
        left_known: usize,
        placed: usize,
        state: Value,
    ) -> Result<bool, ()> {
        if left_known == 0 {
            return Ok(true);
        }
        if self.failed.contains(&(remaining.clone(), state)) {
            return Ok(false);
        }
        self.visited += 1;
        if self.visited > SEARCH_STATES_MAX {
            return Err(());
        }
        // Minimal operations: nothing still remaining completed before they began.
        let horizon = (0..self.ops.len())
            .filter(|i| bit(remaining, *i))
            .filter_map(|i| self.ops[i].completed)
            .min()
            .unwrap_or(Duration::MAX);
        let candidates: Vec<usize> = (0..self.ops.len())
            .filter(|i| bit(remaining, *i) && self.ops[*i].invoked <= horizon)
            .collect();
        // Known operations first: optional ones are tried only when needed.
        let ordered = candidates
            .iter()
            .filter(|i| !self.ops[**i].optional())
            .chain(candidates.iter().filter(|i| self.ops[**i].optional()));
        let mut stuck = Vec::new();
        for &i in ordered {
            let Some(next) = self.ops[i].step(state) else {
                stuck.push(i);
                continue;
            };
            clear(remaining, i);
            let known = usize::from(!self.ops[i].optional());
            let ok = self.go(remaining, left_known - known, placed + 1, next);
            remaining[i / 64] |= 1 << (i % 64);
            if ok? {
                return Ok(true);
            }
        }
        if placed >= self.deepest.0 {
            self.deepest = (placed, state, stuck);
        }
        self.failed.insert((remaining.clone(), state));
        Ok(false)
    }
}

/// Checks one key's events.
pub fn check_key(key: &str, events: &[&Event]) -> Option<Finding> {
    let ops = entries(events);
    let known = ops.iter().filter(|e| !e.optional()).count();
    let mut remaining = vec![0u64; ops.len().div_ceil(64).max(1)];
    for i in 0..ops.len() {
        remaining[i / 64] |= 1 << (i % 64);
    }
    let mut search = Search {
        ops: &ops,
        failed: HashSet::new(),
        visited: 0,
        deepest: (0, None, Vec::new()),
    };
    match search.go(&mut remaining, known, 0, None) {
        Ok(true) => None,
        Ok(false) => {
            let (placed, state, stuck) = &search.deepest;
            let stuck: Vec<String> = stuck.iter().map(|i| ops[*i].describe()).collect();
            Some(Finding {
                key: key.to_string(),
                detail: format!(
                    "not linearizable: after placing {placed} of {} operations (value {}), none of these can come next:\n    {}",
                    ops.len(),
                    state.map(|w| format!("write {w}")).unwrap_or_else(|| "absent".into()),
                    stuck.join("\n    ")
                ),
                inconclusive: false,
            })
        }
        Err(()) => Some(Finding {
            key: key.to_string(),
            detail: format!(
                "undecided after {SEARCH_STATES_MAX} search states ({} operations)",
                ops.len()
            ),
            inconclusive: true,
        }),
    }
}

/// Checks every key of a history.
pub fn check(history: &[Event]) -> Vec<Finding> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    by_key
        .iter()
        .filter_map(|(k, evs)| check_key(k, evs))
        .collect()
}
