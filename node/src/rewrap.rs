//! Background re-wrap after a KEK rotation: on the leader of each replica group,
//! data keys still wrapped by an older KEK version of an active tenant are unwrapped
//! and wrapped again under the current version, and a small `Rewrap` entry replaces
//! the envelope. No object data is re-encrypted. `stratus key show` reports what is
//! left (`rewrap_pending`).

use crate::node::StratusNode;
use crate::objects::ObjectCommand;
use crate::raft::Command;
use std::collections::BTreeMap;
use stratus_core::crypto::envelope::KeySource;
use stratus_core::placement::GroupId;

/// Envelopes re-wrapped per round on this node, at most.
const REWRAPS_PER_ROUND: usize = 512;
/// Proposals in flight at once.
const REWRAPS_IN_FLIGHT: usize = 32;
/// Objects read per scan page.
const SCAN_PAGE: usize = 1024;
/// A tenant found fully re-wrapped is scanned again after this many rounds (an
/// upload that began before a rotation may commit after the scan).
const RESCAN_ROUNDS: u64 = 30;

/// What the re-wrap task remembers between rounds.
#[derive(Debug, Default)]
pub struct RewrapMemory {
    /// Tenants whose every object was found under this current version.
    done: BTreeMap<String, u32>,
    rounds: u64,
}

/// One round over the active tenants of the groups this node leads.
pub async fn rewrap_round(node: &StratusNode, memory: &mut RewrapMemory) {
    memory.rounds += 1;
    if memory.rounds.is_multiple_of(RESCAN_ROUNDS) {
        memory.done.clear();
    }
    let tenants: Vec<(String, GroupId, u32)> = node.directory.read(|d| {
        d.tenants
            .values()
            .filter_map(|t| {
                let v = d.vaults.get(&t.name)?;
                v.why_unusable()
                    .is_none()
                    .then(|| (t.name.clone(), t.group, v.current))
            })
            .collect()
    });
    let mut budget = REWRAPS_PER_ROUND;
    for (tenant, group, current) in tenants {
        if memory.done.get(&tenant) == Some(&current) {
            continue;
        }
        let Some(g) = node.groups.get(&group).filter(|g| g.is_leader()) else {
            continue;
        };
        match rewrap_tenant(node, g, &tenant, current, &mut budget).await {
            Ok(true) => {
                memory.done.insert(tenant, current);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(tenant, error = %e, "key re-wrap incomplete; retrying next round")
            }
        }
        if budget == 0 {
            return;
        }
    }
}

/// Re-wraps up to `budget` envelopes of `tenant`; true when none was left.
async fn rewrap_tenant(
    node: &StratusNode,
    group: &crate::group::GroupHandle,
    tenant: &str,
    current: u32,
    budget: &mut usize,
) -> crate::error::NodeResult<bool> {
    let reader = node.objects(group.id());
    let mut after = None;
    let mut all_current = true;
    loop {
        let page = reader.tenant_objects(tenant, after.as_ref(), SCAN_PAGE)?;
        let mut commands = Vec::new();
        for (id, meta) in &page {
            let stale = matches!(meta.encryption.source, KeySource::Tenant { kek_version } if kek_version != current);
            if !stale {
                continue;
            }
            all_current = false;
            if *budget == 0 {
                break;
            }
            if let Some(encryption) =
                node.keys
                    .rewrap(&node.rng, id, meta.version, &meta.encryption)?
            {
                *budget -= 1;
                commands.push(Command::Object(ObjectCommand::Rewrap {
                    object: id.clone(),
                    version: meta.version,
                    encryption,
                }));
            }
        }
        let count = commands.len();
        for batch in commands.chunks(REWRAPS_IN_FLIGHT) {
            let outcomes =
                futures::future::join_all(batch.iter().cloned().map(|c| group.propose(c))).await;
            for outcome in outcomes {
                outcome?;
            }
        }
        if count > 0 {
            tracing::info!(
                tenant,
                group = group.id(),
                envelopes = count,
                to_version = current,
                "re-wrapped data keys"
            );
        }
        match page.last() {
            Some((id, _)) if page.len() == SCAN_PAGE && *budget > 0 => {
                after = Some((id.container.clone(), id.key.clone()))
            }
            _ => return Ok(all_current && page.len() < SCAN_PAGE),
        }
    }
}
