//! Removing chunk blobs that no committed version refers to: uploads that failed
//! without cleaning up (leader crash, dropped member), and blobs left by a crash
//! between an entry's batch and its blob removal. A blob is only swept once it has
//! been idle for the upload idle limit, so an upload in progress is never touched;
//! a version committed after its blob was swept is repaired from its peers.

use crate::error::NodeResult;
use crate::node::StratusNode;

/// Removes idle unreferenced version blobs of `group`; returns how many.
pub fn sweep_group(node: &StratusNode, group: u64, idle_before_ms: u64) -> NodeResult<usize> {
    let reader = node.objects(group);
    let mut swept = 0;
    for (version, name) in reader.chunks().versions()? {
        if reader.chunk_list(version)?.is_some() {
            continue;
        }
        let idle = node
            .blobs
            .modified_ms(&name)?
            .is_some_and(|m| m < idle_before_ms);
        if idle {
            node.blobs.remove(&name)?;
            swept += 1;
        }
    }
    Ok(swept)
}
