//! Geo-redundancy over real node processes (the default two-region topology plus
//! its witness): shipping to the paired region, reads from the secondary, planned
//! failover without loss, and an unplanned failover with writes the primary
//! acknowledged but never shipped: the old primary acknowledges nothing once the
//! tenant moved, and a reprotect keeps those writes in the recovery container and
//! restores the geo copy.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use std::time::Duration;
use stratus_client::{Client, Consistency, Error, GetOptions, PutOptions, Redundancy, TenantInfo};
use stratus_core::audit::AuditRecord;
use stratus_tests::cli::Program;
use stratus_tests::grpc::{self, put_header, put_messages};
use stratus_tests::layout::Layout;
use stratus_tests::poll::poll;
use stratus_tests::{bins, Cluster, ClusterOptions};

const PRIMARY: &str = "eu-west";
const PAIRED: &str = "eu-north";
const CONTAINER: &str = "box";
/// Nodes of each storage region in the default topology (11 is the witness).
const WEST: [u64; 5] = [1, 2, 3, 4, 5];
const NORTH: [u64; 5] = [6, 7, 8, 9, 10];

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn read(
    client: &Client,
    tenant: &str,
    container: &str,
    key: &str,
    c: Consistency,
) -> Result<(Option<u64>, Bytes), Error> {
    let opts = GetOptions {
        consistency: c,
        ..GetOptions::default()
    };
    client
        .get_bytes(tenant, container, key, opts)
        .await
        .map(|(info, b)| (info.last_sync_ms, b))
}

/// Waits until the tenant's secondary has applied everything.
async fn wait_in_sync(client: &Client, tenant: &str) -> Result<TenantInfo> {
    poll(
        &format!("{tenant} in sync"),
        Duration::from_secs(60),
        || async {
            let t = client.get_tenant(tenant).await?;
            let g = t.geo.clone().context("no geo status")?;
            ensure!(
                g.status == "live" && g.lag_operations == 0 && g.last_sync_ms.is_some(),
                "{g:?}"
            );
            Ok(t)
        },
    )
    .await
}

/// The tenant's audit log as its primary serves it, checked from genesis.
async fn audit_chain(client: &Client, tenant: &str) -> Result<Vec<AuditRecord>> {
    let page = client.audit_all(tenant, 0, 1_000_000).await?;
    stratus_core::audit::verify(&page.records, None)?;
    Ok(page.records)
}

/// Waits until the primary's audit log verifies from genesis, starts with
/// `before` (records written earlier, unchanged and in the same order) and holds
/// a record `wanted` checks for; returns it.
async fn audit_chain_extending(
    client: &Client,
    tenant: &str,
    before: &[AuditRecord],
    what: &str,
    wanted: impl Fn(&[AuditRecord]) -> bool,
) -> Result<Vec<AuditRecord>> {
    poll(what, Duration::from_secs(30), || async {
        let records = audit_chain(client, tenant).await?;
        ensure!(
            records.len() >= before.len() && records[..before.len()] == *before,
            "{} records do not start with the {} written before",
            records.len(),
            before.len()
        );
        ensure!(wanted(&records), "the awaited record is not in the log yet");
        Ok(records)
    })
    .await
}

/// Records of `operation` on `resource` with result `ok`.
fn count_ok(records: &[AuditRecord], operation: &str, resource: &str) -> usize {
    records
        .iter()
        .filter(|r| {
            r.event.operation == operation && r.event.resource == resource && r.event.result == "ok"
        })
        .count()
}

#[tokio::test]
async fn geo_replication_failover_and_reprotect_on_real_processes() -> Result<()> {
    let opts = ClusterOptions {
        layout: Layout::TwoRegions,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    let tenant = "geotenant";
    client
        .create_tenant(tenant, PRIMARY, Redundancy::RaGrs)
        .await?;
    client.create_container(tenant, CONTAINER).await?;
    let mut written = Vec::new();
    for (key, data) in [
        ("small-1", pattern(100, 1)),
        ("small-2", pattern(5_000, 2)),
        ("big", pattern(1024 * 1024 + 17, 3)),
    ] {
        client
            .put_bytes(tenant, CONTAINER, key, data.clone(), PutOptions::default())
            .await?;
        written.push((key.to_string(), data));
    }
    // The puts' audit records, then everything shipped (the records too).
    let big = format!("object {tenant}/{CONTAINER}/big");
    let audit_before_planned =
        audit_chain_extending(&client, tenant, &[], "the puts in the audit log", |r| {
            count_ok(r, "PutObject", &big) == 1
        })
        .await?;
    let t = wait_in_sync(&client, tenant).await?;
    ensure!(
        t.geo.as_ref().is_some_and(|g| g.secondary_region == PAIRED),
        "{t:?}"
    );

    // Reads from the secondary: the same bytes, with its last sync time.
    for (key, data) in &written {
        let (last_sync, back) =
            read(&client, tenant, CONTAINER, key, Consistency::Secondary).await?;
        ensure!(back == *data, "{key} differs on the secondary");
        ensure!(
            last_sync.is_some(),
            "a secondary read without its last sync time"
        );
    }
    // Without read access the secondary is not readable.
    client
        .create_tenant("geoplain", PRIMARY, Redundancy::Grs)
        .await?;
    client.create_container("geoplain", CONTAINER).await?;
    client
        .put_bytes(
            "geoplain",
            CONTAINER,
            "k",
            pattern(10, 4),
            PutOptions::default(),
        )
        .await?;
    match read(&client, "geoplain", CONTAINER, "k", Consistency::Secondary).await {
        Err(Error::FailedPrecondition { code, message }) => ensure!(
            code.as_deref() == Some("secondary-read-not-allowed") && message.contains("ra-grs"),
            "{code:?} {message}"
        ),
        other => bail!(
            "a GRS secondary read: {:?}",
            other.map(|(s, b)| (s, b.len()))
        ),
    }

    // Planned failover: nothing lost, geo-redundancy kept, shipping reversed.
    let (t, f) = client.failover(tenant, true).await?;
    ensure!(
        f.planned && f.lost_operations_max == Some(0) && t.region == PAIRED && t.epoch == 1,
        "{t:?} {f:?}"
    );
    ensure!(
        t.geo
            .as_ref()
            .is_some_and(|g| g.secondary_region == PRIMARY),
        "{t:?}"
    );
    for (key, data) in &written {
        let (_, back) = read(&client, tenant, CONTAINER, key, Consistency::Strong).await?;
        ensure!(back == *data, "{key} changed across the planned failover");
    }
    // The new primary continues the same audit chain (the failover call is in it
    // once: recorded by the new primary, never by the old one as well).
    let resource = format!("tenant {tenant}");
    audit_chain_extending(
        &client,
        tenant,
        &audit_before_planned,
        "the planned failover in the new primary's audit log",
        |r| count_ok(r, "Failover", &resource) == 1,
    )
    .await?;
    let after_planned = pattern(2_000, 5);
    poll(
        "writes after the planned failover",
        Duration::from_secs(20),
        || async {
            Ok::<_, anyhow::Error>(
                client
                    .put_bytes(
                        tenant,
                        CONTAINER,
                        "after-planned",
                        after_planned.clone(),
                        PutOptions::default(),
                    )
                    .await?,
            )
        },
    )
    .await?;
    written.push(("after-planned".into(), after_planned));
    let after_planned_key = format!("object {tenant}/{CONTAINER}/after-planned");
    let audit_before_unplanned = audit_chain_extending(
        &client,
        tenant,
        &audit_before_planned,
        "the put after the planned failover in the audit log",
        |r| count_ok(r, "PutObject", &after_planned_key) >= 1,
    )
    .await?;
    wait_in_sync(&client, tenant).await?;

    // Unplanned: the secondary (eu-west) is cut off while the primary (eu-north)
    // acknowledges three writes it cannot ship; then the primary region dies.
    for id in WEST {
        cluster.pause(id)?;
    }
    let mut unshipped = Vec::new();
    for i in 0..3u8 {
        let key = format!("unshipped-{i}");
        let data = pattern(300 + usize::from(i) * 40_000, 10 + i);
        poll(&format!("put {key}"), Duration::from_secs(20), || async {
            Ok::<_, anyhow::Error>(
                client
                    .put_bytes(tenant, CONTAINER, &key, data.clone(), PutOptions::default())
                    .await?,
            )
        })
        .await?;
        unshipped.push((key, data));
    }
    // Their audit records are in the primary's chain (and its unshipped outbox).
    let unshipped_resources: Vec<String> = unshipped
        .iter()
        .map(|(key, _)| format!("object {tenant}/{CONTAINER}/{key}"))
        .collect();
    let has_unshipped = |r: &[AuditRecord]| {
        unshipped_resources
            .iter()
            .all(|res| count_ok(r, "PutObject", res) >= 1)
    };
    audit_chain_extending(
        &client,
        tenant,
        &audit_before_unplanned,
        "the unshipped puts in the cut-off primary's audit log",
        has_unshipped,
    )
    .await?;
    for id in NORTH {
        cluster.kill(id)?;
    }
    for id in WEST {
        cluster.resume(id)?;
    }
    let started = tokio::time::Instant::now();
    let (t, f) = poll("unplanned failover", Duration::from_secs(60), || async {
        Ok::<_, anyhow::Error>(client.failover(tenant, false).await?)
    })
    .await?;
    let took = started.elapsed();
    ensure!(
        !f.planned && t.region == PRIMARY && t.epoch == 2 && t.redundancy == Some(Redundancy::Lrs),
        "{t:?} {f:?}"
    );
    ensure!(f.reprotect == "pending", "{f:?}");
    if let Some(lost) = f.lost_operations_max {
        ensure!(
            lost >= 3,
            "three unshipped writes, but a loss window of {lost}"
        );
    }
    eprintln!(
        "unplanned failover took {took:?}; loss window {:?}",
        f.lost_operations_max
    );
    // Everything acknowledged before the last sync time is there; the unshipped
    // writes are not (yet).
    for (key, data) in &written {
        let (_, back) = read(&client, tenant, CONTAINER, key, Consistency::Strong).await?;
        ensure!(back == *data, "{key} lost in the unplanned failover");
    }
    for (key, _) in &unshipped {
        match read(&client, tenant, CONTAINER, key, Consistency::Strong).await {
            Err(Error::NotFound { .. }) => {}
            other => bail!(
                "{key} after the failover: {:?}",
                other.map(|(s, b)| (s, b.len()))
            ),
        }
    }
    client
        .put_bytes(
            tenant,
            CONTAINER,
            "after-unplanned",
            pattern(777, 20),
            PutOptions::default(),
        )
        .await?;
    // The audit log survived the loss of its primary region: the new primary
    // continues the chain shipped before the cut (the records of the cut-off
    // period may be missing, nothing is altered or reordered), and the CLI's
    // export verifies from genesis.
    let after_unplanned_key = format!("object {tenant}/{CONTAINER}/after-unplanned");
    audit_chain_extending(
        &client,
        tenant,
        &audit_before_unplanned,
        "the new primary's audit log after the unplanned failover",
        |r| count_ok(r, "PutObject", &after_unplanned_key) == 1,
    )
    .await?;
    let work = tempfile::tempdir()?;
    let any = cluster.addr(WEST[0])?;
    let cli = Program::new(&bins!().cli, work.path())
        .env("STRATUS_TOKEN", cluster.operator())
        .env("STRATUS_CA", cluster.ca_file());
    let file = work.path().join("audit.jsonl");
    let file_arg = file.to_str().context("utf-8")?;
    cli.run(&[
        "--endpoint",
        &any,
        "audit",
        "export",
        tenant,
        "--file",
        file_arg,
    ])
    .await?
    .ok()?;
    let exported = std::fs::read_to_string(&file)?.lines().count();
    ensure!(
        exported > audit_before_unplanned.len(),
        "{exported} records exported, {} before the failover",
        audit_before_unplanned.len()
    );
    cli.run(&["audit", "verify", file_arg]).await?.ok()?;
    cli.run(&["--endpoint", &any, "audit", "verify", tenant])
        .await?
        .ok()?;

    // The old primary comes back: it acknowledges nothing for the tenant.
    for id in NORTH {
        cluster.start_node(id)?;
    }
    let north_addrs: Vec<String> = NORTH[..3]
        .iter()
        .map(|id| cluster.addr(*id))
        .collect::<Result<_>>()?;
    let probe_until = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut probes = 0;
    while tokio::time::Instant::now() < probe_until {
        for addr in &north_addrs {
            let msgs = put_messages(
                put_header(tenant, CONTAINER, "from-old-primary"),
                b"stale",
                1024,
            );
            if let Ok(Ok(info)) = grpc::put(addr, msgs).await {
                bail!(
                    "the old primary at {addr} acknowledged a write after the failover: {info:?}"
                );
            }
            probes += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(probes > 10, "only {probes} probes of the old primary");

    // Reprotect: the unshipped writes go to the recovery container, the old region
    // becomes the secondary again and catches up.
    let t = poll("reprotect", Duration::from_secs(60), || async {
        Ok::<_, anyhow::Error>(client.reprotect(tenant).await?)
    })
    .await?;
    let f = t.failovers.last().context("a failover record")?.clone();
    ensure!(
        f.reprotect == "done"
            && f.recovered_objects == 3
            && f.recovery_container.as_deref() == Some("recovery-epoch-1"),
        "{f:?}"
    );
    for (key, data) in &unshipped {
        let (_, back) = read(
            &client,
            tenant,
            "recovery-epoch-1",
            &format!("{CONTAINER}/{key}"),
            Consistency::Strong,
        )
        .await?;
        ensure!(back == *data, "{key} differs in the recovery container");
    }
    // The reprotect also appended the old primary's unshipped audit records to
    // the chain (after those written since the failover).
    let audit_after_reprotect = audit_chain(&client, tenant).await?;
    ensure!(
        has_unshipped(&audit_after_reprotect),
        "the unshipped puts' audit records were not recovered"
    );
    let t = wait_in_sync(&client, tenant).await?;
    ensure!(
        t.redundancy == Some(Redundancy::RaGrs)
            && t.geo.as_ref().is_some_and(|g| g.secondary_region == PAIRED),
        "{t:?}"
    );
    let (_, back) = read(
        &client,
        tenant,
        CONTAINER,
        "after-unplanned",
        Consistency::Secondary,
    )
    .await?;
    ensure!(back == pattern(777, 20), "the re-seeded secondary differs");

    // The re-seeded secondary got the audit chain from genesis: moved back there,
    // the tenant's log still verifies and keeps every earlier record.
    let audit_before_back = audit_chain(&client, tenant).await?;
    wait_in_sync(&client, tenant).await?;
    let (t, _) = poll(
        "planned failover back to the re-seeded region",
        Duration::from_secs(60),
        || async { Ok::<_, anyhow::Error>(client.failover(tenant, true).await?) },
    )
    .await?;
    ensure!(t.region == PAIRED, "{t:?}");
    audit_chain_extending(
        &client,
        tenant,
        &audit_before_back,
        "the audit log of the re-seeded region",
        |r| r.len() > audit_before_back.len(),
    )
    .await?;
    Ok(())
}
