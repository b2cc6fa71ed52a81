//! What the conformance suite cannot see from outside: the handle cache bound, the
//! dirty set after remove, and a failed flush being retried rather than forgotten.

use super::*;

#[tokio::test]
async fn a_failed_sync_is_reported_and_retried_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(&tmp.path().join("blobs")).unwrap();
    store.write_at("a/b", 0, b"data").unwrap();
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    let bad = tmp.path().join("file/sub"); // under a regular file: cannot be opened
    store.state().dirty.mark_dir(&bad);
    for attempt in 0..2 {
        let err = store.sync().await.unwrap_err();
        assert!(
            err.to_string().contains("file/sub"),
            "attempt {attempt}: {err}"
        );
        assert!(
            !store.state().dirty.is_clean(),
            "a failed sync forgot dirty data"
        );
    }
    std::fs::remove_file(tmp.path().join("file")).unwrap();
    std::fs::create_dir_all(&bad).unwrap();
    store.sync().await.unwrap();
    assert!(
        store.state().dirty.is_clean(),
        "a successful sync left dirty entries"
    );
    assert_eq!(store.read_at("a/b", 0, 10).unwrap(), Some(b"data".to_vec()));
}

#[tokio::test]
async fn the_handle_cache_is_bounded_and_dirty_handles_wait_for_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(tmp.path()).unwrap();
    let blobs = OPEN_BLOBS_MAX as u64 + 36;
    for i in 0..blobs {
        store.write_at(&format!("h/{i:03}"), 0, &[1]).unwrap();
    }
    store.write_at("h/000", 1, &[2]).unwrap(); // reopened after eviction
    {
        let s = store.state();
        assert_eq!(s.handles.len(), OPEN_BLOBS_MAX);
        assert!(s.handles.contains_key("h/000"), "the latest use is cached");
        assert!(
            !s.handles.contains_key("h/001"),
            "the least recent use was evicted"
        );
    }
    store.sync().await.unwrap();
    assert!(store.state().dirty.is_clean());
    assert_eq!(store.read_at("h/000", 0, 4).unwrap(), Some(vec![1, 2]));
    assert_eq!(store.size_bytes(), blobs + 1);
}

#[tokio::test]
async fn remove_drops_the_cached_handle_and_the_unsynced_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(tmp.path()).unwrap();
    store.write_at("x/y", 0, b"doomed").unwrap();
    store.remove("x/y").unwrap();
    {
        let s = store.state();
        assert!(s.handles.is_empty(), "a handle on a removed file was kept");
        assert!(
            !s.dirty.is_clean(),
            "the root's entry change must still be synced"
        );
    }
    assert!(
        !tmp.path().join("x").exists(),
        "the emptied directory was not pruned"
    );
    store.sync().await.unwrap();
    assert!(store.state().dirty.is_clean());
    assert_eq!(store.size_bytes(), 0);
}
