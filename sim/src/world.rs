//! A turmoil world running the unmodified node code: one host per topology node,
//! named after the node (`region-zZONE-facility-nID`), over in-memory stores that
//! outlive the host so a crash loses exactly the unsynced writes.
//!
//! Everything that varies between runs comes from the seed: turmoil's scheduling
//! and network, each node's RNG (mixed with its incarnation, so a restarted node
//! never repeats ids), and the workload's choices. The epoch is fixed.

use crate::net::{SimClock, TurmoilTransport};
use crate::trace::Trace;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stratus_core::placement::{plan_groups, GroupSpec};
use stratus_core::topology::{NodeId, Topology};
use stratus_node::node::{NodeOptions, NodeSettings, StratusNode};
use stratus_node::rng::NodeRng;
use stratus_node::storage::mem_blob::MemBlobStore;
use stratus_node::storage::mem_engine::MemEngine;
use stratus_node::storage::{BlobRef, EngineRef};

/// The port every simulated node listens on.
pub const NODE_PORT: u16 = 7100;
/// Longest a simulation may run (simulated time); far beyond any scenario.
const SIMULATION_MAX: Duration = Duration::from_secs(3 * 3600);
/// Turmoil's step: how much simulated time passes per step.
pub const TICK: Duration = Duration::from_millis(2);
/// Message latency inside a region (max; turmoil draws below it).
const LATENCY_IN_REGION: Duration = Duration::from_millis(2);
/// Message latency between regions (max).
const LATENCY_ACROSS_REGIONS: Duration = Duration::from_millis(30);

/// One simulated node: where it runs and the stores its "disk" holds.
pub struct SimNode {
    pub id: NodeId,
    pub host: String,
    pub region: String,
    pub zone: String,
    pub facility: String,
    pub engine: MemEngine,
    pub blobs: MemBlobStore,
    /// Times the node's software was started.
    pub incarnation: Rc<Cell<u64>>,
}

impl SimNode {
    pub fn engine_ref(&self) -> EngineRef {
        Arc::new(self.engine.clone())
    }
    pub fn blob_ref(&self) -> BlobRef {
        Arc::new(self.blobs.clone())
    }
}

/// The simulated cluster.
pub struct World<'a> {
    pub sim: turmoil::Sim<'a>,
    pub topology: Arc<Topology>,
    pub plan: Vec<GroupSpec>,
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub trace: Trace,
    pub seed: u64,
    /// The running node of each host (replaced on restart), for the driver's
    /// questions (who leads a group).
    pub running: Rc<RefCell<BTreeMap<NodeId, Arc<StratusNode>>>>,
    /// Host names of the simulated clients (partitions cut nodes off from them too).
    pub client_hosts: Vec<String>,
    /// Links that faults cut, as `(from, to)`: both directions of a partition, or
    /// one of a one-way partition. Lets a crash restore exactly these.
    pub cuts: BTreeSet<(String, String)>,
}

/// The cut that `(a, b)` is under, as faults left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    None,
    Both,
    AToB,
    BToA,
}

/// The normal latency between two hosts: higher across regions.
pub fn latency_between(world: &World<'_>, a: &str, b: &str) -> Duration {
    let region = |h: &str| {
        world
            .nodes
            .values()
            .find(|n| n.host == h)
            .map(|n| n.region.clone())
    };
    match (region(a), region(b)) {
        (Some(x), Some(y)) if x != y => LATENCY_ACROSS_REGIONS,
        _ => LATENCY_IN_REGION,
    }
}

/// A topology whose node addresses are the simulation's host names.
pub fn simulated_topology(text: &str) -> anyhow::Result<Topology> {
    let parsed = Topology::parse(text)?;
    let mut doc: toml::Value = toml::from_str(text)?;
    if let Some(nodes) = doc.get_mut("node").and_then(|n| n.as_array_mut()) {
        for node in nodes {
            let id = node.get("id").and_then(|v| v.as_integer()).unwrap_or(0) as NodeId;
            if let (Some(n), Some(table)) = (parsed.node(id), node.as_table_mut()) {
                table.insert(
                    "addr".into(),
                    toml::Value::String(format!("{}:{NODE_PORT}", n.name())),
                );
            }
        }
    }
    Ok(Topology::parse(&toml::to_string(&doc)?)?)
}

/// The simulated cluster's root key: the same on every node, derived from the seed.
fn root_key(seed: u64) -> stratus_core::crypto::SecretKey {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(seed, 0x7007_u64.wrapping_add(i as u64), 0).to_be_bytes());
    }
    stratus_core::crypto::SecretKey::from_array(bytes)
}

/// Simulated fsync latency of a node's blob store: at least this, plus up to the spread.
const SYNC_LATENCY_MIN_US: u64 = 200;
const SYNC_LATENCY_SPREAD_US: u64 = 3_000;

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix64 over the inputs: well-spread, deterministic.
    let mut z =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'a> World<'a> {
    /// Builds the world and starts every node.
    pub fn new(topology: Topology, seed: u64, settings: NodeSettings, trace: Trace) -> World<'a> {
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .epoch(SystemTime::UNIX_EPOCH + Duration::from_millis(crate::net::EPOCH_MS))
            .simulation_duration(SIMULATION_MAX)
            .tick_duration(TICK)
            .tcp_capacity(4096)
            .min_message_latency(Duration::from_micros(200))
            .max_message_latency(LATENCY_IN_REGION)
            .build();
        let topology = Arc::new(topology);
        let plan = plan_groups(&topology);
        let mut world = World {
            sim,
            topology: topology.clone(),
            plan,
            nodes: BTreeMap::new(),
            trace,
            seed,
            running: Rc::default(),
            client_hosts: Vec::new(),
            cuts: BTreeSet::new(),
        };
        for n in topology.nodes().values() {
            let node = SimNode {
                id: n.id,
                host: n.name(),
                region: n.region.clone(),
                zone: n.zone.clone(),
                facility: n.facility.clone(),
                engine: MemEngine::new(),
                blobs: MemBlobStore::new(Arc::new(SimClock)),
                incarnation: Rc::new(Cell::new(0)),
            };
            // Each replica's disk syncs at its own pace, so a follower's copy of an
            // entry can be durable before the leader's (as on real machines).
            node.blobs.set_sync_latency(Duration::from_micros(
                SYNC_LATENCY_MIN_US + mix(seed, n.id, 0x5c) % SYNC_LATENCY_SPREAD_US,
            ));
            world.add_host(&node, settings.clone());
            world.nodes.insert(n.id, node);
        }
        let regions: Vec<String> = topology.regions().iter().map(|r| r.name.clone()).collect();
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                let (ha, hb) = (
                    world.hosts_in(|n| &n.region == a),
                    world.hosts_in(|n| &n.region == b),
                );
                for x in &ha {
                    for y in &hb {
                        world.sim.set_link_max_message_latency(
                            x.as_str(),
                            y.as_str(),
                            LATENCY_ACROSS_REGIONS,
                        );
                    }
                }
            }
        }
        world
    }

    fn add_host(&mut self, node: &SimNode, settings: NodeSettings) {
        let (id, topology, seed) = (node.id, self.topology.clone(), self.seed);
        let (engine, blobs, incarnation) = (
            node.engine.clone(),
            node.blobs.clone(),
            node.incarnation.clone(),
        );
        let running = self.running.clone();
        let addr = format!("{}:{NODE_PORT}", node.host);
        self.sim.host(node.host.as_str(), move || {
            let n = incarnation.get() + 1;
            incarnation.set(n);
            let options = NodeOptions {
                id,
                topology: topology.clone(),
                engine: Arc::new(engine.clone()),
                blobs: Arc::new(blobs.clone()),
                transport: Arc::new(TurmoilTransport),
                clock: Arc::new(SimClock),
                rng: NodeRng::from_seed(mix(seed, id, n)),
                root_key: root_key(seed),
                operator_secret: Some(crate::workload::SIM_OPERATOR_SECRET.to_string()),
                settings: settings.clone(),
            };
            let addr = addr.clone();
            let running = running.clone();
            async move {
                let incoming = options.transport.listen(&addr).await?;
                let node = StratusNode::start(options)
                    .await
                    .map_err(|e| e.to_string())?;
                running.borrow_mut().insert(id, node.clone());
                tokio::spawn(node.clone().maintain());
                stratus_node::server::serve(node, incoming, std::future::pending())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        });
    }

    /// Registers a simulated client host.
    pub fn client<F>(&mut self, name: &str, fut: F)
    where
        F: std::future::Future<Output = turmoil::Result> + 'static,
    {
        self.client_hosts.push(name.to_string());
        self.sim.client(name, fut);
    }

    /// Host names of the nodes matching `pick`.
    pub fn hosts_in(&self, pick: impl Fn(&SimNode) -> bool) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| pick(n))
            .map(|n| n.host.clone())
            .collect()
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Runs the simulation until `until` (simulated time since the start).
    pub fn run_until(&mut self, until: Duration) -> anyhow::Result<()> {
        while self.sim.elapsed() < until {
            self.sim
                .step()
                .map_err(|e| anyhow::anyhow!("a simulated host failed: {e}"))?;
        }
        Ok(())
    }

    /// Crashes a node: its software stops and its disk loses every unsynced write
    /// (with `torn`, the last unsynced blob write survives in part).
    ///
    /// The host is cut off while its software is dropped: turmoil drops a host's
    /// tasks in an order that depends on process-wide tokio task ids, and the FINs
    /// and RSTs their sockets send on drop would reach peers (and draw link
    /// latencies from the seeded RNG) in that order, so the same seed replayed
    /// differently within one process. A crashed machine sends nothing anyway.
    pub fn crash(&mut self, id: NodeId, torn: bool) {
        let Some(n) = self.nodes.get(&id) else { return };
        let host = n.host.clone();
        let others = self.others(std::slice::from_ref(&host));
        for o in &others {
            self.sim.partition(host.as_str(), o.as_str());
        }
        self.sim.crash(host.as_str());
        for o in &others {
            self.restore_link(&host, o);
        }
        let Some(n) = self.nodes.get(&id) else { return };
        n.engine.crash();
        if torn {
            n.blobs.crash_torn();
        } else {
            n.blobs.crash();
        }
    }

    fn cut_of(&self, a: &str, b: &str) -> Cut {
        let ab = self.cuts.contains(&(a.to_string(), b.to_string()));
        let ba = self.cuts.contains(&(b.to_string(), a.to_string()));
        match (ab, ba) {
            (true, true) => Cut::Both,
            (true, false) => Cut::AToB,
            (false, true) => Cut::BToA,
            (false, false) => Cut::None,
        }
    }

    /// Puts the link between `a` and `b` back as the faults left it.
    fn restore_link(&mut self, a: &str, b: &str) {
        self.sim.repair(a, b);
        match self.cut_of(a, b) {
            Cut::None => {}
            Cut::Both => self.sim.partition(a, b),
            Cut::AToB => self.sim.partition_oneway(a, b),
            Cut::BToA => self.sim.partition_oneway(b, a),
        }
    }

    /// Cuts both directions between `a` and `b` (a fault).
    pub fn cut(&mut self, a: &str, b: &str) {
        self.cuts.insert((a.to_string(), b.to_string()));
        self.cuts.insert((b.to_string(), a.to_string()));
        self.sim.partition(a, b);
    }

    /// Cuts only `from` → `to` (a fault).
    pub fn cut_oneway(&mut self, from: &str, to: &str) {
        self.cuts.insert((from.to_string(), to.to_string()));
        self.sim.partition_oneway(from, to);
    }

    /// Heals both directions between `a` and `b`.
    pub fn repair(&mut self, a: &str, b: &str) {
        self.cuts.remove(&(a.to_string(), b.to_string()));
        self.cuts.remove(&(b.to_string(), a.to_string()));
        self.sim.repair(a, b);
    }

    /// Starts a crashed node again on what its disk kept.
    pub fn restart(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get(&id) {
            self.sim.bounce(n.host.as_str());
        }
    }

    /// The node currently leading `group`, as the running replicas report it.
    pub fn leader(&mut self, group: u64) -> Option<NodeId> {
        let ids: Vec<NodeId> = self.running.borrow().keys().copied().collect();
        let mut best: Option<(u64, NodeId)> = None;
        for id in ids {
            if !self.is_up(id) {
                continue;
            }
            let running = self.running.borrow();
            let Some(g) = running.get(&id).and_then(|n| n.groups.get(&group)) else {
                continue;
            };
            let s = g.state();
            if s.role == "leader" && best.is_none_or(|(term, _)| s.term > term) {
                best = Some((s.term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Whether a node's software is running.
    pub fn is_up(&mut self, id: NodeId) -> bool {
        match self.nodes.get(&id) {
            Some(n) => {
                let host = n.host.clone();
                self.sim.is_host_running(host.as_str())
            }
            None => false,
        }
    }
}
