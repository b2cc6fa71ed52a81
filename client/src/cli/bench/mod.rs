//! `stratus bench`: throughput and latency of a running cluster, next to the
//! ceilings of the disk holding its data and of this machine's AES-GCM, measured
//! in the same run.
//!
//! Creates a fresh LRS tenant (`bench<digits>`) and container, measures the disk
//! (sequential write, fsync rate), runs PUT 4 KiB ×64, GET 4 KiB ×64, PUT 1 MiB ×8,
//! GET 1 MiB ×8, prints each against its ceiling and target, and deletes what it
//! created (best effort, also after Ctrl-C). The opt-in phases: `stream-4g`
//! (memory while streaming one big object) and `geo` (geo-replication lag and
//! failover times on an RA-GRS tenant of its own, see [`geo`]).

pub mod crypto;
pub mod disk;
pub mod geo;
pub mod load;
pub mod report;
pub mod stream;

use super::output::Out;
use super::Connection;
use crate::{Client, Error, Profile, Redundancy};
use anyhow::Context;
use clap::Args;
use load::{Op, PhaseResult, PhaseSpec, Target};
use rand::Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const CONTAINER: &str = "bench";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Data dir of the `stratus dev` cluster: its profile is used (unless
    /// --endpoint is given) and its disk is measured.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Seconds per load phase.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub duration: u64,
    /// Region of the bench tenant (default: the first storage region).
    #[arg(long)]
    pub region: Option<String>,
    /// A short run (2 s phases, smaller disk probes) for smoke tests.
    #[arg(long)]
    pub quick: bool,
    /// Run only these phases (repeatable): put-4k, get-4k, put-1m, get-1m, and the
    /// opt-in stream-4g (PUT and GET of one object of --stream-gib GiB while sampling
    /// every dev node's resident memory) and geo (an RA-GRS tenant: geo lag under
    /// --geo-rate puts/s, then a planned failover). A get phase reads what the put
    /// phase of its size wrote, so keep the pair.
    #[arg(long = "phase", value_name = "NAME", value_parser = ["put-4k", "get-4k", "put-1m", "get-1m", "stream-4g", "geo"])]
    pub phases: Vec<String>,
    /// Puts per second (4 KiB, all writers together) while the geo phase measures
    /// the lag.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub geo_rate: u32,
    /// In the geo phase, also an unplanned failover: stops every node of the geo
    /// tenant's primary region of the `stratus dev` cluster (--data, or
    /// ./.stratus-dev), fails over, measures region down → first write accepted,
    /// and starts the nodes again. Implies `--phase geo`.
    #[arg(long)]
    pub geo_failover: bool,
    /// Size of the stream-4g object, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub stream_gib: u64,
    /// Concurrent tasks in every phase, instead of each phase's default (64 for
    /// 4 KiB, 8 for 1 MiB): to see latency without queueing, or the scaling curve.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,
}

async fn connect(args: &BenchArgs, conn: &Connection) -> anyhow::Result<Client> {
    match &args.data {
        Some(dir) if conn.endpoints.is_empty() => {
            let profile = Profile::load(&dir.join(crate::profile::PROFILE_FILE))?;
            conn.connect_profile(&profile).await
        }
        _ => conn.connect().await,
    }
}

fn phases(duration: Duration) -> [PhaseSpec; 4] {
    let spec = |name, op, size, concurrency| PhaseSpec {
        name,
        op,
        size,
        concurrency,
        duration,
    };
    [
        spec("put-4k", Op::Put, 4 * KIB, 64),
        spec("get-4k", Op::Get, 4 * KIB, 64),
        spec("put-1m", Op::Put, MIB, 8),
        spec("get-1m", Op::Get, MIB, 8),
    ]
}

/// Which phases run, and with how many tasks.
struct Selection {
    names: Vec<String>,
    concurrency: Option<u32>,
}

/// Runs the phases in order; GET phases read what the PUT before them wrote.
async fn run_phases(
    client: &Client,
    target: &Target,
    duration: Duration,
    selection: &Selection,
    written: &mut Vec<String>,
    results: &mut Vec<PhaseResult>,
    out: Out,
) {
    let mut last_written: Arc<Vec<String>> = Arc::new(Vec::new());
    for mut spec in phases(duration) {
        if !selection.names.is_empty() && !selection.names.iter().any(|n| n == spec.name) {
            continue;
        }
        if let Some(c) = selection.concurrency {
            spec.concurrency = c as usize;
        }
        if !out.is_json() {
            eprintln!(
                "running {} ({} tasks, {} s)…",
                spec.name,
                spec.concurrency,
                duration.as_secs()
            );
        }
        let op = spec.op;
        let (result, keys) = load::run_phase(client, target, spec, last_written.clone()).await;
        if op == Op::Put {
            written.extend(keys.iter().cloned());
            last_written = Arc::new(keys);
        }
        results.push(result);
    }
}

pub async fn run(args: BenchArgs, conn: &Connection, out: Out) -> anyhow::Result<()> {
    let duration = Duration::from_secs(if args.quick {
        args.duration.min(2)
    } else {
        args.duration.max(1)
    });
    // The disk under the cluster's data: the dev data dir when there is one.
    let data_dir = args.data.clone().unwrap_or_else(|| {
        let dev = PathBuf::from(crate::profile::DEV_DATA_DIR);
        if dev.is_dir() {
            dev
        } else {
            PathBuf::from(".")
        }
    });
    // Before anything is measured: the unplanned failover needs the dev cluster.
    let dev = crate::cli::dev::layout::DevDir::new(&data_dir);
    if args.geo_failover {
        geo::check_dev(&dev)?;
    }
    let client = connect(&args, conn).await?;
    let region = match &args.region {
        Some(r) => r.clone(),
        None => client
            .cluster_status()
            .await?
            .first_storage_region()
            .map(str::to_owned)
            .context("the cluster reports no storage region")?,
    };

    let (seq_bytes, fsync_for) = match args.quick {
        true => (64 * MIB as u64, Duration::from_secs(1)),
        false => (256 * MIB as u64, Duration::from_secs(3)),
    };
    if !out.is_json() {
        eprintln!("measuring the disk under {}…", data_dir.display());
    }
    let disk = disk::measure(&data_dir, seq_bytes, fsync_for).await?;
    let crypto = crypto::measure(if args.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    })
    .await?;

    let tenant = format!(
        "bench{:08}",
        rand::thread_rng().gen_range(0..100_000_000u32)
    );
    client
        .create_tenant(&tenant, &region, Redundancy::Lrs)
        .await?;
    let target = Target {
        tenant: tenant.clone(),
        container: CONTAINER.to_owned(),
    };
    let selection = Selection {
        names: args.phases.clone(),
        concurrency: args.concurrency,
    };
    let mut written = Vec::new();
    let mut results = Vec::new();
    let mut streamed = None;
    let mut geo_result = None;
    let wants_stream = args.phases.iter().any(|p| p == "stream-4g");
    let wants_geo = args.geo_failover || args.phases.iter().any(|p| p == "geo");
    let geo_spec = geo::GeoSpec {
        tenant: format!("{tenant}geo"),
        region: region.clone(),
        duration,
        rate: args.geo_rate,
        unplanned: args.geo_failover.then(|| dev.clone()),
    };
    let mut geo_created = false;
    let outcome = async {
        client.create_container(&tenant, CONTAINER).await?;
        let work = async {
            let only_opt_in = (!args.phases.is_empty() || args.geo_failover)
                && args.phases.iter().all(|p| p == "stream-4g" || p == "geo");
            if !only_opt_in {
                run_phases(
                    &client,
                    &target,
                    duration,
                    &selection,
                    &mut written,
                    &mut results,
                    out,
                )
                .await;
            }
            if wants_stream {
                if !out.is_json() {
                    eprintln!(
                        "running stream-4g ({} GiB up and back, sampling node memory)…",
                        args.stream_gib
                    );
                }
                let dev = crate::cli::dev::layout::DevDir::new(&data_dir);
                let dev = dev.load_topology().is_ok().then_some(dev);
                let (result, key) =
                    stream::run(&client, &target, args.stream_gib << 30, dev).await?;
                written.push(key);
                streamed = Some(result);
            }
            if wants_geo {
                if !out.is_json() {
                    eprintln!(
                        "running geo ({} puts/s on RA-GRS tenant {}, {} s, then a planned{} failover)…",
                        args.geo_rate,
                        geo_spec.tenant,
                        duration.as_secs(),
                        if args.geo_failover { " and an unplanned" } else { "" }
                    );
                }
                geo_created = true;
                let secondary = geo::create(&client, &geo_spec).await?;
                geo_result = Some(geo::run(&client, &geo_spec, secondary).await);
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    }
    .await;
    cleanup(&client, &target, &written, out).await;
    if geo_created {
        let geo_target = Target {
            tenant: geo_spec.tenant.clone(),
            container: geo::CONTAINER.to_owned(),
        };
        // Its keys are listed rather than tracked (failover probes wrote some).
        let keys: Vec<String> = client
            .list_all(&geo_target.tenant, &geo_target.container, "")
            .await
            .map(|objects| objects.into_iter().map(|o| o.key).collect())
            .unwrap_or_default();
        cleanup(&client, &geo_target, &keys, out).await;
    }
    outcome?;

    let mut checks = report::checks(&disk, &crypto, &results);
    checks.extend(streamed.as_ref().and_then(report::stream_check));
    checks.extend(geo_result.iter().flat_map(geo::checks));
    let report = report::Report {
        checks,
        tenant,
        region,
        disk,
        crypto,
        phases: results,
        stream: streamed,
        geo: geo_result,
    };
    if out.is_json() {
        return out.json(&report);
    }
    report::print_text(&report);
    Ok(())
}

/// Deletes the bench container and tenant; deletes the objects first when the
/// cluster refuses to drop a non-empty container or tenant.
async fn cleanup(client: &Client, t: &Target, written: &[String], out: Out) {
    if !out.is_json() {
        eprintln!("cleaning up tenant {}…", t.tenant);
    }
    let mut result = client.delete_container(&t.tenant, &t.container).await;
    if matches!(result, Err(Error::FailedPrecondition { .. })) {
        delete_objects(client, t, written).await;
        result = client.delete_container(&t.tenant, &t.container).await;
    }
    if let Err(e) = result {
        if !matches!(e, Error::NotFound { .. }) {
            eprintln!(
                "warning: could not delete container {}/{}: {e}",
                t.tenant, t.container
            );
        }
    }
    if let Err(e) = client.delete_tenant(&t.tenant).await {
        eprintln!("warning: could not delete bench tenant {}: {e}", t.tenant);
    }
}

async fn delete_objects(client: &Client, t: &Target, keys: &[String]) {
    use futures::StreamExt;
    let failures = futures::stream::iter(keys)
        .map(|k| async move {
            client
                .delete(&t.tenant, &t.container, k, None)
                .await
                .is_err()
        })
        .buffer_unordered(32)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    if failures > 0 {
        eprintln!("warning: {failures} bench objects could not be deleted");
    }
}
