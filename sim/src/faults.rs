//! Faults at every failure-domain level, and how each heals.
//!
//! A [`Fault`] names its target abstractly (a tenant's group leader, a facility, a
//! zone, a region); [`inject`] resolves it against the running world, applies it,
//! and returns what [`heal`] must undo. Storage faults act on one replica's
//! in-memory disk.

use crate::world::World;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::time::Duration;
use stratus_core::topology::NodeId;
use stratus_node::objects::chunks;

/// Which nodes a fault hits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Target {
    Node(NodeId),
    /// The current leader of a group.
    LeaderOf(u64),
    /// A voter of a group that does not lead it.
    FollowerOf(u64),
    Facility(String),
    /// Region and zone.
    Zone(String, String),
    Region(String),
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Fault {
    /// Crash, losing unsynced writes (`torn`: the last blob write survives in part);
    /// restarted at heal.
    Crash { target: Target, torn: bool },
    /// Cut off from every other host, both ways.
    Isolate { target: Target },
    /// Messages from the target to everyone else are dropped (the other way works).
    OneWay { target: Target },
    /// A group split in two halves that only one member (the bridge) reaches.
    Bridge { group: u64 },
    /// The target's links go down and up every `period`.
    Flap { target: Target, period_ms: u64 },
    /// Messages to and from the target are lost at `rate`.
    Lossy { target: Target, rate: f64 },
    /// Messages to and from the target take up to `latency_ms`.
    Slow { target: Target, latency_ms: u64 },
    /// A byte flipped in one stored chunk of the target (a committed version's).
    CorruptChunk { target: Target },
    /// The target's next blob and engine syncs fail; crash and restart at heal.
    FsyncError { target: Target },
    /// Every link between the nodes of two regions cut, both ways (the geo link):
    /// both regions stay alive, and the witness and the clients reach both.
    CutRegions { a: String, b: String },
}

/// What healing a fault must undo.
#[derive(Debug, Clone)]
pub enum Undo {
    Restart(Vec<NodeId>),
    Repair(Vec<(String, String)>),
    Links {
        hosts: Vec<String>,
        others: Vec<String>,
    },
    Flapping {
        pairs: Vec<(String, String)>,
        period: Duration,
        down: bool,
    },
    Nothing,
}

impl World<'_> {
    /// The nodes `target` names right now.
    pub fn resolve(&mut self, target: &Target) -> Vec<NodeId> {
        let pick = |f: &dyn Fn(&crate::world::SimNode) -> bool, w: &World<'_>| {
            w.nodes
                .values()
                .filter(|n| f(n))
                .map(|n| n.id)
                .collect::<Vec<_>>()
        };
        match target {
            Target::Node(id) => vec![*id],
            Target::LeaderOf(g) => self.leader(*g).into_iter().collect(),
            Target::FollowerOf(g) => {
                let leader = self.leader(*g);
                let voters = self
                    .plan
                    .get(*g as usize)
                    .map(|s| s.voters.clone())
                    .unwrap_or_default();
                voters
                    .into_iter()
                    .find(|v| Some(*v) != leader)
                    .into_iter()
                    .collect()
            }
            Target::Facility(f) => pick(&|n| &n.facility == f, self),
            Target::Zone(r, z) => pick(&|n| &n.region == r && &n.zone == z, self),
            Target::Region(r) => pick(&|n| &n.region == r, self),
        }
    }

    fn host(&self, id: NodeId) -> String {
        self.nodes
            .get(&id)
            .map(|n| n.host.clone())
            .unwrap_or_default()
    }

    /// Every other host of the simulation (nodes and clients), by name.
    pub(crate) fn others(&self, except: &[String]) -> Vec<String> {
        let mut all: Vec<String> = self.nodes.values().map(|n| n.host.clone()).collect();
        all.extend(self.client_hosts.iter().cloned());
        all.into_iter().filter(|h| !except.contains(h)).collect()
    }

    /// Applies `fault`; returns a description for the timeline and what heals it.
    pub fn inject(&mut self, fault: &Fault, rng: &mut StdRng) -> (String, Undo) {
        match fault {
            Fault::Crash { target, torn } => {
                let ids = self.resolve(target);
                for id in &ids {
                    self.crash(*id, *torn);
                }
                (
                    format!(
                        "crash {}{} ({target:?})",
                        list(&ids),
                        if *torn { " with a torn last write" } else { "" }
                    ),
                    Undo::Restart(ids),
                )
            }
            Fault::Isolate { target } => {
                let ids = self.resolve(target);
                let hosts: Vec<String> = ids.iter().map(|i| self.host(*i)).collect();
                let mut pairs = Vec::new();
                for h in &hosts {
                    for o in self.others(&hosts) {
                        self.cut(h, &o);
                        pairs.push((h.clone(), o));
                    }
                }
                (
                    format!("isolate {} ({target:?})", list(&ids)),
                    Undo::Repair(pairs),
                )
            }
            Fault::OneWay { target } => {
                let ids = self.resolve(target);
                let hosts: Vec<String> = ids.iter().map(|i| self.host(*i)).collect();
                let mut pairs = Vec::new();
                for h in &hosts {
                    for o in self.others(&hosts) {
                        self.cut_oneway(h, &o);
                        pairs.push((h.clone(), o));
                    }
                }
                (
                    format!("one-way partition: {} cannot send ({target:?})", list(&ids)),
                    Undo::Repair(pairs),
                )
            }
            Fault::Bridge { group } => {
                let voters = self
                    .plan
                    .get(*group as usize)
                    .map(|s| s.voters.clone())
                    .unwrap_or_default();
                if voters.len() < 3 {
                    return (
                        format!("bridge: group {group} has too few voters"),
                        Undo::Nothing,
                    );
                }
                // voters[0] and voters[1] cannot talk; voters[2] reaches both.
                let (a, b) = (self.host(voters[0]), self.host(voters[1]));
                self.cut(&a, &b);
                (
                    format!(
                        "bridge: nodes {} and {} cut apart, node {} reaches both (group {group})",
                        voters[0], voters[1], voters[2]
                    ),
                    Undo::Repair(vec![(a, b)]),
                )
            }
            Fault::Flap { target, period_ms } => {
                let ids = self.resolve(target);
                let hosts: Vec<String> = ids.iter().map(|i| self.host(*i)).collect();
                let pairs: Vec<(String, String)> = hosts
                    .iter()
                    .flat_map(|h| self.others(&hosts).into_iter().map(move |o| (h.clone(), o)))
                    .collect();
                for (a, b) in &pairs {
                    self.cut(a, b);
                }
                (
                    format!(
                        "flapping links of {} every {period_ms} ms ({target:?})",
                        list(&ids)
                    ),
                    Undo::Flapping {
                        pairs,
                        period: Duration::from_millis(*period_ms),
                        down: true,
                    },
                )
            }
            Fault::Lossy { target, rate } => {
                let ids = self.resolve(target);
                let hosts: Vec<String> = ids.iter().map(|i| self.host(*i)).collect();
                let others = self.others(&hosts);
                for h in &hosts {
                    for o in &others {
                        self.sim.set_link_fail_rate(h.as_str(), o.as_str(), *rate);
                    }
                }
                (
                    format!(
                        "lose {:.0}% of messages of {} ({target:?})",
                        rate * 100.0,
                        list(&ids)
                    ),
                    Undo::Links { hosts, others },
                )
            }
            Fault::Slow { target, latency_ms } => {
                let ids = self.resolve(target);
                let hosts: Vec<String> = ids.iter().map(|i| self.host(*i)).collect();
                let others = self.others(&hosts);
                for h in &hosts {
                    for o in &others {
                        self.sim.set_link_max_message_latency(
                            h.as_str(),
                            o.as_str(),
                            Duration::from_millis(*latency_ms),
                        );
                    }
                }
                (
                    format!(
                        "slow links ({latency_ms} ms) of {} ({target:?})",
                        list(&ids)
                    ),
                    Undo::Links { hosts, others },
                )
            }
            Fault::CorruptChunk { target } => {
                let ids = self.resolve(target);
                let mut done = Vec::new();
                for id in &ids {
                    let Some(n) = self.nodes.get(id) else {
                        continue;
                    };
                    let names: Vec<String> = n
                        .blobs
                        .names()
                        .into_iter()
                        .filter(|b| b.contains("/v/"))
                        .collect();
                    if names.is_empty() {
                        continue;
                    }
                    let name = &names[rng.gen_range(0..names.len())];
                    let offset = chunks::CHUNK_HEADER_BYTES as u64 + rng.gen_range(0..64);
                    if n.blobs.flip_byte(name, offset) {
                        done.push(format!("node {id}: {name} byte {offset}"));
                    }
                }
                (
                    format!(
                        "corrupt a stored chunk ({})",
                        if done.is_empty() {
                            "no chunk stored yet".into()
                        } else {
                            done.join(", ")
                        }
                    ),
                    Undo::Nothing,
                )
            }
            Fault::CutRegions { a, b } => {
                let ha = self.hosts_in(|n| &n.region == a);
                let hb = self.hosts_in(|n| &n.region == b);
                let mut pairs = Vec::new();
                for x in &ha {
                    for y in &hb {
                        self.cut(x, y);
                        pairs.push((x.clone(), y.clone()));
                    }
                }
                (
                    format!(
                        "cut the link between {a} and {b} ({} node pairs)",
                        pairs.len()
                    ),
                    Undo::Repair(pairs),
                )
            }
            Fault::FsyncError { target } => {
                let ids = self.resolve(target);
                for id in &ids {
                    if let Some(n) = self.nodes.get(id) {
                        n.blobs.fail_next_syncs(u32::MAX);
                        n.engine.fail_next_syncs(u32::MAX);
                    }
                }
                (
                    format!("fsync fails on {} ({target:?})", list(&ids)),
                    Undo::Restart(ids),
                )
            }
        }
    }

    /// Undoes a fault.
    pub fn heal(&mut self, undo: &Undo) -> String {
        match undo {
            Undo::Restart(ids) => {
                for id in ids {
                    if let Some(n) = self.nodes.get(id) {
                        n.blobs.fail_next_syncs(0);
                        n.engine.fail_next_syncs(0);
                    }
                    if self.is_up(*id) {
                        self.crash(*id, false);
                    }
                    self.restart(*id);
                }
                format!("restart {}", list(ids))
            }
            Undo::Repair(pairs) | Undo::Flapping { pairs, .. } => {
                for (a, b) in pairs {
                    self.repair(a, b);
                }
                "repair links".to_string()
            }
            Undo::Links { hosts, others } => {
                for h in hosts {
                    for o in others {
                        self.sim.set_link_fail_rate(h.as_str(), o.as_str(), 0.0);
                        self.sim.set_link_max_message_latency(
                            h.as_str(),
                            o.as_str(),
                            crate::world::latency_between(self, h, o),
                        );
                    }
                }
                "restore links".to_string()
            }
            Undo::Nothing => "nothing to heal".to_string(),
        }
    }

    /// Flips flapping links (called by the driver every period while the fault lasts).
    pub fn flap(&mut self, undo: &mut Undo) {
        if let Undo::Flapping { pairs, down, .. } = undo {
            for (a, b) in pairs.iter() {
                if *down {
                    self.repair(a, b);
                } else {
                    self.cut(a, b);
                }
            }
            *down = !*down;
        }
    }
}

fn list(ids: &[NodeId]) -> String {
    if ids.is_empty() {
        return "no node (none matched)".into();
    }
    format!(
        "node{} {}",
        if ids.len() > 1 { "s" } else { "" },
        ids.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}
