//! `stratus tenant …`, `stratus container …` and `stratus cluster status`.

use super::output::{format_time_ms, print_table, Out};
use super::{ContainerCommand, TenantCommand};
use crate::cli::output::say;
use crate::{Client, ClusterStatus, GroupStatus, NodeStatus, Placement, TenantInfo};
use serde::Serialize;
use std::collections::BTreeSet;

fn class_name(r: Option<crate::Redundancy>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| r.to_string())
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub async fn tenant(client: &Client, command: TenantCommand, out: Out) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create(a) => {
            let t = client
                .create_tenant_with(&a.name, &a.region, a.redundancy, !a.no_purge_protection)
                .await?;
            if out.is_json() {
                return out.json(&t);
            }
            say!(
                "created tenant {} in {} ({}), replica group {}",
                t.name,
                t.region,
                class_name(t.redundancy),
                t.group_id
            );
        }
        TenantCommand::List => {
            let tenants = client.list_tenants().await?;
            if out.is_json() {
                return out.json(&tenants);
            }
            let rows: Vec<Vec<String>> = tenants
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.region.clone(),
                        class_name(t.redundancy),
                        t.status.clone(),
                        t.group_id.to_string(),
                        format_time_ms(t.created_at_ms),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "REGION", "CLASS", "STATUS", "GROUP", "CREATED"],
                &rows,
            );
        }
        TenantCommand::Show { name } => {
            let t = client.get_tenant(&name).await?;
            // Placement is extra detail: a tenant without a group yet still shows.
            let placement = client.resolve_tenant(&name).await.ok();
            if out.is_json() {
                return out.json(&TenantShow {
                    tenant: &t,
                    placement: placement.as_ref(),
                });
            }
            print_tenant(&t, placement.as_ref());
        }
        TenantCommand::Delete { name } => {
            client.delete_tenant(&name).await?;
            if out.is_json() {
                return out.json(&serde_json::json!({ "deleted": name }));
            }
            say!("deleted tenant {name}");
        }
        TenantCommand::Update {
            name,
            redundancy,
            auto_failover_after,
        } => {
            let t = client
                .update_tenant(
                    &name,
                    crate::TenantUpdate {
                        redundancy,
                        auto_failover_after: auto_failover_after.map(|a| a.0),
                    },
                )
                .await?;
            if out.is_json() {
                return out.json(&t);
            }
            say!("updated tenant {name}");
            print_tenant(&t, None);
        }
        TenantCommand::Reprotect { name } => {
            let t = client.reprotect(&name).await?;
            if out.is_json() {
                return out.json(&t);
            }
            if let Some(f) = t.failovers.last() {
                match &f.recovery_container {
                    Some(c) => say!(
                        "kept {} object(s) the old primary had written but never shipped in {name}/{c}",
                        f.recovered_objects
                    ),
                    None => say!("the old primary held no write it had not shipped"),
                }
            }
            say!("re-seeding {} as the secondary of {name}; `stratus tenant show {name}` shows progress", t.geo.as_ref().map_or("the old region", |g| g.secondary_region.as_str()));
        }
    }
    Ok(())
}

/// `stratus failover TENANT [--planned]`.
pub async fn failover(
    client: &Client,
    tenant: &str,
    planned: bool,
    out: Out,
) -> anyhow::Result<()> {
    if !out.is_json() {
        eprintln!(
            "failing {tenant} over ({}): waiting out the primary's write lease{}…",
            if planned { "planned" } else { "unplanned" },
            if planned {
                " and for shipping to drain"
            } else {
                ""
            }
        );
    }
    let (t, f) = client.failover(tenant, planned).await?;
    if out.is_json() {
        return out.json(&serde_json::json!({ "tenant": t, "failover": f }));
    }
    say!(
        "{tenant} failed over from {} (group {}) to {} (group {}), epoch {}",
        f.from_region,
        f.from_group_id,
        f.to_region,
        f.to_group_id,
        t.epoch
    );
    print_failover(&f);
    say!("class now {}", class_name(t.redundancy));
    if f.reprotect == "pending" {
        say!(
            "run `stratus tenant reprotect {tenant}` once {} is back to restore geo-redundancy",
            f.from_region
        );
    }
    Ok(())
}

fn print_failover(f: &crate::FailoverInfo) {
    say!(
        "  last sync time {}: every write acknowledged before it survived",
        format_time_ms(f.last_sync_ms)
    );
    match (f.planned, f.lost_operations_max) {
        (true, _) => say!("  planned: nothing was lost"),
        (false, Some(n)) => say!(
            "  loss window: at most {n} operation(s) the old primary applied after it were not shipped (kept for the reprotect)"
        ),
        (false, None) => say!(
            "  loss window: unknown count of operations after it (the old primary had not reported to this directory leader)"
        ),
    }
}

#[derive(Serialize)]
struct TenantShow<'a> {
    #[serde(flatten)]
    tenant: &'a TenantInfo,
    placement: Option<&'a Placement>,
}

fn print_tenant(t: &TenantInfo, placement: Option<&Placement>) {
    say!("name      {}", t.name);
    say!("region    {}", t.region);
    say!("class     {}", class_name(t.redundancy));
    say!("status    {}", t.status);
    say!("created   {}", format_time_ms(t.created_at_ms));
    say!("group     {}", t.group_id);
    if let Some(p) = placement {
        let members: Vec<String> = p
            .members
            .iter()
            .map(|m| format!("{} ({})", m.node_id, m.addr))
            .collect();
        say!("members   {}", members.join(", "));
        let leader = p
            .leader_id
            .map_or_else(|| "unknown".to_owned(), |l| l.to_string());
        say!("leader    {leader}");
    }
    say!("epoch     {}", t.epoch);
    if let Some(g) = &t.geo {
        say!(
            "secondary {} (group {})",
            g.secondary_region,
            g.secondary_group_id
        );
        say!("geo       {}", g.status);
        match g.last_sync_ms {
            Some(ms) => say!(
                "last sync {} (lag {:.1} s, {} operation(s)){}",
                format_time_ms(ms),
                g.lag_seconds,
                g.lag_operations,
                if g.source == "secondary" {
                    "; primary unreachable, as the secondary reports"
                } else {
                    ""
                }
            ),
            None => say!("last sync not known yet"),
        }
        if let Some((done, total)) = g.seed {
            say!("seeding   {done} of {total} object(s) copied");
        }
    }
    if let Some(s) = t.auto_failover_after_s {
        say!("automatic failover after {s} s without the primary");
    }
    for f in &t.failovers {
        say!(
            "failover  epoch {} -> {} at {} ({}), {} -> {}, reprotect {}",
            f.epoch,
            f.epoch + 1,
            format_time_ms(f.at_ms),
            if f.planned { "planned" } else { "unplanned" },
            f.from_region,
            f.to_region,
            f.reprotect
        );
        print_failover(f);
        if let Some(c) = &f.recovery_container {
            say!(
                "  recovered {} unshipped object(s) into container {c}",
                f.recovered_objects
            );
        }
    }
}

pub async fn container(client: &Client, command: ContainerCommand, out: Out) -> anyhow::Result<()> {
    match command {
        ContainerCommand::Create { path } => {
            let c = client
                .create_container(&path.tenant, &path.container)
                .await?;
            if out.is_json() {
                return out.json(&c);
            }
            say!("created container {path}");
        }
        ContainerCommand::List { tenant } => {
            let list = client.list_containers(&tenant).await?;
            if out.is_json() {
                return out.json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| vec![c.name.clone(), format_time_ms(c.created_at_ms)])
                .collect();
            print_table(&["NAME", "CREATED"], &rows);
        }
        ContainerCommand::Delete { path } => {
            client
                .delete_container(&path.tenant, &path.container)
                .await?;
            if out.is_json() {
                return out.json(&serde_json::json!({ "deleted": path.to_string() }));
            }
            say!("deleted container {path}");
        }
    }
    Ok(())
}

pub async fn cluster_status(client: &Client, out: Out) -> anyhow::Result<()> {
    let status = client.cluster_status().await?;
    if out.is_json() {
        return out.json(&status);
    }
    print_topology(&status);
    say!("");
    print_groups(&status.groups);
    Ok(())
}

fn node_line(n: &NodeStatus) -> String {
    let health = if n.up {
        "up".to_owned()
    } else {
        format!(
            "DOWN{}",
            n.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    };
    format!("node {:<3} {:<21} {health}", n.id, n.addr)
}

/// `region > zone > facility > node`, regions in topology order.
fn print_topology(status: &ClusterStatus) {
    let mut regions: Vec<(String, String)> = status
        .regions
        .iter()
        .map(|r| {
            let note = match (&r.pair, r.witness) {
                (_, true) => " (witness)".to_owned(),
                (Some(p), false) => format!(" (pair {p})"),
                (None, false) => String::new(),
            };
            (r.name.clone(), note)
        })
        .collect();
    for n in &status.nodes {
        if !regions.iter().any(|(name, _)| name == &n.region) {
            regions.push((n.region.clone(), String::new()));
        }
    }
    let up = status.nodes.iter().filter(|n| n.up).count();
    say!("nodes: {up}/{} up", status.nodes.len());
    for (region, note) in &regions {
        say!("region {region}{note}");
        let in_region: Vec<&NodeStatus> = status
            .nodes
            .iter()
            .filter(|n| &n.region == region)
            .collect();
        let zones: BTreeSet<&str> = in_region.iter().map(|n| n.zone.as_str()).collect();
        for zone in zones {
            say!("  zone {zone}");
            let facilities: BTreeSet<&str> = in_region
                .iter()
                .filter(|n| n.zone == zone)
                .map(|n| n.facility.as_str())
                .collect();
            for facility in facilities {
                say!("    facility {facility}");
                for n in in_region
                    .iter()
                    .filter(|n| n.zone == zone && n.facility == facility)
                {
                    say!("      {}", node_line(n));
                }
            }
        }
    }
}

fn print_groups(groups: &[GroupStatus]) {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.kind.clone(),
                if g.region.is_empty() {
                    "-".into()
                } else {
                    g.region.clone()
                },
                class_name(g.redundancy),
                join_ids(&g.members),
                g.leader
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
                g.term.to_string(),
                g.tenants.len().to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP", "KIND", "REGION", "CLASS", "MEMBERS", "LEADER", "TERM", "TENANTS",
        ],
        &rows,
    );
}
