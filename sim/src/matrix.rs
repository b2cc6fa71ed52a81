//! The durability matrix (DESIGN.md section 5): each redundancy class that exists
//! against each fault, under load. Per cell: write and read availability while the
//! fault lasts, acknowledged writes lost, time until writes were acknowledged
//! again, and whether that is what the class promises.

use crate::catalog::{self, Layout, Promise};
use crate::faults::Fault;
use crate::geo::{GeoAction, GeoCheck, GeoPlan, Scheduled};
use crate::scenario::{self, Timed};
use serde::Serialize;
use std::time::Duration;
use stratus_client::Redundancy;

/// When the fault starts after the workload, and how long it lasts.
const FAULT_AT: Duration = Duration::from_secs(8);
const FAULT_LASTS: Duration = Duration::from_secs(20);

/// One cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub class: String,
    pub fault: String,
    pub promise: Promise,
    /// Whether reads from the secondary copy were promised while the fault lasted.
    pub secondary_reads_promised: bool,
    pub writes_ok: usize,
    pub writes_tried: usize,
    pub reads_ok: usize,
    pub reads_tried: usize,
    pub secondary_reads_ok: usize,
    pub secondary_reads_tried: usize,
    pub acknowledged_lost: usize,
    /// After an unplanned failover: seconds of writes before the region went down
    /// that the reported last sync time does not cover, and the reported loss
    /// window in operations.
    pub loss_window_s: Option<f64>,
    pub loss_window_ops: Option<u64>,
    /// Acknowledged writes after the last sync time that no later read saw.
    pub unseen_after_sync: Option<usize>,
    /// Seconds from the fault until a write was acknowledged again.
    pub recovery_s: Option<f64>,
    pub recovered_during_fault: bool,
    /// Violations of any checker (linearizability, convergence, geo checks, ...).
    pub violations: Vec<String>,
    pub matches: bool,
    /// The run's timeline, printed for cells that do not match.
    #[serde(skip)]
    pub timeline: Vec<String>,
}

/// Which cells to run: `None` runs every class or fault.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub class: Option<Redundancy>,
    pub fault: Option<String>,
}

impl Filter {
    fn admits(&self, class: Redundancy, fault: &str) -> bool {
        self.class.is_none_or(|c| c == class) && self.fault.as_deref().is_none_or(|f| f == fault)
    }
}

/// The fault names of the matrix, for the command line.
pub const FAULTS: &[&str] = &catalog::MATRIX_FAULTS;

fn pct(ok: usize, tried: usize) -> String {
    if tried == 0 {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * ok as f64 / tried as f64)
    }
}

/// The classes of the matrix: every class.
pub const CLASSES: [Redundancy; 6] = Redundancy::ALL;

/// How long the lag may take to come back after a cut geo link heals: a 20 s
/// backlog under the same load (a fifth of the writes chunked, their chunks pushed
/// one after another across the 30 ms link) takes longer than 10 s to drain.
const LINK_CUT_SETTLE: Duration = Duration::from_secs(25);

/// When the operator fails a geo tenant over after its region went down.
const FAILOVER_AFTER: Duration = Duration::from_secs(2);

/// The geo plan of a cell: the lag monitor for geo classes, the operator's
/// failover where the promise relies on it, and the geo checks of the promise.
fn cell_plan(tenant: &str, class: Redundancy, cf: &catalog::CellFault) -> GeoPlan {
    if !class.is_geo() {
        return GeoPlan::default();
    }
    let mut plan = GeoPlan {
        monitor: vec![tenant.to_string()],
        region_down_fault: Some(0),
        ..GeoPlan::default()
    };
    if cf.promise == Promise::Failover {
        plan.actions.push(Scheduled {
            at: FAULT_AT + FAILOVER_AFTER,
            action: GeoAction::Failover {
                tenant: tenant.to_string(),
                planned: false,
            },
        });
        plan.checks.push(GeoCheck::FailedOver {
            tenant: tenant.to_string(),
            planned: false,
        });
        plan.checks.push(GeoCheck::WritesAfterFailover {
            tenant: tenant.to_string(),
        });
    }
    if cf.secondary_reads {
        plan.checks.push(GeoCheck::SecondaryReadsDuring {
            tenant: tenant.to_string(),
            fault: 0,
        });
    }
    if matches!(cf.fault, Fault::CutRegions { .. }) {
        plan.checks.push(GeoCheck::NoWriteRefused {
            tenant: tenant.to_string(),
            fault: 0,
        });
        plan.checks.push(GeoCheck::LagGrowsAndReturns {
            tenant: tenant.to_string(),
            fault: 0,
            settle: LINK_CUT_SETTLE,
        });
    }
    plan
}

/// Runs every cell; returns them in class, fault order.
pub fn cells(
    topology: &str,
    layout: &Layout,
    seed: u64,
    filter: &Filter,
) -> anyhow::Result<Vec<Cell>> {
    let mut out = Vec::new();
    for class in CLASSES {
        for cf in catalog::matrix_faults(layout, class) {
            if !filter.admits(class, cf.name) {
                continue;
            }
            out.push(cell(topology, layout, seed, class, cf)?);
        }
    }
    Ok(out)
}

/// Runs one cell (a cell that does not apply is not run).
fn cell(
    topology: &str,
    layout: &Layout,
    seed: u64,
    class: Redundancy,
    cf: catalog::CellFault,
) -> anyhow::Result<Cell> {
    let mut c = Cell {
        class: class.to_string(),
        fault: cf.name.to_string(),
        promise: cf.promise,
        secondary_reads_promised: cf.secondary_reads,
        writes_ok: 0,
        writes_tried: 0,
        reads_ok: 0,
        reads_tried: 0,
        secondary_reads_ok: 0,
        secondary_reads_tried: 0,
        acknowledged_lost: 0,
        loss_window_s: None,
        loss_window_ops: None,
        unseen_after_sync: None,
        recovery_s: None,
        recovered_during_fault: false,
        violations: Vec::new(),
        matches: true,
        timeline: Vec::new(),
    };
    if cf.promise == Promise::NotApplicable {
        return Ok(c);
    }
    let workload = layout.workload(&[class]);
    let tenant = workload.tenants[0].0.clone();
    let plan = cell_plan(&tenant, class, &cf);
    let faults = vec![Timed {
        at: FAULT_AT,
        lasts: FAULT_LASTS,
        fault: cf.fault.clone(),
    }];
    let mut opts = catalog::options(
        &format!("{class} / {}", cf.name),
        seed,
        topology,
        workload,
        faults,
    );
    opts.geo = plan;
    if matches!(cf.fault, Fault::CutRegions { .. }) {
        // Long enough after the heal for the lag to come back.
        opts.after = LINK_CUT_SETTLE + Duration::from_secs(5);
    }
    let report = scenario::run(&opts)?;
    let w = report.windows.first();
    c.acknowledged_lost = report
        .violations
        .iter()
        .filter(|v| v.starts_with("lost write"))
        .count();
    if let Some(w) = w {
        (c.writes_ok, c.writes_tried) = (w.writes_ok, w.writes_tried);
        (c.reads_ok, c.reads_tried) = (w.reads_ok, w.reads_tried);
        (c.secondary_reads_ok, c.secondary_reads_tried) =
            (w.secondary_reads_ok, w.secondary_reads_tried);
        c.recovery_s = w.recovery_ms.map(|ms| ms as f64 / 1000.0);
        c.recovered_during_fault = w.recovered_during_fault;
    }
    if let Some(g) = &report.geo {
        c.loss_window_s = g.figures.loss_window_s.first().map(|(_, s)| *s);
        if let Some((_, _, unseen, window)) = g.figures.at_risk.first() {
            c.unseen_after_sync = Some(*unseen);
            c.loss_window_ops = *window;
        }
    }
    let behaved = match cf.promise {
        Promise::Available | Promise::Failover => c.recovered_during_fault,
        Promise::Unavailable => c.writes_ok == 0,
        Promise::NotApplicable => true,
    };
    c.matches = behaved && report.violations.is_empty();
    c.violations = report.violations;
    c.timeline = report
        .timeline
        .iter()
        .map(|e| format!("{:>8.3}s  {}", e.at_ms as f64 / 1000.0, e.what))
        .collect();
    Ok(c)
}

/// Prints the matrix; returns whether every cell matches its promise.
pub fn print(
    topology: &str,
    layout: &Layout,
    seed: u64,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<bool> {
    let cells = cells(topology, layout, seed, filter)?;
    anyhow::ensure!(
        !cells.is_empty(),
        "no cell matches the filter: faults are {}",
        FAULTS.join(", ")
    );
    let ok = cells.iter().all(|c| c.matches);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"seed": seed, "cells": cells, "all_match": ok})
            )?
        );
        return Ok(ok);
    }
    println!(
        "Durability matrix (seed {seed}; fault at +{} s for {} s, under load)",
        FAULT_AT.as_secs(),
        FAULT_LASTS.as_secs()
    );
    println!(
        "{:<7} {:<19} {:<20} {:>6} {:>6} {:>6} {:>4} {:>17} {:>9}  verdict",
        "class",
        "fault",
        "promise",
        "writes",
        "reads",
        "2nd rd",
        "lost",
        "RPO (s / window)",
        "recovery"
    );
    for c in &cells {
        if c.promise == Promise::NotApplicable {
            println!(
                "{:<7} {:<19} {:<20} {:>6} {:>6} {:>6} {:>4} {:>17} {:>9}  n/a",
                c.class, c.fault, "n/a", "-", "-", "-", "-", "-", "-"
            );
            continue;
        }
        let recovery = match (c.recovery_s, c.recovered_during_fault) {
            (Some(s), true) => format!("{s:.1} s"),
            (Some(s), false) => format!("{s:.1} s*"),
            (None, _) => "-".into(),
        };
        let promise = match (c.promise, c.secondary_reads_promised) {
            (Promise::Available, false) => "available",
            (Promise::Available, true) => "available+2nd reads",
            (Promise::Unavailable, false) => "unavailable",
            (Promise::Unavailable, true) => "2nd reads only",
            (Promise::Failover, false) => "failover",
            (Promise::Failover, true) => "failover+2nd reads",
            (Promise::NotApplicable, _) => "n/a",
        };
        let rpo = match (c.loss_window_s, c.loss_window_ops) {
            (Some(s), Some(o)) => format!("{s:.1} / {o} ops"),
            (Some(s), None) => format!("{s:.1} / ?"),
            _ => "-".into(),
        };
        println!(
            "{:<7} {:<19} {:<20} {:>6} {:>6} {:>6} {:>4} {:>17} {:>9}  {}",
            c.class,
            c.fault,
            promise,
            pct(c.writes_ok, c.writes_tried),
            pct(c.reads_ok, c.reads_tried),
            pct(c.secondary_reads_ok, c.secondary_reads_tried),
            c.acknowledged_lost,
            rpo,
            recovery,
            if c.matches {
                "matches"
            } else {
                "DOES NOT MATCH"
            }
        );
        for v in &c.violations {
            println!("       violation: {v}");
        }
        if !c.matches {
            for line in &c.timeline {
                println!("       {line}");
            }
            println!(
                "       replay: stratus-sim matrix --seed {seed} --class {} --fault '{}'",
                c.class.to_lowercase(),
                c.fault
            );
        }
    }
    println!("writes/reads/2nd rd (reads from the secondary): share answered while the fault lasted; lost: acknowledged writes lost beyond any reported loss window;");
    println!("RPO: after an unplanned failover, seconds of writes before the region loss not covered by the last sync time, and the reported window; recovery: until a write was acknowledged again (* after the fault healed).");
    println!("replay one cell: stratus-sim matrix --seed {seed} --class CLASS --fault 'FAULT'");
    Ok(ok)
}
