//! Every conversion between wire (`stratus_proto::v1`) and SDK domain types.
//! Nothing else in the crate reads or builds a proto message field by field except
//! the request builders of each operation.

use crate::model::{
    ClusterStatus, Consistency, ContainerInfo, FailoverInfo, GeoStatus, GroupStatus, Member,
    NodeStatus, ObjectInfo, Placement, RegionStatus, ReplicaStatus, TenantInfo,
};
use stratus_core::Redundancy;
use stratus_proto::v1 as pb;

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

fn non_zero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

/// Wire enum value → class; `None` for unspecified or unknown values.
pub(crate) fn redundancy_from_pb(value: i32) -> Option<Redundancy> {
    match pb::Redundancy::try_from(value).ok()? {
        pb::Redundancy::Lrs => Some(Redundancy::Lrs),
        pb::Redundancy::Zrs => Some(Redundancy::Zrs),
        pb::Redundancy::Grs => Some(Redundancy::Grs),
        pb::Redundancy::RaGrs => Some(Redundancy::RaGrs),
        pb::Redundancy::Gzrs => Some(Redundancy::Gzrs),
        pb::Redundancy::RaGzrs => Some(Redundancy::RaGzrs),
        pb::Redundancy::Unspecified => None,
    }
}

pub(crate) fn redundancy_to_pb(r: Redundancy) -> pb::Redundancy {
    match r {
        Redundancy::Lrs => pb::Redundancy::Lrs,
        Redundancy::Zrs => pb::Redundancy::Zrs,
        Redundancy::Grs => pb::Redundancy::Grs,
        Redundancy::RaGrs => pb::Redundancy::RaGrs,
        Redundancy::Gzrs => pb::Redundancy::Gzrs,
        Redundancy::RaGzrs => pb::Redundancy::RaGzrs,
    }
}

pub(crate) fn consistency_to_pb(c: Consistency) -> i32 {
    match c {
        Consistency::Strong => pb::Consistency::Strong as i32,
        Consistency::Eventual => pb::Consistency::Eventual as i32,
        Consistency::Secondary => pb::Consistency::Secondary as i32,
    }
}

impl From<pb::ObjectInfo> for ObjectInfo {
    fn from(o: pb::ObjectInfo) -> Self {
        ObjectInfo {
            tenant: o.tenant,
            container: o.container,
            key: o.key,
            size: o.size,
            crc32: o.crc32,
            etag: o.etag,
            version_id: o.version_id,
            content_type: o.content_type,
            metadata: o.metadata.into_iter().collect(),
            created_at_ms: o.created_at_ms,
            modified_at_ms: o.modified_at_ms,
            last_sync_ms: o.last_sync_ms,
        }
    }
}

impl From<pb::Tenant> for TenantInfo {
    fn from(t: pb::Tenant) -> Self {
        TenantInfo {
            redundancy: redundancy_from_pb(t.redundancy),
            name: t.name,
            region: t.region,
            status: t.status,
            group_id: t.group_id,
            created_at_ms: t.created_at_ms,
            epoch: t.epoch,
            geo: t.geo.map(Into::into),
            failovers: t.failovers.into_iter().map(Into::into).collect(),
            auto_failover_after_s: non_zero(t.auto_failover_after_s),
        }
    }
}

impl From<pb::GeoInfo> for GeoStatus {
    fn from(g: pb::GeoInfo) -> Self {
        GeoStatus {
            secondary_region: g.secondary_region,
            secondary_group_id: g.secondary_group_id,
            status: g.status,
            last_sync_ms: non_zero(g.last_sync_ms),
            lag_seconds: g.lag_seconds,
            lag_operations: g.lag_operations,
            seed: (g.seed_objects_total > 0 || g.seed_objects_done > 0)
                .then_some((g.seed_objects_done, g.seed_objects_total)),
            source: g.source,
        }
    }
}

impl From<pb::FailoverInfo> for FailoverInfo {
    fn from(f: pb::FailoverInfo) -> Self {
        FailoverInfo {
            epoch: f.epoch,
            planned: f.planned,
            at_ms: f.at_ms,
            from_region: f.from_region,
            from_group_id: f.from_group_id,
            to_region: f.to_region,
            to_group_id: f.to_group_id,
            last_sync_ms: f.last_sync_ms,
            lost_operations_max: f.lost_operations_max,
            reprotect: f.reprotect,
            recovery_container: non_empty(f.recovery_container),
            recovered_objects: f.recovered_objects,
        }
    }
}

impl From<pb::Container> for ContainerInfo {
    fn from(c: pb::Container) -> Self {
        ContainerInfo {
            tenant: c.tenant,
            name: c.name,
            created_at_ms: c.created_at_ms,
        }
    }
}

impl From<pb::Placement> for Placement {
    fn from(p: pb::Placement) -> Self {
        Placement {
            tenant: p.tenant,
            group_id: p.group_id,
            members: p
                .members
                .into_iter()
                .map(|m| Member {
                    node_id: m.node_id,
                    addr: m.addr,
                })
                .collect(),
            leader_id: non_zero(p.leader_id),
            leader_addr: non_empty(p.leader_addr),
            secondary_group_id: non_zero(p.secondary_group_id),
            secondary_members: p
                .secondary_members
                .into_iter()
                .map(|m| Member {
                    node_id: m.node_id,
                    addr: m.addr,
                })
                .collect(),
            read_access: p.read_access,
        }
    }
}

impl From<pb::ReplicaInfo> for ReplicaStatus {
    fn from(r: pb::ReplicaInfo) -> Self {
        ReplicaStatus {
            node_id: r.node_id,
            role: r.role,
            term: r.term,
            last_log_index: r.last_log_index,
            applied_index: r.applied_index,
            voter: r.voter,
        }
    }
}

impl From<pb::GroupInfo> for GroupStatus {
    fn from(g: pb::GroupInfo) -> Self {
        GroupStatus {
            redundancy: redundancy_from_pb(g.redundancy),
            id: g.id,
            kind: g.kind,
            region: g.region,
            members: g.members,
            leader: non_zero(g.leader_id),
            term: g.term,
            replicas: g.replicas.into_iter().map(Into::into).collect(),
            tenants: g.tenants,
        }
    }
}

impl From<pb::NodeInfo> for NodeStatus {
    fn from(n: pb::NodeInfo) -> Self {
        NodeStatus {
            id: n.id,
            name: n.name,
            region: n.region,
            zone: n.zone,
            facility: n.facility,
            addr: n.addr,
            up: n.up,
            error: non_empty(n.error),
        }
    }
}

impl From<pb::ClusterStatusResponse> for ClusterStatus {
    fn from(c: pb::ClusterStatusResponse) -> Self {
        ClusterStatus {
            regions: c
                .regions
                .into_iter()
                .map(|r| RegionStatus {
                    name: r.name,
                    pair: non_empty(r.pair),
                    witness: r.witness,
                })
                .collect(),
            nodes: c.nodes.into_iter().map(Into::into).collect(),
            groups: c.groups.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_zero_and_empty_mean_none() {
        let p: Placement = pb::Placement {
            tenant: "acme".into(),
            group_id: 4,
            members: vec![pb::Member {
                node_id: 1,
                addr: "a:1".into(),
            }],
            leader_id: 0,
            leader_addr: String::new(),
            ..Default::default()
        }
        .into();
        assert_eq!(p.leader_id, None);
        assert_eq!(p.leader_addr, None);
        assert_eq!(p.members[0].addr, "a:1");
    }

    #[test]
    fn redundancy_round_trips_and_unknown_is_none() {
        for r in Redundancy::ALL {
            assert_eq!(redundancy_from_pb(redundancy_to_pb(r) as i32), Some(r));
        }
        assert_eq!(redundancy_from_pb(0), None);
        assert_eq!(redundancy_from_pb(99), None);
    }
}
