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
    Ok(())
}
