//! The workload: simulated clients using the real SDK through turmoil, doing put,
//! get, delete and conditional put/delete on a bounded key set per tenant, with
//! object sizes from 0 B to a few MiB, and recording every operation.
//!
//! Outcomes are classified conservatively: a write whose effect is not certain is
//! `Unknown` (never `Failed`), so the checkers never assume too much.

use crate::history::{content, Cond, Event, History, Op, Outcome, Value, WriteId};
use crate::net::dialer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stratus_client::{
    Client, ClientConfig, Consistency, Error, GetOptions, PutOptions, Redundancy,
};

/// The container every tenant of the workload uses.
pub const CONTAINER: &str = "data";
/// User metadata key naming the write an object came from.
pub const WRITE_META: &str = "w";
/// Longest the setup waits for a geo tenant's secondary to be seeded and live.
const GEO_LIVE_MAX: Duration = Duration::from_secs(60);
/// Share of an RA tenant's reads sent to its secondary copy, in percent.
const SECONDARY_READ_PCT: u32 = 40;

/// What the workload does.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Tenants to create: name, region, class.
    pub tenants: Vec<(String, String, Redundancy)>,
    pub clients: u32,
    pub keys_per_tenant: u32,
    /// Pause between one client's operations, at most.
    pub think_max: Duration,
    /// Largest object written (a few in a hundred are chunked and up to this size).
    pub object_bytes_max: u64,
    /// Clients that only read from the secondary copy of the RA tenants (so those
    /// reads go on while the other clients wait out a dead primary).
    pub secondary_readers: u32,
}

/// Client ids of the secondary readers start here.
pub const SECONDARY_READER_BASE: u32 = 1000;

/// Shared switches between the driver and the clients.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Set by the setup client once tenants and containers exist.
    pub ready: Arc<AtomicBool>,
    /// Set by the driver to make clients finish their current operation and stop.
    pub stop: Arc<AtomicBool>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The simulated cluster's operator secret, which every node bootstraps with and
/// every simulated client authenticates with (the simulation is closed, so a fixed
/// value keeps client setup independent of the seed).
pub const SIM_OPERATOR_SECRET: &str =
    "sop1.5157a7b5000000000000000000000000000000000000000000000000000051b1";

/// The SDK configuration of simulated clients (authenticated as the operator): at-most-once writes (so each write
/// takes effect once or not at all) and deadlines short enough to end operations
/// that run into a fault.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        deadline: Duration::from_secs(8),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(4),
        stream_idle_timeout: Duration::from_secs(4),
        dialer: Some(dialer()),
        credential: Some(
            stratus_client::Credential::new(SIM_OPERATOR_SECRET).expect("a valid operator secret"),
        ),
        at_most_once: true,
        ..ClientConfig::default()
    }
}

/// Connects, retrying (the cluster may still be electing leaders).
pub async fn connect(endpoints: &[String]) -> Client {
    loop {
        if let Ok(c) = Client::connect_with(endpoints.to_vec(), client_config()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the workload's tenants and containers, retrying until each exists.
pub async fn setup(
    endpoints: Vec<String>,
    spec: WorkloadSpec,
    control: Control,
) -> turmoil::Result {
    let client = connect(&endpoints).await;
    for (tenant, region, class) in &spec.tenants {
        loop {
            match client.create_tenant(tenant, region, *class).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => break,
                Err(e) => tracing::debug!(%tenant, error = %e, "tenant create retried"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        loop {
            match client.create_container(tenant, CONTAINER).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => break,
                Err(e) => tracing::debug!(%tenant, error = %e, "container create retried"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for (tenant, _, class) in spec.tenants.iter().filter(|(_, _, c)| c.is_geo()) {
        wait_geo_live(&client, tenant, *class).await;
    }
    control.ready.store(true, Ordering::SeqCst);
    Ok(())
}

/// Waits (bounded) until a geo tenant's secondary is seeded, live and has a last
/// sync time, so the run starts with a geo copy to lose or to read from.
async fn wait_geo_live(client: &Client, tenant: &str, class: Redundancy) {
    let until = now() + GEO_LIVE_MAX;
    while now() < until {
        match client.get_tenant(tenant).await {
            Ok(t)
                if t.geo
                    .as_ref()
                    .is_some_and(|g| g.status == "live" && g.last_sync_ms.is_some()) =>
            {
                return
            }
            Ok(t) => tracing::debug!(%tenant, %class, geo = ?t.geo, "waiting for the geo copy"),
            Err(e) => tracing::debug!(%tenant, error = %e, "tenant show retried"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tracing::warn!(%tenant, "the geo copy did not become live during setup");
}

fn size_of(rng: &mut StdRng, max: u64) -> u64 {
    match rng.gen_range(0..100) {
        0..=9 => 0,
        10..=79 => rng.gen_range(1..=8 * 1024),
        80..=96 => rng.gen_range(8 * 1024 + 1..=300 * 1024).min(max),
        _ => rng.gen_range(300 * 1024..=max.max(300 * 1024 + 1)),
    }
}

fn classify_write(e: &Error) -> Outcome {
    if e.rejected_before_acting() {
        return Outcome::Failed(e.to_string());
    }
    match e {
        Error::FailedPrecondition { .. } => Outcome::Refused,
        Error::NotLeader { .. }
        | Error::Transport { sent: false, .. }
        | Error::InvalidArgument { .. } => Outcome::Failed(e.to_string()),
        _ => Outcome::Unknown(e.to_string()),
    }
}

/// Reads a key and names the write it holds, checking every byte.
pub async fn read(client: &Client, tenant: &str, key: &str) -> (Outcome, Option<String>) {
    let (outcome, etag, _) = read_with(client, tenant, CONTAINER, key, Consistency::Strong).await;
    (outcome, etag)
}

/// Reads a key from the tenant's secondary copy: the outcome and the last sync
/// time the answer carried.
pub async fn read_secondary(client: &Client, tenant: &str, key: &str) -> (Outcome, Option<u64>) {
    let (outcome, _, last_sync) =
        read_with(client, tenant, CONTAINER, key, Consistency::Secondary).await;
    (outcome, last_sync)
}

/// Reads `container/key` with `consistency` and names the write it holds, checking
/// every byte; also returns the ETag and, from a secondary, its last sync time.
pub async fn read_with(
    client: &Client,
    tenant: &str,
    container: &str,
    key: &str,
    consistency: Consistency,
) -> (Outcome, Option<String>, Option<u64>) {
    let opts = GetOptions {
        consistency,
        ..GetOptions::default()
    };
    match client.get_bytes(tenant, container, key, opts).await {
        Ok((info, bytes)) => {
            let Some(id) = info
                .metadata
                .get(WRITE_META)
                .and_then(|v| v.parse::<WriteId>().ok())
            else {
                return (
                    Outcome::Corrupt(format!("object {key} carries no write id")),
                    None,
                    None,
                );
            };
            if bytes != content(id, info.size) {
                return (
                    Outcome::Corrupt(format!(
                        "object {key} (write {id}, {} bytes) does not hold that write's bytes",
                        info.size
                    )),
                    None,
                    None,
                );
            }
            (Outcome::Read(Some(id)), Some(info.etag), info.last_sync_ms)
        }
        Err(Error::NotFound { .. }) => (Outcome::Read(None), None, None),
        Err(e @ Error::Integrity { .. }) => (Outcome::Corrupt(e.to_string()), None, None),
        Err(e) => (Outcome::Unknown(e.to_string()), None, None),
    }
}

/// One workload client: random operations until told to stop.
pub async fn run_client(
    id: u32,
    seed: u64,
    endpoints: Vec<String>,
    spec: WorkloadSpec,
    control: Control,
    history: History,
) -> turmoil::Result {
    while !control.ready.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = connect(&endpoints).await;
    let mut rng = StdRng::seed_from_u64(seed ^ u64::from(id).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // What this client last saw of each key: the write and its ETag.
    let mut seen: BTreeMap<String, (Value, Option<String>)> = BTreeMap::new();
    let mut seq: u64 = 0;
    while !control.stop.load(Ordering::SeqCst) {
        let (tenant, _, class) = &spec.tenants[rng.gen_range(0..spec.tenants.len())];
        let key = format!("k{}", rng.gen_range(0..spec.keys_per_tenant));
        let full = format!("{tenant}/{CONTAINER}/{key}");
        let known = seen.get(&full).cloned();
        let invoked = now();
        let roll = rng.gen_range(0..100);
        let (op, outcome) =
            if roll < 40 && class.read_access() && rng.gen_range(0..100) < SECONDARY_READ_PCT {
                let (outcome, last_sync_ms) = read_secondary(&client, tenant, &key).await;
                (Op::SecondaryGet { last_sync_ms }, outcome)
            } else if roll < 40 {
                let (outcome, etag) = read(&client, tenant, &key).await;
                if let Outcome::Read(v) = &outcome {
                    seen.insert(full.clone(), (*v, etag));
                }
                (Op::Get, outcome)
            } else if roll < 85 {
                seq += 1;
                let wid: WriteId = (u64::from(id) << 32) | seq;
                let size = size_of(&mut rng, spec.object_bytes_max);
                let cond = match (roll, &known) {
                    (75..=79, Some((Some(w), Some(_)))) => Cond::IfMatch(*w),
                    (80..=84, _) => Cond::IfAbsent,
                    _ => Cond::Always,
                };
                let mut opts = PutOptions::default();
                opts.metadata.insert(WRITE_META.into(), wid.to_string());
                match (&cond, &known) {
                    (Cond::IfMatch(_), Some((_, Some(etag)))) => opts.if_match = Some(etag.clone()),
                    (Cond::IfAbsent, _) => opts.if_none_match = Some("*".into()),
                    _ => {}
                }
                let outcome = match client
                    .put_bytes(tenant, CONTAINER, &key, content(wid, size), opts)
                    .await
                {
                    Ok(info) => {
                        seen.insert(full.clone(), (Some(wid), Some(info.etag)));
                        Outcome::Done
                    }
                    Err(e) => classify_write(&e),
                };
                (
                    Op::Put {
                        id: wid,
                        size,
                        cond,
                    },
                    outcome,
                )
            } else {
                let (cond, if_match) = match (&known, rng.gen_bool(0.3)) {
                    (Some((Some(w), Some(etag))), true) => (Cond::IfMatch(*w), Some(etag.clone())),
                    _ => (Cond::Always, None),
                };
                let outcome = match client
                    .delete(tenant, CONTAINER, &key, if_match.as_deref())
                    .await
                {
                    Ok(_) => {
                        seen.insert(full.clone(), (None, None));
                        Outcome::Done
                    }
                    Err(Error::NotFound { .. }) => Outcome::Absent,
                    Err(e) => classify_write(&e),
                };
                (Op::Delete { cond }, outcome)
            };
        history.record(Event {
            client: id,
            key: full,
            op,
            invoked,
            completed: now(),
            outcome,
        });
        let think = rng.gen_range(0..=spec.think_max.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    Ok(())
}

/// A client that reads random keys of the RA tenants from their secondary copy
/// until told to stop.
pub async fn run_secondary_reader(
    id: u32,
    seed: u64,
    endpoints: Vec<String>,
    spec: WorkloadSpec,
    control: Control,
    history: History,
) -> turmoil::Result {
    while !control.ready.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tenants: Vec<String> = spec
        .tenants
        .iter()
        .filter(|t| t.2.read_access())
        .map(|t| t.0.clone())
        .collect();
    if tenants.is_empty() {
        return Ok(());
    }
    let client = connect(&endpoints).await;
    let mut rng = StdRng::seed_from_u64(seed ^ u64::from(id).wrapping_mul(0x9e37_79b9));
    while !control.stop.load(Ordering::SeqCst) {
        let tenant = &tenants[rng.gen_range(0..tenants.len())];
        let key = format!("k{}", rng.gen_range(0..spec.keys_per_tenant));
        let invoked = now();
        let (outcome, last_sync_ms) = read_secondary(&client, tenant, &key).await;
        history.record(Event {
            client: id,
            key: format!("{tenant}/{CONTAINER}/{key}"),
            op: Op::SecondaryGet { last_sync_ms },
            invoked,
            completed: now(),
            outcome,
        });
        let think = rng.gen_range(0..=spec.think_max.as_millis() as u64 * 2);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    Ok(())
}

/// After the faults healed: reads every key once (retrying each until it answers
/// or the budget runs out), so the checkers see the final state.
pub async fn final_reads(
    endpoints: Vec<String>,
    spec: WorkloadSpec,
    history: History,
    done: Arc<AtomicBool>,
) -> turmoil::Result {
    let client = connect(&endpoints).await;
    for (tenant, _, _) in &spec.tenants {
        for k in 0..spec.keys_per_tenant {
            let key = format!("k{k}");
            for _ in 0..20 {
                let invoked = now();
                let (outcome, _) = read(&client, tenant, &key).await;
                let known = outcome.is_known();
                history.record(Event {
                    client: u32::MAX,
                    key: format!("{tenant}/{CONTAINER}/{key}"),
                    op: Op::Get,
                    invoked,
                    completed: now(),
                    outcome,
                });
                if known {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    Ok(())
}
