//! The randomness seam: one seeded RNG handle per node.
//!
//! Version ids, upload ids, data keys, KEKs, wrapping nonces and (through [`crate::raft::runtime`]) Raft election
//! timeouts all draw from a seed, so the simulation replays exactly. Only
//! [`NodeRng::from_entropy`] touches the operating system's entropy, and only binaries
//! call it.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::{Arc, Mutex};
use stratus_core::crypto::{SecretKey, KEY_BYTES, NONCE_BYTES};
use zeroize::Zeroizing;

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

    /// A source seeded with 256 bits from the operating system (real runs only): it
    /// draws data keys and nonces, so its seed must be as strong as the keys.
    pub fn from_entropy() -> Self {
        Self {
            inner: Arc::new(Mutex::new(StdRng::from_entropy())),
            seed: 0,
        }
    }

    /// The seed this source started from (0 when seeded from the operating system).
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

    /// A fresh random 256-bit key (data keys, KEKs). `StdRng` is a CSPRNG (ChaCha12).
    pub fn secret_key(&self) -> SecretKey {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        self.fill(bytes.as_mut());
        SecretKey::from_array(bytes)
    }

    /// A random AES-GCM nonce (for key wrapping).
    pub fn nonce(&self) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        self.fill(&mut nonce);
        nonce
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) {
        self.with(|r| r.fill_bytes(buf))
    }
}
