//! One load phase: N concurrent tasks sharing one client, each looping PUT or GET
//! of fixed-size objects until the phase's time is up; latencies in a sorted Vec.

use crate::{Client, GetOptions, PutOptions};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
}

/// A phase to run.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub name: &'static str,
    pub op: Op,
    pub size: usize,
    pub concurrency: usize,
    pub duration: Duration,
}

/// Where the phase reads and writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub tenant: String,
    pub container: String,
}

/// Measured outcome of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: &'static str,
    pub object_bytes: usize,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    pub ops_s: f64,
    pub mb_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    written: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn one_op(
    client: &Client,
    t: &Target,
    spec: &PhaseSpec,
    key: &str,
    payload: &Bytes,
) -> Result<(), String> {
    match spec.op {
        Op::Put => client
            .put_bytes(
                &t.tenant,
                &t.container,
                key,
                payload.clone(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Op::Get => {
            let (_, data) = client
                .get_bytes(&t.tenant, &t.container, key, GetOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            if data.len() == spec.size {
                Ok(())
            } else {
                Err(format!(
                    "{key}: got {} bytes, expected {}",
                    data.len(),
                    spec.size
                ))
            }
        }
    }
}

async fn worker(
    client: Client,
    target: Arc<Target>,
    spec: Arc<PhaseSpec>,
    worker: usize,
    payload: Bytes,
    read_keys: Arc<Vec<String>>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0usize;
    while Instant::now() < until {
        let key = match spec.op {
            Op::Put => format!("{}/{worker}/{i}", spec.name),
            Op::Get if read_keys.is_empty() => break,
            Op::Get => read_keys[(worker * 7919 + i) % read_keys.len()].clone(),
        };
        let start = Instant::now();
        match one_op(&client, &target, &spec, &key, &payload).await {
            Ok(()) => {
                tally.latencies.push(start.elapsed());
                if spec.op == Op::Put {
                    tally.written.push(key);
                }
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        i += 1;
    }
    tally
}

/// Runs one phase; returns its result and the keys it wrote.
pub async fn run_phase(
    client: &Client,
    target: &Target,
    spec: PhaseSpec,
    read_keys: Arc<Vec<String>>,
) -> (PhaseResult, Vec<String>) {
    let payload: Bytes = (0..spec.size)
        .map(|i| (i.wrapping_mul(131) % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let (spec, target) = (Arc::new(spec), Arc::new(target.clone()));
    let start = Instant::now();
    let until = start + spec.duration;
    let tasks: Vec<_> = (0..spec.concurrency)
        .map(|w| {
            tokio::spawn(worker(
                client.clone(),
                target.clone(),
                spec.clone(),
                w,
                payload.clone(),
                read_keys.clone(),
                until,
            ))
        })
        .collect();
    let mut all = Tally::default();
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(t) => {
                all.latencies.extend(t.latencies);
                all.errors += t.errors;
                all.written.extend(t.written);
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    all.latencies.sort_unstable();
    let ops = all.latencies.len() as u64;
    let result = PhaseResult {
        name: spec.name,
        object_bytes: spec.size,
        concurrency: spec.concurrency,
        ops,
        errors: all.errors,
        first_error: all.first_error,
        seconds,
        ops_s: ops as f64 / seconds,
        mb_s: (ops as f64 * spec.size as f64) / 1e6 / seconds,
        p50_ms: percentile(&all.latencies, 0.50),
        p99_ms: percentile(&all.latencies, 0.99),
    };
    (result, all.written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_sorted_sample() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
