//! The conformance suites: one behaviour, checked the same way against every
//! implementation of a storage seam, so the simulation's in-memory stores cannot drift
//! from the real ones.
//!
//! Owns: [`engine_suite`] (for [`Engine`]) and [`blob_suite`] (for
//! [`BlobStore`](super::BlobStore), in `blobs`).
//! Each takes a factory that returns a fresh, empty store per call and panics with a
//! message naming the violated rule. Test support: never called by node logic.
//!
//! Must not: depend on one implementation's quirks. A rule here is a rule callers may
//! rely on; a behaviour that differs between implementations is left unchecked only
//! with a comment saying so.

mod blobs;

pub use blobs::blob_suite;

use super::{Engine, EngineRef, Row, StorageError, WriteBatch};
use std::ops::Bound::{self, Excluded, Included, Unbounded};

fn ok<T>(result: Result<T, StorageError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error {e}"))
}

/// A key-value pair as the cases below spell it.
type Pair<'a> = (&'a [u8], &'a [u8]);
/// A scan case: start, end, limit, and the rows it must return.
type ScanCase<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>, usize, &'a [Pair<'a>]);
/// A last_in case: start, end, and the key it must find.
type LastInCase<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

fn rows(pairs: &[Pair]) -> Vec<Row> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn put_all(engine: &dyn Engine, pairs: &[Pair]) {
    let mut batch = WriteBatch::new();
    for (k, v) in pairs {
        batch.put(*k, *v);
    }
    ok(engine.apply(batch), "apply puts");
}

/// Checks an [`Engine`]; `make` returns a fresh, empty engine per call.
pub async fn engine_suite(make: &dyn Fn() -> EngineRef) {
    scan_bounds_and_limits(&*make());
    last_in_bounds(&*make());
    batches_apply_in_order_and_whole(&*make());
    overwrite_remove_and_empty_values(&*make());
    binary_keys_sort_as_bytes(&*make());
    sync_keeps_data_readable(&*make()).await;
}

fn scan_bounds_and_limits(e: &dyn Engine) {
    let data: &[Pair] = &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4")];
    put_all(e, data);
    let cases: &[ScanCase] = &[
        (Unbounded, Unbounded, 10, data),
        (Included(b"b"), Excluded(b"d"), 10, &data[1..3]),
        (Excluded(b"b"), Included(b"d"), 10, &data[2..4]),
        (Included(b"b"), Included(b"b"), 10, &data[1..2]),
        (Excluded(b"b"), Excluded(b"b"), 10, &[]),
        (Included(b"b"), Excluded(b"b"), 10, &[]),
        (Excluded(b"b"), Excluded(b"c"), 10, &[]),
        (Included(b"d"), Included(b"b"), 10, &[]),
        (Included(b"bb"), Unbounded, 1, &data[2..3]),
        (Unbounded, Excluded(b"a"), 10, &[]),
        (Included(b"b"), Unbounded, 2, &data[1..3]),
        (Unbounded, Unbounded, 0, &[]),
        (Included(b"e"), Unbounded, 10, &[]),
    ];
    for (start, end, limit, want) in cases {
        let got = ok(e.scan(*start, *end, *limit), "scan");
        assert_eq!(
            got,
            rows(want),
            "scan({start:?}, {end:?}, limit {limit}) returned the wrong rows"
        );
    }
}

fn last_in_bounds(e: &dyn Engine) {
    put_all(e, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]);
    let cases: &[LastInCase] = &[
        (b"a", b"c", Some(b"b")), // end is excluded
        (b"a", b"z", Some(b"c")),
        (b"", b"\xff", Some(b"c")),
        (b"c", b"c\x00", Some(b"c")),
        (b"a", b"a", None),
        (b"c", b"a", None),
        (b"d", b"z", None),
        (b"a", b"b", Some(b"a")),
    ];
    for (start, end, want) in cases {
        let got = ok(e.last_in(start, end), "last_in");
        let want = want.map(|k| {
            let v = ok(e.get(k), "get");
            (
                k.to_vec(),
                v.unwrap_or_else(|| panic!("key {k:?} vanished")),
            )
        });
        assert_eq!(got, want, "last_in({start:?}, {end:?}) was wrong");
    }
}

fn batches_apply_in_order_and_whole(e: &dyn Engine) {
    put_all(e, &[(b"r/1", b"old"), (b"r/5", b"old"), (b"s", b"old")]);
    let mut batch = WriteBatch::new();
    batch.put(b"r/2".to_vec(), b"new".to_vec());
    batch.put(b"r/3".to_vec(), b"new".to_vec());
    batch.remove_range(b"r/0".to_vec(), b"r/4".to_vec()); // r/1, and r/2, r/3 of this batch
    batch.put(b"r/3".to_vec(), b"again".to_vec()); // after the range: survives
    batch.remove(b"absent".to_vec());
    batch.remove_range(b"r/9".to_vec(), b"r/0".to_vec()); // empty range: no-op
    batch.put(b"s".to_vec(), b"1".to_vec());
    batch.put(b"s".to_vec(), b"2".to_vec()); // last put wins
    batch.put(b"t".to_vec(), b"x".to_vec());
    batch.remove(b"t".to_vec()); // removed in the same batch
    ok(e.apply(batch), "apply a mixed batch");
    let all = ok(e.scan(Unbounded, Unbounded, 100), "scan all");
    let want = rows(&[(b"r/3", b"again"), (b"r/5", b"old"), (b"s", b"2")]);
    assert_eq!(
        all, want,
        "a batch must apply its ops in order, all of them"
    );
    ok(e.apply(WriteBatch::new()), "apply an empty batch");
    assert_eq!(
        ok(e.scan(Unbounded, Unbounded, 100), "scan"),
        want,
        "empty batch changed data"
    );
}

fn overwrite_remove_and_empty_values(e: &dyn Engine) {
    put_all(e, &[(b"k", b"v1")]);
    put_all(e, &[(b"k", b"v2")]);
    assert_eq!(
        ok(e.get(b"k"), "get"),
        Some(b"v2".to_vec()),
        "overwrite lost"
    );
    put_all(e, &[(b"empty", b"")]);
    assert_eq!(
        ok(e.get(b"empty"), "get"),
        Some(Vec::new()),
        "empty value must read as Some([])"
    );
    let mut batch = WriteBatch::new();
    batch.remove(b"k".to_vec());
    batch.remove(b"never".to_vec());
    ok(e.apply(batch), "removing absent keys must succeed");
    assert_eq!(ok(e.get(b"k"), "get"), None, "removed key still readable");
    let big = vec![0xa5u8; 300 * 1024];
    put_all(e, &[(b"big", &big)]);
    assert_eq!(
        ok(e.get(b"big"), "get"),
        Some(big),
        "a 300 KiB value changed"
    );
}

fn binary_keys_sort_as_bytes(e: &dyn Engine) {
    let data: &[Pair] = &[
        (b"", b"empty key"),
        (b"\x00", b"0"),
        (b"\x00\x00", b"00"),
        (b"\x00\x01", b"01"),
        (b"\x7f", b"7f"),
        (b"\xff", b"ff"),
        (b"\xff\xff", b"ffff"),
    ];
    put_all(e, &data.iter().rev().copied().collect::<Vec<_>>());
    let all = ok(e.scan(Unbounded, Unbounded, 100), "scan");
    assert_eq!(all, rows(data), "keys must sort as unsigned byte strings");
    for (k, v) in data {
        assert_eq!(ok(e.get(k), "get"), Some(v.to_vec()), "get({k:?})");
    }
    let last = ok(e.last_in(b"\x00", b"\xff"), "last_in");
    assert_eq!(
        last,
        Some((b"\x7f".to_vec(), b"7f".to_vec())),
        "last_in over 0x00..0xff"
    );
    let mut batch = WriteBatch::new();
    batch.remove_range(b"\x00".to_vec(), b"\xff".to_vec());
    ok(e.apply(batch), "remove_range");
    let left = ok(e.scan(Unbounded, Unbounded, 100), "scan");
    assert_eq!(
        left,
        rows(&[data[0], data[5], data[6]]),
        "remove_range [0x00, 0xff)"
    );
}

async fn sync_keeps_data_readable(e: &dyn Engine) {
    put_all(e, &[(b"durable", b"yes")]);
    ok(e.sync().await, "sync");
    ok(e.sync().await, "a second sync with nothing new");
    assert_eq!(
        ok(e.get(b"durable"), "get"),
        Some(b"yes".to_vec()),
        "sync lost data"
    );
    assert!(e.size_bytes() > 0, "size_bytes must count stored data");
}
