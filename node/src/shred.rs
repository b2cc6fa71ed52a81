//! Destroying a tenant's data after its keys were purged (crypto-shredding, the
//! part keys alone cannot do): on the leader of the tenant's replica group, its
//! objects and containers are removed in bounded `ShredTenant` entries, so objects
//! under customer-provided keys (which the purge cannot touch) go too. The chunk
//! blobs follow with the orphan sweep. The directory's own log is shredded by
//! `GroupHandle::shred_log_through`.

use crate::directory::vault::VaultState;
use crate::node::StratusNode;
use crate::objects::store::SHRED_OBJECTS_MAX;
use crate::objects::{ObjectCommand, ObjectResponse};
use crate::raft::{Command, Response};
use std::collections::BTreeSet;
use stratus_core::placement::GroupId;

/// `ShredTenant` entries one round proposes at most, over all tenants.
const SHRED_ENTRIES_PER_ROUND: usize = 16;

/// Tenants already found shredded by this node (a deleted tenant leaves the set
/// with the directory record).
#[derive(Debug, Default)]
pub struct ShredMemory {
    done: BTreeSet<String>,
}

/// One round over the purged tenants whose group this node leads.
pub async fn shred_round(node: &StratusNode, memory: &mut ShredMemory) {
    let purged: Vec<(String, GroupId)> = node.directory.read(|d| {
        d.tenants
            .values()
            .filter(|t| {
                d.vaults
                    .get(&t.name)
                    .is_some_and(|v| matches!(v.state, VaultState::Purged { .. }))
            })
            .map(|t| (t.name.clone(), t.group))
            .collect()
    });
    memory
        .done
        .retain(|t| purged.iter().any(|(name, _)| name == t));
    let mut budget = SHRED_ENTRIES_PER_ROUND;
    for (tenant, group) in purged {
        if memory.done.contains(&tenant) {
            continue;
        }
        let Some(g) = node.groups.get(&group).filter(|g| g.is_leader()) else {
            continue;
        };
        while budget > 0 {
            budget -= 1;
            let command = Command::Object(ObjectCommand::ShredTenant {
                tenant: tenant.clone(),
                limit: SHRED_OBJECTS_MAX,
            });
            match g.propose(command).await {
                Ok(Response::Object(ObjectResponse::Shredded {
                    objects,
                    containers,
                    done,
                })) => {
                    if objects + containers > 0 {
                        tracing::info!(
                            tenant,
                            group,
                            objects,
                            containers,
                            "shredded a purged tenant's data"
                        );
                    }
                    if done {
                        memory.done.insert(tenant.clone());
                        break;
                    }
                }
                Ok(other) => {
                    tracing::warn!(tenant, ?other, "unexpected answer to a shred");
                    break;
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "shredding a purged tenant incomplete; retrying");
                    break;
                }
            }
        }
    }
}
