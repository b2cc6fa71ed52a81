//! Named scenarios, random fault schedules for the fuzzer, and the cells of the
//! durability matrix with the outcome DESIGN.md section 5 expects of each class.

use crate::faults::{Fault, Target};
use crate::scenario::{RunOptions, Timed};
use crate::workload::WorkloadSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use stratus_client::Redundancy;
use stratus_core::placement::{place_tenant, plan_groups, GroupKind};
use stratus_core::topology::Topology;
use stratus_node::node::NodeSettings;

/// Names of the scenarios `stratus-sim run` knows.
pub const SCENARIOS: &[&str] = &[
    "node-crash",
    "leader-isolation",
    "facility-down",
    "zone-down",
    "region-down",
    "corrupt-replica",
    "torn-log-write",
    "fsync-error",
    "one-way-partition",
    "bridge",
    "flapping-links",
    "lossy-links",
    "slow-region",
    "region-failover",
    "planned-failover",
    "geo-link-cut",
    "ra-read-during-outage",
];

/// The run of a named scenario: the geo ones (`crate::geo::scenarios`) bring their
/// own tenants, actions and checks; the others run the LRS and ZRS workload.
pub fn run_options(name: &str, seed: u64, topology: &str, l: &Layout) -> Option<RunOptions> {
    if let Some(o) = crate::geo::scenarios::options(name, seed, topology, l) {
        return Some(o);
    }
    let faults = named(name, l)?;
    Some(options(
        name,
        seed,
        topology,
        l.workload(&[Redundancy::Lrs, Redundancy::Zrs]),
        faults,
    ))
}

/// The tenants of a workload and the groups they land on.
pub struct Layout {
    pub region: String,
    pub other_region: Option<String>,
    pub lrs: (String, u64),
    pub zrs: (String, u64),
    pub topology: Topology,
}

impl Layout {
    /// The workload's tenants in the topology's first storage region: one LRS and
    /// one ZRS, placed as the directory will place them.
    pub fn of(topology_text: &str) -> anyhow::Result<Layout> {
        let topology = Topology::parse(topology_text)?;
        let storage: Vec<String> = topology
            .regions()
            .iter()
            .filter(|r| !r.witness)
            .map(|r| r.name.clone())
            .collect();
        let region = storage
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the topology has no storage region"))?;
        let plan = plan_groups(&topology);
        let mut load = BTreeMap::new();
        let lrs = place_tenant(&topology, &plan, &region, Redundancy::Lrs, &load)?;
        *load.entry(lrs).or_default() += 1;
        let zrs = place_tenant(&topology, &plan, &region, Redundancy::Zrs, &load)?;
        Ok(Layout {
            other_region: storage.get(1).cloned(),
            lrs: ("lrsdata".into(), lrs),
            zrs: ("zrsdata".into(), zrs),
            region,
            topology,
        })
    }

    /// The primary group of a tenant of `class` (geo classes share the group of
    /// their local part).
    fn group(&self, class: Redundancy) -> u64 {
        match class.local() {
            Redundancy::Lrs => self.lrs.1,
            _ => self.zrs.1,
        }
    }

    /// Facility and zone of the LRS group (the ZRS group has one member there too).
    fn lrs_domain(&self) -> (String, String) {
        let plan = plan_groups(&self.topology);
        let first = plan
            .iter()
            .find(|g| g.id == self.lrs.1 && matches!(g.kind, GroupKind::Replica { .. }))
            .and_then(|g| g.voters.first().copied());
        let node = first
            .and_then(|id| self.topology.node(id))
            .expect("the LRS group has voters");
        (node.facility.clone(), node.zone.clone())
    }

    pub fn workload(&self, classes: &[Redundancy]) -> WorkloadSpec {
        let tenants = classes
            .iter()
            .map(|c| match c {
                Redundancy::Lrs => (self.lrs.0.clone(), self.region.clone(), Redundancy::Lrs),
                Redundancy::Zrs => (self.zrs.0.clone(), self.region.clone(), Redundancy::Zrs),
                geo => (
                    format!("{}data", geo.as_str().replace('-', "")),
                    self.region.clone(),
                    *geo,
                ),
            })
            .collect();
        WorkloadSpec {
            tenants,
            clients: 3,
            keys_per_tenant: 6,
            think_max: Duration::from_millis(40),
            object_bytes_max: 700 * 1024,
            secondary_readers: u32::from(classes.iter().any(|c| c.read_access())),
        }
    }
}

fn at(secs: u64, lasts: u64, fault: Fault) -> Timed {
    Timed {
        at: Duration::from_secs(secs),
        lasts: Duration::from_secs(lasts),
        fault,
    }
}

/// The faults of a named scenario.
pub fn named(name: &str, l: &Layout) -> Option<Vec<Timed>> {
    let (lrs, zrs) = (l.lrs.1, l.zrs.1);
    let (facility, zone) = l.lrs_domain();
    Some(match name {
        "node-crash" => vec![at(
            8,
            15,
            Fault::Crash {
                target: Target::LeaderOf(lrs),
                torn: false,
            },
        )],
        "leader-isolation" => vec![
            at(
                8,
                15,
                Fault::Isolate {
                    target: Target::LeaderOf(lrs),
                },
            ),
            at(
                30,
                12,
                Fault::Isolate {
                    target: Target::LeaderOf(zrs),
                },
            ),
        ],
        "facility-down" => vec![at(
            8,
            15,
            Fault::Crash {
                target: Target::Facility(facility),
                torn: false,
            },
        )],
        "zone-down" => vec![at(
            8,
            15,
            Fault::Crash {
                target: Target::Zone(l.region.clone(), zone),
                torn: false,
            },
        )],
        "region-down" => vec![at(
            8,
            15,
            Fault::Crash {
                target: Target::Region(l.region.clone()),
                torn: false,
            },
        )],
        "corrupt-replica" => vec![
            at(
                8,
                1,
                Fault::CorruptChunk {
                    target: Target::FollowerOf(lrs),
                },
            ),
            at(
                12,
                1,
                Fault::CorruptChunk {
                    target: Target::LeaderOf(zrs),
                },
            ),
            at(
                16,
                1,
                Fault::CorruptChunk {
                    target: Target::LeaderOf(lrs),
                },
            ),
        ],
        "torn-log-write" => vec![
            at(
                8,
                10,
                Fault::Crash {
                    target: Target::FollowerOf(lrs),
                    torn: true,
                },
            ),
            at(
                24,
                10,
                Fault::Crash {
                    target: Target::LeaderOf(zrs),
                    torn: true,
                },
            ),
        ],
        "fsync-error" => vec![at(
            8,
            12,
            Fault::FsyncError {
                target: Target::FollowerOf(lrs),
            },
        )],
        "one-way-partition" => vec![at(
            8,
            15,
            Fault::OneWay {
                target: Target::LeaderOf(lrs),
            },
        )],
        "bridge" => vec![at(8, 15, Fault::Bridge { group: lrs })],
        "flapping-links" => vec![at(
            8,
            15,
            Fault::Flap {
                target: Target::LeaderOf(lrs),
                period_ms: 900,
            },
        )],
        "lossy-links" => vec![at(
            8,
            15,
            Fault::Lossy {
                target: Target::LeaderOf(lrs),
                rate: 0.02,
            },
        )],
        "slow-region" => vec![at(
            8,
            15,
            Fault::Slow {
                target: Target::Region(l.other_region.clone().unwrap_or_else(|| l.region.clone())),
                latency_ms: 400,
            },
        )],
        _ => return None,
    })
}

/// A random fault schedule: several faults, one after another, drawn from the seed.
pub fn random(seed: u64, l: &Layout) -> Vec<Timed> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let groups = [l.lrs.1, l.zrs.1];
    let nodes: Vec<u64> = l.topology.nodes().keys().copied().collect();
    let (facility, zone) = l.lrs_domain();
    let mut t = 6;
    let mut out = Vec::new();
    for _ in 0..rng.gen_range(3..=4) {
        let g = groups[rng.gen_range(0..groups.len())];
        let target = match rng.gen_range(0..4) {
            0 => Target::LeaderOf(g),
            1 => Target::FollowerOf(g),
            _ => Target::Node(nodes[rng.gen_range(0..nodes.len())]),
        };
        let fault = match rng.gen_range(0..12) {
            0..=2 => Fault::Crash {
                target,
                torn: rng.gen_bool(0.3),
            },
            3..=4 => Fault::Isolate { target },
            5 => Fault::OneWay { target },
            6 => Fault::Bridge { group: g },
            7 => Fault::Flap {
                target,
                period_ms: rng.gen_range(400..1500),
            },
            8 => Fault::CorruptChunk { target },
            9 => Fault::FsyncError { target },
            10 => Fault::Crash {
                target: Target::Facility(facility.clone()),
                torn: false,
            },
            _ => Fault::Crash {
                target: Target::Zone(l.region.clone(), zone.clone()),
                torn: false,
            },
        };
        let lasts = rng.gen_range(4..=12);
        out.push(Timed {
            at: Duration::from_secs(t),
            lasts: Duration::from_secs(lasts),
            fault,
        });
        t += lasts + rng.gen_range(3..=8);
    }
    out
}

/// What a class promises for writes under a fault (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Promise {
    /// Writes succeed again while the fault lasts.
    Available,
    /// Writes fail until the fault heals; nothing acknowledged is lost.
    Unavailable,
    /// Writes come back while the fault lasts through an unplanned failover to the
    /// paired region; acknowledged writes lost only within the reported window.
    Failover,
    /// The fault means nothing for the class (a geo link cut for a local class).
    NotApplicable,
}

/// The faults of the matrix, in order.
pub const MATRIX_FAULTS: [&str; 6] = [
    "one node down",
    "facility down",
    "zone down",
    "primary region down",
    "geo link cut",
    "leader isolated",
];

/// One cell's fault and what the class promises under it.
#[derive(Debug, Clone)]
pub struct CellFault {
    pub name: &'static str,
    pub fault: Fault,
    pub promise: Promise,
    /// Reads from the secondary copy keep answering while the fault lasts.
    pub secondary_reads: bool,
}

/// The faults of the matrix, per class, with what the class promises under each.
pub fn matrix_faults(l: &Layout, class: Redundancy) -> Vec<CellFault> {
    let g = l.group(class);
    let (facility, zone) = l.lrs_domain();
    let [node, fac, zn, region, link, isolated] = MATRIX_FAULTS;
    let (geo, ra) = (class.is_geo(), class.read_access());
    // The LRS group lives in one facility of zone 1: losing either loses it.
    let local_loss = if class.local() == Redundancy::Lrs {
        Promise::Unavailable
    } else {
        Promise::Available
    };
    let cell = |name, fault, promise, secondary_reads| CellFault {
        name,
        fault,
        promise,
        secondary_reads,
    };
    let lrs_like = class.local() == Redundancy::Lrs;
    vec![
        cell(
            node,
            Fault::Crash {
                target: Target::LeaderOf(g),
                torn: false,
            },
            Promise::Available,
            false,
        ),
        cell(
            fac,
            Fault::Crash {
                target: Target::Facility(facility),
                torn: false,
            },
            local_loss,
            ra && lrs_like,
        ),
        cell(
            zn,
            Fault::Crash {
                target: Target::Zone(l.region.clone(), zone),
                torn: false,
            },
            local_loss,
            ra && lrs_like,
        ),
        cell(
            region,
            Fault::Crash {
                target: Target::Region(l.region.clone()),
                torn: false,
            },
            if geo {
                Promise::Failover
            } else {
                Promise::Unavailable
            },
            ra,
        ),
        cell(
            link,
            Fault::CutRegions {
                a: l.region.clone(),
                b: l.other_region.clone().unwrap_or_else(|| l.region.clone()),
            },
            if geo {
                Promise::Available
            } else {
                Promise::NotApplicable
            },
            false,
        ),
        cell(
            isolated,
            Fault::Isolate {
                target: Target::LeaderOf(g),
            },
            Promise::Available,
            false,
        ),
    ]
}

/// Options of one run with the defaults every command shares.
pub fn options(
    name: &str,
    seed: u64,
    topology: &str,
    workload: WorkloadSpec,
    faults: Vec<Timed>,
) -> RunOptions {
    RunOptions {
        name: name.to_string(),
        seed,
        topology: topology.to_string(),
        workload,
        faults,
        after: Duration::from_secs(12),
        settings: NodeSettings::default(),
        geo: crate::geo::GeoPlan::default(),
    }
}
