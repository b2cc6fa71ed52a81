use super::*;

fn check_err(src: &str, expect_entry: &str, expect_rule: &str) {
    let e = Topology::parse(src).expect_err("topology should be rejected");
    let msg = e.to_string();
    assert!(
        msg.contains(expect_entry),
        "message {msg:?} should name {expect_entry:?}"
    );
    assert!(
        msg.contains(expect_rule),
        "message {msg:?} should state {expect_rule:?}"
    );
}

const THREE_REGIONS: &str = r#"
[[region]]
name = "a"
pair = "b"
[[region]]
name = "b"
pair = "a"
[[region]]
name = "w"
witness = true
[[facility]]
name = "fa"
region = "a"
zone = "1"
[[facility]]
name = "fb"
region = "b"
zone = "1"
[[facility]]
name = "fw"
region = "w"
zone = "1"
[[node]]
id = 1
facility = "fa"
addr = "127.0.0.1:1"
[[node]]
id = 2
facility = "fb"
addr = "127.0.0.1:2"
[[node]]
id = 3
facility = "fw"
addr = "127.0.0.1:3"
"#;

#[test]
fn shipped_topologies_are_valid() {
    let dev = Topology::parse(DEFAULT_TOPOLOGY).unwrap();
    assert_eq!(dev.nodes().len(), 11);
    assert_eq!(dev.regions().len(), 3);
    let one = Topology::parse(ONE_REGION_TOPOLOGY).unwrap();
    assert_eq!(one.nodes().len(), 5);
    assert!(dev.to_string().contains("region eu-west (pair eu-north)"));
}

#[test]
fn minimal_three_region_topology_parses() {
    let t = Topology::parse(THREE_REGIONS).unwrap();
    assert_eq!(t.node(2).unwrap().region, "b");
    assert_eq!(t.node(1).unwrap().name(), "a-z1-fa-n1");
}

#[test]
fn duplicate_node_id_names_the_node_and_line() {
    let src = THREE_REGIONS.replace("id = 3", "id = 2");
    let e = Topology::parse(&src).unwrap_err();
    match e {
        TopologyError::Rule { entry, line, rule } => {
            assert_eq!(entry, "node 2");
            assert_eq!(rule, "duplicate node id");
            let expected_line = src.lines().position(|l| l == "id = 2").unwrap() + 1;
            // The second "id = 2" is the duplicate.
            let second = src
                .lines()
                .enumerate()
                .filter(|(_, l)| *l == "id = 2")
                .nth(1)
                .unwrap()
                .0
                + 1;
            assert!(second > expected_line);
            assert_eq!(line, Some(second));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pair_pointing_nowhere() {
    check_err(
        &THREE_REGIONS.replace("pair = \"b\"", "pair = \"zz\""),
        "region \"a\"",
        "points to no declared region",
    );
}

#[test]
fn pairs_must_be_mutual_and_not_witness() {
    let src = THREE_REGIONS.replace("name = \"b\"\npair = \"a\"", "name = \"b\"\npair = \"w\"");
    check_err(
        &src,
        "region \"a\"",
        "pairs must be mutual, but \"b\" is paired with \"w\"",
    );
    let src = THREE_REGIONS
        .replace("pair = \"a\"", "pair = \"w\"")
        .replace("pair = \"b\"", "pair = \"w\"");
    check_err(&src, "region \"a\"", "is a witness region");
}

#[test]
fn node_in_no_facility() {
    check_err(
        &THREE_REGIONS.replace("facility = \"fw\"", "facility = \"nowhere\""),
        "node 3",
        "no declared facility",
    );
}

#[test]
fn unknown_field_is_a_syntax_error_with_line() {
    let src = THREE_REGIONS.replace(
        "addr = \"127.0.0.1:3\"",
        "addr = \"127.0.0.1:3\"\ncolour = \"blue\"",
    );
    let msg = Topology::parse(&src).unwrap_err().to_string();
    assert!(msg.contains("colour"), "{msg}");
    assert!(msg.contains("line"), "{msg}");
}

#[test]
fn duplicate_addr_and_bad_addr() {
    check_err(
        &THREE_REGIONS.replace("127.0.0.1:3", "127.0.0.1:2"),
        "node 3",
        "used by another node",
    );
    check_err(
        &THREE_REGIONS.replace("127.0.0.1:3", "nohost"),
        "node 3",
        "not host:port",
    );
}

#[test]
fn directory_needs_three_failure_domains() {
    // Drop the witness: two regions cannot hold a directory that survives a region loss.
    let src = THREE_REGIONS
        .replace(
            "[[node]]\nid = 3\nfacility = \"fw\"\naddr = \"127.0.0.1:3\"\n",
            "",
        )
        .replace(
            "[[facility]]\nname = \"fw\"\nregion = \"w\"\nzone = \"1\"\n",
            "",
        );
    check_err(&src, "as a whole", "at least 3 regions");
}

#[test]
fn facility_without_nodes_is_rejected() {
    let src =
        format!("{THREE_REGIONS}\n[[facility]]\nname = \"empty\"\nregion = \"a\"\nzone = \"2\"\n");
    check_err(&src, "facility \"empty\"", "holds no node");
}

#[test]
fn fingerprint_changes_with_layout() {
    let a = Topology::parse(THREE_REGIONS).unwrap();
    let b = Topology::parse(&THREE_REGIONS.replace(
        "zone = \"1\"\n[[facility]]\nname = \"fb\"",
        "zone = \"2\"\n[[facility]]\nname = \"fb\"",
    ))
    .unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
    // Addresses may change (containers, ports) without changing placement.
    let c = Topology::parse(&THREE_REGIONS.replace("127.0.0.1:1", "10.0.0.1:7000")).unwrap();
    assert_eq!(a.fingerprint(), c.fingerprint());
}
