//! Pure domain logic shared by the node, the client and the simulation.
//!
//! Owns: resource names and their rules ([`names`]), the named limits ([`limits`]),
//! the topology file format and its validation ([`topology`]), the placement of
//! replica groups on failure domains ([`placement`]), the encryption envelope
//! ([`crypto`]) and transport security material ([`tls`]).
//!
//! **Architecture Invariant:** this crate does no IO and has no tokio, tonic, sled or
//! openraft dependency. Everything here is a deterministic function of its input, so
//! it can be tested exhaustively and run unchanged inside the simulation.

pub mod audit;
pub mod auth;
pub mod crypto;
pub mod limits;
pub mod names;
pub mod placement;
pub mod redundancy;
pub mod tls;
pub mod topology;

pub use redundancy::Redundancy;
