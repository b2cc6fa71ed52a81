//! One simulated run: start the cluster and the workload, inject the scheduled
//! faults and heal them, stop the workload, wait for the replicas to converge,
//! read every key, and run every checker. [`run`] returns a [`RunReport`].

use crate::check::{self, linear, lost};
use crate::faults::{Fault, Undo};
use crate::geo::drive::{self as geo_drive, GeoReport};
use crate::geo::{GeoLog, GeoPlan};
use crate::history::{Event, History, Op, Outcome};
use crate::trace::{Trace, TraceEvent};
use crate::workload::{self, Control, WorkloadSpec};
use crate::world::{simulated_topology, World};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stratus_core::placement::check_group;
use stratus_node::inspect;
use stratus_node::node::NodeSettings;

/// Longest the cluster may take to accept the workload's tenants.
const READY_MAX: Duration = Duration::from_secs(90);
/// Longest the workload clients may take to stop after being told to.
const STOP_MAX: Duration = Duration::from_secs(30);
/// Longest the replicas may take to converge after the last heal.
const CONVERGE_MAX: Duration = Duration::from_secs(120);
/// Longest the final reads may take.
const VERIFY_MAX: Duration = Duration::from_secs(180);

/// A fault at a time relative to the start of the workload, for a while.
#[derive(Debug, Clone, Serialize)]
pub struct Timed {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub name: String,
    pub seed: u64,
    pub topology: String,
    pub workload: WorkloadSpec,
    pub faults: Vec<Timed>,
    /// Workload time after the last heal.
    pub after: Duration,
    pub settings: NodeSettings,
    /// Geo actions, monitoring and checks (empty for local runs).
    pub geo: GeoPlan,
}

/// Availability of one tenant while one fault lasted.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub fault: String,
    pub tenant: String,
    pub writes_ok: usize,
    pub writes_tried: usize,
    pub reads_ok: usize,
    pub reads_tried: usize,
    /// Reads from the secondary copy (RA classes) answered and tried.
    pub secondary_reads_ok: usize,
    pub secondary_reads_tried: usize,
    /// Milliseconds from the fault until the tenant acknowledged a write again
    /// (`None`: not before the end of the run).
    pub recovery_ms: Option<u64>,
    /// Whether writes came back before the fault healed.
    pub recovered_during_fault: bool,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub timeline: Vec<TraceEvent>,
    pub operations: usize,
    /// Operations with a known outcome (what the checkers constrain).
    pub checked: usize,
    pub violations: Vec<String>,
    pub inconclusive: Vec<String>,
    pub windows: Vec<Window>,
    /// Geo runs: what the operator and the monitor saw, and the figures.
    pub geo: Option<GeoReport>,
    pub trace_hash: u64,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

enum Step {
    Inject(usize),
    Flap(usize),
    Heal(usize),
    Act(usize),
}

fn run_until_flag(world: &mut World<'_>, flag: &AtomicBool, max: Duration) -> anyhow::Result<bool> {
    let until = world.now() + max;
    while !flag.load(Ordering::SeqCst) && world.now() < until {
        world
            .sim
            .step()
            .map_err(|e| anyhow::anyhow!("a simulated host failed: {e}"))?;
    }
    Ok(flag.load(Ordering::SeqCst))
}

/// Runs one scenario to completion.
pub fn run(opts: &RunOptions) -> anyhow::Result<RunReport> {
    let wall = Instant::now();
    let trace = Trace::default();
    let topology = simulated_topology(&opts.topology)?;
    let mut world = World::new(topology, opts.seed, opts.settings.clone(), trace.clone());
    let endpoints: Vec<String> = world
        .topology
        .nodes()
        .values()
        .map(|n| n.addr.clone())
        .collect();
    let (control, history) = (Control::default(), History::default());
    world.client(
        "setup",
        workload::setup(endpoints.clone(), opts.workload.clone(), control.clone()),
    );
    for c in 0..opts.workload.clients {
        world.client(
            &format!("client-{c}"),
            workload::run_client(
                c,
                opts.seed,
                endpoints.clone(),
                opts.workload.clone(),
                control.clone(),
                history.clone(),
            ),
        );
    }
    for r in 0..opts.workload.secondary_readers {
        let id = workload::SECONDARY_READER_BASE + r;
        world.client(
            &format!("secondary-reader-{r}"),
            workload::run_secondary_reader(
                id,
                opts.seed,
                endpoints.clone(),
                opts.workload.clone(),
                control.clone(),
                history.clone(),
            ),
        );
    }
    let mut violations = Vec::new();
    if !run_until_flag(&mut world, &control.ready, READY_MAX)? {
        violations.push(format!(
            "the cluster did not accept the workload's tenants within {} s",
            READY_MAX.as_secs()
        ));
    }
    let start = world.now();
    trace.push(start, "workload starts");
    let geo_log = GeoLog::default();
    geo_drive::start(&mut world, &opts.geo, &control, &geo_log);

    // The schedule: injections, heals and link flaps, in time order.
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for (i, t) in opts.faults.iter().enumerate() {
        steps.push((start + t.at, Step::Inject(i)));
        steps.push((start + t.at + t.lasts, Step::Heal(i)));
        if let Fault::Flap { period_ms, .. } = t.fault {
            let period = Duration::from_millis(period_ms.max(50));
            let mut at = start + t.at + period;
            while at < start + t.at + t.lasts {
                steps.push((at, Step::Flap(i)));
                at += period;
            }
        }
    }
    for (i, a) in opts.geo.actions.iter().enumerate() {
        steps.push((start + a.at, Step::Act(i)));
    }
    steps.sort_by_key(|(at, s)| (*at, matches!(s, Step::Inject(_))));
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xfa17);
    let mut undo: Vec<Option<Undo>> = vec![None; opts.faults.len()];
    let mut spans: Vec<(String, Duration, Duration)> = Vec::new();
    for (at, step) in steps {
        world.run_until(at)?;
        match step {
            Step::Inject(i) => {
                let (what, u) = world.inject(&opts.faults[i].fault, &mut rng);
                trace.push(at, format!("fault: {what}"));
                spans.push((what, at, at + opts.faults[i].lasts));
                undo[i] = Some(u);
            }
            Step::Flap(i) => {
                if let Some(u) = undo[i].as_mut() {
                    world.flap(u);
                }
            }
            Step::Heal(i) => {
                if let Some(u) = undo[i].take() {
                    let what = world.heal(&u);
                    trace.push(at, format!("heal: {what}"));
                }
            }
            Step::Act(i) => {
                let what =
                    geo_drive::launch(&mut world, &opts.geo, i, &opts.workload, &geo_log, &history);
                trace.push(at, what);
            }
        }
    }
    let end_of_load = world.now() + opts.after;
    world.run_until(end_of_load)?;
    control.stop.store(true, Ordering::SeqCst);
    let stopped_by = world.now() + STOP_MAX;
    while world.now() < stopped_by
        && !world
            .sim
            .step()
            .map_err(|e| anyhow::anyhow!("a simulated host failed: {e}"))?
    {}
    trace.push(world.now(), "workload stops");

    match converge(&mut world)? {
        Ok(at) => trace.push(at, "replicas converged"),
        Err(why) => violations.push(format!(
            "replicas did not converge within {} s of the workload's end: {why}",
            CONVERGE_MAX.as_secs()
        )),
    }
    violations.extend(placement(&world));

    let verified = Arc::new(AtomicBool::new(false));
    world.client(
        "verifier",
        workload::final_reads(
            endpoints,
            opts.workload.clone(),
            history.clone(),
            verified.clone(),
        ),
    );
    if !run_until_flag(&mut world, &verified, VERIFY_MAX)? {
        violations.push("the final reads did not finish".to_string());
    }
    trace.push(world.now(), "final reads done");

    let geo_run = !opts.geo.is_empty();
    if geo_run {
        if !geo_drive::final_step(&mut world, &opts.workload, &geo_log)? {
            violations.push("the final geo step did not finish".to_string());
        }
        trace.push(world.now(), "final geo step done");
        if let Err(why) = converge(&mut world)? {
            violations.push(format!(
                "replicas did not converge after the geo step: {why}"
            ));
        }
    }
    let raw = history.events();
    if let Ok(path) = std::env::var("STRATUS_SIM_HISTORY") {
        // For a look at every operation of a run (one JSON object per line).
        let lines: Vec<String> = raw
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        if let Err(e) = std::fs::write(&path, lines.join("\n")) {
            tracing::warn!(%path, error = %e, "cannot write the history");
        }
    }
    // Availability is what clients saw, before any failover's re-reading.
    let windows = windows(&opts.workload, &raw, &spans);
    let (events, geo) = if geo_run {
        let (adjusted, found, report) =
            geo_drive::conclude(&world, opts, &geo_log, &raw, &spans, start);
        violations.extend(found);
        for f in &report.record.failovers {
            trace.push(
                f.done_at,
                format!(
                    "failover of {} ({}) answered after {} attempt(s): {}",
                    f.tenant,
                    if f.planned { "planned" } else { "unplanned" },
                    f.attempts,
                    match (&f.record, &f.error) {
                        (Some(r), _) => format!(
                            "from epoch {} to {}, last sync time {} ms, loss window {:?} operations",
                            r.epoch,
                            r.to_region,
                            crate::geo::check::sim_time(r.last_sync_ms).as_millis(),
                            r.lost_operations_max
                        ),
                        (None, e) => format!("FAILED: {}", e.clone().unwrap_or_default()),
                    }
                ),
            );
        }
        for r in &report.record.reprotects {
            trace.push(
                r.done_at,
                format!(
                    "reprotect of {} answered after {} attempt(s){}",
                    r.tenant,
                    r.attempts,
                    r.error
                        .as_ref()
                        .map(|e| format!(": FAILED: {e}"))
                        .unwrap_or_default()
                ),
            );
        }
        (adjusted, Some(report))
    } else {
        (raw, None)
    };
    let check_started = Instant::now();
    let findings = linear::check(&events);
    tracing::info!(
        wall_ms = check_started.elapsed().as_millis() as u64,
        "linearizability checked"
    );
    violations.extend(
        findings
            .iter()
            .filter(|f| !f.inconclusive)
            .map(|f| format!("linearizability, key {}: {}", f.key, f.detail)),
    );
    let inconclusive: Vec<String> = findings
        .iter()
        .filter(|f| f.inconclusive)
        .map(|f| format!("key {}: {}", f.key, f.detail))
        .collect();
    violations.extend(
        lost::check(&events)
            .into_iter()
            .map(|l| format!("lost write, key {}: {}", l.key, l.detail)),
    );
    violations.extend(
        check::corrupt_reads(&events)
            .into_iter()
            .map(|c| format!("corrupt read: {c}")),
    );
    for v in &violations {
        trace.push(world.now(), format!("VIOLATION {v}"));
    }
    let checked = events.iter().filter(|e| e.outcome.is_known()).count();
    trace.push(
        world.now(),
        format!(
            "{} operations, {checked} with a known outcome, history hash {:016x}",
            events.len(),
            history_hash(&events)
        ),
    );
    let mut timeline = trace.events();
    timeline.sort_by_key(|e| e.at_ms);
    Ok(RunReport {
        scenario: opts.name.clone(),
        seed: opts.seed,
        timeline,
        operations: events.len(),
        checked,
        violations,
        inconclusive,
        windows,
        geo,
        trace_hash: trace.hash(),
        sim_seconds: world.now().as_secs_f64(),
        wall_seconds: wall.elapsed().as_secs_f64(),
    })
}

/// Waits until every group's replicas applied the same entries and hold the same
/// state; returns when, or what still differs.
fn converge(world: &mut World<'_>) -> anyhow::Result<Result<Duration, String>> {
    let until = world.now() + CONVERGE_MAX;
    loop {
        let diff = differences(world);
        if diff.is_none() {
            return Ok(Ok(world.now()));
        }
        if world.now() >= until {
            return Ok(Err(diff.unwrap_or_default()));
        }
        let next = world.now() + Duration::from_millis(500);
        world.run_until(next)?;
    }
}

/// The first group whose replicas differ, described; `None` when all agree.
fn differences(world: &World<'_>) -> Option<String> {
    for spec in &world.plan {
        let mut seen: Vec<(u64, u64, u64)> = Vec::new();
        for id in spec.voters.iter().chain(&spec.learners) {
            let Some(n) = world.nodes.get(id) else {
                continue;
            };
            let (engine, blobs) = (n.engine_ref(), n.blob_ref());
            let applied = inspect::applied_index(&engine, spec.id).unwrap_or(0);
            let digest = match inspect::group_digest(&engine, &blobs, spec.id) {
                Ok(d) => d,
                Err(e) => return Some(format!("group {}: node {id} cannot be read: {e}", spec.id)),
            };
            seen.push((*id, applied, digest));
        }
        let first = seen.first().copied()?;
        if seen.iter().any(|(_, a, d)| (*a, *d) != (first.1, first.2)) {
            let desc: Vec<String> = seen
                .iter()
                .map(|(id, a, d)| format!("node {id}: applied {a}, digest {d:016x}"))
                .collect();
            return Some(format!("group {}: {}", spec.id, desc.join("; ")));
        }
    }
    None
}

/// Groups that break their failure-domain rule, or whose replicas' membership is
/// not the planned one.
fn placement(world: &World<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for spec in &world.plan {
        if let Err(e) = check_group(&world.topology, spec) {
            out.push(format!("placement: {e}"));
        }
        for id in &spec.voters {
            let Some(n) = world.nodes.get(id) else {
                continue;
            };
            let mut voters = inspect::voters(&n.engine_ref(), spec.id).unwrap_or_default();
            voters.sort_unstable();
            if voters != spec.voters {
                out.push(format!(
                    "placement: node {id} has group {} voters {voters:?}, planned {:?}",
                    spec.id, spec.voters
                ));
            }
        }
    }
    out
}

fn history_hash(events: &[Event]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in events {
        let line = format!(
            "{}|{}|{:?}|{}|{}|{:?}",
            e.client,
            e.key,
            e.op,
            e.invoked.as_millis(),
            e.completed.as_millis(),
            e.outcome
        );
        for b in line.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Per tenant and fault: what succeeded while the fault lasted, and when writes
/// came back.
fn windows(
    spec: &WorkloadSpec,
    events: &[Event],
    spans: &[(String, Duration, Duration)],
) -> Vec<Window> {
    let mut out = Vec::new();
    for (what, from, to) in spans {
        for (tenant, _, _) in &spec.tenants {
            let prefix = format!("{tenant}/");
            let mine = || {
                events.iter().filter(|e| {
                    e.key.starts_with(&prefix)
                        && e.client != lost::VERIFIER
                        && e.client != crate::history::PROBE
                })
            };
            let during = || mine().filter(|e| e.invoked >= *from && e.invoked < *to);
            let is_write = |e: &&Event| !e.op.is_read();
            let is_secondary = |e: &&Event| matches!(e.op, Op::SecondaryGet { .. });
            let answered = |e: &&Event| {
                matches!(
                    e.outcome,
                    Outcome::Done | Outcome::Refused | Outcome::Absent | Outcome::Read(_)
                )
            };
            // Answered while the fault lasted: an operation that hung until the heal
            // and then succeeded says nothing about availability during the fault.
            let answered_during = |e: &&Event| answered(e) && e.completed < *to;
            let acked_after = mine()
                .filter(|e| is_write(e) && answered(e) && e.invoked >= *from)
                .map(|e| e.completed)
                .min();
            out.push(Window {
                fault: what.clone(),
                tenant: tenant.clone(),
                writes_ok: during().filter(is_write).filter(answered_during).count(),
                writes_tried: during().filter(is_write).count(),
                reads_ok: during()
                    .filter(|e| !is_write(e) && !is_secondary(e))
                    .filter(answered_during)
                    .count(),
                reads_tried: during()
                    .filter(|e| !is_write(e) && !is_secondary(e))
                    .count(),
                secondary_reads_ok: during()
                    .filter(is_secondary)
                    .filter(answered_during)
                    .count(),
                secondary_reads_tried: during().filter(is_secondary).count(),
                recovery_ms: acked_after.map(|t| t.saturating_sub(*from).as_millis() as u64),
                recovered_during_fault: acked_after.is_some_and(|t| t < *to),
            });
        }
    }
    out
}
