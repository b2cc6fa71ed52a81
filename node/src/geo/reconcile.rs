//! Reconciling each replica group's roles with the directory: on every group this
//! node leads, for every tenant the directory places on it (as primary or as
//! secondary) or that still has a role here, propose the `SetRole` (and, before a
//! fresh secondary or a drop, the `ShredTenant` entries clearing old data) that
//! brings the group in line.
//!
//! | directory says | role here | action |
//! |---|---|---|
//! | primary at epoch e, shipping to s | other | `Primary { e, s }` |
//! | secondary of p at e, seeded | primary (planned swap) or older secondary | `Secondary { reset: false }` |
//! | secondary of p at e, not seeded | anything else | clear data, `Secondary { reset: true }` |
//! | neither, primary elsewhere at a newer epoch | primary | `Fence` |
//! | neither | secondary, or a tenant gone from the directory | clear data, `Drop` |
//!
//! A fenced role stays until a reprotect names the group secondary again: its data
//! and unshipped outbox are what the reprotect recovers.

use crate::directory::TenantRecord;
use crate::error::NodeResult;
use crate::group::GroupHandle;
use crate::node::StratusNode;
use crate::objects::geo::{RoleChange, TenantRole};
use crate::objects::store::SHRED_OBJECTS_MAX;
use crate::objects::{ObjectCommand, ObjectResponse};
use crate::raft::{Command, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};

/// How often leaders reconcile.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// `ShredTenant` entries one round proposes to clear a tenant's old data.
const CLEAR_ENTRIES_PER_ROUND: usize = 8;

/// What the directory wants of `group` for `tenant`.
fn desired(group: GroupId, t: &TenantRecord) -> Option<RoleChange> {
    if t.group == group {
        return Some(RoleChange::Primary {
            epoch: t.epoch,
            ship_to: t.secondary.as_ref().map(|s| s.group),
        });
    }
    match &t.secondary {
        Some(s) if s.group == group => Some(RoleChange::Secondary {
            epoch: t.epoch,
            from: t.group,
            reset: !s.seeded,
        }),
        _ => None,
    }
}

/// The next step for one tenant, given its directory record (if any) and its
/// current role record here (if any). `None`: nothing to do.
fn step(group: GroupId, record: Option<&TenantRecord>, role: Option<&TenantRole>) -> Option<Step> {
    let want = record.and_then(|t| desired(group, t));
    match (want, role) {
        (Some(RoleChange::Primary { epoch, ship_to }), current) => {
            let current = current.cloned().unwrap_or_else(TenantRole::implicit);
            let same = matches!(&current, TenantRole::Primary { epoch: e, ship_to: s, .. } if *e == epoch && *s == ship_to);
            (!same).then_some(Step::Set(RoleChange::Primary { epoch, ship_to }))
        }
        (Some(RoleChange::Secondary { epoch, from, reset }), current) => {
            let done = matches!(current, Some(TenantRole::Secondary { epoch: e, from: f, .. }) if *e == epoch && *f == from);
            if done {
                return None;
            }
            let change = RoleChange::Secondary { epoch, from, reset };
            // A planned swap keeps the data; anything else starts from nothing.
            let keeps = !reset
                && matches!(
                    current,
                    Some(TenantRole::Primary { .. } | TenantRole::Secondary { .. })
                );
            Some(if keeps {
                Step::Set(change)
            } else {
                Step::ClearThenSet(RoleChange::Secondary {
                    epoch,
                    from,
                    reset: true,
                })
            })
        }
        (Some(other), _) => Some(Step::Set(other)),
        (None, None) => None,
        (None, Some(TenantRole::Primary { epoch, .. })) => match record {
            Some(t) if t.epoch > *epoch && t.group != group => {
                Some(Step::Set(RoleChange::Fence { epoch: t.epoch }))
            }
            Some(_) => None,
            // The tenant is gone from the directory.
            None => Some(Step::ClearThenSet(RoleChange::Drop)),
        },
        (None, Some(TenantRole::Secondary { .. })) => Some(Step::ClearThenSet(RoleChange::Drop)),
        (None, Some(TenantRole::Fenced { .. })) => record
            .is_none()
            .then_some(Step::ClearThenSet(RoleChange::Drop)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Set(RoleChange),
    /// Remove the tenant's objects and containers here first.
    ClearThenSet(RoleChange),
}

async fn propose_object(g: &GroupHandle, command: ObjectCommand) -> NodeResult<ObjectResponse> {
    match g.propose(Command::Object(command)).await? {
        Response::Object(r) => Ok(r),
        other => Err(crate::error::NodeError::Internal(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Removes the tenant's data in `g`, a bounded amount per call; true when none is left.
async fn clear(g: &GroupHandle, tenant: &str) -> NodeResult<bool> {
    for _ in 0..CLEAR_ENTRIES_PER_ROUND {
        let r = propose_object(
            g,
            ObjectCommand::ShredTenant {
                tenant: tenant.to_string(),
                limit: SHRED_OBJECTS_MAX,
            },
        )
        .await?;
        if let ObjectResponse::Shredded { done: true, .. } = r {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One round over every replica group this node leads.
///
/// Returns whether it changed a role (a new primary then needs its lease).
pub async fn reconcile_round(node: &StratusNode) -> bool {
    let mut changed = false;
    let tenants: BTreeMap<String, TenantRecord> = node.directory.read(|d| d.tenants.clone());
    for g in node.groups.values().filter(|g| g.id() != DIRECTORY_GROUP) {
        if !g.is_leader() {
            continue;
        }
        let roles = node.geo.roles(g.id()).all();
        let names: BTreeSet<&String> = tenants
            .iter()
            .filter(|(_, t)| desired(g.id(), t).is_some())
            .map(|(n, _)| n)
            .chain(roles.keys())
            .collect();
        for name in names {
            let Some(next) = step(g.id(), tenants.get(name), roles.get(name)) else {
                continue;
            };
            let outcome = async {
                let change = match next {
                    Step::Set(change) => change,
                    Step::ClearThenSet(change) => {
                        if !clear(g, name).await? {
                            return Ok(None);
                        }
                        change
                    }
                };
                tracing::info!(tenant = %name, group = g.id(), ?change, "geo role change");
                propose_object(
                    g,
                    ObjectCommand::SetRole {
                        tenant: name.clone(),
                        change,
                    },
                )
                .await
                .map(Some)
            }
            .await;
            match outcome {
                Ok(Some(_)) => changed = true,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(tenant = %name, group = g.id(), error = %e, "geo role change deferred")
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::geo::Secondary;
    use crate::directory::TenantStatus;
    use stratus_core::Redundancy;

    fn record(group: GroupId, secondary: Option<(GroupId, bool)>, epoch: u64) -> TenantRecord {
        TenantRecord {
            name: "acme".into(),
            region: "west".into(),
            redundancy: if secondary.is_some() {
                Redundancy::Grs
            } else {
                Redundancy::Lrs
            },
            group,
            status: TenantStatus::Active,
            created_ms: 0,
            epoch,
            secondary: secondary.map(|(group, seeded)| Secondary {
                region: "north".into(),
                group,
                seeded,
            }),
            failovers: Vec::new(),
            auto_failover_after_ms: None,
            lease: None,
        }
    }

    fn primary(epoch: u64, ship_to: Option<GroupId>) -> TenantRole {
        TenantRole::Primary {
            epoch,
            ship_to,
            next_seq: 10,
            acked_seq: 9,
            last_sync_ms: 0,
            seeded: true,
        }
    }

    fn secondary(epoch: u64, from: GroupId) -> TenantRole {
        TenantRole::Secondary {
            epoch,
            from,
            applied_seq: 9,
            as_of_ms: 0,
            seeded: true,
        }
    }

    #[test]
    fn every_row_of_the_table() {
        let grs = record(1, Some((3, true)), 0);
        // Primary side.
        assert_eq!(
            step(1, Some(&grs), None),
            Some(Step::Set(RoleChange::Primary {
                epoch: 0,
                ship_to: Some(3)
            }))
        );
        assert_eq!(step(1, Some(&grs), Some(&primary(0, Some(3)))), None);
        let lrs = record(1, None, 0);
        assert_eq!(
            step(1, Some(&lrs), None),
            None,
            "no record for a plain tenant"
        );
        // Secondary side, seeded: a fresh group is still cleared first.
        assert_eq!(
            step(3, Some(&grs), None),
            Some(Step::ClearThenSet(RoleChange::Secondary {
                epoch: 0,
                from: 1,
                reset: true
            }))
        );
        assert_eq!(step(3, Some(&grs), Some(&secondary(0, 1))), None);
        // Planned swap: the old primary keeps its data.
        let swapped = record(3, Some((1, true)), 1);
        assert_eq!(
            step(1, Some(&swapped), Some(&primary(0, Some(3)))),
            Some(Step::Set(RoleChange::Secondary {
                epoch: 1,
                from: 3,
                reset: false
            }))
        );
        assert_eq!(
            step(3, Some(&swapped), Some(&secondary(0, 1))),
            Some(Step::Set(RoleChange::Primary {
                epoch: 1,
                ship_to: Some(1)
            }))
        );
        // Unplanned: the old primary is fenced, and stays so.
        let moved = record(3, None, 1);
        assert_eq!(
            step(1, Some(&moved), Some(&primary(0, Some(3)))),
            Some(Step::Set(RoleChange::Fence { epoch: 1 }))
        );
        let fenced = TenantRole::Fenced {
            epoch: 1,
            next_seq: 12,
            acked_seq: 9,
        };
        assert_eq!(step(1, Some(&moved), Some(&fenced)), None);
        // Reprotect: the fenced group becomes an empty secondary.
        let reprotected = record(3, Some((1, false)), 1);
        assert_eq!(
            step(1, Some(&reprotected), Some(&fenced)),
            Some(Step::ClearThenSet(RoleChange::Secondary {
                epoch: 1,
                from: 3,
                reset: true
            }))
        );
        // The geo copy removed, or the tenant deleted.
        assert_eq!(
            step(3, Some(&lrs), Some(&secondary(0, 1))),
            Some(Step::ClearThenSet(RoleChange::Drop))
        );
        assert_eq!(
            step(1, None, Some(&primary(0, Some(3)))),
            Some(Step::ClearThenSet(RoleChange::Drop))
        );
    }
}
