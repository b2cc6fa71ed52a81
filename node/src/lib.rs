//! The Stratus storage node as a library.
//!
//! A node hosts a replica of the directory (group 0) and of each replica group the
//! deterministic plan puts on it (multi-Raft, openraft), persists them through the
//! storage seam, and serves the object, admin and peer gRPC services.
//!
//! Layers, bottom up: [`storage`] (engine seam) → [`raft`] (log, state machine,
//! network) → [`objects`] / [`directory`] (applications) → [`group`] / [`node`]
//! (running groups) → [`server`] (gRPC edge). [`transport`], [`clock`] and [`rng`] are
//! the seams through which the environment enters, so the simulation runs this code
//! unchanged.
//!
//! **Architecture Invariant:** node logic spawns no threads and reads no wall clock
//! or OS randomness directly; only [`transport`] binds or dials.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod dataplane;
pub mod directory;
pub mod error;
pub mod forward;
pub mod geo;
pub mod group;
pub mod inspect;
pub mod keyring;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod peers;
pub mod proposals;
pub mod raft;
pub mod read_barrier;
pub mod rewrap;
pub mod rng;
pub mod root_key;
pub mod server;
pub mod shred;
pub mod storage;
pub mod tls;
pub mod transport;
