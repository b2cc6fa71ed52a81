//! The geo clients: an operator carrying out one [`GeoAction`], a monitor sampling
//! `tenant show`, and the final geo step (waiting for the copy, reading recovery
//! containers). Each is a turmoil client future writing into a [`GeoLog`].

use super::raw;
use super::{
    FailoverDone, FenceResult, FinalGeo, GeoAction, GeoLog, LagSample, Recovered, ReprotectDone,
};
use crate::history::{content, Event, History, Op, Outcome, PROBE};
use crate::workload::{self, Control, CONTAINER};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stratus_client::{Client, Consistency, Error, PutOptions};

/// Attempts of a failover or reprotect while it is refused, at most.
const ATTEMPTS_MAX: u32 = 20;
/// Pause between attempts.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often the monitor samples `tenant show`.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How often the fence probe tries the old region.
const PROBE_EVERY: Duration = Duration::from_millis(300);
/// Longest the operator tries to write after a failover.
const FIRST_WRITE_MAX: Duration = Duration::from_secs(30);
/// Longest the final step waits for a geo copy to be live with zero lag.
const IN_SYNC_MAX: Duration = Duration::from_secs(90);

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Carries out one action.
pub async fn act(
    action: GeoAction,
    endpoints: Vec<String>,
    keys: u32,
    log: GeoLog,
    history: History,
) -> turmoil::Result {
    match action {
        GeoAction::Failover { tenant, planned } => failover(&endpoints, tenant, planned, log).await,
        GeoAction::Reprotect { tenant } => reprotect(&endpoints, tenant, log).await,
        GeoAction::FenceProbe {
            tenant,
            region,
            lasts,
        } => fence_probe(endpoints, tenant, region, lasts, keys, log, history).await,
    }
    Ok(())
}

async fn failover(endpoints: &[String], tenant: String, planned: bool, log: GeoLog) {
    let client = workload::connect(endpoints).await;
    let asked_at = now();
    let mut error = None;
    for attempt in 1..=ATTEMPTS_MAX {
        match client.failover(&tenant, planned).await {
            Ok((t, f)) => {
                let done_at = now();
                let first_write_at = first_write(&client, &tenant).await;
                log.with(|r| {
                    r.failovers.push(FailoverDone {
                        tenant: tenant.clone(),
                        planned,
                        asked_at,
                        done_at,
                        first_write_at,
                        attempts: attempt,
                        tenant_after: Some(t),
                        record: Some(f),
                        error: None,
                    })
                });
                return;
            }
            Err(e) => {
                tracing::info!(%tenant, attempt, error = %e, "failover refused; retrying");
                error = Some(e.to_string());
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    log.with(|r| {
        r.failovers.push(FailoverDone {
            tenant,
            planned,
            asked_at,
            done_at: now(),
            first_write_at: None,
            attempts: ATTEMPTS_MAX,
            tenant_after: None,
            record: None,
            error,
        })
    });
}

/// The operator's own write right after the failover answered (a client that
/// knows the new placement), retried until acknowledged: when the new primary
/// first accepted a write, without the workload clients' stale routes.
async fn first_write(client: &Client, tenant: &str) -> Option<Duration> {
    let until = now() + FIRST_WRITE_MAX;
    while now() < until {
        let data = content(u64::MAX, 16);
        let put = client
            .put_bytes(
                tenant,
                CONTAINER,
                "failover-probe",
                data,
                PutOptions::default(),
            )
            .await;
        if put.is_ok() {
            return Some(now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn reprotect(endpoints: &[String], tenant: String, log: GeoLog) {
    let client = workload::connect(endpoints).await;
    let mut error = None;
    for attempt in 1..=ATTEMPTS_MAX {
        match client.reprotect(&tenant).await {
            Ok(t) => {
                log.with(|r| {
                    r.reprotects.push(ReprotectDone {
                        tenant: tenant.clone(),
                        done_at: now(),
                        attempts: attempt,
                        tenant_after: Some(t),
                        error: None,
                    })
                });
                return;
            }
            Err(e) => {
                tracing::info!(%tenant, attempt, error = %e, "reprotect refused; retrying");
                error = Some(e.to_string());
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    log.with(|r| {
        r.reprotects.push(ReprotectDone {
            tenant,
            done_at: now(),
            attempts: ATTEMPTS_MAX,
            tenant_after: None,
            error,
        })
    });
}

/// Sends writes (to probe keys) and strong reads (of the workload's keys, recorded
/// in the history) straight to each node of the old region, without following
/// redirects: none of those nodes may acknowledge a write, and whatever they
/// answer to a read is checked like any other read.
async fn fence_probe(
    endpoints: Vec<String>,
    tenant: String,
    region: String,
    lasts: Duration,
    keys: u32,
    log: GeoLog,
    history: History,
) {
    let mut result = FenceResult {
        tenant: tenant.clone(),
        region,
        ..FenceResult::default()
    };
    let channels: Vec<(String, tonic::transport::Channel)> = endpoints
        .iter()
        .filter_map(|a| Some((a.clone(), raw::channel(a)?)))
        .collect();
    let until = now() + lasts;
    let mut n = 0u32;
    while now() < until && !channels.is_empty() {
        for (addr, channel) in &channels {
            n += 1;
            let key = format!("fence-{n}");
            result.writes_tried += 1;
            let data = content(u64::from(n), 64);
            match raw::put(channel.clone(), &tenant, CONTAINER, &key, data).await {
                Ok(info) => result.acknowledged.push(format!(
                    "{addr} acknowledged {tenant}/{CONTAINER}/{key} at {} ms (version {})",
                    now().as_millis(),
                    info.version_id
                )),
                Err(code) => *result.refusals.entry(code).or_default() += 1,
            }
            let k = format!("k{}", n % keys.max(1));
            let invoked = now();
            let outcome = raw::get(channel.clone(), &tenant, CONTAINER, &k).await;
            result.reads_tried += 1;
            if matches!(outcome, Outcome::Read(_)) {
                result.reads_answered += 1;
            }
            history.record(Event {
                client: PROBE,
                key: format!("{tenant}/{CONTAINER}/{k}"),
                op: Op::Get,
                invoked,
                completed: now(),
                outcome,
            });
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    log.with(|r| r.fences.push(result));
}

/// Samples each tenant's geo status until the workload stops.
pub async fn monitor(
    endpoints: Vec<String>,
    tenants: Vec<String>,
    control: Control,
    log: GeoLog,
) -> turmoil::Result {
    while !control.ready.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = workload::connect(&endpoints).await;
    while !control.stop.load(Ordering::SeqCst) {
        for tenant in &tenants {
            if let Ok(t) = client.get_tenant(tenant).await {
                if let Some(g) = t.geo {
                    let sample = LagSample {
                        tenant: tenant.clone(),
                        at: now(),
                        status: g.status,
                        lag_operations: g.lag_operations,
                        lag_seconds: g.lag_seconds,
                        last_sync_ms: g.last_sync_ms,
                    };
                    log.with(|r| r.lag.push(sample));
                }
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Ok(())
}

/// After the workload: for each tenant, waits (bounded) until its geo copy is
/// live with zero lag, then reads every object of its recovery containers.
pub async fn final_geo(
    endpoints: Vec<String>,
    tenants: Vec<String>,
    log: GeoLog,
    done: Arc<AtomicBool>,
) -> turmoil::Result {
    let client = workload::connect(&endpoints).await;
    for tenant in &tenants {
        let until = now() + IN_SYNC_MAX;
        let mut last = None;
        let mut in_sync = false;
        while now() < until {
            if let Ok(t) = client.get_tenant(tenant).await {
                in_sync = t.geo.as_ref().is_some_and(|g| {
                    g.status == "live" && g.lag_operations == 0 && g.last_sync_ms.is_some()
                });
                // No geo copy (local after an unplanned failover): nothing to wait for.
                let local = t.geo.is_none();
                last = Some(t);
                if in_sync || local {
                    break;
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        let containers: Vec<String> = last
            .iter()
            .flat_map(|t| t.failovers.iter())
            .filter_map(|f| f.recovery_container.clone())
            .collect();
        log.with(|r| {
            r.finals.push(FinalGeo {
                tenant: tenant.clone(),
                info: last.clone(),
                in_sync,
            })
        });
        for container in containers {
            let objects = match list_retrying(&client, tenant, &container).await {
                Ok(o) => o,
                Err(e) => {
                    log.with(|r| {
                        r.recovered.push(Recovered {
                            tenant: tenant.clone(),
                            container: container.clone(),
                            key: String::new(),
                            outcome: Outcome::Unknown(format!("cannot list: {e}")),
                        })
                    });
                    continue;
                }
            };
            for key in objects {
                let (outcome, _, _) =
                    workload::read_with(&client, tenant, &container, &key, Consistency::Strong)
                        .await;
                log.with(|r| {
                    r.recovered.push(Recovered {
                        tenant: tenant.clone(),
                        container: container.clone(),
                        key,
                        outcome,
                    })
                });
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    Ok(())
}

async fn list_retrying(
    client: &Client,
    tenant: &str,
    container: &str,
) -> Result<Vec<String>, Error> {
    let mut last = None;
    for _ in 0..10 {
        match client.list_all(tenant, container, "").await {
            Ok(objects) => return Ok(objects.into_iter().map(|o| o.key).collect()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| Error::config("no attempt")))
}
