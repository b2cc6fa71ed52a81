//! The driver's side of a geo run: starting the monitor, launching each action as
//! its own client host at its time, the final geo step, the six-copies check on
//! the replicas' stores, and putting the checks together.

use super::check::{self, Fork};
use super::{operator, GeoAction, GeoFigures, GeoLog, GeoPlan, GeoRecord};
use crate::history::{Event, History, Outcome, Value};
use crate::scenario::RunOptions;
use crate::workload::{Control, WorkloadSpec, CONTAINER, WRITE_META};
use crate::world::World;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stratus_client::Redundancy;
use stratus_node::objects::reader::ObjectReader;
use stratus_node::objects::ObjectId;

/// Longest the final geo step may take.
const FINAL_MAX: Duration = Duration::from_secs(240);

/// What a geo run reports.
#[derive(Debug, Clone, Serialize)]
pub struct GeoReport {
    pub record: GeoRecord,
    pub figures: GeoFigures,
}

/// Endpoints of the nodes outside `region` (the operator works from the surviving
/// region and the witness), or of those inside it.
fn endpoints(world: &World<'_>, region: &str, inside: bool) -> Vec<String> {
    world
        .topology
        .nodes()
        .values()
        .filter(|n| (n.region == region) == inside)
        .map(|n| n.addr.clone())
        .collect()
}

/// The region the workload's tenants start in.
fn home(spec: &WorkloadSpec) -> String {
    spec.tenants
        .first()
        .map(|t| t.1.clone())
        .unwrap_or_default()
}

/// Starts the lag monitor, when the plan has tenants to watch.
pub fn start(world: &mut World<'_>, plan: &GeoPlan, control: &Control, log: &GeoLog) {
    if plan.monitor.is_empty() {
        return;
    }
    let all: Vec<String> = world
        .topology
        .nodes()
        .values()
        .map(|n| n.addr.clone())
        .collect();
    world.client(
        "geo-monitor",
        operator::monitor(all, plan.monitor.clone(), control.clone(), log.clone()),
    );
}

/// Launches action `i` of the plan as its own client host.
pub fn launch(
    world: &mut World<'_>,
    plan: &GeoPlan,
    i: usize,
    spec: &WorkloadSpec,
    log: &GeoLog,
    history: &History,
) -> String {
    let action = plan.actions[i].action.clone();
    let eps = match &action {
        GeoAction::FenceProbe { region, .. } => endpoints(world, region, true),
        _ => endpoints(world, &home(spec), false),
    };
    let what = format!("operator: {action:?}");
    world.client(
        &format!("operator-{i}"),
        operator::act(
            action,
            eps,
            spec.keys_per_tenant,
            log.clone(),
            history.clone(),
        ),
    );
    what
}

/// The tenants the final geo step looks at: every geo tenant of the workload.
fn geo_tenants(spec: &WorkloadSpec) -> Vec<String> {
    spec.tenants
        .iter()
        .filter(|t| t.2.is_geo())
        .map(|t| t.0.clone())
        .collect()
}

/// After the workload: waits for each geo copy and reads the recovery containers.
pub fn final_step(
    world: &mut World<'_>,
    spec: &WorkloadSpec,
    log: &GeoLog,
) -> anyhow::Result<bool> {
    let tenants = geo_tenants(spec);
    if tenants.is_empty() {
        return Ok(true);
    }
    let done = Arc::new(AtomicBool::new(false));
    let eps = endpoints(world, "", false);
    world.client(
        "geo-final",
        operator::final_geo(eps, tenants, log.clone(), done.clone()),
    );
    let until = world.now() + FINAL_MAX;
    while !done.load(Ordering::SeqCst) && world.now() < until {
        world
            .sim
            .step()
            .map_err(|e| anyhow::anyhow!("a simulated host failed: {e}"))?;
    }
    Ok(done.load(Ordering::SeqCst))
}

/// The final value of each key as the verifier last read it.
fn final_values(events: &[Event]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.client == crate::check::lost::VERIFIER)
    {
        if let Outcome::Read(v) = e.outcome {
            out.insert(e.key.clone(), v);
        }
    }
    out
}

/// Every replica of the tenant's primary and secondary groups holds each key's
/// final value: six copies.
pub fn six_copies(
    world: &World<'_>,
    record: &GeoRecord,
    tenant: &str,
    events: &[Event],
) -> Vec<String> {
    let Some(info) = record
        .finals
        .iter()
        .find(|f| f.tenant == tenant)
        .and_then(|f| f.info.clone())
    else {
        return vec![format!(
            "{tenant}: no final tenant record for the six-copies check"
        )];
    };
    let Some(geo) = &info.geo else {
        return vec![format!("{tenant}: no geo copy after the reprotect")];
    };
    let groups = [info.group_id, geo.secondary_group_id];
    let mut out = Vec::new();
    let mut checked = 0;
    for (key, value) in final_values(events)
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{tenant}/")))
    {
        let name = key.rsplit('/').next().unwrap_or_default().to_string();
        let id = ObjectId {
            tenant: tenant.to_string(),
            container: CONTAINER.to_string(),
            key: name,
        };
        let mut copies = 0;
        for g in groups {
            let Some(spec) = world.plan.get(g as usize) else {
                out.push(format!("{tenant}: group {g} is not in the plan"));
                continue;
            };
            for v in &spec.voters {
                let Some(n) = world.nodes.get(v) else {
                    continue;
                };
                let reader = ObjectReader::new(n.engine_ref(), n.blob_ref(), g);
                let held: Value = match reader.head(&id) {
                    Ok(m) => m.and_then(|m| m.metadata.get(WRITE_META)?.parse().ok()),
                    Err(e) => {
                        out.push(format!("{key}: node {v} group {g} cannot be read: {e}"));
                        continue;
                    }
                };
                if held == value {
                    copies += 1;
                } else {
                    out.push(format!(
                        "{key}: node {v} (group {g}) holds {held:?}, the final read saw {value:?}"
                    ));
                }
            }
        }
        if value.is_some() && copies < 6 {
            out.push(format!(
                "{key}: {copies} copies of the final value, not six"
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        out.push(format!("{tenant}: no key to check six copies of"));
    }
    out
}

/// Everything a geo run checks, and its report. `events` is the raw history;
/// returns the history the other checkers must use (through the forks).
pub fn conclude(
    world: &World<'_>,
    opts: &RunOptions,
    log: &GeoLog,
    events: &[Event],
    spans: &[(String, Duration, Duration)],
    start: Duration,
) -> (Vec<Event>, Vec<String>, GeoReport) {
    let (plan, spec) = (&opts.geo, &opts.workload);
    let unshipped_from = plan
        .unshipped_from_fault
        .and_then(|i| spans.get(i))
        .map(|s| s.1);
    let record = log.snapshot();
    let forks: Vec<Fork> = check::forks(&record);
    let (adjusted, counts) = check::through_forks(events, &forks);
    let mut violations = check::fork_violations(&counts);
    violations.extend(check::secondary_reads(events));
    violations.extend(check::recovery(events, &record, &forks, unshipped_from));
    let classes: BTreeMap<String, (String, Redundancy)> = spec
        .tenants
        .iter()
        .map(|(t, region, class)| (t.clone(), (region.clone(), *class)))
        .collect();
    violations.extend(check::expectations(plan, &record, events, spans, &classes));
    for c in &plan.checks {
        if let super::GeoCheck::Reprotected { tenant } = c {
            violations.extend(six_copies(world, &record, tenant, events));
        }
    }
    let figures = check::figures(
        &record,
        events,
        spans,
        &counts,
        start,
        plan.region_down_fault,
    );
    (adjusted, violations, GeoReport { record, figures })
}
