//! The crypto ceiling: how fast one core of this machine seals and opens content
//! chunks with AES-256-GCM, exactly as the nodes do (256 KiB stored chunks under a
//! fresh data key, `stratus_core::crypto::envelope`). Every byte a node stores is
//! sealed once on the leader and every byte it serves is opened once, so these
//! rates bound PUT and GET throughput per core.

use serde::Serialize;
use std::time::{Duration, Instant};
use stratus_core::crypto::envelope::ContentCipher;
use stratus_core::crypto::SecretKey;
use stratus_core::limits::STORAGE_CHUNK_BYTES;

/// This machine's AES-256-GCM rates on one core.
#[derive(Debug, Clone, Serialize)]
pub struct CryptoCeilings {
    /// Sealing (encrypt + tag) of stored chunks, MB/s (10^6 bytes).
    pub seal_mb_s: f64,
    /// Opening (verify + decrypt) of stored chunks, MB/s.
    pub open_mb_s: f64,
}

/// Seals and opens chunks for about `duration` each, on the calling thread.
fn measure_blocking(duration: Duration) -> CryptoCeilings {
    let key = SecretKey::from_slice(&[0x5c; 32]).expect("32 bytes make a key");
    let cipher = ContentCipher::new(&key);
    let plain: Vec<u8> = (0..STORAGE_CHUNK_BYTES).map(|i| (i * 31) as u8).collect();
    let rate = |bytes: usize, took: Duration| bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6;

    let start = Instant::now();
    let mut sealed = Vec::new();
    let mut bytes = 0;
    let mut index = 0u32;
    while start.elapsed() < duration {
        sealed = cipher.seal(index, false, &plain);
        bytes += plain.len();
        index += 1;
    }
    let seal_mb_s = rate(bytes, start.elapsed());

    // Open the last sealed chunk repeatedly (under its own index).
    let last = index.saturating_sub(1);
    let start = Instant::now();
    let mut bytes = 0;
    while start.elapsed() < duration {
        let opened = cipher
            .open(last, false, &sealed)
            .expect("a chunk sealed here opens");
        bytes += opened.len();
    }
    CryptoCeilings {
        seal_mb_s,
        open_mb_s: rate(bytes, start.elapsed()),
    }
}

/// Measures on a blocking thread, so the runtime stays responsive.
pub async fn measure(duration: Duration) -> anyhow::Result<CryptoCeilings> {
    Ok(tokio::task::spawn_blocking(move || measure_blocking(duration)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_and_finite() {
        let c = measure_blocking(Duration::from_millis(30));
        assert!(c.seal_mb_s.is_finite() && c.seal_mb_s > 0.0, "{c:?}");
        assert!(c.open_mb_s.is_finite() && c.open_mb_s > 0.0, "{c:?}");
    }
}
