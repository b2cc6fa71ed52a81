//! The [`BlobStore`] half of the conformance suite.

use super::ok;
use crate::storage::blob::validate_blob_name;
use crate::storage::{BlobRef, BlobStore, StorageError};

/// Concurrent syncing tasks in the group-commit check.
const SYNC_TASKS: usize = 16;

/// Checks a [`BlobStore`]; `make` returns a fresh, empty store per call. Needs a tokio
/// runtime: it syncs from spawned tasks.
pub async fn blob_suite(make: &dyn Fn() -> BlobRef) {
    names_are_validated(&*make());
    absent_blobs(&*make());
    write_and_read_at_offsets(&*make());
    set_len_cuts_and_extends(&*make());
    remove_then_recreate_starts_empty(&*make());
    list_by_prefix(&*make());
    names_cannot_be_file_and_directory(&*make());
    many_open_blobs(&*make());
    concurrent_syncs_all_succeed(make()).await;
}

fn read(s: &dyn BlobStore, name: &str, offset: u64, len: usize) -> Option<Vec<u8>> {
    ok(
        s.read_at(name, offset, len),
        &format!("read_at({name}, {offset}, {len})"),
    )
}

fn names_are_validated(s: &dyn BlobStore) {
    for good in ["a", "a/b", "x.y-z_0/9", "..a", "a/.b"] {
        ok(
            validate_blob_name(good),
            &format!("{good:?} is a valid name"),
        );
    }
    let long = "a".repeat(300);
    for bad in [
        "", "../x", "/abs", "A", "a//b", "a/", ".", "a/./b", "a/../b", "a b", "é", &long,
    ] {
        assert!(validate_blob_name(bad).is_err(), "{bad:?} must be rejected");
        match s.write_at(bad, 0, b"x") {
            Err(StorageError::Io(msg)) => {
                assert!(
                    msg.contains(&format!("{bad:?}")),
                    "error {msg:?} must name {bad:?}"
                )
            }
            other => panic!("write_at({bad:?}) must fail with Io, got {other:?}"),
        }
        assert!(s.read_at(bad, 0, 1).is_err(), "read_at({bad:?}) must fail");
        assert!(s.remove(bad).is_err(), "remove({bad:?}) must fail");
    }
    for bad_prefix in ["../", "/", "A", "a//", "./x"] {
        assert!(
            s.list(bad_prefix).is_err(),
            "list({bad_prefix:?}) must fail"
        );
    }
    assert!(
        ok(s.list(""), "list").is_empty(),
        "rejected names must not be stored"
    );
}

fn absent_blobs(s: &dyn BlobStore) {
    assert_eq!(read(s, "none", 0, 10), None, "read of an absent blob");
    assert_eq!(ok(s.len("none"), "len"), None, "len of an absent blob");
    assert_eq!(
        ok(s.modified_ms("none"), "modified_ms"),
        None,
        "mtime of an absent blob"
    );
    ok(s.remove("none"), "removing an absent blob must succeed");
    assert!(
        ok(s.list(""), "list").is_empty(),
        "a fresh store must be empty"
    );
}

fn write_and_read_at_offsets(s: &dyn BlobStore) {
    ok(s.write_at("a", 0, b"hello"), "write_at");
    assert_eq!(
        read(s, "a", 0, 5).as_deref(),
        Some(&b"hello"[..]),
        "whole read"
    );
    assert_eq!(
        read(s, "a", 1, 3).as_deref(),
        Some(&b"ell"[..]),
        "inner read"
    );
    assert_eq!(
        read(s, "a", 3, 10).as_deref(),
        Some(&b"lo"[..]),
        "short read at the end"
    );
    assert_eq!(read(s, "a", 5, 4), Some(Vec::new()), "read at the end");
    assert_eq!(read(s, "a", 100, 4), Some(Vec::new()), "read past the end");
    assert_eq!(
        read(s, "a", 0, usize::MAX).as_deref(),
        Some(&b"hello"[..]),
        "huge len"
    );
    ok(s.write_at("a", 1, b"EL"), "overwrite");
    assert_eq!(
        read(s, "a", 0, 10).as_deref(),
        Some(&b"hELlo"[..]),
        "overwrite in place"
    );
    assert!(
        ok(s.modified_ms("a"), "modified_ms").is_some(),
        "a written blob has an mtime"
    );
    ok(s.write_at("gap", 10, b"xy"), "write past the end");
    let mut want = vec![0u8; 10];
    want.extend_from_slice(b"xy");
    assert_eq!(
        read(s, "gap", 0, 100),
        Some(want),
        "a gap must read as zeros"
    );
    assert_eq!(ok(s.len("gap"), "len"), Some(12), "len after a gap");
    ok(s.write_at("z", 10, b""), "empty write");
    assert_eq!(
        ok(s.len("z"), "len"),
        Some(0),
        "an empty write creates, never extends"
    );
    let chunk: Vec<u8> = (0..256 * 1024 + 1).map(|i| (i % 251) as u8).collect();
    for i in 0..4u64 {
        ok(
            s.write_at("big", 3 + i * chunk.len() as u64, &chunk),
            "chunk write",
        );
    }
    let all = read(s, "big", 3, 4 * chunk.len()).unwrap_or_default();
    assert_eq!(
        all,
        chunk.repeat(4),
        "sequential chunk writes must read back"
    );
}

fn set_len_cuts_and_extends(s: &dyn BlobStore) {
    ok(s.write_at("a", 0, b"hello"), "write_at");
    ok(s.set_len("a", 2), "shrink");
    assert_eq!(
        read(s, "a", 0, 10).as_deref(),
        Some(&b"he"[..]),
        "shrink keeps a prefix"
    );
    ok(s.set_len("a", 6), "extend");
    assert_eq!(
        read(s, "a", 0, 10).as_deref(),
        Some(&b"he\0\0\0\0"[..]),
        "extend with zeros"
    );
    ok(s.write_at("a", 8, b"!"), "write after the end");
    assert_eq!(
        read(s, "a", 0, 10).as_deref(),
        Some(&b"he\0\0\0\0\0\0!"[..]),
        "no old bytes"
    );
    ok(s.set_len("new", 3), "set_len creates");
    assert_eq!(
        read(s, "new", 0, 10),
        Some(vec![0; 3]),
        "set_len on a missing blob"
    );
    ok(s.set_len("new", 0), "set_len to zero");
    assert_eq!(
        ok(s.len("new"), "len"),
        Some(0),
        "a zero-length blob still exists"
    );
}

fn remove_then_recreate_starts_empty(s: &dyn BlobStore) {
    ok(s.write_at("d/r", 0, b"old bytes"), "write_at");
    assert_eq!(
        read(s, "d/r", 0, 3).as_deref(),
        Some(&b"old"[..]),
        "read (caches a handle)"
    );
    ok(s.remove("d/r"), "remove");
    assert_eq!(read(s, "d/r", 0, 10), None, "removed blob still readable");
    assert_eq!(
        ok(s.len("d/r"), "len"),
        None,
        "removed blob still has a length"
    );
    ok(s.remove("d/r"), "removing twice");
    ok(s.write_at("d/r", 4, b"z"), "re-create");
    assert_eq!(
        read(s, "d/r", 0, 10),
        Some(b"\0\0\0\0z".to_vec()),
        "old bytes came back"
    );
    assert_eq!(
        ok(s.list(""), "list"),
        vec!["d/r".to_string()],
        "list after re-create"
    );
}

fn list_by_prefix(s: &dyn BlobStore) {
    for name in ["b", "ab", "a.b", "a/y/z", "a/x", "a/xx", "c/d/e/f"] {
        ok(s.write_at(name, 0, name.as_bytes()), "write_at");
    }
    let cases: &[(&str, &[&str])] = &[
        ("", &["a.b", "a/x", "a/xx", "a/y/z", "ab", "b", "c/d/e/f"]),
        ("a/", &["a/x", "a/xx", "a/y/z"]),
        ("a", &["a.b", "a/x", "a/xx", "a/y/z", "ab"]),
        ("a/x", &["a/x", "a/xx"]),
        ("a/y", &["a/y/z"]),
        ("c/d/", &["c/d/e/f"]),
        ("zz", &[]),
        ("nodir/", &[]),
    ];
    for (prefix, want) in cases {
        assert_eq!(ok(s.list(prefix), "list"), *want, "list({prefix:?})");
    }
    ok(s.remove("c/d/e/f"), "remove");
    assert!(
        ok(s.list("c/"), "list").is_empty(),
        "list after removing the only deep blob"
    );
    ok(
        s.write_at("c", 0, b"now a blob"),
        "a name freed by removing every blob under it",
    );
}

fn names_cannot_be_file_and_directory(s: &dyn BlobStore) {
    ok(s.write_at("f", 0, b"file"), "write_at");
    assert!(
        s.write_at("f/g", 0, b"x").is_err(),
        "f is a blob: f/g must be refused"
    );
    assert_eq!(read(s, "f/g", 0, 1), None, "f/g must not exist");
    ok(s.write_at("e/h", 0, b"x"), "write_at");
    assert!(
        s.write_at("e", 0, b"x").is_err(),
        "e holds blobs: e must be refused"
    );
    assert!(
        s.set_len("e", 1).is_err(),
        "e holds blobs: set_len(e) must be refused"
    );
    assert_eq!(read(s, "e", 0, 1), None, "a directory is not a blob");
    ok(s.remove("e"), "removing a directory name removes nothing");
    assert_eq!(
        read(s, "e/h", 0, 1),
        Some(b"x".to_vec()),
        "e/h must survive remove(e)"
    );
}

fn many_open_blobs(s: &dyn BlobStore) {
    // More blobs than any sane handle cache: writes and reads interleave across them.
    for round in 0..2u8 {
        for i in 0..150u64 {
            ok(
                s.write_at(&format!("m/{i:03}"), u64::from(round), &[round + 1]),
                "write_at",
            );
        }
    }
    for i in 0..150u64 {
        assert_eq!(
            read(s, &format!("m/{i:03}"), 0, 4),
            Some(vec![1, 2]),
            "blob m/{i:03}"
        );
    }
    assert_eq!(
        ok(s.list("m/"), "list").len(),
        150,
        "list after many writes"
    );
    assert!(s.size_bytes() >= 300, "size_bytes must count stored bytes");
}

async fn concurrent_syncs_all_succeed(s: BlobRef) {
    let mut tasks = Vec::new();
    for i in 0..SYNC_TASKS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("sync/{i:02}");
            let data = vec![i as u8; 1000 + i];
            s.write_at(&name, 0, &data)?;
            s.sync().await?;
            Ok::<_, StorageError>((name, data))
        }));
    }
    for task in tasks {
        let joined = task
            .await
            .unwrap_or_else(|e| panic!("a sync task panicked: {e}"));
        let (name, data) = ok(joined, "write and sync from a spawned task");
        assert_eq!(read(&*s, &name, 0, 4096), Some(data), "{name} after sync");
    }
    ok(s.remove("sync/00"), "remove");
    ok(s.sync().await, "sync after remove");
    assert_eq!(read(&*s, "sync/00", 0, 1), None, "removed blob after sync");
}
