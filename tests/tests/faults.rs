//! Node failures: a killed group leader, a restart of the whole cluster, a
//! follower that was down while objects were written, and the loss of a whole
//! region of a two-region cluster.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_client::{Client, GetOptions, PutOptions, Redundancy};
use stratus_proto::v1 as pb;
use stratus_tests::grpc;
use stratus_tests::poll::poll;
use stratus_tests::{bins, random_bytes, Cluster, ClusterOptions, Layout};
use tokio::time::Instant;

const CONTAINER: &str = "data";
const MIB: usize = 1024 * 1024;
/// How long writes may stall after the leader is killed (election timeouts are
/// well under a second; this is generous for a loaded 2-core machine).
const FAILOVER_MAX: Duration = Duration::from_secs(15);
/// Time a restarted cluster or node gets to be ready again.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The content of the writer's object `i`: a few KiB, distinct per object.
fn numbered(i: u64) -> Bytes {
    random_bytes(4096 + (i as usize % 7) * 1000, 10_000 + i)
}

/// Reads every `(key, bytes)` back through `client` and compares.
async fn check_all(client: &Client, tenant: &str, objects: &[(String, Bytes)]) -> Result<()> {
    for (key, data) in objects {
        let (_, back) = client
            .get_bytes(tenant, CONTAINER, key, GetOptions::default())
            .await
            .with_context(|| format!("get {tenant}/{CONTAINER}/{key}"))?;
        ensure!(
            back == *data,
            "{key}: {} bytes read differ from the {} written",
            back.len(),
            data.len()
        );
    }
    Ok(())
}

/// Acknowledged puts of the writer: object number and when the ack arrived.
type Acks = Arc<Mutex<Vec<(u64, Instant)>>>;

/// Puts `w/NNNNN` objects one after the other until `stop`, recording every ack.
/// A failed put (the SDK gave up) is counted, not retried: its outcome is unknown.
fn spawn_writer(
    client: Client,
    tenant: String,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    const OBJECTS_MAX: u64 = 5_000;
    tokio::spawn(async move {
        let mut failed = 0;
        for i in 0..OBJECTS_MAX {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let key = format!("w/{i:05}");
            match client
                .put_bytes(&tenant, CONTAINER, &key, numbered(i), PutOptions::default())
                .await
            {
                Ok(_) => acks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, Instant::now())),
                Err(e) => {
                    eprintln!("writer: put {key} failed: {e}");
                    failed += 1;
                }
            }
        }
        failed
    })
}

fn ack_count(acks: &Acks) -> usize {
    acks.lock().unwrap_or_else(|e| e.into_inner()).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_the_group_leader_is_killed() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "failover";
    cluster
        .create_tenant(&client, tenant, Redundancy::Zrs, CONTAINER)
        .await?;
    let (group, _) = cluster.tenant_group(tenant).await?;

    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(client.clone(), tenant.into(), acks.clone(), stop.clone());
    poll(
        "20 acknowledged puts before the kill",
        Duration::from_secs(60),
        || async {
            match ack_count(&acks) {
                n if n >= 20 => Ok(()),
                n => Err(format!("{n} so far")),
            }
        },
    )
    .await?;

    let leader = cluster
        .group_leader(group, None, Duration::from_secs(10))
        .await?;
    cluster.kill(leader)?;
    let killed_at = Instant::now();
    let acked_before = ack_count(&acks);
    eprintln!("killed node {leader}, the leader of group {group}, after {acked_before} acks");

    // The first put acknowledged after the kill (the one in flight may be it).
    let resumed_at = poll(
        "a put acknowledged after the kill",
        FAILOVER_MAX * 2,
        || async {
            let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
            acks.iter()
                .find(|(_, at)| *at > killed_at)
                .map(|(_, at)| *at)
                .ok_or("none yet")
        },
    )
    .await?;
    let stall = resumed_at - killed_at;
    eprintln!("writes resumed {stall:?} after the kill");
    ensure!(
        stall < FAILOVER_MAX,
        "writes stalled {stall:?} (limit {FAILOVER_MAX:?})"
    );
    let new_leader = cluster
        .group_leader(group, Some(leader), Duration::from_secs(10))
        .await?;
    ensure!(new_leader != leader);

    poll(
        "20 more puts after the failover",
        Duration::from_secs(60),
        || async {
            match ack_count(&acks) {
                n if n >= acked_before + 20 => Ok(()),
                n => Err(format!("{n} so far")),
            }
        },
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    let failed = writer.await?;
    eprintln!("writer: {} acked, {failed} failed", ack_count(&acks));

    cluster.start_node(leader)?;
    cluster.wait_ready(READY_TIMEOUT).await?;
    let acked: Vec<(String, Bytes)> = acks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(i, _)| (format!("w/{i:05}"), numbered(*i)))
        .collect();
    check_all(&client, tenant, &acked).await?;
    // The old leader rejoined as a follower and converges on what was acknowledged.
    let old_leader = cluster.addr(leader)?;
    check_replica(&old_leader, tenant, &acked).await
}

/// Polls eventual reads of every object from the replica at `addr` until each
/// returns the expected bytes.
async fn check_replica(addr: &str, tenant: &str, objects: &[(String, Bytes)]) -> Result<()> {
    for (key, data) in objects {
        let req = grpc::get_request(tenant, CONTAINER, key, pb::Consistency::Eventual);
        poll(
            &format!("eventual read of {key} from {addr}"),
            READY_TIMEOUT,
            || {
                let req = req.clone();
                async move {
                    let (info, back) = grpc::get(addr, req).await?;
                    if back != data.as_ref() {
                        bail!("stale: {} bytes, etag {}", back.len(), info.etag);
                    }
                    Ok(())
                }
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_object_survives_killing_every_node() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "crash";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;
    let mut objects: Vec<(String, Bytes)> = (0..20)
        .map(|i| (format!("acked/{i}"), numbered(200 + i)))
        .collect();
    objects.push(("acked/big".into(), random_bytes(2 * MIB + 1, 11)));
    for (key, data) in &objects {
        client
            .put_bytes(tenant, CONTAINER, key, data.clone(), PutOptions::default())
            .await?;
    }
    // Overwrites and deletes are acknowledged writes too.
    objects[0].1 = Bytes::from_static(b"overwritten");
    client
        .put_bytes(
            tenant,
            CONTAINER,
            &objects[0].0,
            objects[0].1.clone(),
            PutOptions::default(),
        )
        .await?;
    let deleted = objects.pop().context("objects")?;
    client.delete(tenant, CONTAINER, &deleted.0, None).await?;
    drop(client);

    for id in cluster.node_ids() {
        cluster.kill(id)?;
    }
    for id in cluster.node_ids() {
        cluster.start_node(id)?;
    }
    cluster.wait_ready(READY_TIMEOUT).await?;
    let client = cluster.client().await?;
    check_all(&client, tenant, &objects).await?;
    let listed: Vec<String> = client
        .list_all(tenant, CONTAINER, "")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut expected: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    expected.sort();
    ensure!(
        listed == expected,
        "listed {listed:?}\nexpected {expected:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_back_after_the_whole_cluster_restarts() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let mut written = Vec::new();
    for (tenant, class) in [("keeplrs", Redundancy::Lrs), ("keepzrs", Redundancy::Zrs)] {
        cluster
            .create_tenant(&client, tenant, class, CONTAINER)
            .await?;
        let mut objects: Vec<(String, Bytes)> = (0..10)
            .map(|i| (format!("small/{i}"), numbered(i)))
            .collect();
        objects.push(("big".into(), random_bytes(3 * MIB + 5, 42)));
        objects.push(("empty".into(), Bytes::new()));
        for (key, data) in &objects {
            client
                .put_bytes(tenant, CONTAINER, key, data.clone(), PutOptions::default())
                .await?;
        }
        written.push((tenant, objects));
    }
    drop(client);

    cluster.terminate_all().await?;
    ensure!(cluster.running().is_empty());
    for id in cluster.node_ids() {
        cluster.start_node(id)?;
    }
    cluster.wait_ready(READY_TIMEOUT).await?;

    let client = cluster.client().await?;
    for (tenant, objects) in &written {
        check_all(&client, tenant, objects).await?;
        let listed = client.list_all(tenant, CONTAINER, "").await?;
        ensure!(
            listed.len() == objects.len(),
            "{tenant}: {} listed, {} written",
            listed.len(),
            objects.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_and_serves_eventual_reads() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "catchup";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;
    let (group, members) = cluster.tenant_group(tenant).await?;
    let leader = cluster
        .group_leader(group, None, Duration::from_secs(10))
        .await?;
    let follower = *members
        .iter()
        .find(|m| **m != leader)
        .context("the group has a follower")?;
    let follower_addr = cluster.addr(follower)?;
    cluster.terminate(follower).await?;

    let mut objects: Vec<(String, Bytes)> = (0..5)
        .map(|i| (format!("while-down/{i}"), numbered(100 + i)))
        .collect();
    objects.push(("while-down/big".into(), random_bytes(3 * MIB + 123, 7)));
    let mut infos = Vec::new();
    for (key, data) in &objects {
        infos.push(
            client
                .put_bytes(tenant, CONTAINER, key, data.clone(), PutOptions::default())
                .await?,
        );
    }

    cluster.start_node(follower)?;
    check_replica(&follower_addr, tenant, &objects).await?;
    // The replica's metadata is the leader's.
    for ((key, _), info) in objects.iter().zip(&infos) {
        let req = grpc::get_request(tenant, CONTAINER, key, pb::Consistency::Eventual);
        let (got, _) = grpc::get(&follower_addr, req).await?;
        ensure!(
            got.etag == info.etag && got.crc32 == info.crc32,
            "{got:?} vs {info:?}"
        );
        ensure!(
            got.version_id == info.version_id && got.size == info.size,
            "{got:?} vs {info:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_whole_region_keeps_the_other_region_serving() -> Result<()> {
    let opts = ClusterOptions {
        layout: Layout::TwoRegions,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    client
        .create_tenant("west", "eu-west", Redundancy::Zrs)
        .await?;
    client.create_container("west", CONTAINER).await?;
    client
        .create_tenant("north", "eu-north", Redundancy::Lrs)
        .await?;
    client.create_container("north", CONTAINER).await?;
    let data = random_bytes(MIB, 9);
    for tenant in ["west", "north"] {
        client
            .put_bytes(
                tenant,
                CONTAINER,
                "before",
                data.clone(),
                PutOptions::default(),
            )
            .await?;
        let (_, members) = cluster.tenant_group(tenant).await?;
        let home = if tenant == "west" {
            "eu-west"
        } else {
            "eu-north"
        };
        for m in &members {
            let region = &cluster
                .topology()
                .node(*m)
                .context("member in topology")?
                .region;
            ensure!(
                region == home,
                "{tenant}'s group member {m} is in {region}, not {home}"
            );
        }
    }

    let west: Vec<u64> = cluster
        .topology()
        .nodes_in_region("eu-west")
        .map(|n| n.id)
        .collect();
    for id in &west {
        cluster.kill(*id)?;
    }
    // A client that knows only the surviving nodes.
    let client = cluster.client().await?;
    let (_, back) = client
        .get_bytes("north", CONTAINER, "before", GetOptions::default())
        .await?;
    ensure!(back == data, "north's object differs after losing eu-west");
    client
        .put_bytes(
            "north",
            CONTAINER,
            "after",
            data.clone(),
            PutOptions::default(),
        )
        .await?;
    // The directory (voters in both regions and the witness) still has a quorum.
    client
        .create_tenant("north2", "eu-north", Redundancy::Zrs)
        .await?;
    client.create_container("north2", CONTAINER).await?;
    client
        .put_bytes(
            "north2",
            CONTAINER,
            "new",
            data.clone(),
            PutOptions::default(),
        )
        .await?;
    let (_, back) = client
        .get_bytes("north2", CONTAINER, "new", GetOptions::default())
        .await?;
    ensure!(back == data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_off_by_the_leader_dying_is_retried_and_stored_whole() -> Result<()> {
    use std::sync::atomic::AtomicU64;
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "midput";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;
    let (group, _) = cluster.tenant_group(tenant).await?;
    let leader = cluster
        .group_leader(group, None, Duration::from_secs(10))
        .await?;

    let data = random_bytes(32 * MIB, 77);
    let sent = Arc::new(AtomicU64::new(0));
    let progress = sent.clone();
    let opts = PutOptions {
        progress: Some(Arc::new(move |p: stratus_client::Progress| {
            progress.store(p.done, Ordering::SeqCst)
        })),
        ..PutOptions::default()
    };
    let put = {
        let (client, data) = (client.clone(), data.clone());
        tokio::spawn(async move { client.put_bytes(tenant, CONTAINER, "big", data, opts).await })
    };
    poll(
        "4 MiB of the upload sent",
        Duration::from_secs(60),
        || async {
            match sent.load(Ordering::SeqCst) {
                n if n >= 4 * MIB as u64 => Ok(()),
                n => Err(format!("{n} bytes so far")),
            }
        },
    )
    .await?;
    cluster.kill(leader)?;
    let killed_at_bytes = sent.load(Ordering::SeqCst);
    let info = put.await?.context("the put after the leader died")?;
    eprintln!("killed node {leader} after {killed_at_bytes} bytes; the put was stored");
    ensure!(
        info.size == data.len() as u64 && info.crc32 == crc32fast::hash(&data),
        "{info:?}"
    );
    check_all(&client, tenant, &[("big".into(), data)]).await
}
