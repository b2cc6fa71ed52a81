//! The durability matrix (DESIGN.md section 5): each redundancy class that exists
//! against each fault, under load. Per cell: write and read availability while the
//! fault lasts, acknowledged writes lost, time until writes were acknowledged
//! again, and whether that is what the class promises.

use crate::catalog::{self, Layout, Promise};
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
    pub writes_ok: usize,
    pub writes_tried: usize,
    pub reads_ok: usize,
    pub reads_tried: usize,
    pub acknowledged_lost: usize,
    /// Seconds from the fault until a write was acknowledged again.
    pub recovery_s: Option<f64>,
    pub recovered_during_fault: bool,
    /// Violations of any checker (linearizability, convergence, ...).
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

/// The classes the matrix covers so far: the local ones. The geo classes need
/// failover as an operator step in their cells (see the open geo-simulation work).
pub const CLASSES: [Redundancy; 2] = [Redundancy::Lrs, Redundancy::Zrs];

/// Runs every cell; returns them in class, fault order.
pub fn cells(
    topology: &str,
    layout: &Layout,
    seed: u64,
    filter: &Filter,
) -> anyhow::Result<Vec<Cell>> {
    let mut out = Vec::new();
    for class in CLASSES {
        for (name, fault, promise) in catalog::matrix_faults(layout, class) {
            if !filter.admits(class, name) {
                continue;
            }
            let faults = vec![Timed {
                at: FAULT_AT,
                lasts: FAULT_LASTS,
                fault,
            }];
            let opts = catalog::options(
                &format!("{class} / {name}"),
                seed,
                topology,
                layout.workload(&[class]),
                faults,
            );
            let report = scenario::run(&opts)?;
            let w = report.windows.first();
            let lost = report
                .violations
                .iter()
                .filter(|v| v.starts_with("lost write"))
                .count();
            let (writes_ok, writes_tried) =
                w.map(|w| (w.writes_ok, w.writes_tried)).unwrap_or_default();
            let recovered = w.is_some_and(|w| w.recovered_during_fault);
            let behaved = match promise {
                Promise::Available => recovered,
                Promise::Unavailable => writes_ok == 0,
            };
            out.push(Cell {
                class: class.to_string(),
                fault: name.to_string(),
                promise,
                writes_ok,
                writes_tried,
                reads_ok: w.map(|w| w.reads_ok).unwrap_or_default(),
                reads_tried: w.map(|w| w.reads_tried).unwrap_or_default(),
                acknowledged_lost: lost,
                recovery_s: w.and_then(|w| w.recovery_ms).map(|ms| ms as f64 / 1000.0),
                recovered_during_fault: recovered,
                matches: behaved && report.violations.is_empty(),
                violations: report.violations,
                timeline: report
                    .timeline
                    .iter()
                    .map(|e| format!("{:>8.3}s  {}", e.at_ms as f64 / 1000.0, e.what))
                    .collect(),
            });
        }
    }
    Ok(out)
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
        "{:<6} {:<20} {:<12} {:>7} {:>7} {:>5} {:>10}  verdict",
        "class", "fault", "promise", "writes", "reads", "lost", "recovery"
    );
    for c in &cells {
        let recovery = match (c.recovery_s, c.recovered_during_fault) {
            (Some(s), true) => format!("{s:.1} s"),
            (Some(s), false) => format!("{s:.1} s*"),
            (None, _) => "-".into(),
        };
        let promise = match c.promise {
            Promise::Available => "available",
            Promise::Unavailable => "unavailable",
        };
        println!(
            "{:<6} {:<20} {:<12} {:>7} {:>7} {:>5} {:>10}  {}",
            c.class,
            c.fault,
            promise,
            pct(c.writes_ok, c.writes_tried),
            pct(c.reads_ok, c.reads_tried),
            c.acknowledged_lost,
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
    println!("writes/reads: share answered while the fault lasted; recovery: until a write was acknowledged again (* after the fault healed).");
    println!("replay one cell: stratus-sim matrix --seed {seed} --class CLASS --fault 'FAULT'");
    Ok(ok)
}
