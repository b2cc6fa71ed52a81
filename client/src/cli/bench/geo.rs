//! The opt-in `geo` phase: geo-replication lag under a steady stream of small
//! writes, and failover times, on a geo tenant of its own (RA-GRS).
//!
//! 1. Creates `benchgeo<digits>` (RA-GRS) and waits (bounded) until its secondary
//!    is live.
//! 2. Lag: [`WRITERS`] tasks put 4 KiB objects at `--geo-rate` puts/s in all for
//!    the phase's duration while `tenant show` is sampled every [`SAMPLE_EVERY`]:
//!    p50/p99 of the lag in seconds and in operations.
//! 3. Planned failover (`failover --planned`): the call's duration, and the time
//!    from sending the call until a write sent after its answer was accepted in
//!    the new primary region.
//! 4. With `--geo-failover` and a `stratus dev` cluster: stops every node of the
//!    tenant's primary region (through the supervisor, as `stratus dev node stop`
//!    does), fails over unplanned at once, and measures from the moment the last
//!    node was down until a writer that kept trying got a write accepted (DESIGN
//!    §6: under 10 s); then starts the nodes again.
//!
//! The caller deletes the tenant afterwards (also after an error).

use crate::cli::dev::layout::{Desired, DevDir, NodeState};
use crate::{Client, Error, PutOptions, Redundancy};
use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stratus_core::topology::NodeId;

/// The container the geo phase writes to.
pub const CONTAINER: &str = "bench";
/// Concurrent writers sharing the `--geo-rate`.
pub const WRITERS: u32 = 4;
/// How often `tenant show` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Size of each object written.
const OBJECT_BYTES: usize = 4096;
/// Longest wait for the new tenant's secondary to be seeded and live.
const LIVE_MAX: Duration = Duration::from_secs(90);
/// Longest a failover's writer keeps trying for its first accepted write.
const FIRST_WRITE_MAX: Duration = Duration::from_secs(60);
/// Pause between a failover writer's attempts (each attempt is itself retried by
/// the SDK within its deadline).
const WRITE_RETRY_EVERY: Duration = Duration::from_millis(50);
/// Unplanned failover attempts while the primary still looks reachable.
const UNPLANNED_ATTEMPTS_MAX: u32 = 20;
/// Longest wait for the dev supervisor to stop or start a node.
const NODE_CONTROL_MAX: Duration = Duration::from_secs(30);
/// DESIGN.md §6: geo-replication lag p99 under sustained load.
pub const LAG_P99_TARGET_S: f64 = 1.0;
/// DESIGN.md §6: unplanned failover, region lost → writes accepted.
pub const FAILOVER_TARGET_S: f64 = 10.0;

/// What the geo phase is asked to do.
#[derive(Debug, Clone)]
pub struct GeoSpec {
    pub tenant: String,
    pub region: String,
    pub duration: Duration,
    /// Puts per second, all writers together.
    pub rate: u32,
    /// The dev cluster whose nodes the unplanned failover stops, when asked for.
    pub unplanned: Option<DevDir>,
}

/// One failover as the bench saw it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverTiming {
    pub planned: bool,
    pub from_region: String,
    pub to_region: String,
    /// Nodes stopped to take the primary region down (unplanned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes_stopped: Vec<NodeId>,
    /// From sending the failover call to its answer.
    pub call_s: f64,
    /// Planned: from sending the call to the first write (sent after the answer)
    /// accepted in the new primary region. Unplanned: from the last node of the
    /// region down to the first write accepted, from a writer trying all along.
    pub first_write_s: Option<f64>,
    /// Acknowledged operations the failover reports as possibly lost.
    pub lost_operations_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Measured outcome of the geo phase.
#[derive(Debug, Clone, Serialize)]
pub struct GeoResult {
    pub tenant: String,
    pub class: &'static str,
    pub region: String,
    pub secondary_region: String,
    pub rate: u32,
    pub seconds: f64,
    pub writes: u64,
    pub write_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// `tenant show` samples taken while the writers ran (status live).
    pub samples: usize,
    pub lag_p50_s: f64,
    pub lag_p99_s: f64,
    pub lag_max_s: f64,
    pub lag_p50_ops: u64,
    pub lag_p99_ops: u64,
    pub failovers: Vec<FailoverTiming>,
    /// Why the unplanned failover did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unplanned_skipped: Option<String>,
}

fn payload() -> Bytes {
    (0..OBJECT_BYTES)
        .map(|i| (i.wrapping_mul(131) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The value at quantile `q` of an ascending sample (0 when empty).
fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Creates the geo tenant and its container, and waits until its copy is live.
pub async fn create(client: &Client, spec: &GeoSpec) -> anyhow::Result<String> {
    client
        .create_tenant(&spec.tenant, &spec.region, Redundancy::RaGrs)
        .await?;
    client.create_container(&spec.tenant, CONTAINER).await?;
    let until = Instant::now() + LIVE_MAX;
    loop {
        let t = client.get_tenant(&spec.tenant).await?;
        if let Some(g) = t
            .geo
            .as_ref()
            .filter(|g| g.status == "live" && g.last_sync_ms.is_some())
        {
            return Ok(g.secondary_region.clone());
        }
        if Instant::now() >= until {
            bail!(
                "the geo copy of {} is not live after {} s (geo: {:?})",
                spec.tenant,
                LIVE_MAX.as_secs(),
                t.geo
            );
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Tallies of the steady writers.
#[derive(Default)]
struct Writes {
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

async fn writer(
    client: Client,
    tenant: String,
    n: u32,
    every: Duration,
    until: Instant,
    w: Arc<Writes>,
) {
    let data = payload();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut i = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        let key = format!("geo/{n}/{i}");
        i += 1;
        match client
            .put_bytes(
                &tenant,
                CONTAINER,
                &key,
                data.clone(),
                PutOptions::default(),
            )
            .await
        {
            Ok(_) => {
                w.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                w.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = w.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Runs the phase on a tenant [`create`] made.
pub async fn run(client: &Client, spec: &GeoSpec, secondary_region: String) -> GeoResult {
    let rate = spec.rate.max(1);
    let every = Duration::from_secs_f64(f64::from(WRITERS) / f64::from(rate));
    let start = Instant::now();
    let until = start + spec.duration;
    let writes = Arc::new(Writes::default());
    let tasks: Vec<_> = (0..WRITERS)
        .map(|n| {
            tokio::spawn(writer(
                client.clone(),
                spec.tenant.clone(),
                n,
                every,
                until,
                writes.clone(),
            ))
        })
        .collect();
    let (mut lag_s, mut lag_ops) = (Vec::new(), Vec::new());
    while Instant::now() < until {
        if let Ok(t) = client.get_tenant(&spec.tenant).await {
            if let Some(g) = t.geo.filter(|g| g.status == "live") {
                lag_s.push(g.lag_seconds);
                lag_ops.push(g.lag_operations);
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    futures::future::join_all(tasks).await;
    let seconds = start.elapsed().as_secs_f64();
    lag_s.sort_by(f64::total_cmp);
    lag_ops.sort_unstable();
    let mut result = GeoResult {
        tenant: spec.tenant.clone(),
        class: "RA-GRS",
        region: spec.region.clone(),
        secondary_region,
        rate,
        seconds,
        writes: writes.ok.load(Ordering::Relaxed),
        write_errors: writes.errors.load(Ordering::Relaxed),
        first_error: writes
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        samples: lag_s.len(),
        lag_p50_s: quantile(&lag_s, 0.5),
        lag_p99_s: quantile(&lag_s, 0.99),
        lag_max_s: lag_s.last().copied().unwrap_or_default(),
        lag_p50_ops: quantile(&lag_ops, 0.5),
        lag_p99_ops: quantile(&lag_ops, 0.99),
        failovers: Vec::new(),
        unplanned_skipped: None,
    };
    let planned = failover(client, &spec.tenant, None).await;
    let planned_ok = planned.error.is_none();
    result.failovers.push(planned);
    match (&spec.unplanned, planned_ok) {
        (None, _) => {
            result.unplanned_skipped =
                Some("not asked for (--geo-failover, on a `stratus dev` cluster)".into())
        }
        (Some(_), false) => result.unplanned_skipped = Some("the planned failover failed".into()),
        (Some(dev), true) => result
            .failovers
            .push(failover(client, &spec.tenant, Some(dev)).await),
    }
    result
}

/// Keeps writing (bounded) until a write is accepted; returns when, in seconds
/// after `from`.
async fn first_write(client: Client, tenant: String, from: Instant) -> Option<f64> {
    let data = payload();
    let until = Instant::now() + FIRST_WRITE_MAX;
    let mut n = 0u32;
    while Instant::now() < until {
        n += 1;
        let key = format!("geo/failover-probe-{n}");
        let put = client
            .put_bytes(
                &tenant,
                CONTAINER,
                &key,
                data.clone(),
                PutOptions::default(),
            )
            .await;
        if put.is_ok() {
            return Some(from.elapsed().as_secs_f64());
        }
        tokio::time::sleep(WRITE_RETRY_EVERY).await;
    }
    None
}

/// One failover: planned, or (with `dev`) unplanned after stopping every node of
/// the primary region.
async fn failover(client: &Client, tenant: &str, dev: Option<&DevDir>) -> FailoverTiming {
    let planned = dev.is_none();
    let mut timing = FailoverTiming {
        planned,
        from_region: String::new(),
        to_region: String::new(),
        nodes_stopped: Vec::new(),
        call_s: 0.0,
        first_write_s: None,
        lost_operations_max: None,
        error: None,
    };
    match failover_inner(client, tenant, dev, &mut timing).await {
        Ok(()) => {}
        Err(e) => timing.error = Some(format!("{e:#}")),
    }
    if let Some(dev) = dev {
        if let Err(e) = set_nodes(dev, &timing.nodes_stopped, Desired::Up).await {
            eprintln!("warning: could not start the stopped nodes again: {e:#}");
        }
    }
    timing
}

async fn failover_inner(
    client: &Client,
    tenant: &str,
    dev: Option<&DevDir>,
    timing: &mut FailoverTiming,
) -> anyhow::Result<()> {
    let before = client.get_tenant(tenant).await?;
    timing.from_region = before.region.clone();
    timing.to_region = before
        .geo
        .as_ref()
        .map(|g| g.secondary_region.clone())
        .unwrap_or_default();
    if let Some(dev) = dev {
        let topology = dev.load_topology()?;
        timing.nodes_stopped = topology
            .nodes_in_region(&before.region)
            .map(|n| n.id)
            .collect();
        eprintln!(
            "stopping every node of {} ({:?}) for the unplanned failover…",
            before.region, timing.nodes_stopped
        );
        set_nodes(dev, &timing.nodes_stopped, Desired::Down).await?;
    }
    // Planned: from the call, writing once it answered (before, the old primary
    // may still accept writes under its lease). Unplanned: from the region's loss,
    // writing all along.
    let from = Instant::now();
    let writes = dev.map(|_| tokio::spawn(first_write(client.clone(), tenant.to_owned(), from)));
    let mut attempts = 0;
    let (call_started, answer) = loop {
        attempts += 1;
        let call_started = Instant::now();
        match client.failover(tenant, planned_of(dev)).await {
            // The region's nodes may still be seen alive for a moment.
            Err(e)
                if dev.is_some()
                    && is_primary_reachable(&e)
                    && attempts < UNPLANNED_ATTEMPTS_MAX =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break (call_started, other),
        }
    };
    timing.call_s = call_started.elapsed().as_secs_f64();
    let (after, record) = match answer {
        Ok(a) => a,
        Err(e) => {
            if let Some(w) = writes {
                w.abort();
            }
            return Err(e).context("failover");
        }
    };
    timing.to_region = after.region;
    timing.lost_operations_max = record.lost_operations_max;
    timing.first_write_s = match writes {
        Some(w) => w.await.ok().flatten(),
        None => first_write(client.clone(), tenant.to_owned(), from).await,
    };
    Ok(())
}

fn planned_of(dev: Option<&DevDir>) -> bool {
    dev.is_none()
}

fn is_primary_reachable(e: &Error) -> bool {
    e.code() == Some("primary-reachable")
}

/// Asks the dev supervisor to bring `nodes` to `desired` and waits (bounded)
/// until each is there.
async fn set_nodes(dev: &DevDir, nodes: &[NodeId], desired: Desired) -> anyhow::Result<()> {
    for &id in nodes {
        dev.set_desired(id, desired)?;
    }
    let until = Instant::now() + NODE_CONTROL_MAX;
    for &id in nodes {
        loop {
            let state = dev.state(id);
            let there = match desired {
                Desired::Up => matches!(state, Some(NodeState::Running(_))),
                Desired::Down => {
                    matches!(state, Some(NodeState::Stopped | NodeState::Exited(_)))
                }
            };
            if there {
                break;
            }
            if Instant::now() >= until {
                bail!(
                    "node {id} did not reach {desired:?} within {} s (state: {state:?})",
                    NODE_CONTROL_MAX.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Whether `dev` is a `stratus dev` cluster whose supervisor is running.
pub fn check_dev(dev: &DevDir) -> anyhow::Result<()> {
    dev.load_topology()?;
    match dev.supervisor_pid() {
        Some(pid) if crate::cli::dev::process::is_alive(pid) => Ok(()),
        _ => bail!(
            "--geo-failover stops the nodes of a `stratus dev` cluster, but no supervisor runs on {}",
            dev.root().display()
        ),
    }
}

/// The geo checks of DESIGN.md §6 (lower is better: ratio target ÷ measured).
pub fn checks(g: &GeoResult) -> Vec<super::report::Check> {
    let lower_better = |name: String, measured: f64, target: f64| super::report::Check {
        name,
        source: "DESIGN",
        measured,
        target,
        unit: "s",
        ratio: target / measured.max(1e-3),
        pass: measured <= target,
    };
    let mut out = Vec::new();
    if g.samples > 0 {
        out.push(lower_better(
            format!(
                "geo lag p99 at {} puts/s ≤ 1 s (ratio: target ÷ p99)",
                g.rate
            ),
            g.lag_p99_s,
            LAG_P99_TARGET_S,
        ));
    }
    for f in g.failovers.iter().filter(|f| !f.planned) {
        if let Some(s) = f.first_write_s {
            out.push(lower_better(
                "unplanned failover, region down → first write accepted ≤ 10 s (ratio: target ÷ measured)".into(),
                s,
                FAILOVER_TARGET_S,
            ));
        }
    }
    out
}

/// Prints the phase for people.
pub fn print(g: &GeoResult) {
    use crate::cli::output::say;
    say!(
        "geo      {} {} → {}: {} puts/s of 4 KiB by {WRITERS} writers for {:.0} s: {} acknowledged, {} errors",
        g.class,
        g.region,
        g.secondary_region,
        g.rate,
        g.seconds,
        g.writes,
        g.write_errors
    );
    if let Some(e) = &g.first_error {
        say!("         first error: {e}");
    }
    say!(
        "         lag p50 {:.3} s / {} ops, p99 {:.3} s / {} ops, max {:.3} s ({} samples of `tenant show`, every {} ms)",
        g.lag_p50_s,
        g.lag_p50_ops,
        g.lag_p99_s,
        g.lag_p99_ops,
        g.lag_max_s,
        g.samples,
        SAMPLE_EVERY.as_millis()
    );
    for f in &g.failovers {
        let first = f
            .first_write_s
            .map_or_else(|| "none".to_owned(), |s| format!("{s:.2} s"));
        if f.planned {
            say!(
                "         planned failover {} → {}: call {:.2} s; first write in the new region accepted {first} after the call was sent; lost ≤ {}",
                f.from_region,
                f.to_region,
                f.call_s,
                f.lost_operations_max.map_or("?".into(), |n| n.to_string())
            );
        } else {
            say!(
                "         unplanned failover {} → {} (nodes {:?} stopped): call {:.2} s; first write accepted {first} after the last node was down; lost ≤ {}",
                f.from_region,
                f.to_region,
                f.nodes_stopped,
                f.call_s,
                f.lost_operations_max.map_or("?".into(), |n| n.to_string())
            );
        }
        if let Some(e) = &f.error {
            say!("         failover error: {e}");
        }
    }
    if let Some(why) = &g.unplanned_skipped {
        say!("         unplanned failover skipped: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lag_p99_s: f64, unplanned_s: Option<f64>) -> GeoResult {
        GeoResult {
            tenant: "benchgeo1".into(),
            class: "RA-GRS",
            region: "a".into(),
            secondary_region: "b".into(),
            rate: 50,
            seconds: 10.0,
            writes: 500,
            write_errors: 0,
            first_error: None,
            samples: 50,
            lag_p50_s: 0.1,
            lag_p99_s,
            lag_max_s: lag_p99_s,
            lag_p50_ops: 2,
            lag_p99_ops: 9,
            failovers: unplanned_s
                .map(|s| FailoverTiming {
                    planned: false,
                    from_region: "a".into(),
                    to_region: "b".into(),
                    nodes_stopped: vec![1, 2],
                    call_s: 1.0,
                    first_write_s: Some(s),
                    lost_operations_max: Some(3),
                    error: None,
                })
                .into_iter()
                .collect(),
            unplanned_skipped: None,
        }
    }

    #[test]
    fn geo_checks_are_lower_is_better_against_design_targets() {
        let c = checks(&result(0.5, Some(12.5)));
        assert_eq!(c.len(), 2);
        assert!(c[0].pass && (c[0].ratio - 2.0).abs() < 1e-9);
        assert!(!c[1].pass && (c[1].ratio - 0.8).abs() < 1e-9);
        // No unplanned failover: only the lag is checked.
        assert_eq!(checks(&result(1.5, None)).len(), 1);
        assert!(!checks(&result(1.5, None))[0].pass);
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile::<u64>(&[], 0.5), 0);
    }
}
