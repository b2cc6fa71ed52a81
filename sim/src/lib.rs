//! Deterministic simulation of Stratus: the unmodified node code in a turmoil world
//! built from a topology file, the real SDK as clients, injected faults at every
//! failure-domain level, checkers over the recorded history and the replicas'
//! stores, and the durability matrix. The same seed replays the same run.
//!
//! Modules: [`net`] (seams: transport, dialer, clock), [`world`] (hosts and fault
//! primitives), [`history`] and [`workload`] (what clients do and see),
//! [`check`] (linearizability, lost writes, corruption), [`trace`] (the event trace
//! and its hash).
//!
//! **Architecture Invariant:** nothing here reads the wall clock, draws unseeded
//! randomness, spawns threads or iterates a hash map where order matters.

// Without it turmoil cannot seed the hosts' schedulers and the same seed no longer
// replays the same run. A RUSTFLAGS variable replaces the flags of .cargo/config.toml.
#[cfg(not(tokio_unstable))]
compile_error!("stratus-sim needs `--cfg tokio_unstable` (set in .cargo/config.toml); a RUSTFLAGS variable overrides that file, so add `--cfg tokio_unstable` to it");

pub mod catalog;
pub mod check;
pub mod cli;
pub mod faults;
pub mod geo;
pub mod history;
pub mod matrix;
pub mod net;
pub mod scenario;
pub mod trace;
pub mod workload;
pub mod world;
