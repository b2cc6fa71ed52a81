//! Geo-redundancy in the simulation: what an operator does (fail over, re-protect,
//! probe the old region), what a monitor samples (`tenant show`: last sync time and
//! lag), and the checks of geo outcomes.
//!
//! - [`operator`]: the client-side futures: actions at scheduled times, the lag
//!   monitor, the final geo reads (recovery container, waiting for the copy).
//! - [`check`]: the history seen through a failover (writes acknowledged after the
//!   reported last sync time may be lost, within the reported window), reads from
//!   the secondary against their last sync time, the recovery container, six
//!   copies after a reprotect, and the per-scenario expectations ([`GeoCheck`]).
//!
//! A geo plan is data ([`GeoPlan`]): named scenarios and matrix cells say which
//! actions happen when and which outcomes they require.

pub mod check;
pub mod drive;
pub mod operator;
pub mod raw;
pub mod scenarios;

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_client::{FailoverInfo, TenantInfo};

/// One operator action on a geo tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum GeoAction {
    /// `stratus failover TENANT [--planned]`, retried while refused (bounded).
    Failover { tenant: String, planned: bool },
    /// `stratus tenant reprotect TENANT`, retried while refused (bounded).
    Reprotect { tenant: String },
    /// For `lasts`, writes and strong reads sent straight to each of `region`'s
    /// nodes (raw calls, no redirect followed): after a failover away from
    /// `region`, none may acknowledge a write; reads are checked like any other.
    FenceProbe {
        tenant: String,
        region: String,
        lasts: Duration,
    },
}

/// An action at a time relative to the start of the workload.
#[derive(Debug, Clone, Serialize)]
pub struct Scheduled {
    pub at: Duration,
    pub action: GeoAction,
}

/// An outcome a geo run must show; each becomes a violation when it does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum GeoCheck {
    /// The tenant's failover succeeded. Planned: nothing lost (window 0), the
    /// geo copy kept. Unplanned: the tenant is local until re-protected.
    FailedOver { tenant: String, planned: bool },
    /// After the failover, the tenant acknowledged new writes before the run ended.
    WritesAfterFailover { tenant: String },
    /// The fence probe sent enough writes to the old region and none was
    /// acknowledged.
    Fenced { tenant: String },
    /// The reprotect finished: class and geo copy back, six copies of every key,
    /// the unreplicated writes in the recovery container.
    Reprotected { tenant: String },
    /// No write of the tenant failed while fault `fault` (index) lasted.
    NoWriteRefused { tenant: String, fault: usize },
    /// The lag grew while fault `fault` lasted and came back to its steady level
    /// within `settle` of the heal.
    LagGrowsAndReturns {
        tenant: String,
        fault: usize,
        settle: Duration,
    },
    /// Reads from the secondary kept answering while fault `fault` lasted, each
    /// with its last sync time.
    SecondaryReadsDuring { tenant: String, fault: usize },
}

/// What a geo run does beyond the workload and the faults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeoPlan {
    pub actions: Vec<Scheduled>,
    /// Tenants whose geo status a monitor samples throughout the run.
    pub monitor: Vec<String>,
    pub checks: Vec<GeoCheck>,
    /// Index of a fault (a cut geo link) from whose start no write can have been
    /// shipped: pins down what the recovery container must hold.
    pub unshipped_from_fault: Option<usize>,
    /// Index of the fault that takes the primary region down: failover times are
    /// measured from its start.
    pub region_down_fault: Option<usize>,
}

impl GeoPlan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.monitor.is_empty() && self.checks.is_empty()
    }
}

/// One failover as the operator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverDone {
    pub tenant: String,
    pub planned: bool,
    /// When the operator first asked, and when the failover answered (sim time).
    pub asked_at: Duration,
    pub done_at: Duration,
    /// When the operator's own write after the failover was acknowledged.
    pub first_write_at: Option<Duration>,
    pub attempts: u32,
    pub tenant_after: Option<TenantInfo>,
    pub record: Option<FailoverInfo>,
    /// The last refusal, when it never succeeded.
    pub error: Option<String>,
}

/// One reprotect as the operator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ReprotectDone {
    pub tenant: String,
    pub done_at: Duration,
    pub attempts: u32,
    pub tenant_after: Option<TenantInfo>,
    pub error: Option<String>,
}

/// What the fence probe saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FenceResult {
    pub tenant: String,
    pub region: String,
    pub writes_tried: u32,
    /// Writes the old region acknowledged (each a fencing violation).
    pub acknowledged: Vec<String>,
    /// How the other writes were refused: `stratus-error` code and count.
    pub refusals: std::collections::BTreeMap<String, u32>,
    pub reads_tried: u32,
    /// Strong reads the old region answered (each checked in the history).
    pub reads_answered: u32,
}

/// One `tenant show` sample.
#[derive(Debug, Clone, Serialize)]
pub struct LagSample {
    pub tenant: String,
    pub at: Duration,
    pub status: String,
    pub lag_operations: u64,
    pub lag_seconds: f64,
    pub last_sync_ms: Option<u64>,
}

/// An object found in a recovery container.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub tenant: String,
    pub container: String,
    pub key: String,
    /// The outcome of reading it (a read names the write it holds).
    pub outcome: crate::history::Outcome,
}

/// The final state of a tenant's geo copy, after the run.
#[derive(Debug, Clone, Serialize)]
pub struct FinalGeo {
    pub tenant: String,
    pub info: Option<TenantInfo>,
    /// Whether the copy was live with zero lag before the final checks.
    pub in_sync: bool,
}

/// Everything the geo clients recorded, shared with the driver.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeoRecord {
    pub failovers: Vec<FailoverDone>,
    pub reprotects: Vec<ReprotectDone>,
    pub fences: Vec<FenceResult>,
    pub lag: Vec<LagSample>,
    pub recovered: Vec<Recovered>,
    pub finals: Vec<FinalGeo>,
}

/// The record, shared by the clients that fill it.
#[derive(Debug, Clone, Default)]
pub struct GeoLog(Arc<Mutex<GeoRecord>>);

impl GeoLog {
    pub fn with<T>(&self, f: impl FnOnce(&mut GeoRecord) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> GeoRecord {
        self.with(|r| r.clone())
    }
}

/// Figures of a geo run (simulated time).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeoFigures {
    /// Lag samples of live copies outside every fault window.
    pub steady_samples: usize,
    pub lag_p50_s: Option<f64>,
    pub lag_p99_s: Option<f64>,
    pub lag_p50_ops: Option<u64>,
    pub lag_p99_ops: Option<u64>,
    /// The largest lag any sample showed while a fault lasted (seconds, operations).
    pub lag_max_during_faults: Option<(f64, u64)>,
    /// Per unplanned failover: region loss (the first fault) until the tenant's
    /// first write acknowledged afterwards, in seconds.
    pub failover_s: Vec<(String, f64)>,
    /// Per unplanned failover: region loss until the operator's own first write
    /// (sent right after the failover answered) was acknowledged, in seconds.
    pub failover_operator_write_s: Vec<(String, f64)>,
    /// Per failover: the operator's call, from asking to the answer, in seconds.
    pub failover_call_s: Vec<(String, f64)>,
    /// Per unplanned failover: region loss minus the reported last sync time, in
    /// seconds (the time span of writes the failover may have lost).
    pub loss_window_s: Vec<(String, f64)>,
    /// Per unplanned failover: acknowledged writes after the last sync time, how
    /// many of them no later read saw, and the reported window.
    pub at_risk: Vec<(String, usize, usize, Option<u64>)>,
}

#[cfg(test)]
mod tests;
