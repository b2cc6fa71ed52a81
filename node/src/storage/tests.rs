//! Both conformance suites against every implementation, and the crash semantics the
//! simulation relies on.

use super::conformance::{blob_suite, engine_suite};
use super::fs_blob::FsBlobStore;
use super::mem_blob::{MemBlobStore, SECTOR_BYTES};
use super::mem_engine::MemEngine;
use super::sled_engine::SledEngine;
use super::{frame, BlobRef, BlobStore, Engine, EngineRef, StorageError, WriteBatch};
use crate::clock::{Clock, ClockRef};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A clock the test sets by hand.
#[derive(Default)]
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn mem_blobs() -> (MemBlobStore, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicU64::new(1_700_000_000_000)));
    (MemBlobStore::new(clock.clone() as ClockRef), clock)
}

fn put(engine: &MemEngine, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    engine.apply(batch).unwrap();
}

#[tokio::test]
async fn mem_engine_passes_the_engine_suite() {
    engine_suite(&|| Arc::new(MemEngine::new()) as EngineRef).await;
}

#[tokio::test]
async fn sled_engine_passes_the_engine_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    engine_suite(&|| {
        let path = dir
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        Arc::new(SledEngine::open(&path, 1 << 20).unwrap()) as EngineRef
    })
    .await;
}

#[tokio::test]
async fn mem_blob_store_passes_the_blob_suite() {
    blob_suite(&|| Arc::new(mem_blobs().0) as BlobRef).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_blob_store_passes_the_blob_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    blob_suite(&|| {
        let root = dir
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        Arc::new(FsBlobStore::open(&root).unwrap()) as BlobRef
    })
    .await;
}

#[tokio::test]
async fn mem_engine_crash_keeps_exactly_what_was_synced() {
    let engine = MemEngine::new();
    put(&engine, b"synced", b"1");
    engine.sync().await.unwrap();
    put(&engine, b"unsynced", b"2");
    engine.crash();
    assert_eq!(engine.get(b"synced").unwrap(), Some(b"1".to_vec()));
    assert_eq!(engine.get(b"unsynced").unwrap(), None);

    put(&engine, b"first", b"a");
    put(&engine, b"second", b"b");
    engine.crash_keeping(1);
    assert_eq!(engine.keys(), vec![b"first".to_vec(), b"synced".to_vec()]);
}

#[tokio::test]
async fn mem_engine_failed_sync_keeps_batches_pending_for_the_next() {
    let engine = MemEngine::new();
    put(&engine, b"k", b"v");
    engine.fail_next_syncs(1);
    let err = engine.sync().await.unwrap_err();
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    engine.sync().await.unwrap();
    engine.crash();
    assert_eq!(engine.get(b"k").unwrap(), Some(b"v".to_vec()));

    engine.fail_next_applies(1);
    let mut batch = WriteBatch::new();
    batch.put(b"lost".to_vec(), b"x".to_vec());
    assert!(engine.apply(batch).is_err());
    assert_eq!(
        engine.get(b"lost").unwrap(),
        None,
        "a failed apply changed data"
    );
}

#[tokio::test]
async fn mem_engine_flipped_byte_is_caught_by_the_frame() {
    let engine = MemEngine::new();
    put(&engine, b"rec", &frame::encode(b"payload"));
    engine.sync().await.unwrap();
    assert!(engine.flip_byte(b"rec", 7));
    assert!(!engine.flip_byte(b"rec", 1000), "out of range");
    engine.crash();
    let stored = engine.get(b"rec").unwrap().unwrap();
    assert!(matches!(
        frame::decode(b"rec", &stored),
        Err(StorageError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn mem_blob_crash_keeps_exactly_what_was_synced() {
    let (store, _) = mem_blobs();
    store.write_at("kept", 0, b"synced").unwrap();
    store.write_at("gone", 0, b"synced").unwrap();
    store.sync().await.unwrap();
    store.write_at("kept", 6, b" and not").unwrap();
    store.remove("gone").unwrap();
    store.write_at("new", 0, b"unsynced").unwrap();
    store.crash();
    assert_eq!(store.names(), vec!["gone".to_string(), "kept".to_string()]);
    assert_eq!(
        store.read_at("kept", 0, 100).unwrap(),
        Some(b"synced".to_vec())
    );
    assert_eq!(
        store.read_at("gone", 0, 100).unwrap(),
        Some(b"synced".to_vec())
    );
}

/// A slow sync covers what was issued before the call, makes it durable only when
/// it completes, and loses it to a crash in between.
#[tokio::test]
async fn mem_blob_slow_sync_is_durable_only_when_it_completes() {
    let (store, _) = mem_blobs();
    store.set_sync_latency(std::time::Duration::from_millis(3));
    store.write_at("a", 0, b"first").unwrap();
    let sync = store.sync();
    store.write_at("b", 0, b"after the call").unwrap();
    sync.await.unwrap();
    store.crash();
    assert_eq!(
        store.names(),
        vec!["a".to_string()],
        "b was issued after the sync began"
    );

    store.write_at("c", 0, b"in flight").unwrap();
    let store2 = store.clone();
    let sync = tokio::spawn(async move { store2.sync().await });
    tokio::task::yield_now().await;
    store.crash();
    assert!(
        sync.await.unwrap().is_err(),
        "a sync cut by a crash must not report success"
    );
    assert_eq!(store.names(), vec!["a".to_string()]);
}

#[tokio::test]
async fn mem_blob_torn_write_keeps_a_sector_aligned_prefix() {
    let (store, _) = mem_blobs();
    store.write_at("s", 0, &[0xaa; 4096]).unwrap();
    store.sync().await.unwrap();
    store.write_at("other", 0, &[1; 4096]).unwrap();
    store.write_at("s", 100, &[0xbb; 1500]).unwrap(); // keeps 750 -> 512 bytes
    store.crash_torn();
    let mut want = vec![0xaa; 4096];
    want[100..100 + SECTOR_BYTES].fill(0xbb);
    assert_eq!(store.read_at("s", 0, 8192).unwrap(), Some(want));
    assert_eq!(
        store.len("other").unwrap(),
        None,
        "only the last write may survive"
    );

    store.write_at("fresh", 0, &[7; 2000]).unwrap(); // keeps 1000 -> 512 bytes
    store.crash_torn();
    assert_eq!(store.read_at("fresh", 0, 4096).unwrap(), Some(vec![7; 512]));

    store.write_at("tiny", 0, &[9; 1000]).unwrap(); // keeps 500 -> 0 bytes
    store.crash_torn();
    assert_eq!(
        store.len("tiny").unwrap(),
        None,
        "a torn write of no sector creates nothing"
    );
}

#[tokio::test]
async fn mem_blob_failed_sync_keeps_ops_pending_until_a_later_sync() {
    let (store, _) = mem_blobs();
    store.write_at("a", 0, b"data").unwrap();
    store.set_len("b", 3).unwrap();
    store.fail_next_syncs(2);
    for _ in 0..2 {
        let err = store.sync().await.unwrap_err();
        assert!(err.to_string().contains("injected fsync failure"), "{err}");
    }
    store.sync().await.unwrap();
    store.crash();
    assert_eq!(store.read_at("a", 0, 10).unwrap(), Some(b"data".to_vec()));
    assert_eq!(store.read_at("b", 0, 10).unwrap(), Some(vec![0; 3]));

    store.fail_next_syncs(1);
    store.remove("a").unwrap();
    assert!(store.sync().await.is_err());
    store.crash();
    assert_eq!(
        store.len("a").unwrap(),
        Some(4),
        "a remove no sync covered was kept"
    );
}

#[tokio::test]
async fn mem_blob_failed_write_changes_nothing() {
    let (store, _) = mem_blobs();
    store.write_at("a", 0, b"old").unwrap();
    store.fail_next_writes(1);
    assert!(store.write_at("a", 0, b"new").is_err());
    assert!(
        store.write_at("b", 0, b"x").is_ok(),
        "only one write was meant to fail"
    );
    assert_eq!(store.read_at("a", 0, 10).unwrap(), Some(b"old".to_vec()));
    store.sync().await.unwrap();
    store.crash();
    assert_eq!(store.read_at("a", 0, 10).unwrap(), Some(b"old".to_vec()));
}

#[tokio::test]
async fn mem_blob_flip_byte_is_seen_by_readers_and_the_digest() {
    let (store, _) = mem_blobs();
    let (twin, _) = mem_blobs();
    for s in [&store, &twin] {
        s.write_at("x/a", 0, b"abc").unwrap();
        s.write_at("y", 0, b"other").unwrap();
        s.sync().await.unwrap();
    }
    assert_eq!(store.digest("x/"), twin.digest("x/"));
    assert!(store.flip_byte("x/a", 1));
    assert!(!store.flip_byte("x/a", 3), "past the end");
    assert!(!store.flip_byte("none", 0), "absent blob");
    assert_eq!(store.read_at("x/a", 0, 3).unwrap(), Some(b"acc".to_vec()));
    assert_ne!(store.digest("x/"), twin.digest("x/"));
    assert_eq!(
        store.digest("y"),
        twin.digest("y"),
        "digest covers only the prefix"
    );
    store.crash();
    assert_eq!(
        store.read_at("x/a", 0, 3).unwrap(),
        Some(b"acc".to_vec()),
        "durable copy"
    );
}

#[tokio::test]
async fn mem_blob_times_come_from_the_clock_and_survive_with_the_data() {
    let (store, clock) = mem_blobs();
    store.write_at("a", 0, b"1").unwrap();
    assert_eq!(store.modified_ms("a").unwrap(), Some(1_700_000_000_000));
    store.sync().await.unwrap();
    clock.0.store(1_700_000_005_000, Ordering::Relaxed);
    store.set_len("a", 0).unwrap();
    assert_eq!(store.modified_ms("a").unwrap(), Some(1_700_000_005_000));
    store.crash();
    assert_eq!(store.modified_ms("a").unwrap(), Some(1_700_000_000_000));
}

#[tokio::test]
async fn fs_blob_store_reopened_returns_synced_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    {
        let store = FsBlobStore::open(dir.path()).unwrap();
        store.write_at("objects/o1/c0", 0, &data).unwrap();
        store.write_at("objects/o2", 0, b"short").unwrap();
        store.remove("objects/o2").unwrap();
        store.sync().await.unwrap();
    }
    let store = FsBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        store.read_at("objects/o1/c0", 0, 1 << 20).unwrap(),
        Some(data)
    );
    assert_eq!(
        store.list("objects/").unwrap(),
        vec!["objects/o1/c0".to_string()]
    );
    assert_eq!(store.size_bytes(), 300_000, "size counted again on open");
    assert!(store.modified_ms("objects/o1/c0").unwrap().is_some());
}

#[tokio::test]
async fn fs_blob_store_ignores_files_outside_the_name_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("UPPER"), b"x").unwrap();
    std::fs::write(dir.path().join("ok"), b"x").unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    assert_eq!(store.list("").unwrap(), vec!["ok".to_string()]);
    assert!(
        store.read_at("../ok", 0, 1).is_err(),
        "never resolves outside the root"
    );
}
