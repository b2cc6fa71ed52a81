//! The topology file: regions > zones > facilities > nodes.
//!
//! ```toml
//! [[region]]
//! name = "westeu"
//! pair = "northeu"        # the paired (secondary) region
//!
//! [[region]]
//! name = "witness"
//! witness = true          # holds directory voters only, never tenant data
//!
//! [[facility]]
//! name = "weu-1a"
//! region = "westeu"
//! zone = "1"
//!
//! [[node]]
//! id = 1
//! facility = "weu-1a"
//! addr = "127.0.0.1:7101"
//! ```
//!
//! [`Topology::parse`] rejects impossible layouts with a [`TopologyError`] that names
//! the entry, its line and the broken rule. A parsed `Topology` is always valid.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::Spanned;

/// Node identifier, unique in a cluster, never 0 (0 means "none" on the wire).
pub type NodeId = u64;

/// The topology every `stratus dev` cluster uses unless `--topology` is given.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../topologies/dev.toml");
/// A small one-region example (three zones, LRS and ZRS both placeable).
pub const ONE_REGION_TOPOLOGY: &str = include_str!("../topologies/one-region.toml");

/// A region, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// The paired region that holds secondary copies (geo classes). `None` for witnesses
    /// and for a storage region that has no pair (it cannot host geo-redundant classes).
    pub pair: Option<String>,
    /// A witness region holds directory voters only, never tenant data.
    pub witness: bool,
}

/// A facility (datacenter), in one zone of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    pub name: String,
    pub region: String,
    pub zone: String,
}

/// A storage node and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    /// `host:port` the node listens on and peers dial.
    pub addr: String,
    pub region: String,
    pub zone: String,
    pub facility: String,
}

impl Node {
    /// A readable, unique host name: `region-zZONE-facility-nID`.
    pub fn name(&self) -> String {
        format!(
            "{}-z{}-{}-n{}",
            self.region, self.zone, self.facility, self.id
        )
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    regions: Vec<Region>,
    facilities: Vec<Facility>,
    nodes: BTreeMap<NodeId, Node>,
}

/// Why a topology file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The file is not valid TOML or has an unknown or mistyped field.
    #[error("topology file is malformed: {0}")]
    Syntax(String),
    /// An entry breaks a layout rule.
    #[error("topology {entry}{}: {rule}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Rule {
        /// The entry, e.g. `node 4` or `region "westeu"`.
        entry: String,
        /// 1-based line of the entry in the file, when known.
        line: Option<usize>,
        /// The broken rule.
        rule: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    region: Vec<RawRegion>,
    #[serde(default)]
    facility: Vec<RawFacility>,
    #[serde(default)]
    node: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: Spanned<String>,
    pair: Option<String>,
    #[serde(default)]
    witness: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFacility {
    name: Spanned<String>,
    region: String,
    zone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<NodeId>,
    facility: String,
    addr: String,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Topology {
    /// Parses and validates a topology file.
    pub fn parse(src: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology =
            toml::from_str(src).map_err(|e| TopologyError::Syntax(e.to_string()))?;
        let rule =
            |entry: String, span: std::ops::Range<usize>, rule: String| TopologyError::Rule {
                entry,
                line: Some(line_of(src, span.start)),
                rule,
            };

        let mut regions: Vec<Region> = Vec::new();
        for r in &raw.region {
            let name = r.name.get_ref();
            let entry = format!("region {name:?}");
            if !valid_label(name) {
                return Err(rule(
                    entry,
                    r.name.span(),
                    "region names are 1-32 lowercase letters, digits or hyphens".into(),
                ));
            }
            if regions.iter().any(|x| &x.name == name) {
                return Err(rule(entry, r.name.span(), "duplicate region name".into()));
            }
            if r.witness && r.pair.is_some() {
                return Err(rule(
                    entry,
                    r.name.span(),
                    "a witness region holds no data and cannot have a pair".into(),
                ));
            }
            regions.push(Region {
                name: name.clone(),
                pair: r.pair.clone(),
                witness: r.witness,
            });
        }
        for (r, raw_r) in regions.iter().zip(&raw.region) {
            let Some(pair) = &r.pair else { continue };
            let entry = format!("region {:?}", r.name);
            let span = raw_r.name.span();
            match regions.iter().find(|x| &x.name == pair) {
                None => {
                    return Err(rule(
                        entry,
                        span,
                        format!("pair {pair:?} points to no declared region"),
                    ))
                }
                Some(p) if p.name == r.name => {
                    return Err(rule(entry, span, "a region cannot be its own pair".into()))
                }
                Some(p) if p.witness => {
                    return Err(rule(
                        entry,
                        span,
                        format!("pair {pair:?} is a witness region and holds no data"),
                    ))
                }
                Some(p) if p.pair.as_deref() != Some(r.name.as_str()) => {
                    return Err(rule(
                        entry,
                        span,
                        format!(
                            "pairs must be mutual, but {pair:?} is paired with {:?}",
                            p.pair.as_deref().unwrap_or("nothing")
                        ),
                    ))
                }
                Some(_) => {}
            }
        }

        let mut facilities: Vec<Facility> = Vec::new();
        for f in &raw.facility {
            let name = f.name.get_ref();
            let entry = format!("facility {name:?}");
            if !valid_label(name) || !valid_label(&f.zone) {
                return Err(rule(
                    entry,
                    f.name.span(),
                    "facility and zone names are 1-32 lowercase letters, digits or hyphens".into(),
                ));
            }
            if facilities.iter().any(|x| &x.name == name) {
                return Err(rule(entry, f.name.span(), "duplicate facility name".into()));
            }
            if !regions.iter().any(|r| r.name == f.region) {
                return Err(rule(
                    entry,
                    f.name.span(),
                    format!("region {:?} is not declared", f.region),
                ));
            }
            facilities.push(Facility {
                name: name.clone(),
                region: f.region.clone(),
                zone: f.zone.clone(),
            });
        }

        let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
        let mut addrs = BTreeSet::new();
        for n in &raw.node {
            let id = *n.id.get_ref();
            let entry = format!("node {id}");
            if id == 0 {
                return Err(rule(
                    entry,
                    n.id.span(),
                    "node ids start at 1 (0 means \"no node\")".into(),
                ));
            }
            if nodes.contains_key(&id) {
                return Err(rule(entry, n.id.span(), "duplicate node id".into()));
            }
            let Some(f) = facilities.iter().find(|f| f.name == n.facility) else {
                return Err(rule(
                    entry,
                    n.id.span(),
                    format!(
                        "node is in no declared facility (facility {:?} is unknown)",
                        n.facility
                    ),
                ));
            };
            if !valid_addr(&n.addr) {
                return Err(rule(
                    entry,
                    n.id.span(),
                    format!("addr {:?} is not host:port", n.addr),
                ));
            }
            if !addrs.insert(n.addr.clone()) {
                return Err(rule(
                    entry,
                    n.id.span(),
                    format!("addr {:?} is used by another node", n.addr),
                ));
            }
            nodes.insert(
                id,
                Node {
                    id,
                    addr: n.addr.clone(),
                    region: f.region.clone(),
                    zone: f.zone.clone(),
                    facility: f.name.clone(),
                },
            );
        }

        let topology = Topology {
            regions,
            facilities,
            nodes,
        };
        topology.check_whole()?;
        Ok(topology)
    }

    fn check_whole(&self) -> Result<(), TopologyError> {
        let whole = |rule: String| TopologyError::Rule {
            entry: "as a whole".into(),
            line: None,
            rule,
        };
        if self.nodes.is_empty() {
            return Err(whole("declares no node".into()));
        }
        if !self.regions.iter().any(|r| !r.witness) {
            return Err(whole(
                "declares no storage region (every region is a witness)".into(),
            ));
        }
        for f in &self.facilities {
            if !self.nodes.values().any(|n| n.facility == f.name) {
                return Err(TopologyError::Rule {
                    entry: format!("facility {:?}", f.name),
                    line: None,
                    rule: "holds no node".into(),
                });
            }
        }
        let regions_with_nodes: BTreeSet<&str> =
            self.nodes.values().map(|n| n.region.as_str()).collect();
        let zones: BTreeSet<(&str, &str)> = self
            .nodes
            .values()
            .map(|n| (n.region.as_str(), n.zone.as_str()))
            .collect();
        if regions_with_nodes.len() < 3 && !(regions_with_nodes.len() == 1 && zones.len() >= 3) {
            return Err(whole(format!(
                "the directory needs voters in at least 3 regions (or 3 zones of a one-region cluster); nodes sit in {} region(s) and {} zone(s). Add a witness region with one node",
                regions_with_nodes.len(),
                zones.len()
            )));
        }
        Ok(())
    }

    /// Every region, in file order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region with this name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Every facility, in file order.
    pub fn facilities(&self) -> &[Facility] {
        &self.facilities
    }

    /// Every node, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, Node> {
        &self.nodes
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// Nodes of one region, by id.
    pub fn nodes_in_region<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.values().filter(move |n| n.region == region)
    }

    /// A stable fingerprint of everything placement depends on (FNV-1a over a
    /// canonical rendering). A node refuses a data dir made under another one.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |s: &str| {
            for b in s.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for r in &self.regions {
            feed(&format!("region {} {:?} {}", r.name, r.pair, r.witness));
        }
        for n in self.nodes.values() {
            feed(&format!(
                "node {} {} {} {}",
                n.id, n.region, n.zone, n.facility
            ));
        }
        h
    }
}

fn valid_addr(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

impl fmt::Display for Topology {
    /// Renders the tree `region > zone > facility > node`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.regions {
            match (&r.pair, r.witness) {
                (_, true) => writeln!(f, "region {} (witness)", r.name)?,
                (Some(p), _) => writeln!(f, "region {} (pair {p})", r.name)?,
                (None, false) => writeln!(f, "region {}", r.name)?,
            }
            let zones: BTreeSet<&str> = self
                .facilities
                .iter()
                .filter(|x| x.region == r.name)
                .map(|x| x.zone.as_str())
                .collect();
            for z in zones {
                writeln!(f, "  zone {z}")?;
                for fac in self
                    .facilities
                    .iter()
                    .filter(|x| x.region == r.name && x.zone == z)
                {
                    writeln!(f, "    facility {}", fac.name)?;
                    for n in self.nodes.values().filter(|n| n.facility == fac.name) {
                        writeln!(f, "      node {} {}", n.id, n.addr)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
