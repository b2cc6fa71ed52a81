//! Ceilings of the disk under the cluster's data, measured in the same run as the
//! load so the ratios compare like with like: sequential write rate (with a final
//! fdatasync) and the single-writer fsync rate (4 KiB append + fdatasync).

use anyhow::Context;
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Size of one sequential write.
const SEQ_BLOCK_BYTES: usize = 1024 * 1024;
/// Size of one write in the fsync loop.
const FSYNC_BLOCK_BYTES: usize = 4096;

/// What the disk can do.
#[derive(Debug, Clone, Serialize)]
pub struct DiskCeilings {
    /// Directory measured (a temporary file inside it).
    pub dir: PathBuf,
    /// Bytes written sequentially.
    pub seq_bytes: u64,
    /// Sequential write rate including the final fdatasync, in MB/s (10^6 bytes).
    pub seq_write_mb_s: f64,
    /// 4 KiB append + fdatasync per second, one writer.
    pub fsync_ops_s: f64,
}

/// Deletes the scratch file however the measurement ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(dir: &Path, what: &str) -> anyhow::Result<(Scratch, File)> {
    let path = dir.join(format!(".stratus-bench-{what}-{}", std::process::id()));
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok((Scratch(path), file))
}

fn seq_write_mb_s(dir: &Path, bytes: u64) -> anyhow::Result<f64> {
    let (_guard, mut file) = scratch(dir, "seq")?;
    // Non-zero, non-repeating-per-block content so nothing can shortcut it.
    let block: Vec<u8> = (0..SEQ_BLOCK_BYTES)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    let blocks = bytes.div_ceil(SEQ_BLOCK_BYTES as u64);
    let start = Instant::now();
    for _ in 0..blocks {
        file.write_all(&block).context("sequential write")?;
    }
    file.sync_data().context("fdatasync")?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok((blocks * SEQ_BLOCK_BYTES as u64) as f64 / 1e6 / secs)
}

fn fsync_ops_s(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let (_guard, mut file) = scratch(dir, "fsync")?;
    let block = vec![0x5au8; FSYNC_BLOCK_BYTES];
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < duration {
        file.write_all(&block).context("write")?;
        file.sync_data().context("fdatasync")?;
        ops += 1;
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Measures both ceilings in `dir` (blocking IO on a blocking thread).
pub async fn measure(
    dir: &Path,
    seq_bytes: u64,
    fsync_for: Duration,
) -> anyhow::Result<DiskCeilings> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let seq = seq_write_mb_s(&dir, seq_bytes)?;
        let fsync = fsync_ops_s(&dir, fsync_for)?;
        Ok(DiskCeilings {
            dir,
            seq_bytes,
            seq_write_mb_s: seq,
            fsync_ops_s: fsync,
        })
    })
    .await
    .context("the disk measurement task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_positive_rates_and_cleans_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = measure(tmp.path(), 4 * 1024 * 1024, Duration::from_millis(100))
            .await
            .expect("measure");
        assert!(c.seq_write_mb_s > 0.0 && c.fsync_ops_s > 0.0, "{c:?}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("read dir").collect();
        assert!(left.is_empty(), "scratch files removed");
    }
}
