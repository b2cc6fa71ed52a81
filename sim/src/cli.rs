//! The `stratus-sim` command line: `run` one named scenario, `fuzz` random fault
//! schedules over a range of seeds, print the durability `matrix`. Every failure
//! prints its seed and the command that replays it.

use crate::catalog::{self, Layout};
use crate::scenario::{self, RunReport, Timed};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use stratus_client::Redundancy;

/// The default topology: the one `stratus dev` runs.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../core/topologies/dev.toml");

#[derive(Parser)]
#[command(
    name = "stratus-sim",
    version,
    about = "Deterministic simulation of Stratus: the real node code under injected faults"
)]
pub struct Cli {
    /// Topology file (default: the embedded topology of `stratus dev`).
    #[arg(long, global = true, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one named scenario and print its timeline.
    Run {
        /// One of the named scenarios (see `stratus-sim run --help`).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(catalog::SCENARIOS))]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Random fault schedules over a range of seeds.
    Fuzz {
        /// Seeds to run, `A..B` (B excluded) or one number.
        #[arg(long, default_value = "1..11", value_parser = parse_seeds)]
        seeds: (u64, u64),
    },
    /// Every class against every fault: the durability matrix of DESIGN.md §5.
    Matrix {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only this class (lrs, zrs, grs, ra-grs, gzrs, ra-gzrs).
        #[arg(long, value_parser = parse_class)]
        class: Option<Redundancy>,
        /// Only this fault.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::matrix::FAULTS))]
        fault: Option<String>,
    },
}

fn parse_class(s: &str) -> Result<Redundancy, String> {
    crate::matrix::CLASSES
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            let names: Vec<&str> = crate::matrix::CLASSES.iter().map(|r| r.as_str()).collect();
            format!(
                "{s:?} is not a redundancy class of the matrix: use one of {}",
                names.join(", ")
            )
        })
}

fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?} is not a seed range: write A..B (B excluded) or one seed");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a >= b {
                return Err(format!("empty seed range {s}: the end is excluded"));
            }
            Ok((a, b))
        }
        None => s.parse().map(|a: u64| (a, a + 1)).map_err(|_| bad()),
    }
}

fn replay(report: &RunReport, fuzz: bool) -> String {
    if fuzz {
        format!("stratus-sim fuzz --seeds {}", report.seed)
    } else {
        format!(
            "stratus-sim run --scenario {} --seed {}",
            report.scenario, report.seed
        )
    }
}

fn print_run(report: &RunReport, fuzz: bool) {
    println!("scenario {} seed {}", report.scenario, report.seed);
    for e in &report.timeline {
        println!("  {:>8.3}s  {}", e.at_ms as f64 / 1000.0, e.what);
    }
    for w in &report.windows {
        let recovery = match (w.recovery_ms, w.recovered_during_fault) {
            (Some(ms), true) => format!("writes back after {:.1} s", ms as f64 / 1000.0),
            (Some(ms), false) => format!(
                "writes back {:.1} s after the fault began (after it healed)",
                ms as f64 / 1000.0
            ),
            (None, _) => "no write acknowledged afterwards".into(),
        };
        let secondary = if w.secondary_reads_tried > 0 {
            format!(
                ", from the secondary {}/{}",
                w.secondary_reads_ok, w.secondary_reads_tried
            )
        } else {
            String::new()
        };
        println!(
            "  during \"{}\": {}: writes {}/{}, reads {}/{}{secondary}; {recovery}",
            w.fault, w.tenant, w.writes_ok, w.writes_tried, w.reads_ok, w.reads_tried
        );
    }
    if let Some(g) = &report.geo {
        print_geo(g);
    }
    println!(
        "  {} operations ({} checked), {:.0} simulated s in {:.1} s ({:.1}x), trace {:016x}",
        report.operations,
        report.checked,
        report.sim_seconds,
        report.wall_seconds,
        report.sim_seconds / report.wall_seconds.max(1e-9),
        report.trace_hash
    );
    for i in &report.inconclusive {
        println!("  undecided: {i}");
    }
    if report.passed() {
        println!("  PASS");
    } else {
        for v in &report.violations {
            println!("  VIOLATION {v}");
        }
        println!("  FAIL: replay with `{}`", replay(report, fuzz));
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.3} s"))
}

fn ops(v: Option<u64>) -> String {
    v.map_or("-".into(), |o| o.to_string())
}

/// The geo figures of a run (simulated time).
fn print_geo(g: &crate::geo::drive::GeoReport) {
    let f = &g.figures;
    println!(
        "  geo lag (steady, {} samples of `tenant show`): p50 {} / {} ops, p99 {} / {} ops",
        f.steady_samples,
        secs(f.lag_p50_s),
        ops(f.lag_p50_ops),
        secs(f.lag_p99_s),
        ops(f.lag_p99_ops)
    );
    if let Some((s, o)) = f.lag_max_during_faults {
        println!("  geo lag at most {s:.3} s / {o} ops while faults lasted");
    }
    for (tenant, s) in &f.failover_s {
        println!("  failover time of {tenant}: {s:.3} s from region down to the first write accepted in the new region");
    }
    for (tenant, s) in &f.failover_operator_write_s {
        println!("  failover time of {tenant} for a client with the new placement: {s:.3} s from region down to the operator's first write accepted");
    }
    for (tenant, s) in &f.loss_window_s {
        println!("  loss window of {tenant}: the last sync time was {s:.3} s before the region went down");
    }
    for (tenant, s) in &f.failover_call_s {
        println!("  failover call for {tenant}: {s:.3} s from asking to the answer");
    }
    for (tenant, at_risk, unseen, window) in &f.at_risk {
        println!(
            "  {tenant}: {at_risk} writes acknowledged after the last sync time, {unseen} of them not seen again; reported loss window {}",
            ops(*window)
        );
    }
    let recovered = g.record.recovered.len();
    if recovered > 0 {
        println!("  {recovered} object(s) read back from recovery containers");
    }
    for fence in &g.record.fences {
        println!(
            "  fence probe of {} in {}: {} writes sent, {} acknowledged, refused as {:?}; {} strong reads sent, {} answered",
            fence.tenant,
            fence.region,
            fence.writes_tried,
            fence.acknowledged.len(),
            fence.refusals,
            fence.reads_tried,
            fence.reads_answered
        );
    }
}

/// Runs the command line; returns whether everything passed.
pub fn run(cli: Cli) -> anyhow::Result<bool> {
    let topology = match &cli.topology {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read topology {}: {e}", p.display()))?,
        None => DEFAULT_TOPOLOGY.to_string(),
    };
    let layout = Layout::of(&topology)?;
    match cli.command {
        Command::Run { scenario, seed } => {
            let opts = catalog::run_options(&scenario, seed, &topology, &layout)
                .ok_or_else(|| anyhow::anyhow!("unknown scenario {scenario}"))?;
            let report = scenario::run(&opts)?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"report": report, "replay": replay(&report, false)})
                    )?
                ),
                Output::Text => print_run(&report, false),
            }
            Ok(report.passed())
        }
        Command::Fuzz { seeds: (a, b) } => fuzz(&topology, &layout, a, b, cli.output),
        Command::Matrix { seed, class, fault } => crate::matrix::print(
            &topology,
            &layout,
            seed,
            &crate::matrix::Filter { class, fault },
            cli.output == Output::Json,
        ),
    }
}

fn fuzz(topology: &str, layout: &Layout, a: u64, b: u64, output: Output) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (mut runs, mut ops, mut checked, mut failed, mut sim) =
        (0u64, 0usize, 0usize, Vec::new(), 0.0);
    for seed in a..b {
        let faults: Vec<Timed> = catalog::random(seed, layout);
        let report = scenario::run(&catalog::options(
            "fuzz",
            seed,
            topology,
            layout.workload(&[Redundancy::Lrs, Redundancy::Zrs]),
            faults,
        ))?;
        runs += 1;
        ops += report.operations;
        checked += report.checked;
        sim += report.sim_seconds;
        if output == Output::Text {
            let faults: Vec<String> = report
                .timeline
                .iter()
                .filter(|e| e.what.starts_with("fault:"))
                .map(|e| e.what.trim_start_matches("fault: ").to_string())
                .collect();
            println!(
                "seed {seed}: {} ({} ops, {} checked) — {}",
                if report.passed() { "pass" } else { "FAIL" },
                report.operations,
                report.checked,
                faults.join("; ")
            );
            if !report.passed() {
                print_run(&report, true);
            }
        }
        if !report.passed() {
            failed.push(report);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "runs": runs, "operations": ops, "checked": checked, "violations": failed.iter().map(|r| json!({"seed": r.seed, "violations": r.violations, "replay": replay(r, true)})).collect::<Vec<_>>(),
                "simulated_seconds": sim, "wall_seconds": wall,
            }))?
        ),
        Output::Text => {
            println!(
                "{runs} runs, {ops} operations ({checked} with a known outcome checked), {} with violations; {sim:.0} simulated s in {wall:.0} s ({:.1}x)",
                failed.len(),
                sim / wall.max(1e-9)
            );
            for r in &failed {
                println!(
                    "  seed {}: {} violation(s); replay with `{}`",
                    r.seed,
                    r.violations.len(),
                    replay(r, true)
                );
            }
        }
    }
    Ok(failed.is_empty())
}

/// Simulated seconds per wall second of a report.
pub fn speed(r: &RunReport) -> f64 {
    r.sim_seconds / r.wall_seconds.max(1e-9)
}

/// How long a scenario's faults keep the cluster busy.
pub fn span(faults: &[Timed]) -> Duration {
    faults
        .iter()
        .map(|t| t.at + t.lasts)
        .max()
        .unwrap_or_default()
}
