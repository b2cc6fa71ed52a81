//! Cluster status and tenant placement, gathered from every node's local status.

use super::convert;
use crate::node::StratusNode;
use std::collections::BTreeMap;
use std::time::Duration;
use stratus_core::placement::{GroupId, GroupKind};
use stratus_proto::v1 as pb;

/// How long cluster status waits for each node.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Every node's local status (or why it did not answer), in node order.
pub async fn status_of_all(
    node: &StratusNode,
) -> Vec<(u64, Result<pb::LocalStatusResponse, String>)> {
    let calls = node.topology.nodes().keys().map(|id| {
        let client = node.peers.client(*id);
        let id = *id;
        async move {
            let Some(mut client) = client else {
                return (id, Err("no address".to_string()));
            };
            match tokio::time::timeout(
                STATUS_TIMEOUT,
                client.local_status(pb::LocalStatusRequest {}),
            )
            .await
            {
                Ok(Ok(r)) => (id, Ok(r.into_inner())),
                Ok(Err(s)) => (id, Err(s.message().to_string())),
                Err(_) => (
                    id,
                    Err(format!("no answer within {}s", STATUS_TIMEOUT.as_secs())),
                ),
            }
        }
    });
    futures::future::join_all(calls).await
}

/// The leader of a group from its live replicas' reports: a replica that says it
/// is the leader (highest term wins), else the hint with the highest term. A node
/// that is down reports nothing, so a dead leader is not named by itself.
fn leader_of(reports: &[(u64, pb::GroupReplicaStatus)]) -> Option<u64> {
    let term = |g: &pb::GroupReplicaStatus| g.replica.as_ref().map(|r| r.term).unwrap_or(0);
    let acting = reports
        .iter()
        .filter(|(_, g)| g.replica.as_ref().is_some_and(|r| r.role == "leader"))
        .max_by_key(|(_, g)| term(g));
    if let Some((id, _)) = acting {
        return Some(*id);
    }
    reports
        .iter()
        .filter(|(_, g)| g.leader_id != 0)
        .max_by_key(|(_, g)| term(g))
        .map(|(_, g)| g.leader_id)
}

/// Who leads `group`, asking the other nodes when this one is not a member.
pub async fn group_leader(node: &StratusNode, group: GroupId) -> Option<u64> {
    if let Some(l) = node.groups.get(&group).and_then(|g| g.leader()) {
        return Some(l);
    }
    let reports: Vec<(u64, pb::GroupReplicaStatus)> = status_of_all(node)
        .await
        .into_iter()
        .filter_map(|(id, s)| {
            s.ok()
                .and_then(|s| s.groups.into_iter().find(|g| g.group_id == group))
                .map(|g| (id, g))
        })
        .collect();
    leader_of(&reports)
}

/// The whole cluster: regions, nodes with health, groups with members and leaders.
pub async fn cluster_status(node: &StratusNode) -> pb::ClusterStatusResponse {
    let topology = &node.topology;
    let regions = topology
        .regions()
        .iter()
        .map(|r| pb::RegionInfo {
            name: r.name.clone(),
            pair: r.pair.clone().unwrap_or_default(),
            witness: r.witness,
        })
        .collect();
    let mut replicas: BTreeMap<u64, Vec<(u64, pb::GroupReplicaStatus)>> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (id, status) in status_of_all(node).await {
        let n = &topology.nodes()[&id];
        let (up, error) = match status {
            Ok(s) => {
                for g in s.groups {
                    replicas.entry(g.group_id).or_default().push((id, g));
                }
                (true, String::new())
            }
            Err(e) => (false, e),
        };
        nodes.push(pb::NodeInfo {
            id,
            name: n.name(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            facility: n.facility.clone(),
            addr: n.addr.clone(),
            up,
            error,
        });
    }
    let tenants = node.directory.read(|d| {
        d.tenants
            .values()
            .map(|t| (t.group, t.name.clone()))
            .collect::<Vec<_>>()
    });
    let groups = node
        .plan
        .iter()
        .map(|spec| {
            let reports = replicas.remove(&spec.id).unwrap_or_default();
            let (kind, region, redundancy) = match &spec.kind {
                GroupKind::Directory => ("directory", String::new(), pb::Redundancy::Unspecified),
                GroupKind::Replica { region, redundancy } => (
                    "replica",
                    region.clone(),
                    convert::redundancy_to_wire(*redundancy),
                ),
            };
            pb::GroupInfo {
                id: spec.id,
                kind: kind.to_string(),
                region,
                redundancy: redundancy as i32,
                members: spec.voters.clone(),
                leader_id: leader_of(&reports).unwrap_or(0),
                term: reports
                    .iter()
                    .filter_map(|(_, g)| g.replica.as_ref().map(|r| r.term))
                    .max()
                    .unwrap_or(0),
                replicas: reports
                    .iter()
                    .filter_map(|(_, g)| g.replica.clone())
                    .collect(),
                tenants: tenants
                    .iter()
                    .filter(|(g, _)| *g == spec.id)
                    .map(|(_, t)| t.clone())
                    .collect(),
            }
        })
        .collect();
    pb::ClusterStatusResponse {
        regions,
        nodes,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: u64, role: &str, term: u64, leader: u64) -> (u64, pb::GroupReplicaStatus) {
        let replica = pb::ReplicaInfo {
            node_id: node,
            role: role.into(),
            term,
            ..Default::default()
        };
        (
            node,
            pb::GroupReplicaStatus {
                group_id: 1,
                replica: Some(replica),
                leader_id: leader,
                voters: vec![],
            },
        )
    }

    #[test]
    fn an_acting_leader_beats_stale_hints() {
        // Node 3 was killed; node 1 still remembers it, node 2 now leads in term 3.
        let reports = [report(1, "follower", 2, 3), report(2, "leader", 3, 2)];
        assert_eq!(leader_of(&reports), Some(2));
        // Mid-election: only hints, the newest wins.
        let reports = [report(1, "candidate", 4, 0), report(2, "follower", 3, 2)];
        assert_eq!(leader_of(&reports), Some(2));
        assert_eq!(leader_of(&[]), None);
    }
}
