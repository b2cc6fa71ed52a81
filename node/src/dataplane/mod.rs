//! Moving chunk bytes between the members of a replica group, outside Raft.
//!
//! Owns: the leader's fan-out of a new version's chunks to every member
//! ([`fanout::Fanout`]), fetching a chunk a member lacks or holds damaged from the
//! others ([`repair`]), and removing chunk blobs no committed version refers to
//! ([`sweep`]).
//!
//! Must not: make anything visible. Visibility is the `Commit` entry's job, proposed
//! by the put handler once [`fanout::Fanout::finish`] reports a majority holds the
//! version durably.

pub mod fanout;
pub mod repair;
pub mod sweep;

use std::time::Duration;

/// How long one chunk RPC to a peer may take.
pub const CHUNK_RPC_TIMEOUT: Duration = Duration::from_secs(15);

/// Version ids travel as 16 big-endian bytes.
pub fn version_to_wire(version: u128) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&version.to_be_bytes())
}

/// Parses a version id from the wire.
pub fn version_from_wire(raw: &[u8]) -> Option<u128> {
    <[u8; 16]>::try_from(raw).ok().map(u128::from_be_bytes)
}
