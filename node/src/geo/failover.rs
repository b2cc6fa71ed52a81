//! Failover and reprotect, driven by the node that received the request.
//!
//! **Unplanned** (the primary region is unreachable): check that no member of the
//! primary group answers; commit `BeginFailover` (no lease is granted from then
//! on); wait until every lease granted before has lapsed ([`FAILOVER_LEASE_WAIT`]
//! after this node applied the last grant, so time the primary region has
//! already been silent counts; see `wait_out_lease`); ask
//! the secondary how far it got (its applied sequence and last sync time) and the
//! directory's leader what the primary last reported; commit `CompleteFailover`
//! with that loss window. The secondary group becomes primary at the next epoch
//! (its reconciler sets the role; its leader then takes a lease).
//!
//! **Planned**: commit `BeginFailover` (the tenant turns read-only once the lease
//! lapses), wait for the lease, wait until the secondary applied everything the
//! primary holds, then swap the roles. Nothing is lost.
//!
//! **Reprotect** (after an unplanned failover, once the old region is back): copy
//! every version the old primary had applied but never shipped into the recovery
//! container of the new primary, then name the old group secondary again; its
//! reconciler clears it and the new primary seeds it.
//!
//! **Automatic failover**: on the directory's leader, a tenant whose policy is set
//! fails over (unplanned) once its primary has not renewed a lease for that long.

use super::lease::FAILOVER_LEASE_WAIT;
use super::status::view;
use crate::directory::geo::{recovery_container, FailoverOutcome, FailoverRecord};
use crate::directory::{
    DirectoryCommand, DirectoryResponse, LeaseSeen, TenantRecord, TenantStatus,
};
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery};
use crate::node::StratusNode;
use crate::objects::geo::{GeoOp, TenantRole};
use crate::objects::{ObjectCommand, ObjectId, ObjectResponse};
use crate::raft::{Command, Response};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};
use stratus_proto::v1 as pb;

/// How often a failover looks whether this node's directory copy applied its
/// `BeginFailover` (to learn when the last lease was granted).
const LEASE_SEEN_POLL: Duration = Duration::from_millis(50);
/// How long a planned failover waits for shipping to drain.
const DRAIN_MAX: Duration = Duration::from_secs(60);
/// How long probing one member of the primary group may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Outbox entries a reprotect reads per query.
const OUTBOX_PAGE: usize = 256;
/// Recovered versions per `Recover` entry.
const RECOVER_BATCH: usize = 32;
fn refused(r: DirectoryResponse) -> NodeError {
    match r {
        DirectoryResponse::Rejected(r) => crate::server::admin::rejection(r),
        other => NodeError::Internal(format!("unexpected directory answer {other:?}")),
    }
}

/// The tenant's record, fresh from the directory's leader.
async fn fresh(node: &StratusNode, tenant: &str) -> NodeResult<TenantRecord> {
    match node
        .query(DIRECTORY_GROUP, GroupQuery::Tenant(tenant.to_string()))
        .await?
    {
        GroupAnswer::Tenant(Some(t)) => Ok(t),
        _ => Err(NodeError::TenantNotFound(tenant.to_string())),
    }
}

/// Members of `group` that answer a status probe.
async fn reachable_members(node: &StratusNode, group: GroupId) -> Vec<u64> {
    let voters = node
        .spec(group)
        .map(|s| s.voters.clone())
        .unwrap_or_default();
    let probes = voters.into_iter().map(|id| async move {
        if id == node.id {
            return Some(id);
        }
        let mut client = node.peers.client(id)?;
        let probe = client.local_status(pb::LocalStatusRequest {});
        matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(_))).then_some(id)
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Runs a failover of `tenant` to its secondary region.
pub async fn failover(
    node: &StratusNode,
    tenant: &str,
    planned: bool,
) -> NodeResult<(TenantRecord, FailoverRecord)> {
    // Only a node that reaches the directory's majority may judge whether the
    // primary is reachable: a node cut off together with the primary region
    // would see its own region up and refuse, or hang on the directory.
    let record = node.tenant_fresh(tenant).await?;
    if record.secondary.is_none() {
        return Err(NodeError::FailedPrecondition {
            code: "no-secondary",
            message: format!(
                "tenant {tenant:?} is {} and has no secondary region to fail over to (convert it with `stratus tenant update {tenant} --redundancy grs`)",
                record.redundancy
            ),
        });
    }
    if !planned {
        let up = reachable_members(node, record.group).await;
        if !up.is_empty() {
            return Err(NodeError::FailedPrecondition {
                code: "primary-reachable",
                message: format!(
                    "the primary of tenant {tenant:?} (group {} in {}) is reachable (nodes {up:?} answer): an unplanned failover would lose writes for nothing; use `stratus failover {tenant} --planned`",
                    record.group, record.region
                ),
            });
        }
    }
    let begin = DirectoryCommand::BeginFailover {
        name: tenant.to_string(),
        planned,
        now_ms: node.clock.now_ms(),
    };
    match node.directory_write(begin).await? {
        DirectoryResponse::Tenant(_) => {}
        other => return Err(refused(other)),
    }
    wait_out_lease(node, tenant, planned).await;
    // No lease is granted any more: the record (its last lease grant) is final.
    let record = fresh(node, tenant).await.unwrap_or(record);
    let outcome = match if planned {
        drain(node, &record).await
    } else {
        loss_window(node, &record).await
    } {
        Ok(o) => o,
        Err(e) => {
            let abort = DirectoryCommand::AbortFailover {
                name: tenant.to_string(),
            };
            if let Err(abort_error) = node.directory_write(abort).await {
                tracing::warn!(tenant, error = %abort_error, "could not abort the failover");
            }
            return Err(e);
        }
    };
    let complete = DirectoryCommand::CompleteFailover {
        name: tenant.to_string(),
        planned,
        now_ms: node.clock.now_ms(),
        outcome,
    };
    match node.directory_write(complete).await? {
        DirectoryResponse::FailedOver { tenant: t, record } => {
            tracing::info!(tenant = %t.name, planned, epoch = t.epoch, to_group = t.group, last_sync_ms = record.last_sync_ms, lost_ops_max = ?record.lost_ops_max, "failover complete");
            Ok((*t, *record))
        }
        other => Err(refused(other)),
    }
}

/// Waits until every lease granted to the tenant's primary before `BeginFailover`
/// has lapsed: [`FAILOVER_LEASE_WAIT`] after this node applied the last grant,
/// when it applied it itself (the grant had committed by then, and its holder's
/// lease runs from before the commit), else after `BeginFailover` committed. The
/// first is what makes an unplanned failover quick: when the primary region died
/// a few seconds before the operator asked, most of the wait has already passed.
async fn wait_out_lease(node: &StratusNode, tenant: &str, planned: bool) {
    let begun = tokio::time::Instant::now();
    let latest = begun + FAILOVER_LEASE_WAIT;
    // Bounded: until the latest end, at most one poll per LEASE_SEEN_POLL.
    let until = loop {
        match node.directory.lease_seen(tenant) {
            LeaseSeen::Never => break begun,
            LeaseSeen::AppliedAt(at) => break (at + FAILOVER_LEASE_WAIT).min(latest),
            // This copy has not applied `BeginFailover` yet (or did not see the
            // grant itself): ask again shortly, up to the full wait.
            LeaseSeen::Unknown if tokio::time::Instant::now() + LEASE_SEEN_POLL < latest => {
                tokio::time::sleep(LEASE_SEEN_POLL).await;
            }
            LeaseSeen::Unknown => break latest,
        }
    };
    tracing::info!(
        tenant,
        planned,
        wait_ms = until
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64,
        "failover begun; waiting out the primary's write lease"
    );
    tokio::time::sleep_until(until).await;
}

/// Planned: waits until the secondary applied everything the primary holds.
async fn drain(node: &StratusNode, record: &TenantRecord) -> NodeResult<FailoverOutcome> {
    let Some(secondary) = &record.secondary else {
        return Err(NodeError::Internal("no secondary".into()));
    };
    let started = tokio::time::Instant::now();
    loop {
        let primary = view(node, record.group, &record.name).await?;
        let TenantRole::Primary { next_seq, .. } = primary.role else {
            return Err(NodeError::Unavailable(format!(
                "group {} is no longer the primary of {:?}",
                record.group, record.name
            )));
        };
        let head = next_seq - 1;
        let sec = view(node, secondary.group, &record.name).await?;
        if let TenantRole::Secondary {
            applied_seq,
            as_of_ms,
            ..
        } = sec.role
        {
            if applied_seq >= head {
                return Ok(FailoverOutcome {
                    last_sync_ms: as_of_ms.max(node.clock.now_ms()),
                    synced_seq: applied_seq,
                    lost_ops_max: Some(0),
                });
            }
        }
        if started.elapsed() > DRAIN_MAX {
            return Err(NodeError::Unavailable(format!(
                "shipping of tenant {:?} did not drain within {}s (is the secondary region reachable?); the failover was aborted and the tenant is writable again",
                record.name,
                DRAIN_MAX.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Unplanned: what the secondary holds, and what the primary last said it had.
async fn loss_window(node: &StratusNode, record: &TenantRecord) -> NodeResult<FailoverOutcome> {
    let Some(secondary) = &record.secondary else {
        return Err(NodeError::Internal("no secondary".into()));
    };
    let sec = view(node, secondary.group, &record.name).await.map_err(|e| {
        NodeError::Unavailable(format!(
            "the secondary of tenant {:?} (group {} in {}) cannot be asked how far it got ({e}); the failover was aborted",
            record.name, secondary.group, secondary.region
        ))
    })?;
    let TenantRole::Secondary {
        applied_seq,
        as_of_ms,
        ..
    } = sec.role
    else {
        return Err(NodeError::Unavailable(format!(
            "group {} is not (yet) the secondary of {:?}; the failover was aborted",
            secondary.group, record.name
        )));
    };
    // Every write the old primary acknowledged is numbered within its last
    // lease's limit (recorded in the directory); the secondary has up to
    // `applied_seq`. Without a recorded lease nothing was acknowledged under one.
    let lost_ops_max = record
        .lease
        .as_ref()
        .filter(|l| l.group == record.group && l.epoch == record.epoch)
        .map_or(Some(0), |l| Some(l.seq_limit.saturating_sub(applied_seq)));
    if let Some(l) = &record.lease {
        tracing::info!(tenant = %record.name, applied_seq, reported_head = l.head_seq, seq_limit = l.seq_limit, "loss window of an unplanned failover");
    }
    Ok(FailoverOutcome {
        last_sync_ms: as_of_ms,
        synced_seq: applied_seq,
        lost_ops_max,
    })
}

/// Keeps the old primary's unshipped writes and makes its region the secondary again.
pub async fn reprotect(node: &Arc<StratusNode>, tenant: &str) -> NodeResult<TenantRecord> {
    let record = fresh(node, tenant).await?;
    let Some(f) = record.pending_reprotect().cloned() else {
        return Err(NodeError::FailedPrecondition {
            code: "nothing-to-reprotect",
            message: format!(
                "tenant {tenant:?} has no unplanned failover waiting for a reprotect (see `stratus tenant show {tenant}`)"
            ),
        });
    };
    if record.status != TenantStatus::Active {
        return Err(NodeError::FailedPrecondition {
            code: "failing-over",
            message: format!("tenant {tenant:?} is failing over; reprotect once it finished"),
        });
    }
    let old = view(node, f.from_group, tenant).await.map_err(|e| {
        NodeError::Unavailable(format!(
            "the old primary of tenant {tenant:?} (group {} in {}) is not reachable yet ({e}); reprotect once that region is back",
            f.from_group, f.from_region
        ))
    })?;
    let next_seq = match old.role {
        TenantRole::Fenced { next_seq, .. } => next_seq,
        other => {
            return Err(NodeError::UnavailableFor {
                code: "not-fenced-yet",
                message: format!(
                    "group {} is still {} of tenant {tenant:?}; it fences itself once it sees the failover: retry in a few seconds",
                    f.from_group,
                    other.name()
                ),
            })
        }
    };
    let container = recovery_container(f.epoch);
    let recovered = recover_unshipped(node, &record, &f, next_seq, &container).await?;
    let complete = DirectoryCommand::CompleteReprotect {
        name: tenant.to_string(),
        recovery_container: (recovered > 0).then_some(container),
        recovered_objects: recovered,
    };
    match node.directory_write(complete).await? {
        DirectoryResponse::Tenant(t) => {
            tracing::info!(tenant, recovered, secondary = ?t.secondary, "reprotect started: the old region is being re-seeded");
            Ok(t)
        }
        other => Err(refused(other)),
    }
}

/// Copies the latest unshipped version of every key the old primary wrote after
/// the failover's sync point into `container` of the new primary (key
/// `CONTAINER/KEY`); returns how many objects it holds.
async fn recover_unshipped(
    node: &Arc<StratusNode>,
    record: &TenantRecord,
    f: &FailoverRecord,
    next_seq: u64,
    container: &str,
) -> NodeResult<u64> {
    // The last unshipped write of each key.
    let mut latest: BTreeMap<(String, String), GeoOp> = BTreeMap::new();
    // Unshipped audit batches: (node, incarnation, batch, events).
    let mut audit: Vec<(u64, u64, u64, Vec<stratus_core::audit::AuditEvent>)> = Vec::new();
    let mut from = f.synced_seq + 1;
    while from < next_seq {
        let page = match node
            .query(
                f.from_group,
                GroupQuery::Outbox {
                    tenant: record.name.clone(),
                    from,
                    limit: OUTBOX_PAGE as u32,
                },
            )
            .await?
        {
            GroupAnswer::Outbox(entries) => entries,
            other => return Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        };
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for entry in page {
            match &entry.op {
                GeoOp::Put { object, .. } => {
                    latest.insert((object.container.clone(), object.key.clone()), entry.op);
                }
                GeoOp::Delete { object } => {
                    latest.remove(&(object.container.clone(), object.key.clone()));
                }
                GeoOp::Audit {
                    records, batches, ..
                } => {
                    if let Some((from_node, (incarnation, number))) = batches.iter().next() {
                        let events = records.iter().map(|r| r.event.clone()).collect();
                        audit.push((*from_node, *incarnation, *number, events));
                    }
                }
                _ => {}
            }
        }
        from = last + 1;
    }
    recover_audit(node, record, audit).await?;
    if latest.is_empty() {
        return Ok(0);
    }
    let now_ms = node.clock.now_ms();
    let mut ops = vec![GeoOp::CreateContainer {
        record: crate::objects::ContainerRecord {
            tenant: record.name.clone(),
            name: container.to_string(),
            created_ms: now_ms,
        },
    }];
    let mut recovered = 0;
    let mut skipped_customer = 0;
    for ((c, k), op) in latest {
        let GeoOp::Put {
            object,
            mut meta,
            inline,
            chunk_crcs,
        } = op
        else {
            continue;
        };
        let target = ObjectId {
            tenant: record.name.clone(),
            container: container.to_string(),
            key: format!("{c}/{k}"),
        };
        // The data key is bound to the object's name: wrap it for the new one.
        match node
            .keys
            .rename_envelope(&node.rng, &object, &target, meta.version, &meta.encryption)
        {
            Ok(Some(envelope)) => meta.encryption = envelope,
            Ok(None) => {
                skipped_customer += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        if let Some(crcs) = &chunk_crcs {
            copy_chunks(node, f.from_group, record.group, meta.version, crcs).await?;
        }
        ops.push(GeoOp::Put {
            object: target,
            meta,
            inline,
            chunk_crcs,
        });
        recovered += 1;
    }
    for batch in ops.chunks(RECOVER_BATCH) {
        match node
            .propose(
                record.group,
                Command::Object(ObjectCommand::Recover {
                    ops: batch.to_vec(),
                }),
            )
            .await?
        {
            Response::Object(ObjectResponse::Shredded { .. }) => {}
            other => return Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
    if skipped_customer > 0 {
        tracing::warn!(tenant = %record.name, skipped_customer, "unshipped versions under customer-provided keys cannot be renamed without their key; they stay only in the old primary's copy until it is re-seeded");
    }
    Ok(recovered)
}

/// Appends the audit batches the old primary never shipped to the new primary's
/// chain, as the batches they were (so one that its node already sent again to
/// the new primary is not appended twice): new records after those written since
/// the failover, with their original events.
async fn recover_audit(
    node: &StratusNode,
    record: &TenantRecord,
    batches: Vec<(u64, u64, u64, Vec<stratus_core::audit::AuditEvent>)>,
) -> NodeResult<()> {
    let mut events_total = 0;
    for (from_node, incarnation, number, events) in batches {
        events_total += events.len();
        let command = ObjectCommand::Audit {
            tenant: record.name.clone(),
            node: from_node,
            incarnation,
            batch: number,
            events,
        };
        match node.propose(record.group, Command::Object(command)).await? {
            Response::Object(ObjectResponse::Audited { .. }) => {}
            other => return Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
    if events_total > 0 {
        tracing::info!(tenant = %record.name, events = events_total, "unshipped audit records of the old primary appended to the chain");
    }
    Ok(())
}

/// Copies the chunks of `version` from group `from` to a majority of `to`.
async fn copy_chunks(
    node: &Arc<StratusNode>,
    from: GroupId,
    to: GroupId,
    version: u128,
    crcs: &[u32],
) -> NodeResult<()> {
    let mut fanout = crate::dataplane::fanout::Fanout::start(node.clone(), to, version)?;
    for (index, crc) in (0u32..).zip(crcs) {
        let data = crate::dataplane::repair::fetch_chunk(node, from, version, index, *crc).await?;
        fanout.write(index, bytes::Bytes::from(data)).await?;
    }
    let finished = fanout.finish(crcs.len() as u32).await;
    fanout.settle();
    finished
}

/// On the directory's leader: fails over every tenant whose automatic-failover
/// policy is due (its primary renewed no lease for that long).
pub async fn auto_round(node: &StratusNode, watch: &mut BTreeMap<String, u64>) {
    let Some(dir) = node.groups.get(&DIRECTORY_GROUP) else {
        return;
    };
    if !dir.is_leader() {
        watch.clear();
        return;
    }
    let now_ms = node.clock.now_ms();
    let due: Vec<String> = node.directory.read(|d| {
        d.tenants
            .values()
            .filter(|t| t.secondary.as_ref().is_some_and(|s| s.seeded))
            .filter(|t| t.status == TenantStatus::Active)
            .filter_map(|t| Some((t, t.auto_failover_after_ms?)))
            .filter(|(t, after)| {
                // Since when the primary has renewed no lease (or this leader
                // started watching).
                let since = watch.entry(t.name.clone()).or_insert(now_ms);
                if let Some(l) = t.lease.as_ref().filter(|l| l.group == t.group) {
                    *since = (*since).max(l.at_ms);
                }
                now_ms.saturating_sub(*since) >= *after
            })
            .map(|(t, _)| t.name.clone())
            .collect()
    });
    for tenant in due {
        tracing::warn!(
            tenant,
            "primary silent past the automatic-failover policy: failing over"
        );
        let resource = format!("tenant {tenant}");
        match failover(node, &tenant, false).await {
            Ok(_) => {
                node.audit_event(&tenant, "AutoFailover", resource, "ok");
                watch.remove(&tenant);
            }
            Err(e) => {
                node.audit_event(&tenant, "AutoFailover", resource, e.code());
                tracing::warn!(tenant, error = %e, "automatic failover did not happen");
                watch.insert(tenant, now_ms);
            }
        }
    }
}
