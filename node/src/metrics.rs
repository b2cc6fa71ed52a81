//! A node's metrics: named counters and gauges with labels, rendered in the
//! Prometheus text exposition format (served by `AdminService.Metrics` and shown
//! by `stratus metrics`).
//!
//! Names and help texts are constants here, so every metric the node can export
//! is listed in one place. Labels are kept in a `BTreeMap`, so rendering is
//! ordered and deterministic (the simulation reads metrics too).
//!
//! Must not: carry key material, tokens or object content in a label or value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The kind of a metric, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric the node exports: name, kind and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// A stored chunk copy on this replica failed its CRC-32 check (flipped, torn).
pub const CHUNKS_CORRUPT: Metric = Metric {
    name: "stratus_chunks_corrupt_total",
    kind: Kind::Counter,
    help: "Stored chunk copies on this node found damaged (CRC-32 mismatch or torn frame).",
};
/// A chunk copy fetched from a peer and stored here (read repair or repair task).
pub const CHUNKS_REPAIRED: Metric = Metric {
    name: "stratus_chunks_repaired_total",
    kind: Kind::Counter,
    help: "Chunks this node repaired from an intact copy on a peer.",
};
/// A read found no intact copy anywhere and failed with DataLoss.
pub const CHUNKS_UNRECOVERABLE: Metric = Metric {
    name: "stratus_chunks_unrecoverable_total",
    kind: Kind::Counter,
    help: "Chunk reads that found no intact copy on any member (DataLoss).",
};
/// Stored ciphertext whose CRC matched but which failed AES-GCM authentication.
pub const DECRYPT_FAILURES: Metric = Metric {
    name: "stratus_decrypt_failures_total",
    kind: Kind::Counter,
    help: "Stored object data that failed AES-GCM authentication when read (DataLoss).",
};
/// Inline objects whose stored record failed its check.
pub const INLINE_CORRUPT: Metric = Metric {
    name: "stratus_inline_corrupt_total",
    kind: Kind::Counter,
    help: "Inline object records on this node found damaged.",
};

/// Geo: the last sync time of a tenant whose primary this node leads.
pub const GEO_LAST_SYNC: Metric = Metric {
    name: "stratus_geo_last_sync_time_seconds",
    kind: Kind::Gauge,
    help: "Every write acknowledged before this time (Unix seconds) is durable in the tenant's secondary region.",
};
/// Geo: seconds the secondary trails.
pub const GEO_LAG_SECONDS: Metric = Metric {
    name: "stratus_geo_lag_seconds",
    kind: Kind::Gauge,
    help: "Seconds between now and the tenant's last sync time.",
};
/// Geo: operations the secondary has not applied yet.
pub const GEO_LAG_OPS: Metric = Metric {
    name: "stratus_geo_lag_operations",
    kind: Kind::Gauge,
    help: "Operations applied by the tenant's primary and not yet by its secondary.",
};

/// Every metric above, in the order `stratus metrics` lists them.
pub const ALL: &[Metric] = &[
    CHUNKS_CORRUPT,
    CHUNKS_REPAIRED,
    CHUNKS_UNRECOVERABLE,
    DECRYPT_FAILURES,
    INLINE_CORRUPT,
    GEO_LAST_SYNC,
    GEO_LAG_SECONDS,
    GEO_LAG_OPS,
];

type Labels = Vec<(&'static str, String)>;

/// The metrics of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<(&'static str, Labels), f64>>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<(&'static str, Labels), f64>) -> T) -> T {
        f(&mut self.values.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn labels(labels: &[(&'static str, &str)]) -> Labels {
        let mut l: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        l.sort();
        l
    }

    /// Adds `by` to counter `metric` with `labels`.
    pub fn add(&self, metric: Metric, labels: &[(&'static str, &str)], by: u64) {
        debug_assert_eq!(
            metric.kind,
            Kind::Counter,
            "{} is not a counter",
            metric.name
        );
        let key = (metric.name, Self::labels(labels));
        self.with(|m| *m.entry(key).or_default() += by as f64);
    }

    /// Adds one to counter `metric` with `labels`.
    pub fn inc(&self, metric: Metric, labels: &[(&'static str, &str)]) {
        self.add(metric, labels, 1);
    }

    /// Sets gauge `metric` with `labels` to `value`.
    pub fn set(&self, metric: Metric, labels: &[(&'static str, &str)], value: f64) {
        debug_assert_eq!(metric.kind, Kind::Gauge, "{} is not a gauge", metric.name);
        let key = (metric.name, Self::labels(labels));
        self.with(|m| m.insert(key, value));
    }

    /// Drops every series of gauge `metric` whose labels include `label = value`
    /// (a tenant deleted, a role that moved away).
    pub fn forget(&self, metric: Metric, label: &'static str, value: &str) {
        self.with(|m| {
            m.retain(|(name, labels), _| {
                *name != metric.name || !labels.iter().any(|(k, v)| *k == label && v == value)
            })
        });
    }

    /// The current value of one series (0 when never touched).
    pub fn value(&self, metric: Metric, labels: &[(&'static str, &str)]) -> f64 {
        let key = (metric.name, Self::labels(labels));
        self.with(|m| m.get(&key).copied().unwrap_or(0.0))
    }

    /// The sum of every series of `metric`.
    pub fn total(&self, metric: Metric) -> f64 {
        self.with(|m| {
            m.iter()
                .filter(|((name, _), _)| *name == metric.name)
                .map(|(_, v)| v)
                .sum()
        })
    }

    /// Every metric in the Prometheus text format, with `node` as a label on each
    /// series. Metrics never touched are listed with their help and a zero series.
    pub fn render(&self, node: u64) -> String {
        let values = self.with(|m| m.clone());
        let mut out = String::new();
        for metric in ALL {
            let kind = match metric.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
            let _ = writeln!(out, "# TYPE {} {kind}", metric.name);
            let mut any = false;
            for ((name, labels), value) in &values {
                if *name != metric.name {
                    continue;
                }
                any = true;
                let mut l = format!("node=\"{node}\"");
                for (k, v) in labels {
                    let _ = write!(l, ",{k}=\"{}\"", escape(v));
                }
                let _ = writeln!(out, "{}{{{l}}} {}", metric.name, number(*value));
            }
            if !any && metric.kind == Kind::Counter {
                let _ = writeln!(out, "{}{{node=\"{node}\"}} 0", metric.name);
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_node_and_sorted_labels() {
        let m = Metrics::default();
        m.inc(CHUNKS_CORRUPT, &[("group", "3")]);
        m.add(CHUNKS_CORRUPT, &[("group", "3")], 2);
        m.inc(CHUNKS_REPAIRED, &[("group", "1")]);
        assert_eq!(m.value(CHUNKS_CORRUPT, &[("group", "3")]), 3.0);
        assert_eq!(m.total(CHUNKS_CORRUPT), 3.0);
        let text = m.render(7);
        assert!(
            text.contains("stratus_chunks_corrupt_total{node=\"7\",group=\"3\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE stratus_chunks_corrupt_total counter"));
        // Untouched counters still appear, at zero.
        assert!(
            text.contains("stratus_decrypt_failures_total{node=\"7\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
