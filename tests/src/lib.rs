//! The integration-test harness: real `stratus-node` processes on loopback.
//!
//! Owns: free loopback ports ([`ports`]), topology and node-config files
//! ([`layout`]), node processes and whole clusters ([`process`], [`cluster`]),
//! bounded polling ([`poll`]), raw `stratus.v1` gRPC for what the SDK refuses to
//! send ([`grpc`]), and running the `it-stratus` CLI ([`cli`]); the files of the
//! docker-compose deployment ([`deploy`], their generator) and compose projects of
//! it for the drill ([`compose`]).
//!
//! The tests themselves live in `tests/tests/`, one binary per area. They are
//! black-box: they reach the node only through its processes, the SDK, the CLI
//! binary and the public gRPC API, never through `stratus_node` internals (the
//! crate depends on `stratus-node` only to build `it-stratus-node`).
//!
//! **Parallel safety:** tests in one binary run in parallel. Every cluster gets its
//! own temporary directory and ports no other cluster of the process was handed
//! ([`ports::free_ports`]); every child process is killed when its owner drops,
//! also while a failed test unwinds.
//!
//! **Failure reports:** a [`cluster::Cluster`] prints the tail of every node's log
//! when it drops. libtest captures that output and shows it only for failing tests.

pub mod cli;
pub mod cluster;
pub mod compose;
pub mod deploy;
pub mod grpc;
pub mod layout;
pub mod poll;
pub mod ports;
pub mod process;

use std::path::PathBuf;

pub use cluster::{Cluster, ClusterOptions};
pub use layout::Layout;

/// Paths of the programs the tests start.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `it-stratus-node` (the `stratus-node` program).
    pub node: PathBuf,
    /// `it-stratus` (the `stratus` CLI).
    pub cli: PathBuf,
}

/// The [`Bins`] of this crate. A macro because Cargo sets `CARGO_BIN_EXE_*` only
/// while compiling integration tests, so it must expand in the test's crate.
#[macro_export]
macro_rules! bins {
    () => {
        $crate::Bins {
            node: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_it-stratus-node")),
            cli: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_it-stratus")),
        }
    };
}

/// `len` bytes from a seeded RNG, so a failing run can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> bytes::Bytes {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::SmallRng::seed_from_u64(seed).fill_bytes(&mut data);
    data.into()
}
