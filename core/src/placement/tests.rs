use super::*;
use crate::topology::{Topology, DEFAULT_TOPOLOGY, ONE_REGION_TOPOLOGY};

/// Builds a topology from a compact description: per region, per zone, a list of
/// facility sizes. Regions are paired in twos; a one-node witness is added when
/// there are fewer than three regions with nodes and the zones do not suffice.
fn build(regions: &[&[&[usize]]]) -> String {
    let mut s = String::new();
    let mut id = 1;
    let names: Vec<String> = (0..regions.len()).map(|i| format!("r{i}")).collect();
    for (i, zones) in regions.iter().enumerate() {
        let pair = if i % 2 == 0 {
            names.get(i + 1)
        } else {
            names.get(i - 1)
        };
        s += &format!("[[region]]\nname = \"{}\"\n", names[i]);
        if let Some(p) = pair {
            s += &format!("pair = \"{p}\"\n");
        }
        for (z, facilities) in zones.iter().enumerate() {
            for (f, size) in facilities.iter().enumerate() {
                let fname = format!("r{i}-z{z}-f{f}");
                s += &format!(
                    "[[facility]]\nname = \"{fname}\"\nregion = \"{}\"\nzone = \"{z}\"\n",
                    names[i]
                );
                for _ in 0..*size {
                    s += &format!(
                        "[[node]]\nid = {id}\nfacility = \"{fname}\"\naddr = \"h{id}:7000\"\n"
                    );
                    id += 1;
                }
            }
        }
    }
    s += &format!("[[region]]\nname = \"wit\"\nwitness = true\n[[facility]]\nname = \"wit-f\"\nregion = \"wit\"\nzone = \"1\"\n[[node]]\nid = {id}\nfacility = \"wit-f\"\naddr = \"h{id}:7000\"\n");
    s
}

fn layouts() -> Vec<String> {
    let mut out = vec![
        DEFAULT_TOPOLOGY.to_string(),
        ONE_REGION_TOPOLOGY.to_string(),
    ];
    let shapes: Vec<Vec<&[&[usize]]>> = vec![
        vec![&[&[3]], &[&[3]]],
        vec![&[&[3], &[1], &[1]], &[&[4], &[2], &[2]]],
        vec![&[&[5, 3], &[2], &[3], &[1]], &[&[1], &[1], &[1]]],
        vec![&[&[2], &[2]], &[&[7]]],
        vec![
            &[&[6, 6], &[6], &[6], &[6], &[6]],
            &[&[3]],
            &[&[1], &[1], &[1]],
            &[&[9]],
        ],
        vec![&[&[1], &[1], &[1], &[1]], &[&[2, 2]]],
    ];
    for s in shapes {
        out.push(build(&s));
    }
    out
}

#[test]
fn no_planned_group_violates_its_class_on_any_layout() {
    for src in layouts() {
        let t = Topology::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let groups = plan_groups(&t);
        assert_eq!(groups[0].id, DIRECTORY_GROUP);
        for (i, g) in groups.iter().enumerate() {
            assert_eq!(g.id, i as GroupId, "ids are dense");
            check_group(&t, g).unwrap_or_else(|e| panic!("{e}\n{src}"));
        }
        // Every node is a directory member (voter or learner).
        for id in t.nodes().keys() {
            assert!(groups[0].has_member(*id));
        }
    }
}

#[test]
fn every_node_of_a_placeable_facility_serves_an_lrs_group() {
    let t = Topology::parse(&build(&[&[&[4], &[1], &[1]], &[&[3]]])).unwrap();
    let groups = plan_groups(&t);
    for n in t.nodes_in_region("r0").filter(|n| n.zone == "0") {
        assert!(
            groups.iter().any(|g| matches!(
                g.kind,
                GroupKind::Replica {
                    redundancy: Redundancy::Lrs,
                    ..
                }
            ) && g.voters.contains(&n.id)),
            "node {}",
            n.id
        );
    }
}

#[test]
fn default_topology_plan() {
    let t = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
    let groups = plan_groups(&t);
    // directory + (LRS + ZRS) x 2 storage regions
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[0].voters.len(), 5);
    assert_eq!(groups[0].learners.len(), 6);
    assert_eq!(groups[1].voters, vec![1, 2, 3]);
    assert_eq!(groups[2].voters, vec![1, 4, 5]);
    assert!(groups[0].voters.contains(&11), "the witness votes");
}

#[test]
fn one_region_directory_spreads_over_zones() {
    let t = Topology::parse(ONE_REGION_TOPOLOGY).unwrap();
    let dir = &plan_groups(&t)[0];
    assert_eq!(dir.voters.len(), 3);
    let zones: BTreeSet<_> = dir
        .voters
        .iter()
        .map(|id| t.node(*id).unwrap().zone.clone())
        .collect();
    assert_eq!(zones.len(), 3);
}

#[test]
fn placement_balances_and_explains_impossible_requests() {
    let t = Topology::parse(&build(&[&[&[6], &[1], &[1]], &[&[2], &[2]]])).unwrap();
    let groups = plan_groups(&t);
    let mut load = BTreeMap::new();
    let mut chosen = Vec::new();
    for _ in 0..4 {
        let g = place_tenant(&t, &groups, "r0", Redundancy::Lrs, &load).unwrap();
        *load.entry(g).or_default() += 1;
        chosen.push(g);
    }
    // Two LRS groups in the six-node facility share the load evenly.
    let distinct: BTreeSet<_> = chosen.iter().collect();
    assert_eq!(distinct.len(), 2);

    let e = place_tenant(&t, &groups, "r1", Redundancy::Lrs, &load).unwrap_err();
    assert!(e.to_string().contains("largest has 2"), "{e}");
    let e = place_tenant(&t, &groups, "r1", Redundancy::Zrs, &load).unwrap_err();
    assert!(e.to_string().contains("region has 2"), "{e}");
    let e = place_tenant(&t, &groups, "nowhere", Redundancy::Lrs, &load).unwrap_err();
    assert!(matches!(e, PlacementError::UnknownRegion { .. }), "{e}");
    let e = place_tenant(&t, &groups, "wit", Redundancy::Lrs, &load).unwrap_err();
    assert!(matches!(e, PlacementError::WitnessRegion(_)), "{e}");
}

#[test]
fn checker_rejects_bad_groups() {
    let t = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
    let lrs = |voters: Vec<NodeId>| GroupSpec {
        id: 9,
        kind: GroupKind::Replica {
            region: "eu-west".into(),
            redundancy: Redundancy::Lrs,
        },
        voters,
        learners: vec![],
    };
    let zrs = |voters: Vec<NodeId>| GroupSpec {
        id: 9,
        kind: GroupKind::Replica {
            region: "eu-west".into(),
            redundancy: Redundancy::Zrs,
        },
        voters,
        learners: vec![],
    };
    assert!(check_group(&t, &lrs(vec![1, 2, 3])).is_ok());
    assert!(
        check_group(&t, &lrs(vec![1, 2, 4])).is_err(),
        "spans facilities"
    );
    assert!(check_group(&t, &lrs(vec![1, 2, 2])).is_err(), "duplicate");
    assert!(
        check_group(&t, &lrs(vec![1, 2, 6])).is_err(),
        "other region"
    );
    assert!(check_group(&t, &zrs(vec![1, 2, 4])).is_err(), "two zones");
    assert!(check_group(&t, &zrs(vec![1, 4, 5])).is_ok());
    let dir = GroupSpec {
        id: 0,
        kind: GroupKind::Directory,
        voters: vec![1, 2, 3, 6, 11],
        learners: vec![],
    };
    assert!(check_group(&t, &dir).is_err(), "eu-west holds a majority");
}
