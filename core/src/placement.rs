//! Placement of replica groups on failure domains, and of tenants on groups.
//!
//! Groups are a deterministic function of the topology ([`plan_groups`]): every node
//! computes the same plan and knows which groups it serves without asking anyone.
//! Group 0 is the directory; replica groups follow, region by region.
//!
//! Rules (DESIGN.md, durability matrix):
//! - LRS: 3 distinct nodes of one facility.
//! - ZRS: 3 nodes in 3 different zones of one region.
//! - Directory: 3 or 5 voters such that no region (or, in a one-region cluster, no
//!   zone) holds a majority, so it survives the loss of any one of them.

use crate::topology::{NodeId, Topology};
use crate::Redundancy;
use std::collections::{BTreeMap, BTreeSet};

/// Replica group identifier. [`DIRECTORY_GROUP`] is the directory.
pub type GroupId = u64;

/// The directory's group id.
pub const DIRECTORY_GROUP: GroupId = 0;

/// Replicas per replica group.
pub const REPLICAS: usize = 3;

/// What a group is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKind {
    /// The directory: tenants, containers, placement.
    Directory,
    /// Holds the objects of the tenants placed on it.
    Replica {
        region: String,
        redundancy: Redundancy,
    },
}

/// One Raft group: its id, purpose, voters and learners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub id: GroupId,
    pub kind: GroupKind,
    /// Voting members, sorted.
    pub voters: Vec<NodeId>,
    /// Non-voting members that receive the log (every other node, for the directory).
    pub learners: Vec<NodeId>,
}

impl GroupSpec {
    /// Whether `node` holds a replica (voter or learner) of this group.
    pub fn has_member(&self, node: NodeId) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }
}

/// Why a tenant cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("region {region:?} is not in the topology (regions: {known})")]
    UnknownRegion { region: String, known: String },
    #[error("region {0:?} is a witness region and holds no tenant data")]
    WitnessRegion(String),
    #[error("{redundancy} cannot be placed in region {region:?}: {why}")]
    Impossible {
        region: String,
        redundancy: Redundancy,
        why: String,
    },
}

/// A group whose members break its failure-domain rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group {group} violates its placement rule: {why}")]
pub struct PlacementViolation {
    pub group: GroupId,
    pub why: String,
}

/// Computes every group of a topology.
pub fn plan_groups(topology: &Topology) -> Vec<GroupSpec> {
    let voters = directory_voters(topology);
    let learners = topology
        .nodes()
        .keys()
        .copied()
        .filter(|id| !voters.contains(id))
        .collect();
    let mut groups = vec![GroupSpec {
        id: DIRECTORY_GROUP,
        kind: GroupKind::Directory,
        voters,
        learners,
    }];
    for region in topology.regions().iter().filter(|r| !r.witness) {
        for members in lrs_sets(topology, &region.name) {
            push_replica(&mut groups, &region.name, Redundancy::Lrs, members);
        }
        for members in zrs_sets(topology, &region.name) {
            push_replica(&mut groups, &region.name, Redundancy::Zrs, members);
        }
    }
    groups
}

fn push_replica(
    groups: &mut Vec<GroupSpec>,
    region: &str,
    redundancy: Redundancy,
    mut voters: Vec<NodeId>,
) {
    voters.sort_unstable();
    let id = groups.len() as GroupId;
    groups.push(GroupSpec {
        id,
        kind: GroupKind::Replica {
            region: region.to_string(),
            redundancy,
        },
        voters,
        learners: Vec::new(),
    });
}

/// LRS sets: each facility's nodes (sorted by id) in runs of three; a remainder
/// overlaps the previous run so every node serves at least one group.
fn lrs_sets(topology: &Topology, region: &str) -> Vec<Vec<NodeId>> {
    let mut sets = Vec::new();
    for facility in topology.facilities().iter().filter(|f| f.region == region) {
        let nodes: Vec<NodeId> = topology
            .nodes_in_region(region)
            .filter(|n| n.facility == facility.name)
            .map(|n| n.id)
            .collect();
        if nodes.len() < REPLICAS {
            continue;
        }
        let mut start = 0;
        while start < nodes.len() {
            let begin = start.min(nodes.len() - REPLICAS);
            sets.push(nodes[begin..begin + REPLICAS].to_vec());
            start += REPLICAS;
        }
    }
    sets
}

/// ZRS sets: zones sorted by name; set `j` takes the `j`-th node of three consecutive
/// zones, for every rotation when there are more than three zones.
fn zrs_sets(topology: &Topology, region: &str) -> Vec<Vec<NodeId>> {
    let zones = zones_of(topology, region);
    if zones.len() < REPLICAS {
        return Vec::new();
    }
    let zone_nodes: Vec<&Vec<NodeId>> = zones.values().collect();
    let depth = zone_nodes.iter().map(|z| z.len()).min().unwrap_or(0);
    let rotations = if zone_nodes.len() == REPLICAS {
        1
    } else {
        zone_nodes.len()
    };
    let mut sets = Vec::new();
    // Set (j, r) takes the j-th node of zones r, r+1, r+2 (mod the zone count).
    for j in 0..depth {
        for r in 0..rotations {
            let set = (0..REPLICAS)
                .map(|k| zone_nodes[(r + k) % zone_nodes.len()].get(j).copied())
                .collect::<Option<Vec<NodeId>>>();
            sets.extend(set);
        }
    }
    sets
}

fn zones_of(topology: &Topology, region: &str) -> BTreeMap<String, Vec<NodeId>> {
    let mut zones: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for n in topology.nodes_in_region(region) {
        zones.entry(n.zone.clone()).or_default().push(n.id);
    }
    zones
}

/// The failure domain the directory must spread over: regions, or zones when all
/// nodes sit in one region.
fn directory_domain(topology: &Topology, node: NodeId) -> String {
    let regions: BTreeSet<&str> = topology
        .nodes()
        .values()
        .map(|n| n.region.as_str())
        .collect();
    let n = &topology.nodes()[&node];
    if regions.len() == 1 {
        format!("zone {}", n.zone)
    } else {
        format!("region {}", n.region)
    }
}

/// Directory voters: 5 if possible, else 3 (else every node, for tiny test
/// topologies), chosen round-robin over failure domains so none holds a majority.
pub fn directory_voters(topology: &Topology) -> Vec<NodeId> {
    let mut domains: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    // Region order follows the file so the first storage region leads the choice.
    for region in topology.regions() {
        let zones = zones_of(topology, &region.name);
        // Interleave zones inside a region so voters spread over zones as well.
        let depth = zones.values().map(Vec::len).max().unwrap_or(0);
        for j in 0..depth {
            for nodes in zones.values() {
                if let Some(&id) = nodes.get(j) {
                    domains
                        .entry(directory_domain(topology, id))
                        .or_default()
                        .push(id);
                }
            }
        }
    }
    for target in [5usize, 3] {
        let cap = (target - 1) / 2;
        let mut chosen = Vec::new();
        let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
        'fill: for j in 0..cap {
            for (domain, nodes) in &domains {
                if chosen.len() == target {
                    break 'fill;
                }
                if let Some(&id) = nodes.get(j) {
                    *taken.entry(domain.as_str()).or_default() += 1;
                    chosen.push(id);
                }
            }
        }
        if chosen.len() == target {
            chosen.sort_unstable();
            return chosen;
        }
    }
    topology.nodes().keys().copied().collect()
}

/// Chooses the replica group for a new tenant: the least-loaded group of the class in
/// the region (ties go to the lowest id). `load` counts tenants per group.
pub fn place_tenant(
    topology: &Topology,
    groups: &[GroupSpec],
    region: &str,
    redundancy: Redundancy,
    load: &BTreeMap<GroupId, usize>,
) -> Result<GroupId, PlacementError> {
    let Some(r) = topology.region(region) else {
        let known = topology
            .regions()
            .iter()
            .filter(|r| !r.witness)
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PlacementError::UnknownRegion {
            region: region.to_string(),
            known,
        });
    };
    if r.witness {
        return Err(PlacementError::WitnessRegion(region.to_string()));
    }
    let local = redundancy.local();
    let candidate = groups
        .iter()
        .filter(|g| matches!(&g.kind, GroupKind::Replica { region: gr, redundancy: gc } if gr == region && *gc == local))
        .min_by_key(|g| (load.get(&g.id).copied().unwrap_or(0), g.id));
    match candidate {
        Some(g) => Ok(g.id),
        None => Err(PlacementError::Impossible {
            region: region.to_string(),
            redundancy,
            why: impossible_reason(topology, region, redundancy),
        }),
    }
}

/// Chooses the secondary group of a geo-redundant tenant whose primary is in
/// `region`: the least-loaded LRS group of the region's pair. Returns the pair's
/// name and the group.
pub fn place_secondary(
    topology: &Topology,
    groups: &[GroupSpec],
    region: &str,
    load: &BTreeMap<GroupId, usize>,
) -> Result<(String, GroupId), PlacementError> {
    let pair = topology
        .region(region)
        .and_then(|r| r.pair.clone())
        .ok_or_else(|| PlacementError::Impossible {
            region: region.to_string(),
            redundancy: Redundancy::Grs,
            why: format!("region {region:?} names no paired region for the geo copy"),
        })?;
    let group = place_tenant(topology, groups, &pair, Redundancy::Lrs, load).map_err(|e| {
        PlacementError::Impossible {
            region: region.to_string(),
            redundancy: Redundancy::Grs,
            why: format!("the paired region {pair:?} cannot hold the geo copy: {e}"),
        }
    })?;
    Ok((pair, group))
}

fn impossible_reason(topology: &Topology, region: &str, redundancy: Redundancy) -> String {
    match redundancy.local() {
        Redundancy::Lrs => {
            let largest = topology
                .facilities()
                .iter()
                .filter(|f| f.region == region)
                .map(|f| {
                    topology
                        .nodes_in_region(region)
                        .filter(|n| n.facility == f.name)
                        .count()
                })
                .max()
                .unwrap_or(0);
            format!(
                "LRS needs a facility with at least {REPLICAS} nodes; the largest has {largest}"
            )
        }
        _ => {
            let zones = zones_of(topology, region).len();
            format!("ZRS needs nodes in at least {REPLICAS} zones; the region has {zones}")
        }
    }
}

/// Checks a group against its failure-domain rule.
pub fn check_group(topology: &Topology, group: &GroupSpec) -> Result<(), PlacementViolation> {
    let violation = |why: String| PlacementViolation {
        group: group.id,
        why,
    };
    let distinct: BTreeSet<NodeId> = group.voters.iter().copied().collect();
    if distinct.len() != group.voters.len() {
        return Err(violation("a node appears twice among the voters".into()));
    }
    let mut nodes = Vec::new();
    for id in &group.voters {
        nodes.push(
            topology
                .node(*id)
                .ok_or_else(|| violation(format!("voter {id} is not in the topology")))?,
        );
    }
    match &group.kind {
        GroupKind::Directory => {
            let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
            for n in &nodes {
                *per_domain
                    .entry(directory_domain(topology, n.id))
                    .or_default() += 1;
            }
            let majority = nodes.len() / 2 + 1;
            if let Some((domain, count)) = per_domain.iter().find(|(_, c)| **c >= majority) {
                if nodes.len() >= REPLICAS {
                    return Err(violation(format!(
                        "{domain} holds {count} of {} directory voters, a majority",
                        nodes.len()
                    )));
                }
            }
            Ok(())
        }
        GroupKind::Replica { region, redundancy } => {
            if nodes.len() != REPLICAS {
                return Err(violation(format!(
                    "has {} voters, not {REPLICAS}",
                    nodes.len()
                )));
            }
            if let Some(n) = nodes.iter().find(|n| &n.region != region) {
                return Err(violation(format!(
                    "node {} is in region {}, not {region}",
                    n.id, n.region
                )));
            }
            match redundancy.local() {
                Redundancy::Lrs => {
                    let facilities: BTreeSet<&str> =
                        nodes.iter().map(|n| n.facility.as_str()).collect();
                    if facilities.len() != 1 {
                        return Err(violation(format!(
                            "LRS replicas span facilities {facilities:?}"
                        )));
                    }
                }
                _ => {
                    let zones: BTreeSet<&str> = nodes.iter().map(|n| n.zone.as_str()).collect();
                    if zones.len() != REPLICAS {
                        return Err(violation(format!(
                            "ZRS replicas sit in {} zone(s), not {REPLICAS}",
                            zones.len()
                        )));
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
