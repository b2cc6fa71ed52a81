//! Domain types returned by the SDK. They mirror the wire messages but use Rust
//! types (`Option` for "none", [`Redundancy`] for classes, `BTreeMap` for stable
//! ordering) and serialize to the JSON the CLI prints.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use stratus_core::Redundancy;

/// Read consistency of a get, head or list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Linearizable: served by the group leader after it confirmed its leadership.
    #[default]
    Strong,
    /// Served by any replica of the group; may be stale.
    Eventual,
    /// Served by the tenant's secondary (paired-region) copy: RA-GRS and RA-GZRS
    /// only; eventually consistent, with the copy's last sync time.
    Secondary,
}

fn redundancy_str<S: Serializer>(r: &Option<Redundancy>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(r.as_str()),
        None => s.serialize_none(),
    }
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub tenant: String,
    pub container: String,
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the whole content.
    pub crc32: u32,
    pub etag: String,
    pub version_id: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: u64,
    pub modified_at_ms: u64,
    /// On answers from the secondary copy: its last sync time (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_ms: Option<u64>,
}

/// One page of an object listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    /// Pass to the next `list` call; `None` when the listing is complete.
    pub next_continuation: Option<String>,
}

/// A tenant (Azure: storage account).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantInfo {
    pub name: String,
    /// Home (primary) region.
    pub region: String,
    /// `None` when the server reports a class this SDK version does not know.
    #[serde(serialize_with = "redundancy_str")]
    pub redundancy: Option<Redundancy>,
    pub status: String,
    /// Replica group holding the tenant's objects (0 when not yet placed).
    pub group_id: u64,
    pub created_at_ms: u64,
    /// Grows with every failover.
    pub epoch: u64,
    /// The geo copy, for GRS, RA-GRS, GZRS and RA-GZRS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoStatus>,
    /// Every failover, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<FailoverInfo>,
    /// Automatic failover after the primary was unreachable this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_failover_after_s: Option<u64>,
}

/// A tenant's geo-replication as its primary (or, when that is unreachable, its
/// secondary) reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoStatus {
    pub secondary_region: String,
    pub secondary_group_id: u64,
    /// live, bootstrapping or unavailable.
    pub status: String,
    /// Every write acknowledged before this time is durable in the secondary.
    pub last_sync_ms: Option<u64>,
    pub lag_seconds: f64,
    pub lag_operations: u64,
    /// While bootstrapping: objects copied, of how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<(u64, u64)>,
    /// "primary" or "secondary": who answered.
    pub source: String,
}

/// One failover of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverInfo {
    pub epoch: u64,
    pub planned: bool,
    pub at_ms: u64,
    pub from_region: String,
    pub from_group_id: u64,
    pub to_region: String,
    pub to_group_id: u64,
    /// Every write acknowledged before this time survived.
    pub last_sync_ms: u64,
    /// Operations the old primary had applied beyond what the secondary had (an
    /// upper bound of acknowledged writes lost), when known.
    pub lost_operations_max: Option<u64>,
    /// pending, done or not-needed.
    pub reprotect: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_container: Option<String>,
    pub recovered_objects: u64,
}

/// A container of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub tenant: String,
    pub name: String,
    pub created_at_ms: u64,
}

/// One replica of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: u64,
    pub addr: String,
}

/// Where a tenant's replica group lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub tenant: String,
    pub group_id: u64,
    pub members: Vec<Member>,
    pub leader_id: Option<u64>,
    pub leader_addr: Option<String>,
    /// The geo copy's group and members (empty when the tenant has none).
    pub secondary_group_id: Option<u64>,
    pub secondary_members: Vec<Member>,
    /// Whether the secondary may be read.
    pub read_access: bool,
}

/// A region of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionStatus {
    pub name: String,
    /// Paired secondary region, if any.
    pub pair: Option<String>,
    /// A witness region holds directory voters only.
    pub witness: bool,
}

/// A node and whether it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub zone: String,
    pub facility: String,
    pub addr: String,
    pub up: bool,
    /// Why the node is considered down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The state of one replica of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    pub node_id: u64,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voter: bool,
}

/// A Raft group: the directory or a replica group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub id: u64,
    /// `directory` or `replica`.
    pub kind: String,
    pub region: String,
    #[serde(serialize_with = "redundancy_str")]
    pub redundancy: Option<Redundancy>,
    pub members: Vec<u64>,
    /// Leader node id, `None` when no leader is known.
    pub leader: Option<u64>,
    pub term: u64,
    pub replicas: Vec<ReplicaStatus>,
    pub tenants: Vec<String>,
}

/// The whole cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub regions: Vec<RegionStatus>,
    pub nodes: Vec<NodeStatus>,
    pub groups: Vec<GroupStatus>,
}

impl ClusterStatus {
    /// The first region that can hold tenant data, in topology order.
    pub fn first_storage_region(&self) -> Option<&str> {
        self.regions
            .iter()
            .find(|r| !r.witness)
            .map(|r| r.name.as_str())
    }
}
