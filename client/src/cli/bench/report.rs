//! Bench figures against their ceilings and targets (DESIGN.md section 6 and the
//! issue's thresholds), as text or JSON.

use super::crypto::CryptoCeilings;
use super::disk::DiskCeilings;
use super::load::PhaseResult;
use super::stream::{StreamResult, RSS_CEILING_BYTES};
use crate::cli::output::say;
use serde::Serialize;

/// GET of 4 KiB objects must reach this many ops/s.
pub const GET_4K_OPS_TARGET: f64 = 20_000.0;

/// One figure compared with its target.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// Where the target comes from (`issue` or `DESIGN`).
    pub source: &'static str,
    pub measured: f64,
    pub target: f64,
    pub unit: &'static str,
    /// measured / target.
    pub ratio: f64,
    pub pass: bool,
}

fn check(
    name: &str,
    source: &'static str,
    measured: f64,
    target: f64,
    unit: &'static str,
) -> Check {
    let ratio = if target > 0.0 { measured / target } else { 0.0 };
    Check {
        name: name.to_owned(),
        source,
        measured,
        target,
        unit,
        ratio,
        pass: measured >= target,
    }
}

/// Everything one bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tenant: String,
    pub region: String,
    pub disk: DiskCeilings,
    pub crypto: CryptoCeilings,
    pub phases: Vec<PhaseResult>,
    /// The opt-in streaming phase, when it ran.
    pub stream: Option<StreamResult>,
    /// The opt-in geo phase, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<super::geo::GeoResult>,
    pub checks: Vec<Check>,
}

/// A node streaming the big object stays under the memory ceiling (DESIGN.md §6).
pub fn stream_check(s: &StreamResult) -> Option<Check> {
    let (_, peak) = s.peak()?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (measured, target) = (mib(peak), mib(RSS_CEILING_BYTES));
    // Lower is better here, so the ratio is ceiling ÷ peak: at least 1 passes.
    let c = Check {
        name: format!(
            "peak node RSS while streaming {} GiB ≤ 200 MiB (ratio: ceiling ÷ peak)",
            s.bytes >> 30
        ),
        source: "DESIGN",
        measured,
        target,
        unit: "MiB",
        ratio: target / measured.max(1.0),
        pass: measured <= target,
    };
    Some(c)
}

fn phase<'a>(phases: &'a [PhaseResult], name: &str) -> Option<&'a PhaseResult> {
    phases.iter().find(|p| p.name == name)
}

/// The checks of DESIGN.md section 6 and of the issue, for the phases that ran.
pub fn checks(disk: &DiskCeilings, crypto: &CryptoCeilings, phases: &[PhaseResult]) -> Vec<Check> {
    let mut out = Vec::new();
    let per_replica_mb_s = disk.seq_write_mb_s / 3.0;
    if let Some(p) = phase(phases, "put-1m") {
        out.push(check(
            "PUT 1 MiB MB/s ≥ 0.25 × (seq write ÷ 3)",
            "issue",
            p.mb_s,
            0.25 * per_replica_mb_s,
            "MB/s",
        ));
        out.push(check(
            "PUT 1 MiB MB/s ≥ 0.6 × (seq write ÷ 3)",
            "DESIGN",
            p.mb_s,
            0.6 * per_replica_mb_s,
            "MB/s",
        ));
    }
    if let Some(p) = phase(phases, "put-4k") {
        out.push(check(
            "PUT 4 KiB ops/s ≥ 1 × fsync rate",
            "issue",
            p.ops_s,
            disk.fsync_ops_s,
            "ops/s",
        ));
        out.push(check(
            "PUT 4 KiB ops/s ≥ 2 × fsync rate",
            "DESIGN",
            p.ops_s,
            2.0 * disk.fsync_ops_s,
            "ops/s",
        ));
    }
    if let Some(p) = phase(phases, "get-1m") {
        out.push(check(
            "GET 1 MiB MB/s ≥ 0.5 × one core's AES-GCM open rate",
            "DESIGN",
            p.mb_s,
            0.5 * crypto.open_mb_s,
            "MB/s",
        ));
    }
    if let Some(p) = phase(phases, "get-4k") {
        out.push(check(
            "GET 4 KiB ops/s ≥ 20,000",
            "DESIGN",
            p.ops_s,
            GET_4K_OPS_TARGET,
            "ops/s",
        ));
    }
    out
}

/// Prints the report for people.
pub fn print_text(r: &Report) {
    say!("tenant {} (LRS) in {}", r.tenant, r.region);
    say!(
        "disk ceilings in {}: sequential write {:.1} MB/s ({} MiB, fdatasync at the end); fsync {:.0} ops/s (4 KiB append + fdatasync, 1 writer)",
        r.disk.dir.display(),
        r.disk.seq_write_mb_s,
        r.disk.seq_bytes / (1024 * 1024),
        r.disk.fsync_ops_s
    );
    say!(
        "crypto ceiling (AES-256-GCM, 256 KiB chunks, 1 core): seal {:.0} MB/s, open {:.0} MB/s",
        r.crypto.seal_mb_s,
        r.crypto.open_mb_s
    );
    say!("");
    if !r.phases.is_empty() {
        say!(
            "{:<8} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7}  vs ceiling",
            "phase",
            "conc",
            "ops/s",
            "MB/s",
            "p50 ms",
            "p99 ms",
            "errors"
        );
    }
    for p in &r.phases {
        let vs = match p.name {
            "put-1m" if r.disk.seq_write_mb_s > 0.0 => {
                format!(
                    "{:.2} × (seq write ÷ 3)",
                    p.mb_s / (r.disk.seq_write_mb_s / 3.0)
                )
            }
            "put-4k" if r.disk.fsync_ops_s > 0.0 => {
                format!("{:.2} × fsync rate", p.ops_s / r.disk.fsync_ops_s)
            }
            "get-4k" => format!("{:.2} × 20,000 ops/s", p.ops_s / GET_4K_OPS_TARGET),
            "get-1m" if r.crypto.open_mb_s > 0.0 => {
                format!("{:.2} × AES-GCM open (1 core)", p.mb_s / r.crypto.open_mb_s)
            }
            _ => String::new(),
        };
        say!(
            "{:<8} {:>5} {:>10.0} {:>9.1} {:>9.2} {:>9.2} {:>7}  {vs}",
            p.name,
            p.concurrency,
            p.ops_s,
            p.mb_s,
            p.p50_ms,
            p.p99_ms,
            p.errors
        );
        if let Some(e) = &p.first_error {
            say!("         first error: {e}");
        }
    }
    if let Some(st) = &r.stream {
        say!(
            "stream   {:.1} GiB: PUT {:.1} MB/s, GET {:.1} MB/s",
            st.bytes as f64 / (1u64 << 30) as f64,
            st.put_mb_s,
            st.get_mb_s
        );
        match (st.peak(), &st.rss_unavailable) {
            (Some((node, peak)), _) => {
                let per_node: Vec<String> = st
                    .peak_rss_bytes
                    .iter()
                    .map(|(n, b)| format!("{n}:{}", b >> 20))
                    .collect();
                say!(
                    "         peak node RSS {} MiB (node {node}); per node MiB {}",
                    peak >> 20,
                    per_node.join(" ")
                );
            }
            (None, Some(why)) => say!("         node memory not sampled: {why}"),
            (None, None) => say!("         node memory not sampled"),
        }
    }
    if let Some(g) = &r.geo {
        super::geo::print(g);
    }
    say!("");
    for c in &r.checks {
        say!(
            "{:<6} [{}] {}: {:.1} {} vs target {:.1} ({:.2}×)",
            if c.pass { "PASS" } else { "BELOW" },
            c.source,
            c.name,
            c.measured,
            c.unit,
            c.target,
            c.ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &'static str, ops_s: f64, mb_s: f64) -> PhaseResult {
        PhaseResult {
            name,
            object_bytes: 0,
            concurrency: 1,
            ops: 1,
            errors: 0,
            first_error: None,
            seconds: 1.0,
            ops_s,
            mb_s,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    #[test]
    fn targets_follow_the_ceilings() {
        let disk = DiskCeilings {
            dir: "/tmp".into(),
            seq_bytes: 0,
            seq_write_mb_s: 300.0,
            fsync_ops_s: 500.0,
        };
        let crypto = CryptoCeilings {
            seal_mb_s: 2000.0,
            open_mb_s: 1000.0,
        };
        let phases = [
            result("put-1m", 0.0, 30.0),
            result("put-4k", 800.0, 3.2),
            result("get-1m", 0.0, 600.0),
        ];
        let c = checks(&disk, &crypto, &phases);
        assert_eq!(c.len(), 5);
        // 600 MB/s vs half of 1000: pass, ratio 1.2.
        assert!(c[4].pass && (c[4].ratio - 1.2).abs() < 1e-9);
        // 0.25 × 100 = 25 MB/s: 30 passes; 0.6 × 100 = 60: below.
        assert!(c[0].pass && (c[0].target - 25.0).abs() < 1e-9);
        assert!(!c[1].pass && (c[1].target - 60.0).abs() < 1e-9);
        // 800 ops/s vs 500 (pass) and 1000 (below).
        assert!(c[2].pass && !c[3].pass);
        assert!((c[2].ratio - 1.6).abs() < 1e-9);
    }
}
