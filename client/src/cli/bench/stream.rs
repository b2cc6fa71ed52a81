//! The streaming phase of `stratus bench`: PUT then GET one very large object
//! (4 GiB by default) while sampling the resident memory of every node process of
//! a `stratus dev` cluster, to show that nodes stream rather than buffer. The
//! ceiling is DESIGN.md's: a node streaming a 4 GiB object stays under 200 MiB.
//!
//! Opt-in (`--phase stream-4g`): it writes the object three times over on this disk.

use super::Target;
use crate::cli::dev::layout::{DevDir, NodeState};
use crate::{Client, GetOptions, PutOptions, PutSource};
use serde::Serialize;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

/// Resident memory a node may use while streaming the object.
pub const RSS_CEILING_BYTES: u64 = 200 * 1024 * 1024;
/// How often node memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Size of the pattern the generated object repeats (random, so nothing compresses).
const PATTERN_BYTES: usize = 8 * 1024 * 1024 + 7;

/// What the streaming phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct StreamResult {
    pub bytes: u64,
    pub put_mb_s: f64,
    pub get_mb_s: f64,
    /// Highest resident memory seen per node during the phase, in bytes.
    pub peak_rss_bytes: BTreeMap<u64, u64>,
    /// Why no memory was sampled, when none was.
    pub rss_unavailable: Option<String>,
}

impl StreamResult {
    pub fn peak(&self) -> Option<(u64, u64)> {
        self.peak_rss_bytes
            .iter()
            .map(|(n, b)| (*n, *b))
            .max_by_key(|(_, b)| *b)
    }
}

/// A reader producing `len` bytes of a repeating random pattern.
struct Generated {
    pattern: Arc<Vec<u8>>,
    left: u64,
    at: usize,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64)
            .min(self.left)
            .min((self.pattern.len() - self.at) as u64) as usize;
        let at = self.at;
        buf.put_slice(&self.pattern[at..at + n]);
        self.at = (at + n) % self.pattern.len();
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Samples every running node's RSS until `stop` is set; keeps each node's peak.
async fn sample(
    dir: DevDir,
    nodes: Vec<u64>,
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<BTreeMap<u64, u64>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        for id in &nodes {
            if let (Some(NodeState::Running(pid)), Some(mut peaks)) =
                (dir.state(*id), peaks.lock().ok())
            {
                if let Some(rss) = rss_bytes(pid) {
                    let peak = peaks.entry(*id).or_default();
                    *peak = (*peak).max(rss);
                }
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Streams one object of `bytes` up and back down; samples node memory when the
/// cluster is a `stratus dev` cluster under `dev_dir`.
pub async fn run(
    client: &Client,
    target: &Target,
    bytes: u64,
    dev_dir: Option<DevDir>,
) -> anyhow::Result<(StreamResult, String)> {
    let key = "stream/big".to_string();
    let mut pattern = vec![0u8; PATTERN_BYTES];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut pattern);
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new(Mutex::new(BTreeMap::new()));
    let (sampler, rss_unavailable) = match dev_dir.as_ref().map(|d| (d.clone(), d.load_topology()))
    {
        Some((dir, Ok(topology))) => {
            let nodes = topology.nodes().keys().copied().collect();
            (
                Some(tokio::spawn(sample(
                    dir,
                    nodes,
                    stop.clone(),
                    peaks.clone(),
                ))),
                None,
            )
        }
        Some((_, Err(e))) => (
            None,
            Some(format!("cannot read the dev cluster's topology: {e}")),
        ),
        None => (
            None,
            Some("not a stratus dev cluster on this machine (pass --data DIR)".to_string()),
        ),
    };
    let source = PutSource::reader(Generated {
        pattern: Arc::new(pattern),
        left: bytes,
        at: 0,
    });
    let started = Instant::now();
    let put = client
        .put(
            &target.tenant,
            &target.container,
            &key,
            source,
            PutOptions::default(),
        )
        .await;
    let put_s = started.elapsed().as_secs_f64();
    let outcome = match put {
        Ok(_) => {
            let started = Instant::now();
            let mut sink = tokio::io::sink();
            let got = client
                .get_to_writer(
                    &target.tenant,
                    &target.container,
                    &key,
                    GetOptions::default(),
                    &mut sink,
                )
                .await;
            got.map(|_| started.elapsed().as_secs_f64())
        }
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    let get_s = outcome?;
    let mb = bytes as f64 / 1e6;
    let peak_rss_bytes = peaks.lock().map(|p| p.clone()).unwrap_or_default();
    Ok((
        StreamResult {
            bytes,
            put_mb_s: mb / put_s,
            get_mb_s: mb / get_s,
            peak_rss_bytes,
            rss_unavailable,
        },
        key,
    ))
}
