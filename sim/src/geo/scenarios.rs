//! The named geo scenarios: each a workload of geo tenants, faults, operator
//! actions and the outcomes it must show (issue 5, "Done when").

use super::{GeoAction, GeoCheck, GeoPlan, Scheduled};
use crate::catalog::{self, Layout};
use crate::faults::{Fault, Target};
use crate::scenario::{RunOptions, Timed};
use std::time::Duration;
use stratus_client::Redundancy;

/// Names of the geo scenarios.
pub const SCENARIOS: &[&str] = &[
    "region-failover",
    "planned-failover",
    "geo-link-cut",
    "ra-read-during-outage",
];

const S: fn(u64) -> Duration = Duration::from_secs;

fn tenant(l: &Layout, class: Redundancy) -> String {
    l.workload(&[class]).tenants[0].0.clone()
}

fn act(at: u64, action: GeoAction) -> Scheduled {
    Scheduled { at: S(at), action }
}

/// The run of a geo scenario, or `None` for another name.
pub fn options(name: &str, seed: u64, topology: &str, l: &Layout) -> Option<RunOptions> {
    let other = l.other_region.clone()?;
    let cut = |at: u64, lasts: u64| Timed {
        at: S(at),
        lasts: S(lasts),
        fault: Fault::CutRegions {
            a: l.region.clone(),
            b: other.clone(),
        },
    };
    let region_down = |at: u64, lasts: u64| Timed {
        at: S(at),
        lasts: S(lasts),
        fault: Fault::Crash {
            target: Target::Region(l.region.clone()),
            torn: false,
        },
    };
    let (classes, faults, plan, after): (Vec<Redundancy>, Vec<Timed>, GeoPlan, u64) = match name {
        // Steady load; the geo link is cut for the last seconds before the primary
        // region dies (so some acknowledged writes certainly never shipped); the
        // operator fails over; the old region returns and is probed, then
        // re-protected.
        "region-failover" => {
            let t = tenant(l, Redundancy::Grs);
            (
                vec![Redundancy::Grs],
                vec![cut(12, 4), region_down(14, 16)],
                GeoPlan {
                    actions: vec![
                        act(
                            16,
                            GeoAction::Failover {
                                tenant: t.clone(),
                                planned: false,
                            },
                        ),
                        act(
                            30,
                            GeoAction::FenceProbe {
                                tenant: t.clone(),
                                region: l.region.clone(),
                                lasts: S(10),
                            },
                        ),
                        act(41, GeoAction::Reprotect { tenant: t.clone() }),
                    ],
                    monitor: vec![t.clone()],
                    checks: vec![
                        GeoCheck::FailedOver {
                            tenant: t.clone(),
                            planned: false,
                        },
                        GeoCheck::WritesAfterFailover { tenant: t.clone() },
                        GeoCheck::Fenced { tenant: t.clone() },
                        GeoCheck::Reprotected { tenant: t },
                    ],
                    unshipped_from_fault: Some(0),
                    region_down_fault: Some(1),
                },
                12,
            )
        }
        "planned-failover" => {
            let t = tenant(l, Redundancy::Grs);
            (
                vec![Redundancy::Grs],
                vec![],
                GeoPlan {
                    actions: vec![act(
                        15,
                        GeoAction::Failover {
                            tenant: t.clone(),
                            planned: true,
                        },
                    )],
                    monitor: vec![t.clone()],
                    checks: vec![
                        GeoCheck::FailedOver {
                            tenant: t.clone(),
                            planned: true,
                        },
                        GeoCheck::WritesAfterFailover { tenant: t },
                    ],
                    ..GeoPlan::default()
                },
                30,
            )
        }
        "geo-link-cut" => {
            let classes = vec![Redundancy::Grs, Redundancy::Gzrs];
            let tenants: Vec<String> = classes.iter().map(|c| tenant(l, *c)).collect();
            let mut checks = Vec::new();
            for t in &tenants {
                checks.push(GeoCheck::NoWriteRefused {
                    tenant: t.clone(),
                    fault: 0,
                });
                checks.push(GeoCheck::LagGrowsAndReturns {
                    tenant: t.clone(),
                    fault: 0,
                    settle: S(10),
                });
            }
            (
                classes,
                vec![cut(20, 15)],
                GeoPlan {
                    monitor: tenants,
                    checks,
                    ..GeoPlan::default()
                },
                20,
            )
        }
        "ra-read-during-outage" => {
            let classes = vec![Redundancy::RaGrs, Redundancy::RaGzrs];
            let tenants: Vec<String> = classes.iter().map(|c| tenant(l, *c)).collect();
            (
                classes,
                vec![region_down(12, 15)],
                GeoPlan {
                    checks: tenants
                        .iter()
                        .map(|t| GeoCheck::SecondaryReadsDuring {
                            tenant: t.clone(),
                            fault: 0,
                        })
                        .collect(),
                    monitor: tenants,
                    ..GeoPlan::default()
                },
                15,
            )
        }
        _ => return None,
    };
    let mut workload = l.workload(&classes);
    // As many keys in all as the two-tenant local workload, so each key's history
    // stays short enough for the linearizability search.
    workload.keys_per_tenant = 12 / classes.len() as u32;
    let mut opts = catalog::options(name, seed, topology, workload, faults);
    opts.after = S(after);
    opts.geo = plan;
    Some(opts)
}
