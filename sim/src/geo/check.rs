//! Checks of geo outcomes, from the client's side.
//!
//! - [`through_forks`]: an unplanned failover forks a tenant's history: every write
//!   acknowledged before the reported last sync time must survive, a write
//!   acknowledged after it (and begun before the failover answered) may be lost,
//!   and what reads and refusals saw on the lost branch says nothing about the new
//!   one. Those writes become "unknown" and those observations are dropped; the
//!   linearizability and lost-write checkers then run on the result.
//! - [`secondary_reads`]: a read from the secondary may be stale, but never older
//!   than its last sync time: no write acknowledged before that time may follow the
//!   write it shows.
//! - [`recovery`]: the recovery container after a reprotect holds only writes that
//!   were not synced, intact, and holds each key's last unreplicated put.
//! - [`expectations`]: the [`GeoCheck`]s of a plan.

use super::{GeoCheck, GeoFigures, GeoPlan, GeoRecord, LagSample};
use crate::check::lost::VERIFIER;
use crate::history::{Event, Op, Outcome, WriteId, PROBE};
use crate::net::EPOCH_MS;
use std::collections::BTreeMap;
use std::time::Duration;
use stratus_client::Redundancy;

/// Secondary reads answered during an outage, at least (share of those tried).
const SECONDARY_ANSWERED_MIN: f64 = 0.9;
/// Fence probe writes, at least, for a fencing check to count.
const FENCE_WRITES_MIN: u32 = 5;

/// Sim time of a wall-clock time in ms since the epoch.
pub fn sim_time(ms: u64) -> Duration {
    Duration::from_millis(ms.saturating_sub(EPOCH_MS))
}

/// One unplanned failover, as the checks need it.
#[derive(Debug, Clone)]
pub struct Fork {
    pub tenant: String,
    /// The reported last sync time (sim time).
    pub last_sync: Duration,
    /// When the failover answered (sim time).
    pub done_at: Duration,
    pub lost_ops_max: Option<u64>,
}

/// The successful unplanned failovers of a run.
pub fn forks(record: &GeoRecord) -> Vec<Fork> {
    record
        .failovers
        .iter()
        .filter(|f| !f.planned)
        .filter_map(|f| {
            let r = f.record.as_ref()?;
            Some(Fork {
                tenant: f.tenant.clone(),
                last_sync: sim_time(r.last_sync_ms),
                done_at: f.done_at,
                lost_ops_max: r.lost_operations_max,
            })
        })
        .collect()
}

fn tenant_of(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

fn is_workload(e: &Event) -> bool {
    e.client != VERIFIER && e.client != PROBE
}

/// What a fork did to the history of its tenant.
#[derive(Debug, Clone)]
pub struct ForkCount {
    pub tenant: String,
    /// Acknowledged writes after the last sync time, begun before the failover.
    pub at_risk: usize,
    /// Of those, the ones no read after the failover saw (puts), and deletes.
    pub unseen: usize,
    pub lost_ops_max: Option<u64>,
}

/// The history as the checkers must see it through the forks (see the module
/// doc), and what each fork put at risk.
pub fn through_forks(events: &[Event], forks: &[Fork]) -> (Vec<Event>, Vec<ForkCount>) {
    let mut out = Vec::with_capacity(events.len());
    let mut counts: Vec<ForkCount> = forks
        .iter()
        .map(|f| ForkCount {
            tenant: f.tenant.clone(),
            at_risk: 0,
            unseen: 0,
            lost_ops_max: f.lost_ops_max,
        })
        .collect();
    for e in events {
        let Some((i, f)) = forks
            .iter()
            .enumerate()
            .find(|(_, f)| f.tenant == tenant_of(&e.key))
        else {
            out.push(e.clone());
            continue;
        };
        let before_sync = e.outcome.is_known() && e.completed < f.last_sync;
        if e.invoked >= f.done_at || before_sync || !e.outcome.is_known() {
            out.push(e.clone());
            continue;
        }
        match (&e.op, &e.outcome) {
            (Op::Put { id, .. }, Outcome::Done) => {
                counts[i].at_risk += 1;
                let seen = events.iter().any(|r| {
                    r.key == e.key
                        && r.invoked >= f.done_at
                        && r.outcome == Outcome::Read(Some(*id))
                });
                if !seen {
                    counts[i].unseen += 1;
                }
                out.push(Event {
                    outcome: Outcome::Unknown(
                        "acknowledged after the last sync time: may be lost in the failover".into(),
                    ),
                    ..e.clone()
                });
            }
            (Op::Delete { .. }, Outcome::Done) => {
                counts[i].at_risk += 1;
                counts[i].unseen += 1;
                out.push(Event {
                    outcome: Outcome::Unknown(
                        "acknowledged after the last sync time: may be lost in the failover".into(),
                    ),
                    ..e.clone()
                });
            }
            // Observations of the branch the failover may have cut off.
            (_, Outcome::Read(_) | Outcome::Refused | Outcome::Absent) => {}
            _ => out.push(e.clone()),
        }
    }
    (out, counts)
}

/// Loss beyond the reported window.
pub fn fork_violations(counts: &[ForkCount]) -> Vec<String> {
    counts
        .iter()
        .filter_map(|c| {
            let max = c.lost_ops_max?;
            (c.unseen as u64 > max).then(|| {
                format!(
                    "failover of {}: {} acknowledged writes after the last sync time were not seen again, but the reported loss window is {max} operations",
                    c.tenant, c.unseen
                )
            })
        })
        .collect()
}

fn puts_by_id(events: &[Event]) -> BTreeMap<WriteId, &Event> {
    events
        .iter()
        .filter_map(|e| match e.op {
            Op::Put { id, .. } => Some((id, e)),
            _ => None,
        })
        .collect()
}

/// Reads from the secondary older than their own last sync time, or without one.
pub fn secondary_reads(events: &[Event]) -> Vec<String> {
    let puts = puts_by_id(events);
    let mut out = Vec::new();
    for r in events {
        let Op::SecondaryGet { last_sync_ms } = r.op else {
            continue;
        };
        let Outcome::Read(Some(seen)) = r.outcome else {
            continue;
        };
        let Some(last_sync_ms) = last_sync_ms else {
            out.push(format!(
                "{} at {} ms: a read from the secondary answered without its last sync time",
                r.key,
                r.completed.as_millis()
            ));
            continue;
        };
        let Some(writer) = puts.get(&seen).filter(|w| w.key == r.key) else {
            out.push(format!(
                "{}: the secondary shows write {seen}, which no client issued for that key",
                r.key
            ));
            continue;
        };
        if writer.invoked > r.completed {
            out.push(format!(
                "{}: the secondary shows write {seen} at {} ms, before it was begun ({} ms)",
                r.key,
                r.completed.as_millis(),
                writer.invoked.as_millis()
            ));
        }
        let synced = sim_time(last_sync_ms);
        if !writer.outcome.is_known() {
            continue;
        }
        if let Some(a) = events.iter().find(|a| {
            a.key == r.key
                && is_workload(a)
                && !a.op.is_read()
                && a.outcome == Outcome::Done
                && a.completed < synced
                && a.invoked > writer.completed
        }) {
            out.push(format!(
                "{}: stale read from the secondary at {} ms: it shows write {seen} (done at {} ms) with last sync time {} ms, but {:?} was acknowledged at {} ms, before that time",
                r.key,
                r.completed.as_millis(),
                writer.completed.as_millis(),
                synced.as_millis(),
                a.op,
                a.completed.as_millis()
            ));
        }
    }
    out
}

/// The recovery containers: every object intact and an unsynced write of its key;
/// the count as reported; each key's last unreplicated put present when the
/// history pins it down (writes begun after `unshipped_from`, when known, cannot
/// have been shipped).
pub fn recovery(
    events: &[Event],
    record: &GeoRecord,
    forks: &[Fork],
    unshipped_from: Option<Duration>,
) -> Vec<String> {
    let puts = puts_by_id(events);
    let mut out = Vec::new();
    for f in forks {
        let Some(done) = record.reprotects.iter().find(|r| r.tenant == f.tenant) else {
            continue;
        };
        let Some(info) = &done.tenant_after else {
            continue;
        };
        let Some(fr) = info.failovers.last() else {
            out.push(format!("{}: reprotected, but no failover record", f.tenant));
            continue;
        };
        let mine: Vec<_> = record
            .recovered
            .iter()
            .filter(|r| r.tenant == f.tenant)
            .collect();
        if mine.len() as u64 != fr.recovered_objects {
            out.push(format!(
                "{}: the failover record reports {} recovered objects, the recovery container holds {}",
                f.tenant,
                fr.recovered_objects,
                mine.len()
            ));
        }
        let mut held: BTreeMap<String, WriteId> = BTreeMap::new();
        for r in &mine {
            let full = format!("{}/{}", f.tenant, r.key);
            match &r.outcome {
                Outcome::Read(Some(id)) => {
                    let Some(w) = puts.get(id).filter(|w| w.key == full) else {
                        out.push(format!(
                            "{}/{}/{}: holds write {id}, which is no write of {full}",
                            f.tenant, r.container, r.key
                        ));
                        continue;
                    };
                    if w.outcome.is_known() && w.completed < f.last_sync {
                        out.push(format!(
                            "{}/{}/{}: holds write {id}, acknowledged at {} ms, before the last sync time {} ms: it was replicated",
                            f.tenant, r.container, r.key, w.completed.as_millis(), f.last_sync.as_millis()
                        ));
                    }
                    if w.invoked >= f.done_at {
                        out.push(format!(
                            "{}/{}/{}: holds write {id}, begun after the failover",
                            f.tenant, r.container, r.key
                        ));
                    }
                    held.insert(full, *id);
                }
                other => out.push(format!(
                    "{}/{}/{}: the recovered object cannot be read back: {other:?}",
                    f.tenant, r.container, r.key
                )),
            }
        }
        let Some(from) = unshipped_from else {
            continue;
        };
        // Each key's writes that could not have been shipped.
        let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for e in events.iter().filter(|e| {
            is_workload(e)
                && tenant_of(&e.key) == f.tenant
                && !e.op.is_read()
                && e.invoked >= from
                && e.invoked < f.done_at
                && matches!(e.outcome, Outcome::Done | Outcome::Unknown(_))
        }) {
            by_key.entry(e.key.as_str()).or_default().push(e);
        }
        for (key, ws) in by_key {
            if ws.iter().any(|w| !w.outcome.is_known()) {
                continue; // An unknown write may be the last one.
            }
            let Some(last) = ws.iter().max_by_key(|w| w.completed) else {
                continue;
            };
            if ws
                .iter()
                .any(|w| !std::ptr::eq(*w, *last) && w.completed >= last.invoked)
            {
                continue; // Concurrent: the log order is not pinned down.
            }
            let key_in_container = key.split_once('/').map_or("", |(_, k)| k);
            match last.op {
                Op::Put { id, .. } if held.get(key) != Some(&id) => out.push(format!(
                    "{key}: write {id}, acknowledged at {} ms and never replicated, is not in the recovery container (it holds {:?} for {key_in_container})",
                    last.completed.as_millis(),
                    held.get(key)
                )),
                Op::Delete { .. } if held.contains_key(key) => out.push(format!(
                    "{key}: the last unreplicated write deleted it, yet the recovery container holds write {:?}",
                    held.get(key)
                )),
                _ => {}
            }
        }
    }
    out
}

fn percentile<T: Copy + PartialOrd>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

fn in_any(at: Duration, spans: &[(String, Duration, Duration)], grace: Duration) -> bool {
    spans
        .iter()
        .any(|(_, from, to)| at >= *from && at < *to + grace)
}

/// Lag percentiles of live copies outside every fault (and a settling time after
/// each), failover times, and what each fork put at risk.
pub fn figures(
    record: &GeoRecord,
    events: &[Event],
    spans: &[(String, Duration, Duration)],
    counts: &[ForkCount],
    start: Duration,
    region_down: Option<usize>,
) -> GeoFigures {
    let steady: Vec<&LagSample> = record
        .lag
        .iter()
        .filter(|s| s.status == "live" && s.at >= start)
        .filter(|s| !in_any(s.at, spans, Duration::from_secs(30)))
        .filter(|s| {
            !record
                .failovers
                .iter()
                .any(|f| f.tenant == s.tenant && s.at >= f.asked_at)
        })
        .collect();
    let mut secs: Vec<f64> = steady.iter().map(|s| s.lag_seconds).collect();
    secs.sort_by(f64::total_cmp);
    let mut ops: Vec<u64> = steady.iter().map(|s| s.lag_operations).collect();
    ops.sort_unstable();
    let first_fault = region_down
        .and_then(|i| spans.get(i))
        .map(|(_, from, _)| *from);
    let failover_s = record
        .failovers
        .iter()
        .filter(|f| !f.planned && f.record.is_some())
        .filter_map(|f| {
            let down = first_fault?;
            let prefix = format!("{}/", f.tenant);
            let first = events
                .iter()
                .filter(|e| e.key.starts_with(&prefix) && is_workload(e) && !e.op.is_read())
                .filter(|e| e.outcome == Outcome::Done && e.completed > down)
                .map(|e| e.completed)
                .min()?;
            Some((f.tenant.clone(), (first - down).as_secs_f64()))
        })
        .collect();
    let loss_window_s = record
        .failovers
        .iter()
        .filter(|f| !f.planned)
        .filter_map(|f| {
            let down = first_fault?;
            let synced = sim_time(f.record.as_ref()?.last_sync_ms);
            Some((f.tenant.clone(), down.as_secs_f64() - synced.as_secs_f64()))
        })
        .collect();
    let failover_operator_write_s = record
        .failovers
        .iter()
        .filter(|f| !f.planned)
        .filter_map(|f| {
            let down = first_fault?;
            Some((f.tenant.clone(), (f.first_write_at? - down).as_secs_f64()))
        })
        .collect();
    let during: Vec<&LagSample> = record
        .lag
        .iter()
        .filter(|s| in_any(s.at, spans, Duration::ZERO))
        .collect();
    let lag_max_during_faults = (!during.is_empty()).then(|| {
        (
            during.iter().map(|s| s.lag_seconds).fold(0.0, f64::max),
            during.iter().map(|s| s.lag_operations).max().unwrap_or(0),
        )
    });
    GeoFigures {
        lag_max_during_faults,
        failover_operator_write_s,
        loss_window_s,
        steady_samples: steady.len(),
        lag_p50_s: percentile(&secs, 0.5),
        lag_p99_s: percentile(&secs, 0.99),
        lag_p50_ops: percentile(&ops, 0.5),
        lag_p99_ops: percentile(&ops, 0.99),
        failover_s,
        failover_call_s: record
            .failovers
            .iter()
            .map(|f| (f.tenant.clone(), (f.done_at - f.asked_at).as_secs_f64()))
            .collect(),
        at_risk: counts
            .iter()
            .map(|c| (c.tenant.clone(), c.at_risk, c.unseen, c.lost_ops_max))
            .collect(),
    }
}

/// Whether `e` is a write of `tenant` by a workload client.
fn workload_write_of(e: &Event, tenant: &str) -> bool {
    is_workload(e) && tenant_of(&e.key) == tenant && !e.op.is_read()
}

/// The plan's checks against what happened.
pub fn expectations(
    plan: &GeoPlan,
    record: &GeoRecord,
    events: &[Event],
    spans: &[(String, Duration, Duration)],
    classes: &BTreeMap<String, (String, Redundancy)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in &record.fences {
        for a in &f.acknowledged {
            out.push(format!(
                "fencing: the old region {} acknowledged a write of {} after the failover: {a}",
                f.region, f.tenant
            ));
        }
    }
    let span = |i: usize| spans.get(i).map(|(_, from, to)| (*from, *to));
    for check in &plan.checks {
        match check {
            GeoCheck::FailedOver { tenant, planned } => {
                out.extend(failed_over(record, tenant, *planned, classes.get(tenant)))
            }
            GeoCheck::WritesAfterFailover { tenant } => {
                let Some(f) = record.failovers.iter().find(|f| &f.tenant == tenant) else {
                    out.push(format!("{tenant}: no failover happened"));
                    continue;
                };
                let acked = events.iter().any(|e| {
                    workload_write_of(e, tenant)
                        && e.invoked >= f.done_at
                        && e.outcome == Outcome::Done
                });
                if !acked {
                    out.push(format!(
                        "{tenant}: no write acknowledged after the failover answered at {} ms",
                        f.done_at.as_millis()
                    ));
                }
            }
            GeoCheck::Fenced { tenant } => match record.fences.iter().find(|f| &f.tenant == tenant)
            {
                None => out.push(format!("{tenant}: the fence probe did not report")),
                Some(f) if f.writes_tried < FENCE_WRITES_MIN => out.push(format!(
                    "{tenant}: the fence probe sent only {} writes to the old region",
                    f.writes_tried
                )),
                Some(_) => {}
            },
            GeoCheck::Reprotected { tenant } => {
                out.extend(reprotected(record, tenant, classes.get(tenant)))
            }
            GeoCheck::NoWriteRefused { tenant, fault } => {
                let Some((from, to)) = span(*fault) else {
                    out.push(format!("{tenant}: fault {fault} did not happen"));
                    continue;
                };
                let bad: Vec<String> = events
                    .iter()
                    .filter(|e| workload_write_of(e, tenant) && e.invoked >= from && e.invoked < to)
                    .filter(|e| matches!(e.outcome, Outcome::Failed(_) | Outcome::Unknown(_)))
                    .map(|e| {
                        format!(
                            "{} {:?} at {} ms: {:?}",
                            e.key,
                            e.op,
                            e.invoked.as_millis(),
                            e.outcome
                        )
                    })
                    .collect();
                let tried = events
                    .iter()
                    .filter(|e| workload_write_of(e, tenant) && e.invoked >= from && e.invoked < to)
                    .count();
                if tried == 0 {
                    out.push(format!(
                        "{tenant}: no write was tried while fault {fault} lasted"
                    ));
                }
                if !bad.is_empty() {
                    out.push(format!(
                        "{tenant}: {} of {tried} writes failed while the fault lasted, e.g. {}",
                        bad.len(),
                        bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                    ));
                }
            }
            GeoCheck::LagGrowsAndReturns {
                tenant,
                fault,
                settle,
            } => {
                let Some((from, to)) = span(*fault) else {
                    out.push(format!("{tenant}: fault {fault} did not happen"));
                    continue;
                };
                out.extend(lag_grows_and_returns(record, tenant, from, to, *settle));
            }
            GeoCheck::SecondaryReadsDuring { tenant, fault } => {
                let Some((from, to)) = span(*fault) else {
                    out.push(format!("{tenant}: fault {fault} did not happen"));
                    continue;
                };
                // Once failed over the tenant has no secondary (until a reprotect):
                // its reads go to the new primary.
                let to = record
                    .failovers
                    .iter()
                    .filter(|f| &f.tenant == tenant && f.record.is_some())
                    .map(|f| f.asked_at)
                    .fold(to, Duration::min);
                let reads: Vec<&Event> = events
                    .iter()
                    .filter(|e| tenant_of(&e.key) == tenant && is_workload(e))
                    .filter(|e| matches!(e.op, Op::SecondaryGet { .. }))
                    .filter(|e| e.invoked >= from && e.invoked < to)
                    .collect();
                let answered = reads
                    .iter()
                    .filter(|e| matches!(e.outcome, Outcome::Read(_)) && e.completed < to)
                    .count();
                if reads.len() < 5 {
                    out.push(format!(
                        "{tenant}: only {} reads from the secondary were tried during the outage",
                        reads.len()
                    ));
                } else if (answered as f64) < SECONDARY_ANSWERED_MIN * reads.len() as f64 {
                    let failed: Vec<String> = reads
                        .iter()
                        .filter(|e| !matches!(e.outcome, Outcome::Read(_)))
                        .take(3)
                        .map(|e| {
                            format!("{} at {} ms: {:?}", e.key, e.invoked.as_millis(), e.outcome)
                        })
                        .collect();
                    out.push(format!(
                        "{tenant}: reads from the secondary answered {answered} of {} during the outage (at least {:.0}% required), e.g. {}",
                        reads.len(),
                        SECONDARY_ANSWERED_MIN * 100.0,
                        failed.join("; ")
                    ));
                }
            }
        }
    }
    out
}

fn failed_over(
    record: &GeoRecord,
    tenant: &str,
    planned: bool,
    class: Option<&(String, Redundancy)>,
) -> Vec<String> {
    let Some(f) = record
        .failovers
        .iter()
        .find(|f| f.tenant == tenant && f.planned == planned)
    else {
        return vec![format!("{tenant}: the failover was never asked for")];
    };
    let (Some(t), Some(r)) = (&f.tenant_after, &f.record) else {
        return vec![format!(
            "{tenant}: the {} failover failed after {} attempts: {}",
            if planned { "planned" } else { "unplanned" },
            f.attempts,
            f.error.clone().unwrap_or_default()
        )];
    };
    let mut out = Vec::new();
    if let Some((region, _)) = class {
        if &t.region == region {
            out.push(format!(
                "{tenant}: still primary in {region} after the failover"
            ));
        }
    }
    if planned {
        if r.lost_operations_max != Some(0) {
            out.push(format!(
                "{tenant}: a planned failover reports a loss window of {:?}",
                r.lost_operations_max
            ));
        }
        if t.geo.is_none() || t.redundancy != class.map(|c| c.1) {
            out.push(format!(
                "{tenant}: the planned failover did not keep geo-redundancy: {:?}, geo {:?}",
                t.redundancy, t.geo
            ));
        }
    } else {
        if r.reprotect != "pending" {
            out.push(format!(
                "{tenant}: an unplanned failover should leave a reprotect pending, not {:?}",
                r.reprotect
            ));
        }
        if t.redundancy.is_some_and(|c| c.is_geo()) {
            out.push(format!(
                "{tenant}: still {:?} after an unplanned failover (expected local until reprotected)",
                t.redundancy
            ));
        }
    }
    out
}

fn reprotected(
    record: &GeoRecord,
    tenant: &str,
    class: Option<&(String, Redundancy)>,
) -> Vec<String> {
    let Some(r) = record.reprotects.iter().find(|r| r.tenant == tenant) else {
        return vec![format!("{tenant}: the reprotect was never asked for")];
    };
    if r.tenant_after.is_none() {
        return vec![format!(
            "{tenant}: the reprotect failed after {} attempts: {}",
            r.attempts,
            r.error.clone().unwrap_or_default()
        )];
    }
    let Some(fin) = record.finals.iter().find(|f| f.tenant == tenant) else {
        return vec![format!("{tenant}: no final geo status")];
    };
    let mut out = Vec::new();
    if !fin.in_sync {
        out.push(format!(
            "{tenant}: the geo copy was not live with zero lag after the reprotect: {:?}",
            fin.info.as_ref().map(|t| &t.geo)
        ));
    }
    if let (Some(t), Some((region, class))) = (&fin.info, class) {
        if t.redundancy != Some(*class) {
            out.push(format!(
                "{tenant}: {:?} after the reprotect, expected {class}",
                t.redundancy
            ));
        }
        if t.geo.as_ref().map(|g| &g.secondary_region) != Some(region) {
            out.push(format!(
                "{tenant}: after the reprotect the secondary is {:?}, expected the old region {region}",
                t.geo.as_ref().map(|g| &g.secondary_region)
            ));
        }
        if t.failovers.last().map(|f| f.reprotect.as_str()) != Some("done") {
            out.push(format!(
                "{tenant}: the failover record says reprotect {:?}",
                t.failovers.last().map(|f| &f.reprotect)
            ));
        }
    }
    out
}

fn lag_grows_and_returns(
    record: &GeoRecord,
    tenant: &str,
    from: Duration,
    to: Duration,
    settle: Duration,
) -> Vec<String> {
    let mine: Vec<&LagSample> = record.lag.iter().filter(|s| s.tenant == tenant).collect();
    let before: Vec<f64> = mine
        .iter()
        .filter(|s| s.at < from && s.status == "live")
        .map(|s| s.lag_seconds)
        .collect();
    let Some(steady) = before.iter().copied().reduce(f64::max) else {
        return vec![format!("{tenant}: no lag sample before the fault")];
    };
    let during = mine
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .map(|s| s.lag_seconds)
        .reduce(f64::max)
        .unwrap_or(0.0);
    let mut out = Vec::new();
    let grown = steady + 0.5 * (to - from).as_secs_f64();
    if during < grown {
        out.push(format!(
            "{tenant}: the lag did not grow while the link was cut: at most {during:.2} s (steady {steady:.2} s, expected at least {grown:.2} s)"
        ));
    }
    let level = (2.0 * steady).max(1.0);
    let back = mine
        .iter()
        .find(|s| s.at >= to && s.status == "live" && s.lag_seconds <= level)
        .map(|s| s.at);
    match back {
        Some(at) if at <= to + settle => {}
        other => out.push(format!(
            "{tenant}: the lag did not return to its steady level ({level:.2} s) within {} s of the heal (back at {:?})",
            settle.as_secs(),
            other.map(|d| d.as_secs_f64())
        )),
    }
    out
}
