//! Removing chunk blobs that no committed version refers to: versions that died
//! (overwritten, deleted), uploads that failed without cleaning up (leader crash,
//! dropped member), and blobs left by a crash between an entry's batch and its blob
//! removal.
//!
//! A blob goes only when it is unreferenced, idle for the upload idle limit (so an
//! upload in progress is never touched), and has been seen unreferenced for the read
//! grace period (so a read that was streaming a version when it died finishes). A
//! version committed after its blob was swept is repaired from its peers.

use crate::error::NodeResult;
use crate::node::StratusNode;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// When each unreferenced blob was first seen unreferenced, by (group, version).
#[derive(Default)]
pub struct SweepMemory {
    first_seen_ms: Mutex<BTreeMap<(u64, u128), u64>>,
}

/// Removes the blobs of `group` that are due; returns how many.
pub fn sweep_group(node: &StratusNode, group: u64, now_ms: u64) -> NodeResult<usize> {
    let idle_before_ms = now_ms.saturating_sub(node.settings.upload_idle_max.as_millis() as u64);
    let seen_before_ms = now_ms.saturating_sub(node.settings.read_grace.as_millis() as u64);
    let reader = node.objects(group);
    let mut memory = node
        .sweep
        .first_seen_ms
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut unreferenced = BTreeMap::new();
    let mut swept = 0;
    for (version, name) in reader.chunks().versions()? {
        if reader.chunk_list(version)?.is_some() || reader.geo_hold(version)? {
            continue;
        }
        let first_seen = memory.get(&(group, version)).copied().unwrap_or(now_ms);
        let idle = node
            .blobs
            .modified_ms(&name)?
            .is_some_and(|m| m < idle_before_ms);
        if idle && first_seen <= seen_before_ms {
            node.blobs.remove(&name)?;
            swept += 1;
        } else {
            unreferenced.insert((group, version), first_seen);
        }
    }
    memory.retain(|(g, _), _| *g != group);
    memory.extend(unreferenced);
    Ok(swept)
}
