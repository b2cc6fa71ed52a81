//! Write leases: a primary group acknowledges a write of a geo tenant (or of a
//! tenant that went through a failover) only while its leader holds a lease for
//! the tenant's current epoch, and only for writes numbered up to the lease's
//! sequence limit.
//!
//! The leader renews every such tenant of the groups it leads once per
//! [`LEASE_RENEW_EVERY`] with a `RenewLeases` directory entry: applying it grants a
//! lease only if the record still names this group primary at this epoch and no
//! failover has begun, and records the grant with its sequence limit (see
//! `crate::directory::geo::LeaseGrant`). The lease runs for [`LEASE_DURATION`]
//! from the moment the request was *sent*, measured on the holder's clock, so it
//! ends before any node could consider it ended. A failover first commits
//! `BeginFailover` (no lease is granted after that) and then waits until
//! [`FAILOVER_LEASE_WAIT`] has passed since the last grant was applied on the
//! coordinating node (or since `BeginFailover`, when that node did not apply the
//! grant itself) before it moves the primary: by then every lease granted before
//! the commit has lapsed, with a margin for clock drift. The recorded limit
//! bounds the acknowledged writes an unplanned failover can lose.

use crate::directory::geo::LeaseAsk;
use crate::directory::{DirectoryCommand, DirectoryResponse, TenantRecord};
use crate::error::{NodeError, NodeResult};
use crate::node::StratusNode;
use crate::objects::geo::TenantRole;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};
use tokio::time::Instant;

/// How long a granted lease lasts on the holder's clock.
pub const LEASE_DURATION: Duration = Duration::from_secs(4);
/// How often leaders renew.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_millis(1000);
/// How long a failover waits after the last lease grant it saw applied (at most,
/// after `BeginFailover` committed): a lease plus a margin for clock drift between
/// the holder and the waiting node.
pub const FAILOVER_LEASE_WAIT: Duration = Duration::from_millis(5500);

#[derive(Debug, Clone, Copy)]
struct Lease {
    group: GroupId,
    epoch: u64,
    until: Instant,
    seq_limit: u64,
}

/// Leases this node holds, by tenant.
#[derive(Debug, Default)]
pub struct LeaseTable(Mutex<BTreeMap<String, Lease>>);

impl LeaseTable {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Lease>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The sequence limit of a valid lease for `tenant` on `group` at `epoch`.
    pub fn valid(&self, tenant: &str, group: GroupId, epoch: u64) -> Option<u64> {
        let now = Instant::now();
        self.with(|m| {
            m.get(tenant)
                .filter(|l| l.group == group && l.epoch == epoch && l.until > now)
                .map(|l| l.seq_limit)
        })
    }

    fn grant(&self, tenant: &str, lease: Lease) {
        self.with(|m| {
            m.insert(tenant.to_string(), lease);
        })
    }

    fn revoke(&self, tenant: &str) {
        self.with(|m| {
            m.remove(tenant);
        })
    }
}

/// Whether a primary role must hold a lease to acknowledge writes.
pub fn role_needs_lease(role: &TenantRole, record: Option<&TenantRecord>) -> bool {
    match role {
        TenantRole::Primary { epoch, ship_to, .. } => {
            *epoch > 0 || ship_to.is_some() || record.is_some_and(TenantRecord::needs_lease)
        }
        _ => false,
    }
}

/// One renewal round for every replica group this node leads.
pub async fn renew_round(node: &StratusNode) {
    for g in node.groups.values().filter(|g| g.id() != DIRECTORY_GROUP) {
        if !g.is_leader() {
            continue;
        }
        let roles = node.geo.roles(g.id()).all();
        let asks: Vec<LeaseAsk> = roles
            .into_iter()
            .filter(|(t, role)| role_needs_lease(role, node.directory.tenant(t).as_ref()))
            .filter_map(|(tenant, role)| match role {
                TenantRole::Primary {
                    epoch, next_seq, ..
                } => Some(LeaseAsk {
                    tenant,
                    epoch,
                    head_seq: next_seq - 1,
                }),
                _ => None,
            })
            .collect();
        if asks.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let command = DirectoryCommand::RenewLeases {
            group: g.id(),
            asks: asks.clone(),
            now_ms: node.clock.now_ms(),
        };
        match node.directory_write(command).await {
            Ok(DirectoryResponse::Leases(answers)) => {
                for (tenant, granted) in answers {
                    let epoch = asks
                        .iter()
                        .find(|a| a.tenant == tenant)
                        .map_or(0, |a| a.epoch);
                    match granted {
                        Some(seq_limit) => node.geo.leases.grant(
                            &tenant,
                            Lease {
                                group: g.id(),
                                epoch,
                                until: sent + LEASE_DURATION,
                                seq_limit,
                            },
                        ),
                        None => node.geo.leases.revoke(&tenant),
                    }
                }
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to a lease renewal"),
            Err(e) => {
                tracing::debug!(group = g.id(), error = %e, "lease renewal failed; leases lapse unless renewed")
            }
        }
    }
}

/// Checks that `group` (led here) may acknowledge a write of `record`'s tenant:
/// it must be the tenant's primary here, agree with the directory's epoch, and hold
/// a valid lease when one is needed. A group that is not the primary answers with
/// a redirect to a member of the group that is.
pub fn check_writable(node: &StratusNode, group: GroupId, record: &TenantRecord) -> NodeResult<()> {
    let role = node.geo.roles(group).get(&record.name);
    let TenantRole::Primary { epoch, .. } = role else {
        return Err(redirect(node, record));
    };
    if record.group != group {
        return Err(redirect(node, record));
    }
    if epoch != record.epoch {
        return Err(NodeError::UnavailableFor {
            code: "geo-role-pending",
            message: format!(
                "group {group} is taking over tenant {:?} at epoch {} (it is at {epoch}); retry shortly",
                record.name, record.epoch
            ),
        });
    }
    if role_needs_lease(&role, Some(record)) {
        match node.geo.leases.valid(&record.name, group, epoch) {
            None => return Err(lease_lapsed(group, record)),
            Some(limit) if head(&role) >= limit => {
                return Err(NodeError::UnavailableFor {
                    code: "lease-limit",
                    message: format!(
                        "group {group} reached the writes its lease allows for tenant {:?} (sequence {limit}); the next renewal raises the limit: retry shortly",
                        record.name
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The last outbox sequence number a primary applied.
fn head(role: &TenantRole) -> u64 {
    match role {
        TenantRole::Primary { next_seq, .. } => next_seq - 1,
        _ => 0,
    }
}

/// The error of a write whose lease lapsed (or was never granted).
pub fn lease_lapsed(group: GroupId, record: &TenantRecord) -> NodeError {
    NodeError::UnavailableFor {
        code: "lease-lapsed",
        message: format!(
            "group {group} holds no valid write lease for tenant {:?} at epoch {} (a failover may be under way, or the directory is unreachable); nothing was written, retry shortly",
            record.name, record.epoch
        ),
    }
}

/// Points a client at the tenant's primary group, as the directory names it.
pub fn redirect(node: &StratusNode, record: &TenantRecord) -> NodeError {
    let leader = node
        .groups
        .get(&record.group)
        .and_then(|g| g.leader())
        .or_else(|| {
            node.spec(record.group)
                .and_then(|s| s.voters.first().copied())
        });
    NodeError::NotLeader {
        me: node.id,
        group: record.group,
        leader_id: leader,
        leader_addr: leader.and_then(|l| node.peers.addr(l)),
    }
}

/// Confirms, after a write committed, that the lease still held: otherwise the
/// write may not survive a failover that began meanwhile, and the client hears
/// that its outcome is unknown rather than a success.
pub fn confirm_ack(node: &StratusNode, group: GroupId, record: &TenantRecord) -> NodeResult<()> {
    let role = node.geo.roles(group).get(&record.name);
    let covered = node
        .geo
        .leases
        .valid(&record.name, group, role.epoch())
        .is_some_and(|limit| head(&role) <= limit);
    if role_needs_lease(&role, Some(record)) && !covered {
        return Err(NodeError::UnavailableFor {
            code: "lease-lapsed-after-write",
            message: format!(
                "the write to tenant {:?} was applied by group {group} but its write lease lapsed before it could be acknowledged (a failover may be under way): its outcome is unknown; check with `stratus head` before retrying",
                record.name
            ),
        });
    }
    Ok(())
}
