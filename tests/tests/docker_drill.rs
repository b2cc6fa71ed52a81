//! Fault drills on the docker-compose deployment (`deploy/`), on real containers.
//!
//! Opt-in: runs only with `STRATUS_DOCKER_DRILL=1` (`.ci/run` sets it when `docker
//! info` succeeds) and otherwise says that it skipped. It builds the image if
//! needed (`deploy/build-image.sh --image-only`), starts the cluster under a
//! project name and host ports of its own (`deploy/up.sh`), and always removes its
//! containers, networks and volumes, also when it fails.
//!
//! Drills, in order, on an LRS, a ZRS and a GRS tenant in eu-west:
//! 1. SIGKILL the LRS group leader's container while a writer keeps writing:
//!    a new leader is elected, writes continue, every acknowledged object reads
//!    back byte-identical, and the container rejoins and catches up after
//!    `docker start`;
//! 2. stop a whole zone of eu-west, the one holding the ZRS group's leader (zone 1
//!    has three containers, zones 2 and 3 one each): the ZRS tenant keeps working;
//!    the LRS tenant, all of whose copies sit in zone 1, is unavailable exactly
//!    when zone 1 is the one stopped;
//! 3. cut eu-west off (its containers leave the `backbone` network, so they keep
//!    running and answering on their host ports, only cut from the other regions)
//!    under a GRS tenant whose primary is there: writes acknowledged during the cut
//!    may be unshipped; an unplanned failover moves the tenant to eu-north, where
//!    every write acknowledged before the cut reads back and new writes succeed;
//!    the cut-off old primary and, after the network returns, the reconnected one
//!    acknowledge no write for the tenant; `reprotect` re-seeds eu-west as the
//!    secondary and puts any unshipped writes in the recovery container;
//! 4. `down` (volumes kept) then `up`: every acknowledged object is back.
//!
//! Run it: `STRATUS_DOCKER_DRILL=1 cargo test -p stratus-tests --test docker_drill
//! -- --nocapture` (needs a Docker engine, docker-compose, the musl target).

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stratus_client::{
    Client, ClientConfig, GetOptions, Profile, PutOptions, Redundancy, TenantInfo,
};
use stratus_core::topology::Topology;
use stratus_tests::cli::Program;
use stratus_tests::compose::{self, ComposeProject};
use stratus_tests::{bins, deploy, grpc, poll::poll, random_bytes};

const DRILL_ENV: &str = "STRATUS_DOCKER_DRILL";
const REGION: &str = "eu-west";
const LRS: &str = "drilllrs";
const ZRS: &str = "drillzrs";
const GRS: &str = "drillgrs";
const PAIRED: &str = "eu-north";
/// Time the directory may take to fail a tenant over (it waits out the old
/// primary's write lease) and a reprotect may take to re-seed.
const GEO_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the fenced old primary is probed with direct writes, per phase.
const FENCING_PROBE: Duration = Duration::from_secs(10);
const CONTAINER: &str = "drill";
/// Time the image build may take (a cold musl release build on two cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// Time a new leader, a restarted node or a first write may take to appear.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);
/// Acknowledged writes the writer must make after the kill before we restart.
const WRITES_AFTER_KILL: usize = 20;

/// Prints to the real stderr, past libtest's capture, so CI logs show it.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "drill: {}", format_args!($($t)*));
    }};
}

/// Every object a put acknowledged: (tenant, key) → bytes.
type Acked = Arc<Mutex<BTreeMap<(String, String), Bytes>>>;

/// Measured durations, in the order they were taken.
#[derive(Default)]
struct Timings(Vec<(String, Duration)>);

impl Timings {
    fn record(&mut self, what: &str, d: Duration) {
        say!("{what}: {:.2} s", d.as_secs_f64());
        self.0.push((what.to_owned(), d));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_compose_drill() -> anyhow::Result<()> {
    if std::env::var(DRILL_ENV).as_deref() != Ok("1") {
        say!(
            "SKIPPED: the docker-compose drill runs only with {DRILL_ENV}=1 \
             (it needs a Docker engine; .ci/run sets it when `docker info` succeeds)"
        );
        return Ok(());
    }
    ensure!(
        compose::docker_reachable(),
        "{DRILL_ENV}=1 but the Docker engine is not reachable (`docker info` failed)"
    );
    let started = Instant::now();
    let mut t = Timings::default();

    let build = Instant::now();
    Program::new(
        &deploy::deploy_dir().join("build-image.sh"),
        &deploy::deploy_dir(),
    )
    .timeout(BUILD_TIMEOUT)
    .run(&["--image-only"])
    .await?
    .ok()
    .context("deploy/build-image.sh --image-only")?;
    t.record("image build (cargo + docker, incremental)", build.elapsed());

    let topology = Topology::parse(&std::fs::read_to_string(
        deploy::deploy_dir().join("topology.toml"),
    )?)?;
    let prefix = compose::free_port_prefix(topology.nodes().len() as u64)?;
    let tmp = tempfile::tempdir()?;
    let name = format!("stratusdrill{}", std::process::id());
    let project = ComposeProject::new(&name, prefix, &tmp.path().join("client-profile.toml"))?;
    say!("project {name}, host ports 127.0.0.1:{prefix}01-{prefix}11");

    t.record("compose up, every node healthy", project.up().await?);
    let client = connect(&project).await?;
    wait_all_nodes_up(&client, &topology).await?;
    cli_sees_every_node_up(&project, &topology).await?;

    let acked: Acked = Arc::default();
    for (tenant, class) in [(LRS, Redundancy::Lrs), (ZRS, Redundancy::Zrs)] {
        client.create_tenant(tenant, REGION, class).await?;
        client.create_container(tenant, CONTAINER).await?;
        for i in 0..8u64 {
            put(&client, &acked, tenant, &format!("before/{i:03}"), i).await?;
        }
    }
    say!("tenants {LRS} (LRS) and {ZRS} (ZRS) in {REGION}, 8 objects each");

    kill_the_lrs_leader(&project, &client, &acked, &mut t).await?;
    stop_a_zone(&project, &client, &topology, &acked, &mut t).await?;
    fail_over_a_cut_off_region(&project, &client, &topology, &acked, &mut t).await?;

    t.record(
        "compose down (volumes kept)",
        project.down_keep_volumes().await?,
    );
    t.record("compose up again, every node healthy", project.up().await?);
    let client = connect(&project).await?;
    let first_read = Instant::now();
    let (tenant, key) = acked
        .lock()
        .expect("acked")
        .keys()
        .next()
        .cloned()
        .context("something was acknowledged")?;
    poll("first read after up", RECOVERY_TIMEOUT, || {
        client.get_bytes(&tenant, CONTAINER, &key, GetOptions::default())
    })
    .await?;
    t.record("up -> first strong read served", first_read.elapsed());
    let n = verify_all(&client, &acked).await?;
    say!("after down/up: all {n} acknowledged objects are back, byte-identical");

    t.record("whole drill", started.elapsed());
    project.passed();
    say!("timings:");
    for (what, d) in &t.0 {
        say!("  {:<52} {:>7.2} s", what, d.as_secs_f64());
    }
    Ok(())
}

/// A client for the project's profile (through its address map, over TLS with
/// the CA `deploy/up.sh` copied out of the `tls` volume). Also lets the raw gRPC
/// helpers reach every node's published port over TLS.
async fn connect(project: &ComposeProject) -> anyhow::Result<Client> {
    let profile = Profile::load(project.profile())?;
    let ca = profile
        .ca_file
        .clone()
        .context("deploy/up.sh wrote no ca_file into the profile")?;
    for published in profile.address_map.values() {
        grpc::register_ca(published, &ca)?;
    }
    let config = ClientConfig {
        deadline: Duration::from_secs(30),
        tls: profile.tls()?,
        dialer: profile.dialer(),
        credential: profile.token.clone(),
        ..ClientConfig::default()
    };
    Ok(Client::connect_with(profile.endpoints.clone(), config).await?)
}

async fn wait_all_nodes_up(client: &Client, topology: &Topology) -> anyhow::Result<()> {
    let total = topology.nodes().len();
    poll(
        "every node up in cluster status",
        RECOVERY_TIMEOUT,
        || async {
            let status = client.cluster_status().await?;
            let up = status.nodes.iter().filter(|n| n.up).count();
            if up != total {
                bail!("{up} of {total} nodes up");
            }
            anyhow::Ok(())
        },
    )
    .await
}

/// The host CLI, pointed at the profile `deploy/up.sh` wrote, sees every node up.
async fn cli_sees_every_node_up(
    project: &ComposeProject,
    topology: &Topology,
) -> anyhow::Result<()> {
    let cli = Program::new(&bins!().cli, project.profile().parent().context("dir")?)
        .env("STRATUS_PROFILE", project.profile());
    let out = cli.run(&["--output", "json", "cluster", "status"]).await?;
    let status = out.ok()?.json()?;
    let nodes = status["nodes"].as_array().context("nodes")?;
    let up = nodes.iter().filter(|n| n["up"] == true).count();
    ensure!(
        nodes.len() == topology.nodes().len() && up == nodes.len(),
        "the CLI sees {up} of {} nodes up: {status}",
        nodes.len()
    );
    say!("`stratus cluster status` with the written profile: all {up} nodes up");
    Ok(())
}

/// Writes one object (small ones inline, every other one chunked) and records it
/// once acknowledged.
async fn put(
    client: &Client,
    acked: &Acked,
    tenant: &str,
    key: &str,
    seed: u64,
) -> anyhow::Result<()> {
    let len = if seed % 2 == 1 { 300 * 1024 } else { 2 * 1024 };
    let data = random_bytes(len, seed ^ tenant.len() as u64);
    client
        .put_bytes(tenant, CONTAINER, key, data.to_vec(), PutOptions::default())
        .await?;
    acked
        .lock()
        .expect("acked")
        .insert((tenant.to_owned(), key.to_owned()), data);
    Ok(())
}

/// Reads every acknowledged object (strong reads) and compares the bytes.
async fn verify_all(client: &Client, acked: &Acked) -> anyhow::Result<usize> {
    let all: Vec<_> = acked
        .lock()
        .expect("acked")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((tenant, key), data) in &all {
        let (_, got) = client
            .get_bytes(tenant, CONTAINER, key, GetOptions::default())
            .await
            .with_context(|| format!("acknowledged {tenant}/{CONTAINER}/{key} is lost"))?;
        ensure!(
            got == *data,
            "{tenant}/{CONTAINER}/{key} changed: {} bytes back, {} written",
            got.len(),
            data.len()
        );
    }
    Ok(all.len())
}

/// The writer of drill 1: puts one object after another until told to stop,
/// recording when each acknowledgement came.
struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Instant>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: Client, acked: Acked, tenant: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (stop, acks, errors) = (stop.clone(), acks.clone(), errors.clone());
            tokio::spawn(async move {
                let mut seq = 1000u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = format!("during-kill/{seq:05}");
                    match put(&client, &acked, tenant, &key, seq).await {
                        Ok(()) => acks.lock().expect("acks").push(Instant::now()),
                        Err(e) => errors.lock().expect("errors").push(format!("{key}: {e}")),
                    }
                }
            })
        };
        Writer {
            stop,
            acks,
            errors,
            task,
        }
    }

    fn acks_after(&self, t: Instant) -> Vec<Instant> {
        let acks = self.acks.lock().expect("acks");
        acks.iter().copied().filter(|a| *a > t).collect()
    }

    async fn finish(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(RECOVERY_TIMEOUT, self.task)
            .await
            .context("the writer did not stop")??;
        Ok(std::mem::take(&mut *self.errors.lock().expect("errors")))
    }
}

/// Drill 1: SIGKILL the LRS group's leader under a steady writer.
async fn kill_the_lrs_leader(
    project: &ComposeProject,
    client: &Client,
    acked: &Acked,
    t: &mut Timings,
) -> anyhow::Result<()> {
    let placement = client.resolve_tenant(LRS).await?;
    let leader = placement.leader_id.context("the LRS group has a leader")?;
    let group = placement.group_id;
    let service = deploy::service(leader);
    // The writer gets a client of its own: this one is used to observe.
    let writer = Writer::start(connect(project).await?, acked.clone(), LRS);
    poll("writer running", RECOVERY_TIMEOUT, || async {
        if writer.acks.lock().expect("acks").len() >= 5 {
            Ok(())
        } else {
            Err("fewer than 5 writes acknowledged")
        }
    })
    .await?;

    project.kill(&service).await?;
    let killed = Instant::now();
    say!("SIGKILLed {service} (node {leader}), leader of LRS group {group}");

    let new_leader = poll("a new LRS leader", RECOVERY_TIMEOUT, || async {
        match client.resolve_tenant(LRS).await?.leader_id {
            Some(l) if l != leader => anyhow::Ok(l),
            other => bail!("leader still {other:?}"),
        }
    })
    .await?;
    t.record("kill LRS leader -> new leader reported", killed.elapsed());
    say!("new LRS leader: node {new_leader}");
    poll("writes after the kill", RECOVERY_TIMEOUT, || async {
        let n = writer.acks_after(killed).len();
        if n >= WRITES_AFTER_KILL {
            Ok(())
        } else {
            Err(format!("{n} writes acknowledged since the kill"))
        }
    })
    .await?;
    let first_ack = writer.acks_after(killed)[0];
    t.record(
        "kill LRS leader -> first acknowledged write",
        first_ack - killed,
    );
    say!(
        "after the kill: {} is {} (restart policy does not undo a docker kill)",
        service,
        project.state(&service).await?
    );

    let restart = Instant::now();
    project.start(std::slice::from_ref(&service)).await?;
    t.record(
        "docker start -> killed node healthy",
        project
            .wait_healthy(std::slice::from_ref(&service), RECOVERY_TIMEOUT)
            .await?,
    );
    // Caught up: its replica applied at least what the leader had applied when
    // it came back.
    let target = replica_applied(client, group, new_leader).await?;
    poll(
        "the restarted node catches up",
        RECOVERY_TIMEOUT,
        || async {
            let applied = replica_applied(client, group, leader).await?;
            if applied >= target {
                anyhow::Ok(())
            } else {
                bail!("node {leader} applied {applied} of {target}")
            }
        },
    )
    .await?;
    t.record("docker start -> killed node caught up", restart.elapsed());

    let errors = writer.finish().await?;
    let during = acked
        .lock()
        .expect("acked")
        .keys()
        .filter(|(tn, k)| tn == LRS && k.starts_with("during-kill/"))
        .count();
    say!(
        "writer: {during} writes acknowledged, {} failed (not acknowledged, so allowed to be lost){}",
        errors.len(),
        errors
            .first()
            .map(|e| format!("; first: {e}"))
            .unwrap_or_default()
    );
    let n = verify_all(client, acked).await?;
    say!("after the kill: all {n} acknowledged objects read back byte-identical");
    Ok(())
}

/// The applied log index of `node`'s replica of `group`, from cluster status.
async fn replica_applied(client: &Client, group: u64, node: u64) -> anyhow::Result<u64> {
    let status = client.cluster_status().await?;
    status
        .groups
        .iter()
        .find(|g| g.id == group)
        .and_then(|g| g.replicas.iter().find(|r| r.node_id == node))
        .map(|r| r.applied_index)
        .with_context(|| format!("no report from node {node} for group {group}"))
}

/// Drill 2: stop every container of the zone that holds the ZRS group's leader
/// (so the group must elect a new one). The LRS group lives in zone 1: it must be
/// unavailable when zone 1 is the one stopped, and keep working otherwise.
async fn stop_a_zone(
    project: &ComposeProject,
    client: &Client,
    topology: &Topology,
    acked: &Acked,
    t: &mut Timings,
) -> anyhow::Result<()> {
    let zrs_leader = client
        .resolve_tenant(ZRS)
        .await?
        .leader_id
        .context("the ZRS group has a leader")?;
    let zone_name = topology
        .node(zrs_leader)
        .context("the ZRS leader is in the topology")?
        .zone
        .clone();
    let zone: Vec<String> = topology
        .nodes_in_region(REGION)
        .filter(|n| n.zone == zone_name)
        .map(|n| deploy::service(n.id))
        .collect();
    say!(
        "ZRS leader is node {zrs_leader}: stopping zone {zone_name} of {REGION} ({})",
        zone.join(", ")
    );
    let stopping = Instant::now();
    project.stop(&zone).await?;
    let stopped = Instant::now();
    t.record(
        &format!(
            "docker stop zone {zone_name} of {REGION} ({} nodes)",
            zone.len()
        ),
        stopped - stopping,
    );

    let mut seq = 2000u64;
    poll("a ZRS write with the zone down", RECOVERY_TIMEOUT, || {
        seq += 1;
        let key = format!("zone-down/{seq:05}");
        async move { put(client, acked, ZRS, &key, seq).await }
    })
    .await?;
    t.record(
        "zone stopped -> first ZRS write acknowledged",
        stopped.elapsed(),
    );
    for i in 0..10u64 {
        put(
            client,
            acked,
            ZRS,
            &format!("zone-down/more-{i:03}"),
            3000 + i,
        )
        .await?;
    }
    let n = verify_all_of(client, acked, ZRS).await?;
    say!("with zone {zone_name} down: ZRS wrote 10 more, all {n} ZRS objects read back");

    // Every copy of the LRS tenant sits in zone 1 (one facility of three nodes).
    let short = short_client(project).await?;
    let lrs = short
        .put_bytes(
            LRS,
            CONTAINER,
            "zone-down/lrs",
            b"x".to_vec(),
            PutOptions::default(),
        )
        .await;
    if zone_name == "1" {
        ensure!(
            lrs.is_err(),
            "an LRS write succeeded with every copy of its group stopped"
        );
        say!("with zone 1 down: LRS write refused, as expected (all its copies are in zone 1)");
    } else {
        lrs.context("an LRS write with a zone other than its own down")?;
        acked.lock().expect("acked").insert(
            (LRS.to_owned(), "zone-down/lrs".to_owned()),
            Bytes::from_static(b"x"),
        );
        say!("with zone {zone_name} down: LRS (all in zone 1) keeps working too");
    }

    let starting = Instant::now();
    project.start(&zone).await?;
    project.wait_healthy(&zone, RECOVERY_TIMEOUT).await?;
    poll(
        "an LRS write after the zone is back",
        RECOVERY_TIMEOUT,
        || {
            seq += 1;
            let key = format!("zone-back/{seq:05}");
            async move { put(client, acked, LRS, &key, seq).await }
        },
    )
    .await?;
    t.record(
        "docker start zone -> healthy, LRS write acknowledged",
        starting.elapsed(),
    );
    Ok(())
}

async fn verify_all_of(client: &Client, acked: &Acked, tenant: &str) -> anyhow::Result<usize> {
    let only: Acked = Arc::new(Mutex::new(
        acked
            .lock()
            .expect("acked")
            .iter()
            .filter(|((tn, _), _)| tn == tenant)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ));
    verify_all(client, &only).await
}

/// Waits until the tenant's secondary has applied everything the primary has.
async fn wait_in_sync(client: &Client, tenant: &str) -> anyhow::Result<TenantInfo> {
    poll(&format!("{tenant} in sync"), GEO_TIMEOUT, || async {
        let t = client.get_tenant(tenant).await?;
        let g = t.geo.clone().context("no geo status")?;
        ensure!(
            g.status == "live" && g.lag_operations == 0 && g.last_sync_ms.is_some(),
            "geo status {g:?}"
        );
        Ok(t)
    })
    .await
}

/// Direct writes to each node of `addrs` for [`FENCING_PROBE`]: none may be
/// acknowledged. Returns how many the nodes answered (refused) and how many
/// never reached a node (connection errors).
async fn probe_fenced(
    addrs: &[String],
    credential: &str,
    tenant: &str,
) -> anyhow::Result<(usize, usize)> {
    let until = Instant::now() + FENCING_PROBE;
    let (mut refused, mut unreachable) = (0, 0);
    while Instant::now() < until {
        for addr in addrs {
            let msgs = grpc::put_messages(
                grpc::put_header(tenant, CONTAINER, "from-old-primary"),
                b"stale",
                1024,
            );
            match grpc::put_as(addr, credential, msgs).await {
                Ok(Ok(info)) => bail!(
                    "the old primary at {addr} acknowledged a write after the failover: {info:?}"
                ),
                // A refusal for our credential would prove nothing about fencing.
                Ok(Err(status))
                    if matches!(
                        status.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ) =>
                {
                    bail!("the fencing probe's credential was refused by {addr}: {status:?}")
                }
                // A refusal from the node itself carries our error code.
                Ok(Err(status)) if grpc::error_code(&status).is_some() => refused += 1,
                _ => unreachable += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok((refused, unreachable))
}

/// Drill 3: a GRS tenant whose primary region is cut off fails over to its
/// paired region; the old primary stays fenced; reprotect restores the geo copy.
async fn fail_over_a_cut_off_region(
    project: &ComposeProject,
    client: &Client,
    topology: &Topology,
    acked: &Acked,
    t: &mut Timings,
) -> anyhow::Result<()> {
    client.create_tenant(GRS, REGION, Redundancy::Grs).await?;
    client.create_container(GRS, CONTAINER).await?;
    for i in 0..8u64 {
        put(client, acked, GRS, &format!("before-cut/{i:03}"), 4000 + i).await?;
    }
    let synced = Instant::now();
    let before = wait_in_sync(client, GRS).await?;
    t.record("GRS: 8 writes -> secondary in sync", synced.elapsed());
    ensure!(
        before
            .geo
            .as_ref()
            .is_some_and(|g| g.secondary_region == PAIRED),
        "the GRS tenant's secondary is not in {PAIRED}: {before:?}"
    );
    let before_cut: Vec<String> = acked
        .lock()
        .expect("acked")
        .keys()
        .filter(|(tn, _)| tn == GRS)
        .map(|(_, k)| k.clone())
        .collect();

    let west: Vec<u64> = topology.nodes_in_region(REGION).map(|n| n.id).collect();
    let west_services: Vec<String> = west.iter().map(|id| deploy::service(*id)).collect();
    let west_addrs: Vec<String> = west.iter().map(|id| project.host_addr(*id)).collect();
    let operator = Profile::load(project.profile())?
        .token
        .context("the deployment's profile carries the operator secret")?;
    project
        .disconnect(deploy::BACKBONE_NETWORK, &west_services)
        .await?;
    let cut = Instant::now();
    say!(
        "cut {REGION} ({}) off the backbone network",
        west_services.join(", ")
    );

    // The old primary may still acknowledge a few writes under its lease: they are
    // not shipped, and must end up in the recovery container after reprotect.
    let short = short_client(project).await?;
    let mut during_cut = Vec::new();
    for i in 0..3u64 {
        let key = format!("during-cut/{i:03}");
        let data = random_bytes(1500 + i as usize, 5000 + i);
        if short
            .put_bytes(GRS, CONTAINER, &key, data.to_vec(), PutOptions::default())
            .await
            .is_ok()
        {
            during_cut.push((key, data));
        }
    }
    say!(
        "the cut-off primary acknowledged {} of 3 writes (not shipped: they belong to the loss window)",
        during_cut.len()
    );
    // The figures below count from the cut, so they include these writes (each
    // may wait out its 5 s deadline); the failover's own time is recorded apart.
    t.record(
        "region cut -> writes to the cut-off primary given up",
        cut.elapsed(),
    );

    let asked = Instant::now();
    let (after, failover) = poll("unplanned failover", GEO_TIMEOUT, || async {
        anyhow::Ok(client.failover(GRS, false).await?)
    })
    .await?;
    t.record("failover asked -> unplanned failover done", asked.elapsed());
    t.record("region cut -> unplanned failover done", cut.elapsed());
    ensure!(
        !failover.planned
            && after.region == PAIRED
            && after.epoch == before.epoch + 1
            && after.redundancy == Some(Redundancy::Lrs)
            && failover.reprotect == "pending",
        "after the failover: {after:?} {failover:?}"
    );
    if let Some(lost) = failover.lost_operations_max {
        ensure!(
            lost >= during_cut.len() as u64,
            "{} unshipped acknowledged writes, but a loss window of {lost}",
            during_cut.len()
        );
    }
    say!(
        "failed over to {PAIRED} (epoch {}), last sync {} ms, loss window {:?} operations",
        after.epoch,
        failover.last_sync_ms,
        failover.lost_operations_max
    );
    poll("a write in the new primary", RECOVERY_TIMEOUT, || {
        put(client, acked, GRS, "after-failover/first", 6000)
    })
    .await?;
    t.record(
        "failover asked -> first write accepted in eu-north",
        asked.elapsed(),
    );
    t.record(
        "region cut -> first write accepted in eu-north",
        cut.elapsed(),
    );
    for i in 1..6u64 {
        put(
            client,
            acked,
            GRS,
            &format!("after-failover/{i:03}"),
            6000 + i,
        )
        .await?;
    }
    for key in &before_cut {
        let (_, got) = client
            .get_bytes(GRS, CONTAINER, key, GetOptions::default())
            .await
            .with_context(|| format!("{GRS}/{key}, in sync before the cut, is lost"))?;
        ensure!(
            got == acked.lock().expect("acked")[&(GRS.to_owned(), key.clone())],
            "{GRS}/{key} changed across the failover"
        );
    }
    say!(
        "all {} objects in sync before the cut read back in {PAIRED}",
        before_cut.len()
    );

    // Fencing, first while the old primary is still cut off, then reconnected.
    let (refused_cut, unreachable_cut) = probe_fenced(&west_addrs, operator.expose(), GRS).await?;
    project
        .connect(deploy::BACKBONE_NETWORK, &west_services)
        .await?;
    let reconnected = Instant::now();
    let (refused_back, unreachable_back) =
        probe_fenced(&west_addrs, operator.expose(), GRS).await?;
    say!(
        "old primary fenced: cut off {refused_cut} writes refused ({unreachable_cut} unreachable), \
         reconnected {refused_back} refused ({unreachable_back} unreachable), none acknowledged"
    );
    ensure!(
        refused_back > 10,
        "only {refused_back} fencing probes reached the reconnected old primary"
    );

    let f = poll("reprotect", GEO_TIMEOUT, || async {
        let info = client.reprotect(GRS).await?;
        let f = info.failovers.last().context("a failover record")?.clone();
        ensure!(f.reprotect == "done", "reprotect {}", f.reprotect);
        anyhow::Ok(f)
    })
    .await?;
    let synced = wait_in_sync(client, GRS).await?;
    t.record(
        "reconnect -> reprotected and in sync",
        reconnected.elapsed(),
    );
    ensure!(
        synced.redundancy == Some(Redundancy::Grs)
            && synced
                .geo
                .as_ref()
                .is_some_and(|g| g.secondary_region == REGION),
        "after reprotect: {synced:?}"
    );
    // Unshipped writes: present in the new primary (if shipped after all) or kept
    // in the recovery container, never silently gone.
    let recovery = f.recovery_container.clone();
    for (key, data) in &during_cut {
        match client
            .get_bytes(GRS, CONTAINER, key, GetOptions::default())
            .await
        {
            Ok((_, got)) => ensure!(got == *data, "{key} changed"),
            Err(_) => {
                let container = recovery
                    .as_deref()
                    .with_context(|| format!("{key} is lost and there is no recovery container"))?;
                let (_, got) = client
                    .get_bytes(
                        GRS,
                        container,
                        &format!("{CONTAINER}/{key}"),
                        GetOptions::default(),
                    )
                    .await
                    .with_context(|| format!("{key} is neither in {PAIRED} nor in {container}"))?;
                ensure!(got == *data, "{key} differs in {container}");
            }
        }
    }
    say!(
        "reprotected: {} is GRS again with its secondary in {REGION}; {} unshipped writes recovered into {:?}",
        GRS,
        f.recovered_objects,
        f.recovery_container
    );
    Ok(())
}

/// A client that gives up on a request after 5 s (for writes that may hang).
async fn short_client(project: &ComposeProject) -> anyhow::Result<Client> {
    let profile = Profile::load(project.profile())?;
    Ok(Client::connect_with(
        profile.endpoints.clone(),
        ClientConfig {
            deadline: Duration::from_secs(5),
            tls: profile.tls()?,
            dialer: profile.dialer(),
            credential: profile.token.clone(),
            ..ClientConfig::default()
        },
    )
    .await?)
}
