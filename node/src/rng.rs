//! The randomness seam: one seeded RNG handle per node.
//!
//! Version ids, upload ids and (through [`crate::raft::runtime`]) Raft election
//! timeouts all draw from a seed, so the simulation replays exactly. Only
//! [`NodeRng::from_entropy`] touches the operating system's entropy, and only binaries
//! call it.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::{Arc, Mutex};

/// A cheap, cloneable, seeded random source.
#[derive(Clone)]
pub struct NodeRng {
    inner: Arc<Mutex<StdRng>>,
    seed: u64,
}

impl std::fmt::Debug for NodeRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRng").finish_non_exhaustive()
    }
}

impl NodeRng {
    /// A deterministic source.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            seed,
        }
    }

    /// A source seeded from the operating system (real runs only).
    pub fn from_entropy() -> Self {
        Self::from_seed(rand::rngs::OsRng.next_u64())
    }

    /// The seed this source started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        // A poisoned lock only means another task panicked mid-draw; the RNG state is
        // still a valid RNG state.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A random u64.
    pub fn next_u64(&self) -> u64 {
        self.with(|r| r.next_u64())
    }

    /// A random 128-bit id.
    pub fn next_u128(&self) -> u128 {
        self.with(|r| (u128::from(r.next_u64()) << 64) | u128::from(r.next_u64()))
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.with(|r| r.fill_bytes(buf))
    }
}
