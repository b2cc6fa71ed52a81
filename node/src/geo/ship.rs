//! Shipping a primary's outbox to its secondary group, on the primary's leader.
//!
//! Each round, for every tenant whose role here is a shipping primary:
//! - while the secondary has no full copy, one **seed** step: containers first, then
//!   the tenant's audit chain from genesis (pages of records, verbatim), then
//!   a page of objects (chunks pushed to the secondary's members before the entry
//!   naming them), and at the end `GeoSeedDone`, after which outbox entries from
//!   the seed's start apply in order (the seed read live state, so replaying them
//!   converges: every entry is an absolute state);
//! - otherwise one **batch** of outbox entries (or an empty heartbeat), proposed to
//!   the secondary group as `GeoApply`.
//!
//! **Last sync time.** Before reading the outbox the leader notes `(head, now)`:
//! every write acknowledged before `now` has a sequence number at most `head`
//! (it was applied here before being acknowledged). Once the secondary reports
//! applying up to `s`, the last sync time is the latest noted `now` whose `head`
//! is at most `s`. The acknowledged position is written back to the primary's log
//! (`GeoAcked`) at most every [`ACK_EVERY`], which also trims the outbox.

use crate::dataplane::fanout::Fanout;
use crate::dataplane::repair;
use crate::directory::DirectoryCommand;
use crate::error::{NodeError, NodeResult};
use crate::group::GroupHandle;
use crate::metrics;
use crate::node::StratusNode;
use crate::objects::chunks::ChunkRead;
use crate::objects::geo::{GeoEntry, GeoOp, GeoReply, TenantRole, SHIP_BYTES_MAX, SHIP_OPS_MAX};
use crate::objects::{Layout, ObjectCommand, ObjectResponse};
use crate::raft::{Command, Response};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::placement::{GroupId, DIRECTORY_GROUP};

/// How often leaders ship.
pub const SHIP_EVERY: Duration = Duration::from_millis(100);
/// An idle primary still tells its secondary how current it is this often.
const HEARTBEAT_EVERY_MS: u64 = 500;
/// How often the acknowledged position is written to the primary's log.
const ACK_EVERY: u64 = 500;
/// Objects per seed step.
const SEED_PAGE: usize = 32;
/// Audit records per seed step.
const SEED_AUDIT_PAGE: usize = 512;
/// `(head, time)` notes kept per tenant.
const OBSERVATIONS_MAX: usize = 512;
/// Shipping counts as unavailable when nothing succeeded for this long.
pub const UNAVAILABLE_AFTER_MS: u64 = 5_000;

/// A seed in progress.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// Outbox entries from here on replay after the seed.
    pub start_seq: u64,
    containers_sent: bool,
    /// The audit chain is across up to this record (`None`: not started).
    audit_after: Option<u64>,
    audit_sent: bool,
    /// The last (container, key) copied.
    after: Option<(String, String)>,
    pub done: u64,
    pub total: u64,
}

/// What the leader knows of one tenant's shipping (kept in memory; a new leader
/// starts from what the log says).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub group: GroupId,
    pub epoch: u64,
    pub target: GroupId,
    /// The secondary's applied sequence number as last reported.
    pub applied: u64,
    pub head: u64,
    pub last_sync_ms: u64,
    /// When an exchange with the secondary last succeeded.
    pub last_ok_ms: u64,
    pub last_error: Option<String>,
    pub seeding: Option<Seed>,
    /// The secondary said it waits for a full copy: seed it again.
    force_seed: bool,
    observations: VecDeque<(u64, u64)>,
    ack_proposed_ms: u64,
    heartbeat_ms: u64,
}

impl Progress {
    fn observe(&mut self, head: u64, at_ms: u64) {
        if self.observations.back().is_some_and(|(h, _)| *h == head) {
            if let Some(last) = self.observations.back_mut() {
                last.1 = at_ms;
            }
        } else {
            self.observations.push_back((head, at_ms));
        }
        while self.observations.len() > OBSERVATIONS_MAX {
            self.observations.pop_front();
        }
    }

    /// The latest noted time whose head is at most `seq`.
    fn synced_at(&self, seq: u64) -> Option<u64> {
        self.observations
            .iter()
            .rev()
            .find(|(h, _)| *h <= seq)
            .map(|(_, t)| *t)
    }
}

/// Shipping progress of every tenant this node ships.
#[derive(Debug, Default)]
pub struct ShipBook(Mutex<BTreeMap<String, Progress>>);

impl ShipBook {
    pub fn get(&self, tenant: &str) -> Option<Progress> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
    }

    fn put(&self, tenant: &str, p: Progress) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), p);
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t, _| keep(t));
    }
}

/// One round over every tenant this node ships.
pub async fn ship_round(node: &Arc<StratusNode>) {
    let mut shipping = Vec::new();
    for g in node.groups.values().filter(|g| g.id() != DIRECTORY_GROUP) {
        if !g.is_leader() {
            continue;
        }
        for (tenant, role) in node.geo.roles(g.id()).all() {
            if role.ship_to().is_some() {
                shipping.push((g.id(), tenant, role));
            }
        }
    }
    node.geo
        .shipping
        .retain(|t| shipping.iter().any(|(_, name, _)| name == t));
    for (group, tenant, role) in shipping {
        let Some(g) = node.groups.get(&group) else {
            continue;
        };
        if let Err(e) = ship_tenant(node, g, &tenant, &role).await {
            let mut p = node.geo.shipping.get(&tenant).unwrap_or_default();
            p.last_error = Some(e.to_string());
            node.geo.shipping.put(&tenant, p);
            tracing::debug!(tenant, group, error = %e, "geo shipping step failed; retrying");
        }
    }
}

async fn ship_tenant(
    node: &Arc<StratusNode>,
    g: &GroupHandle,
    tenant: &str,
    role: &TenantRole,
) -> NodeResult<()> {
    let TenantRole::Primary {
        epoch,
        ship_to: Some(target),
        next_seq,
        acked_seq,
        last_sync_ms,
        seeded,
    } = role.clone()
    else {
        return Ok(());
    };
    let mut p = node.geo.shipping.get(tenant).unwrap_or_default();
    if (p.group, p.epoch, p.target) != (g.id(), epoch, target) {
        p = Progress {
            group: g.id(),
            epoch,
            target,
            applied: acked_seq,
            last_sync_ms,
            ..Progress::default()
        };
    }
    let result = if !seeded || p.force_seed {
        seed_step(node, g, tenant, epoch, target, acked_seq, &mut p).await
    } else {
        batch_step(node, g, tenant, epoch, target, next_seq, acked_seq, &mut p).await
    };
    let lag_ops = p.head.saturating_sub(p.applied);
    let now_ms = node.clock.now_ms();
    node.metrics
        .set(metrics::GEO_LAG_OPS, &[("tenant", tenant)], lag_ops as f64);
    if p.last_sync_ms > 0 {
        node.metrics.set(
            metrics::GEO_LAST_SYNC,
            &[("tenant", tenant)],
            p.last_sync_ms as f64 / 1000.0,
        );
        node.metrics.set(
            metrics::GEO_LAG_SECONDS,
            &[("tenant", tenant)],
            now_ms.saturating_sub(p.last_sync_ms) as f64 / 1000.0,
        );
    }
    match &result {
        Ok(()) => {
            p.last_ok_ms = now_ms;
            p.last_error = None;
        }
        Err(e) => p.last_error = Some(e.to_string()),
    }
    node.geo.shipping.put(tenant, p);
    result
}

/// Proposes `command` to the secondary group and reads its reply.
async fn to_secondary(
    node: &StratusNode,
    target: GroupId,
    command: ObjectCommand,
) -> NodeResult<GeoReply> {
    match node.propose(target, Command::Object(command)).await? {
        Response::Object(ObjectResponse::Geo(reply)) => Ok(reply),
        other => Err(NodeError::Internal(format!(
            "unexpected answer from group {target}: {other:?}"
        ))),
    }
}

/// Puts the chunks of `version` (read here, repaired from this group's members if
/// needed) on a majority of `target`'s members.
async fn push_chunks(
    node: &Arc<StratusNode>,
    group: GroupId,
    target: GroupId,
    version: u128,
    crcs: &[u32],
) -> NodeResult<()> {
    let reader = node.objects(group);
    let mut fanout = Fanout::start(node.clone(), target, version)?;
    for (index, crc) in (0u32..).zip(crcs) {
        let data = match reader.chunks().read(version, index, Some(*crc))? {
            ChunkRead::Intact(data) => data,
            _ => repair::fetch_chunk(node, group, version, index, *crc).await?,
        };
        fanout.write(index, Bytes::from(data)).await?;
    }
    let finished = fanout.finish(crcs.len() as u32).await;
    // Never abandon: the secondary may already hold (and have committed) this
    // version from an earlier attempt; unreferenced copies go with its sweep.
    fanout.settle();
    finished
}

#[allow(clippy::too_many_arguments)]
async fn batch_step(
    node: &Arc<StratusNode>,
    g: &GroupHandle,
    tenant: &str,
    epoch: u64,
    target: GroupId,
    next_seq: u64,
    acked_seq: u64,
    p: &mut Progress,
) -> NodeResult<()> {
    let now_ms = node.clock.now_ms();
    let head = next_seq - 1;
    p.head = head;
    p.observe(head, now_ms);
    let from = acked_seq.max(p.applied) + 1;
    let mut entries: Vec<GeoEntry> = Vec::new();
    let mut bytes = 0;
    if from <= head {
        for entry in node.objects(g.id()).outbox(tenant, from, SHIP_OPS_MAX)? {
            bytes += entry.op.weight();
            if !entries.is_empty() && bytes > SHIP_BYTES_MAX {
                break;
            }
            entries.push(entry);
        }
    }
    if entries.is_empty() && now_ms.saturating_sub(p.heartbeat_ms) < HEARTBEAT_EVERY_MS {
        return maybe_ack(g, tenant, epoch, acked_seq, p, now_ms).await;
    }
    for entry in &entries {
        if let Some((version, crcs)) = entry.op.chunks() {
            push_chunks(node, g.id(), target, version, crcs).await?;
        }
    }
    let last = entries.last().map_or(from - 1, |e| e.seq);
    let as_of_ms = if last >= head {
        now_ms
    } else {
        p.synced_at(last).unwrap_or(0)
    };
    let reply = to_secondary(
        node,
        target,
        ObjectCommand::GeoApply {
            tenant: tenant.to_string(),
            epoch,
            from: g.id(),
            first_seq: from,
            entries,
            as_of_ms,
        },
    )
    .await?;
    p.heartbeat_ms = now_ms;
    match reply {
        GeoReply::Applied { applied_seq } => {
            p.applied = applied_seq;
            let synced = if applied_seq >= last {
                as_of_ms
            } else {
                p.synced_at(applied_seq).unwrap_or(0)
            };
            p.last_sync_ms = p.last_sync_ms.max(synced);
            maybe_ack(g, tenant, epoch, acked_seq, p, now_ms).await
        }
        GeoReply::Refused(why) => {
            if why.contains("waits for the first full copy") {
                p.force_seed = true;
            }
            Err(NodeError::Unavailable(format!(
                "group {target} refused shipped entries of tenant {tenant:?}: {why}"
            )))
        }
    }
}

/// Writes the acknowledged position to the primary's log when due.
async fn maybe_ack(
    g: &GroupHandle,
    tenant: &str,
    epoch: u64,
    acked_seq: u64,
    p: &mut Progress,
    now_ms: u64,
) -> NodeResult<()> {
    if p.applied <= acked_seq || now_ms.saturating_sub(p.ack_proposed_ms) < ACK_EVERY {
        return Ok(());
    }
    p.ack_proposed_ms = now_ms;
    g.propose(Command::Object(ObjectCommand::GeoAcked {
        tenant: tenant.to_string(),
        epoch,
        seq: p.applied,
        last_sync_ms: p.last_sync_ms,
        seeded: false,
    }))
    .await?;
    Ok(())
}

async fn seed_step(
    node: &Arc<StratusNode>,
    g: &GroupHandle,
    tenant: &str,
    epoch: u64,
    target: GroupId,
    acked_seq: u64,
    p: &mut Progress,
) -> NodeResult<()> {
    let reader = node.objects(g.id());
    let seed = p.seeding.get_or_insert_with(|| Seed {
        start_seq: acked_seq + 1,
        ..Seed::default()
    });
    let seed_command = |ops: Vec<GeoOp>| ObjectCommand::GeoSeed {
        tenant: tenant.to_string(),
        epoch,
        from: g.id(),
        ops,
    };
    if !seed.containers_sent {
        seed.total = crate::forward::count_objects(&reader, tenant)?;
        let ops = reader
            .containers(tenant)?
            .into_iter()
            .map(|record| GeoOp::CreateContainer { record })
            .collect();
        refused(
            to_secondary(node, target, seed_command(ops)).await?,
            target,
            p,
        )?;
        let seed = p.seeding.get_or_insert_with(Seed::default);
        seed.containers_sent = true;
        return Ok(());
    }
    if !seed.audit_sent {
        // The audit chain from genesis, a page per step (records never change, so
        // pages read at different times still form one prefix of the chain; what
        // is appended meanwhile is in the outbox from the seed's start).
        let after = seed.audit_after.unwrap_or(0);
        let records = reader.audit_records(tenant, after, SEED_AUDIT_PAGE)?;
        let batches = reader
            .audit_head(tenant)?
            .map(|h| h.batches)
            .unwrap_or_default();
        let last = records.last().map(|r| r.seq);
        let full = records.len() == SEED_AUDIT_PAGE;
        if !records.is_empty() {
            let op = GeoOp::Audit {
                tenant: tenant.to_string(),
                records,
                batches,
            };
            refused(
                to_secondary(node, target, seed_command(vec![op])).await?,
                target,
                p,
            )?;
        }
        let seed = p.seeding.get_or_insert_with(Seed::default);
        seed.audit_after = last.or(seed.audit_after);
        seed.audit_sent = !full;
        return Ok(());
    }
    let page = reader.tenant_objects(tenant, seed.after.as_ref(), SEED_PAGE)?;
    let mut ops = Vec::new();
    for (object, meta) in &page {
        let op = match meta.layout {
            Layout::Inline => match reader.inline(meta.version)? {
                Some(data) => GeoOp::Put {
                    object: object.clone(),
                    meta: meta.clone(),
                    inline: Some(Bytes::from(data)),
                    chunk_crcs: None,
                },
                // Overwritten meanwhile: the outbox carries the newer version.
                None => continue,
            },
            Layout::Chunked { .. } => match reader.chunk_list(meta.version)? {
                Some(crcs) => {
                    push_chunks(node, g.id(), target, meta.version, &crcs).await?;
                    GeoOp::Put {
                        object: object.clone(),
                        meta: meta.clone(),
                        inline: None,
                        chunk_crcs: Some(crcs),
                    }
                }
                None => continue,
            },
        };
        ops.push(op);
    }
    let copied = ops.len() as u64;
    if !ops.is_empty() {
        refused(
            to_secondary(node, target, seed_command(ops)).await?,
            target,
            p,
        )?;
    }
    let seed = p.seeding.get_or_insert_with(Seed::default);
    seed.done += copied;
    seed.after = page
        .last()
        .map(|(id, _)| (id.container.clone(), id.key.clone()));
    if page.len() == SEED_PAGE {
        return Ok(());
    }
    // Every object is across: entries from the seed's start replay in order.
    let start_seq = seed.start_seq;
    refused(
        to_secondary(
            node,
            target,
            ObjectCommand::GeoSeedDone {
                tenant: tenant.to_string(),
                epoch,
                from: g.id(),
                next_seq: start_seq,
                as_of_ms: 0,
            },
        )
        .await?,
        target,
        p,
    )?;
    g.propose(Command::Object(ObjectCommand::GeoAcked {
        tenant: tenant.to_string(),
        epoch,
        seq: start_seq - 1,
        last_sync_ms: 0,
        seeded: true,
    }))
    .await?;
    node.directory_write(DirectoryCommand::GeoSeeded {
        name: tenant.to_string(),
        group: target,
        epoch,
    })
    .await?;
    tracing::info!(
        tenant,
        group = g.id(),
        target,
        objects = p.seeding.as_ref().map_or(0, |s| s.done),
        "secondary seeded"
    );
    p.applied = start_seq - 1;
    p.seeding = None;
    p.force_seed = false;
    Ok(())
}

/// Turns a refusal into an error (and restarts a seed the secondary lost track of).
fn refused(reply: GeoReply, target: GroupId, p: &mut Progress) -> NodeResult<()> {
    match reply {
        GeoReply::Applied { .. } => Ok(()),
        GeoReply::Refused(why) => {
            p.seeding = None;
            Err(NodeError::Unavailable(format!(
                "group {target} refused the seed: {why}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_sync_time_is_the_latest_note_the_secondary_covers() {
        let mut p = Progress::default();
        p.observe(0, 100);
        p.observe(3, 200);
        p.observe(3, 250); // same head: the note moves forward in time
        p.observe(7, 300);
        assert_eq!(p.synced_at(0), Some(100));
        assert_eq!(p.synced_at(5), Some(250));
        assert_eq!(p.synced_at(7), Some(300));
        assert_eq!(Progress::default().synced_at(9), None);
        for i in 0..2 * OBSERVATIONS_MAX as u64 {
            p.observe(10 + i, 400 + i);
        }
        assert_eq!(p.observations.len(), OBSERVATIONS_MAX);
    }
}
