//! Apply-level tests of the object store over the in-memory engine and blob store.

use super::chunks::{ChunkRead, ChunkStore};
use super::store::ObjectStore;
use super::*;
use crate::clock::TokioClock;
use crate::raft::state_machine::Application;
use crate::raft::{Command, Response};
use crate::storage::mem_blob::MemBlobStore;
use crate::storage::mem_engine::MemEngine;
use crate::storage::{BlobRef, EngineRef, WriteBatch};
use std::sync::Arc;
use stratus_core::crypto::envelope::{Envelope, KeySource};
use stratus_core::crypto::WrappedKey;
use stratus_core::limits::STORAGE_CHUNK_BYTES;

const G: u64 = 1;

struct Fixture {
    engine: MemEngine,
    blobs: MemBlobStore,
    store: ObjectStore,
    reader: reader::ObjectReader,
    chunks: ChunkStore,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let engine = MemEngine::new();
        let blobs = MemBlobStore::new(Arc::new(TokioClock::starting_at(1_000)));
        let shared: EngineRef = Arc::new(engine.clone());
        let blob_ref: BlobRef = Arc::new(blobs.clone());
        Self {
            store: ObjectStore::new(shared.clone(), blob_ref.clone(), G, Default::default()),
            reader: reader::ObjectReader::new(shared, blob_ref.clone(), G),
            chunks: ChunkStore::new(blob_ref, G),
            engine,
            blobs,
            index: 0,
        }
    }

    /// A fixture whose tenant has the container `box`.
    fn with_box() -> Self {
        let mut f = Self::new();
        let r = f.apply(ObjectCommand::CreateContainer {
            tenant: "tenant1".into(),
            name: "box".into(),
            now_ms: 5,
        });
        assert!(matches!(r, ObjectResponse::Container(_)), "{r:?}");
        f
    }

    fn apply(&mut self, command: ObjectCommand) -> ObjectResponse {
        self.index += 1;
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), self.index);
        let mut batch = WriteBatch::new();
        let view: EngineRef = Arc::new(self.engine.clone());
        let response = self
            .store
            .apply(Command::Object(command), log_id, &view, &mut batch)
            .unwrap();
        crate::storage::Engine::apply(&self.engine, batch).unwrap();
        // As the state machine does before each engine batch.
        self.store.store_usage(&view).unwrap();
        self.store.flush_inline().unwrap();
        self.store.finish_entry().unwrap();
        match response {
            Response::Object(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Writes a chunked version's chunks as the fan-out would; returns its CRC list.
    fn stage(&self, version: u128, data: &[u8]) -> Vec<u32> {
        data.chunks(STORAGE_CHUNK_BYTES)
            .enumerate()
            .map(|(i, c)| {
                self.chunks.write(version, i as u32, c).unwrap();
                crc32fast::hash(c)
            })
            .collect()
    }

    fn has_blob(&self, version: u128) -> bool {
        self.blobs.names().contains(&chunks::blob_name(G, version))
    }
}

fn id(key: &str) -> ObjectId {
    ObjectId {
        tenant: "tenant1".into(),
        container: "box".into(),
        key: key.into(),
    }
}

fn inline_meta(version: u128, data: &[u8]) -> ObjectMeta {
    ObjectMeta {
        size: data.len() as u64,
        crc32: crc32fast::hash(data),
        version,
        layout: Layout::Inline,
        content_type: "text/plain".into(),
        metadata: Default::default(),
        created_ms: 10,
        modified_ms: 10,
        encryption: Envelope {
            source: KeySource::Tenant { kek_version: 1 },
            dek: WrappedKey {
                nonce: [0; 12],
                sealed: vec![0; 48],
            },
        },
    }
}

/// Inline bytes as the leader stores them: the content plus a 16-byte tag (the
/// store checks lengths only; sealing is the put pipeline's and keyring's).
fn sealed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.extend_from_slice(&[0xee; stratus_core::crypto::TAG_BYTES]);
    out
}

fn chunked_meta(version: u128, data: &[u8]) -> ObjectMeta {
    let chunks = data.len().div_ceil(STORAGE_CHUNK_BYTES) as u32;
    ObjectMeta {
        layout: Layout::Chunked { chunks },
        ..inline_meta(version, data)
    }
}

fn put_inline(
    version: u128,
    key: &str,
    data: &'static [u8],
    conditions: Conditions,
) -> ObjectCommand {
    ObjectCommand::PutInline {
        object: id(key),
        meta: inline_meta(version, data),
        data: sealed(data).into(),
        conditions,
    }
}

fn big(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn commit_makes_a_staged_version_visible_and_overwrite_drops_the_old_bytes() {
    let mut f = Fixture::with_box();
    let data = big(2 * STORAGE_CHUNK_BYTES + 100, 1);
    let crcs = f.stage(7, &data);
    assert_eq!(
        f.reader.head(&id("k")).unwrap(),
        None,
        "staged chunks are invisible"
    );
    let r = f.apply(ObjectCommand::Commit {
        object: id("k"),
        meta: chunked_meta(7, &data),
        chunk_crcs: crcs.clone(),
        conditions: Conditions::default(),
    });
    assert!(matches!(r, ObjectResponse::Stored(_)), "{r:?}");
    assert_eq!(f.reader.head(&id("k")).unwrap().unwrap().version, 7);
    assert_eq!(f.reader.chunk_list(7).unwrap(), Some(crcs.clone()));
    assert_eq!(
        f.reader.repairs(10).unwrap(),
        Vec::<u128>::new(),
        "all chunks present: nothing to repair"
    );
    assert_eq!(
        f.chunks.read(7, 2, Some(crcs[2])).unwrap(),
        ChunkRead::Intact(data[2 * STORAGE_CHUNK_BYTES..].to_vec())
    );

    let r = f.apply(put_inline(8, "k", b"x", Conditions::default()));
    let ObjectResponse::Stored(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.created_ms, 10, "creation time kept across overwrite");
    assert_eq!(
        f.reader.chunk_list(7).unwrap(),
        None,
        "the old version is unreferenced"
    );
    assert!(
        f.has_blob(7),
        "its chunks stay for reads in flight; the sweep removes them"
    );
    assert_eq!(f.reader.inline(8).unwrap().unwrap(), sealed(b"x"));
}

#[test]
fn a_replica_missing_chunks_marks_the_version_for_repair() {
    let mut f = Fixture::with_box();
    let data = big(3 * STORAGE_CHUNK_BYTES, 2);
    let crcs: Vec<u32> = data
        .chunks(STORAGE_CHUNK_BYTES)
        .map(crc32fast::hash)
        .collect();
    // Only chunk 0 arrived here; the leader committed with a majority elsewhere.
    f.chunks.write(9, 0, &data[..STORAGE_CHUNK_BYTES]).unwrap();
    let r = f.apply(ObjectCommand::Commit {
        object: id("k"),
        meta: chunked_meta(9, &data),
        chunk_crcs: crcs,
        conditions: Conditions::default(),
    });
    assert!(matches!(r, ObjectResponse::Stored(_)), "{r:?}");
    assert_eq!(f.reader.repairs(10).unwrap(), vec![9]);
    // Deleting the version unmarks it and drops its blob.
    assert_eq!(
        f.apply(ObjectCommand::Delete {
            object: id("k"),
            if_match: None
        }),
        ObjectResponse::Deleted { version: 9 }
    );
    assert_eq!(f.reader.repairs(10).unwrap(), Vec::<u128>::new());
    assert_eq!(f.reader.chunk_list(9).unwrap(), None);
}

#[test]
fn malformed_commits_are_refused_the_same_way_everywhere() {
    let mut f = Fixture::with_box();
    let data = big(STORAGE_CHUNK_BYTES + 1, 3);
    let crcs = f.stage(11, &data);
    let wrong_count = ObjectMeta {
        layout: Layout::Chunked { chunks: 5 },
        ..chunked_meta(11, &data)
    };
    let r = f.apply(ObjectCommand::Commit {
        object: id("k"),
        meta: wrong_count,
        chunk_crcs: crcs,
        conditions: Conditions::default(),
    });
    assert!(matches!(r, ObjectResponse::Malformed(_)), "{r:?}");
    assert_eq!(f.reader.head(&id("k")).unwrap(), None);
    assert!(!f.has_blob(11), "a refused version's chunks go");
    let too_big_inline = ObjectCommand::PutInline {
        object: id("k"),
        meta: inline_meta(12, &big(20_000, 0)),
        data: sealed(&big(20_000, 0)).into(),
        conditions: Conditions::default(),
    };
    assert!(matches!(
        f.apply(too_big_inline),
        ObjectResponse::Malformed(_)
    ));
}

#[test]
fn conditions_are_checked_at_apply_time() {
    let mut f = Fixture::with_box();
    let none_star = Conditions {
        if_none_match: Some("*".into()),
        if_match: None,
    };
    assert!(matches!(
        f.apply(put_inline(1, "c", b"v", none_star.clone())),
        ObjectResponse::Stored(_)
    ));
    assert!(
        matches!(
            f.apply(put_inline(2, "c", b"v", none_star)),
            ObjectResponse::PreconditionFailed(_)
        ),
        "create-only on existing object"
    );
    let stale = Conditions {
        if_match: Some(etag_of(12345)),
        if_none_match: None,
    };
    let ObjectResponse::PreconditionFailed(why) = f.apply(put_inline(3, "c", b"v", stale)) else {
        panic!()
    };
    assert!(why.contains(&etag_of(1)), "{why}");
    let fresh = Conditions {
        if_match: Some(etag_of(1).trim_matches('"').to_string()),
        if_none_match: None,
    };
    assert!(
        matches!(
            f.apply(put_inline(4, "c", b"v", fresh)),
            ObjectResponse::Stored(_)
        ),
        "unquoted ETag matches"
    );
    assert_eq!(f.reader.head(&id("c")).unwrap().unwrap().version, 4);
    // A failed conditional commit removes the staged chunks.
    let data = big(STORAGE_CHUNK_BYTES, 4);
    let crcs = f.stage(5, &data);
    let r = f.apply(ObjectCommand::Commit {
        object: id("c"),
        meta: chunked_meta(5, &data),
        chunk_crcs: crcs,
        conditions: Conditions {
            if_match: Some(etag_of(1)),
            if_none_match: None,
        },
    });
    assert!(matches!(r, ObjectResponse::PreconditionFailed(_)));
    assert!(!f.has_blob(5));
    assert_eq!(
        f.reader.head(&id("c")).unwrap().unwrap().version,
        4,
        "object unchanged"
    );
}

#[test]
fn delete_and_list() {
    let mut f = Fixture::with_box();
    for (v, k) in [(1u128, "a/1"), (2, "a/2"), (3, "b/1")] {
        f.apply(put_inline(v, k, b"d", Conditions::default()));
    }
    let names =
        |rows: Vec<(String, ObjectMeta)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        names(f.reader.list("tenant1", "box", "a/", None, 10).unwrap()),
        vec!["a/1", "a/2"]
    );
    assert_eq!(
        names(
            f.reader
                .list("tenant1", "box", "", Some("a/1"), 10)
                .unwrap()
        ),
        vec!["a/2", "b/1"]
    );
    assert_eq!(
        names(f.reader.list("tenant1", "box", "", None, 1).unwrap()),
        vec!["a/1"]
    );
    assert!(f
        .reader
        .list("tenant1", "other", "", None, 10)
        .unwrap()
        .is_empty());

    assert!(matches!(
        f.apply(ObjectCommand::Delete {
            object: id("a/1"),
            if_match: Some(etag_of(9))
        }),
        ObjectResponse::PreconditionFailed(_)
    ));
    assert_eq!(
        f.apply(ObjectCommand::Delete {
            object: id("a/1"),
            if_match: None
        }),
        ObjectResponse::Deleted { version: 1 }
    );
    assert_eq!(
        f.apply(ObjectCommand::Delete {
            object: id("a/1"),
            if_match: None
        }),
        ObjectResponse::NotFound
    );
    assert_eq!(f.reader.inline(1).unwrap(), None);
}

#[test]
fn damaged_chunks_and_inline_bytes_are_detected_on_read() {
    let mut f = Fixture::with_box();
    f.apply(put_inline(1, "k", b"payload", Conditions::default()));
    let loc = f.reader.inline_record(1).unwrap().expect("stored").loc;
    let segment = crate::objects::inline_store::segment_name(G, loc.segment);
    let at = loc.offset + crate::objects::inline_store::HEADER_BYTES as u64 + 3;
    assert!(f.blobs.flip_byte(&segment, at));
    assert!(matches!(
        f.reader.inline(1),
        Err(crate::storage::StorageError::Corrupt { .. })
    ));
    // A damaged reference in the engine is caught by its frame too.
    assert!(f.engine.flip_byte(&layout::inline(G, 1), 7));
    assert!(matches!(
        f.reader.inline(1),
        Err(crate::storage::StorageError::Corrupt { .. })
    ));

    let data = big(STORAGE_CHUNK_BYTES + 10, 5);
    let crcs = f.stage(2, &data);
    assert!(f
        .blobs
        .flip_byte(&chunks::blob_name(G, 2), chunks::CHUNK_STRIDE + 20));
    assert!(matches!(
        f.chunks.read(2, 1, Some(crcs[1])).unwrap(),
        ChunkRead::Corrupt(_)
    ));
    assert!(matches!(
        f.chunks.read(2, 0, Some(crcs[0])).unwrap(),
        ChunkRead::Intact(_)
    ));
}

#[test]
fn containers_order_with_the_objects_they_hold() {
    let mut f = Fixture::with_box();
    let create = |name: &str| ObjectCommand::CreateContainer {
        tenant: "tenant1".into(),
        name: name.into(),
        now_ms: 6,
    };
    let delete = |name: &str| ObjectCommand::DeleteContainer {
        tenant: "tenant1".into(),
        name: name.into(),
    };
    assert_eq!(f.apply(create("box")), ObjectResponse::ContainerExists);
    f.apply(put_inline(1, "k", b"v", Conditions::default()));
    assert_eq!(
        f.apply(delete("box")),
        ObjectResponse::ContainerNotEmpty {
            example: "k".into()
        }
    );
    assert_eq!(
        f.apply(ObjectCommand::Delete {
            object: id("k"),
            if_match: None
        }),
        ObjectResponse::Deleted { version: 1 }
    );
    assert_eq!(f.apply(delete("box")), ObjectResponse::ContainerDeleted);
    assert_eq!(f.apply(delete("box")), ObjectResponse::ContainerNotFound);
    // An upload that was open while the container went away cannot land in it.
    assert_eq!(
        f.apply(put_inline(2, "late", b"v", Conditions::default())),
        ObjectResponse::ContainerNotFound
    );
    let data = big(STORAGE_CHUNK_BYTES + 1, 6);
    let crcs = f.stage(3, &data);
    let r = f.apply(ObjectCommand::Commit {
        object: id("late"),
        meta: chunked_meta(3, &data),
        chunk_crcs: crcs,
        conditions: Conditions::default(),
    });
    assert_eq!(r, ObjectResponse::ContainerNotFound);
    assert!(!f.has_blob(3), "its staged chunks are dropped");
    // Re-created, it is empty.
    assert!(matches!(
        f.apply(create("box")),
        ObjectResponse::Container(_)
    ));
    assert!(f
        .reader
        .list("tenant1", "box", "", None, 10)
        .unwrap()
        .is_empty());
    assert_eq!(f.reader.containers("tenant1").unwrap().len(), 1);
}

#[test]
fn overwritten_inline_bytes_are_compacted_away_and_survivors_stay_readable() {
    let mut f = Fixture::with_box();
    f.store.set_inline_segment_target(4 * 1024).unwrap();
    let payload: &'static [u8] = &[7u8; 900];
    // Eight keys, written three times each: two thirds of the records die.
    let mut version = 100u128;
    for _round in 0..3 {
        for k in 0..8 {
            version += 1;
            f.apply(put_inline(
                version,
                &format!("k{k}"),
                payload,
                Conditions::default(),
            ));
        }
    }
    let segments = |f: &Fixture| {
        f.blobs
            .names()
            .into_iter()
            .filter(|n| n.contains("/il/"))
            .count()
    };
    let before = segments(&f);
    assert!(before >= 6, "{before} segments");
    let view: EngineRef = Arc::new(f.engine.clone());
    let mut removed = 0;
    for _ in 0..50 {
        f.store.before_flush(&view).unwrap();
        for name in f.store.take_removals() {
            crate::storage::BlobStore::remove(&f.blobs, &name).unwrap();
            removed += 1;
        }
    }
    assert!(removed >= 3, "only {removed} segments compacted");
    assert!(segments(&f) < before);
    for k in 0..8 {
        let meta = f.reader.head(&id(&format!("k{k}"))).unwrap().unwrap();
        assert_eq!(
            f.reader.inline(meta.version).unwrap().unwrap(),
            sealed(payload)
        );
    }
    // A reopened store (restart) counts what is live and keeps serving.
    f.store.reload().unwrap();
    let meta = f.reader.head(&id("k3")).unwrap().unwrap();
    assert_eq!(
        f.reader.inline(meta.version).unwrap().unwrap(),
        sealed(payload)
    );
}

/// Services read a tenant's role, then the engine: a role change must show only
/// once the batch of its apply call is in the engine. (The simulation found a read
/// from the secondary whose last sync time, set by a `GeoApply` still on its way
/// to the engine, covered a write the stored objects did not have yet.)
#[test]
fn a_role_change_shows_only_after_its_batch_reached_the_engine() {
    let engine = MemEngine::new();
    let blobs: BlobRef = Arc::new(MemBlobStore::new(Arc::new(TokioClock::starting_at(1_000))));
    let shared: EngineRef = Arc::new(engine.clone());
    let roles = geo_apply::Roles::default();
    let mut store = ObjectStore::new(shared.clone(), blobs, G, roles.clone());
    let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 1);
    let mut batch = WriteBatch::new();
    let change = ObjectCommand::SetRole {
        tenant: "tenant1".into(),
        change: geo::RoleChange::Primary {
            epoch: 3,
            ship_to: Some(7),
        },
    };
    store
        .apply(Command::Object(change), log_id, &shared, &mut batch)
        .unwrap();
    assert_eq!(
        roles.get("tenant1"),
        geo::TenantRole::implicit(),
        "published before its batch reached the engine"
    );
    crate::storage::Engine::apply(&engine, batch).unwrap();
    store.finish_entry().unwrap();
    assert_eq!(roles.get("tenant1").epoch(), 3);
    assert_eq!(roles.get("tenant1").ship_to(), Some(7));
}

/// The operations of one `GeoApply` each see the ones before them. They used to
/// read the state from before the command, so a put and then a delete of one key
/// shipped together left the put on the secondary (found by the simulation's
/// reads from the secondary, checked against their last sync time).
#[test]
fn shipped_operations_apply_in_order_within_one_geo_apply() {
    let mut f = Fixture::new();
    let secondary = ObjectCommand::SetRole {
        tenant: "tenant1".into(),
        change: geo::RoleChange::Secondary {
            epoch: 0,
            from: 9,
            reset: true,
        },
    };
    assert!(matches!(f.apply(secondary), ObjectResponse::Role(_)));
    let seeded = f.apply(ObjectCommand::GeoSeedDone {
        tenant: "tenant1".into(),
        epoch: 0,
        from: 9,
        next_seq: 1,
        as_of_ms: 100,
    });
    assert!(
        matches!(seeded, ObjectResponse::Geo(geo::GeoReply::Applied { .. })),
        "{seeded:?}"
    );
    let create = geo::GeoOp::CreateContainer {
        record: ContainerRecord {
            tenant: "tenant1".into(),
            name: "box".into(),
            created_ms: 5,
        },
    };
    let put = |version: u128, data: &[u8]| geo::GeoOp::Put {
        object: id("k"),
        meta: inline_meta(version, data),
        inline: Some(sealed(data).into()),
        chunk_crcs: None,
    };
    let entries = vec![
        create,
        put(1, b"first"),
        geo::GeoOp::Delete { object: id("k") },
        put(2, b"second"),
        put(3, b"third"),
        geo::GeoOp::Delete { object: id("k") },
    ]
    .into_iter()
    .zip(1..)
    .map(|(op, seq)| geo::GeoEntry { seq, op })
    .collect();
    let applied = f.apply(ObjectCommand::GeoApply {
        tenant: "tenant1".into(),
        epoch: 0,
        from: 9,
        first_seq: 1,
        entries,
        as_of_ms: 200,
    });
    assert_eq!(
        applied,
        ObjectResponse::Geo(geo::GeoReply::Applied { applied_seq: 6 })
    );
    assert_eq!(f.reader.head(&id("k")).unwrap(), None, "deleted last");
    for version in 1..=3u128 {
        assert_eq!(
            f.reader.inline(version).unwrap(),
            None,
            "version {version} is dead and must not keep its bytes"
        );
    }
}

fn event(n: u64, node: u64) -> stratus_core::audit::AuditEvent {
    stratus_core::audit::AuditEvent {
        time_ms: 1_000 + n,
        principal: "operator".into(),
        operation: format!("Op{n}"),
        resource: "tenant tenant1".into(),
        result: "ok".into(),
        node,
    }
}

fn audit_batch(node: u64, batch: u64, events: std::ops::Range<u64>) -> ObjectCommand {
    ObjectCommand::Audit {
        tenant: "tenant1".into(),
        node,
        incarnation: 77,
        batch,
        events: events.map(|n| event(n, node)).collect(),
    }
}

fn set_role(f: &mut Fixture, change: geo::RoleChange) -> geo::TenantRole {
    match f.apply(ObjectCommand::SetRole {
        tenant: "tenant1".into(),
        change,
    }) {
        ObjectResponse::Role(r) => *r,
        other => panic!("unexpected {other:?}"),
    }
}

/// Makes `f` a fresh secondary of `tenant1` (epoch 1, primary group 4, reset).
fn make_secondary(f: &mut Fixture) {
    set_role(
        f,
        geo::RoleChange::Secondary {
            epoch: 1,
            from: 4,
            reset: true,
        },
    );
}

/// The encoded bytes of every audit record of `tenant1` (looked up one by one),
/// and the stored bytes of its head, compared byte for byte between groups. Page
/// boundaries may differ between groups; the records may not.
fn audit_bytes(f: &Fixture) -> (Vec<Vec<u8>>, Vec<u8>) {
    let head = f.reader.audit_head("tenant1").unwrap().unwrap();
    let records = (1..=head.seq)
        .map(|seq| {
            let record = f.reader.audit_record("tenant1", seq).unwrap().unwrap();
            crate::raft::encode(&record)
        })
        .collect();
    let head = crate::storage::Engine::get(&f.engine, &layout::audit_head(G, "tenant1"))
        .unwrap()
        .unwrap();
    (records, head)
}

fn audit_log(f: &Fixture) -> Vec<stratus_core::audit::AuditRecord> {
    f.reader.audit_records("tenant1", 0, usize::MAX).unwrap()
}

/// The audit chain of a geo tenant travels in the outbox: the secondary stores
/// the primary's records byte for byte (and its head, with the batches it
/// applied), never appends its own while it is secondary, and once promoted
/// continues the same chain, ignoring a batch the old primary had applied.
#[test]
fn a_shipped_audit_chain_is_identical_on_the_secondary_and_continues_after_promotion() {
    let mut primary = Fixture::new();
    set_role(
        &mut primary,
        geo::RoleChange::Primary {
            epoch: 1,
            ship_to: Some(9),
        },
    );
    assert_eq!(
        primary.apply(audit_batch(1, 1, 0..3)),
        ObjectResponse::Audited { seq: 3 }
    );
    assert_eq!(
        primary.apply(audit_batch(2, 1, 3..5)),
        ObjectResponse::Audited { seq: 5 }
    );
    // A resend is not appended, and ships nothing.
    assert_eq!(
        primary.apply(audit_batch(2, 1, 3..5)),
        ObjectResponse::Audited { seq: 5 }
    );
    let outbox = primary.reader.outbox("tenant1", 1, usize::MAX).unwrap();
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    assert!(outbox
        .iter()
        .all(|e| matches!(&e.op, geo::GeoOp::Audit { records, .. } if !records.is_empty())));

    let mut secondary = Fixture::new();
    make_secondary(&mut secondary);
    secondary.apply(ObjectCommand::GeoSeedDone {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        next_seq: 1,
        as_of_ms: 0,
    });
    // While secondary, the group refuses to extend the chain itself.
    assert!(matches!(
        secondary.apply(audit_batch(3, 1, 10..11)),
        ObjectResponse::NotPrimary { .. }
    ));
    assert_eq!(secondary.reader.audit_head("tenant1").unwrap(), None);
    let applied = secondary.apply(ObjectCommand::GeoApply {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        first_seq: 1,
        entries: outbox.clone(),
        as_of_ms: 500,
    });
    assert_eq!(
        applied,
        ObjectResponse::Geo(geo::GeoReply::Applied { applied_seq: 2 })
    );
    assert_eq!(audit_bytes(&secondary), audit_bytes(&primary));
    // Shipped again (a lost answer): nothing changes.
    secondary.apply(ObjectCommand::GeoApply {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        first_seq: 1,
        entries: outbox,
        as_of_ms: 600,
    });
    assert_eq!(audit_bytes(&secondary), audit_bytes(&primary));

    // A failover: the secondary becomes primary and continues the chain.
    set_role(
        &mut secondary,
        geo::RoleChange::Primary {
            epoch: 2,
            ship_to: None,
        },
    );
    assert_eq!(
        secondary.apply(audit_batch(2, 1, 3..5)),
        ObjectResponse::Audited { seq: 5 },
        "a batch the old primary applied and shipped is not appended again"
    );
    assert_eq!(
        secondary.apply(audit_batch(1, 2, 5..7)),
        ObjectResponse::Audited { seq: 7 }
    );
    let log = audit_log(&secondary);
    assert_eq!(log.len(), 7);
    assert_eq!(&log[..5], &audit_log(&primary)[..]);
    let end = stratus_core::audit::verify(&log, None).unwrap().unwrap();
    let head = secondary.reader.audit_head("tenant1").unwrap().unwrap();
    assert_eq!(end, (7, head.hash));
}

/// A seed copies the chain from genesis; the outbox entries replayed after it
/// overlap the copy and add only what it lacks. A group that becomes a fresh
/// secondary (a reprotected old primary) drops its own chain first, so its
/// unshipped records never mix with the new primary's.
#[test]
fn a_seeded_audit_chain_starts_at_genesis_and_a_reset_secondary_drops_its_own() {
    let mut primary = Fixture::new();
    primary.apply(audit_batch(1, 1, 0..4));
    set_role(
        &mut primary,
        geo::RoleChange::Primary {
            epoch: 1,
            ship_to: Some(9),
        },
    );
    primary.apply(audit_batch(1, 2, 4..6));
    let seeded_part = audit_log(&primary);
    primary.apply(audit_batch(1, 3, 6..8));
    let outbox = primary.reader.outbox("tenant1", 1, usize::MAX).unwrap();
    assert_eq!(
        outbox.len(),
        2,
        "records before shipping began are not in it"
    );

    // The old primary of an earlier epoch, with records of its own.
    let mut secondary = Fixture::new();
    secondary.apply(audit_batch(5, 1, 100..103));
    set_role(&mut secondary, geo::RoleChange::Fence { epoch: 1 });
    make_secondary(&mut secondary);
    assert!(audit_log(&secondary).is_empty());
    assert_eq!(secondary.reader.audit_head("tenant1").unwrap(), None);
    let batches = primary
        .reader
        .audit_head("tenant1")
        .unwrap()
        .unwrap()
        .batches;
    let seed = secondary.apply(ObjectCommand::GeoSeed {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        ops: vec![geo::GeoOp::Audit {
            tenant: "tenant1".into(),
            records: seeded_part,
            batches,
        }],
    });
    assert!(matches!(
        seed,
        ObjectResponse::Geo(geo::GeoReply::Applied { .. })
    ));
    secondary.apply(ObjectCommand::GeoSeedDone {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        next_seq: 1,
        as_of_ms: 0,
    });
    secondary.apply(ObjectCommand::GeoApply {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        first_seq: 1,
        entries: outbox,
        as_of_ms: 500,
    });
    assert_eq!(audit_bytes(&secondary), audit_bytes(&primary));
    assert_eq!(
        stratus_core::audit::verify(&audit_log(&secondary), None).unwrap(),
        Some((
            8,
            primary.reader.audit_head("tenant1").unwrap().unwrap().hash
        ))
    );
}

/// Records that do not continue the secondary's copy (a gap) are not stored:
/// the copy stays a prefix of the primary's chain.
#[test]
fn a_shipped_audit_record_that_does_not_continue_the_chain_is_not_stored() {
    let mut source = Fixture::new();
    source.apply(audit_batch(1, 1, 0..4));
    let log = audit_log(&source);
    let mut secondary = Fixture::new();
    make_secondary(&mut secondary);
    let ops = vec![geo::GeoOp::Audit {
        tenant: "tenant1".into(),
        records: vec![log[0].clone(), log[2].clone(), log[3].clone()],
        batches: Default::default(),
    }];
    secondary.apply(ObjectCommand::GeoSeed {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        ops,
    });
    assert_eq!(audit_log(&secondary), vec![log[0].clone()]);
    assert_eq!(
        secondary.reader.audit_head("tenant1").unwrap().unwrap().seq,
        1
    );
}

/// Makes `old` (a former primary of `tenant1`) a secondary of group 4 keeping its
/// data, and applies one shipped entry carrying `records` of the new primary.
fn ship_audit_to_old_primary(
    old: &mut Fixture,
    records: Vec<stratus_core::audit::AuditRecord>,
) -> ObjectResponse {
    set_role(
        old,
        geo::RoleChange::Secondary {
            epoch: 1,
            from: 4,
            reset: false,
        },
    );
    old.apply(ObjectCommand::GeoApply {
        tenant: "tenant1".into(),
        epoch: 1,
        from: 4,
        first_seq: 1,
        entries: vec![geo::GeoEntry {
            seq: 1,
            op: geo::GeoOp::Audit {
                tenant: "tenant1".into(),
                records,
                batches: Default::default(),
            },
        }],
        as_of_ms: 10,
    })
}

/// An old primary that appended records of its own after the chain it shipped
/// (a planned failover's narrow race) takes the new primary's records in their
/// place: its copy becomes the primary's chain again instead of staying forked.
#[test]
fn a_forked_copy_of_the_audit_chain_gives_way_to_the_primarys_records() {
    let mut primary = Fixture::new();
    let mut old = Fixture::new();
    for f in [&mut primary, &mut old] {
        assert_eq!(
            f.apply(audit_batch(1, 1, 0..3)),
            ObjectResponse::Audited { seq: 3 }
        );
    }
    assert_eq!(audit_log(&primary), audit_log(&old), "the shared part");
    old.apply(audit_batch(9, 1, 100..102));
    primary.apply(audit_batch(2, 1, 3..6));
    let theirs = audit_log(&primary)[3..].to_vec();
    let applied = ship_audit_to_old_primary(&mut old, theirs);
    assert_eq!(
        applied,
        ObjectResponse::Geo(geo::GeoReply::Applied { applied_seq: 1 })
    );
    assert_eq!(audit_bytes(&old).0, audit_bytes(&primary).0);
    let head = old.reader.audit_head("tenant1").unwrap().unwrap();
    let want = primary.reader.audit_head("tenant1").unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (want.seq, want.hash));
}

/// A batch of events longer than a page is stored as several pages; every record
/// reads back by its seq, and a listing from any point with any limit is the
/// same slice of the chain.
#[test]
fn audit_records_read_back_across_page_boundaries() {
    let mut f = Fixture::new();
    let long = (super::AUDIT_PAGE_RECORDS_MAX * 2 + 7) as u64;
    assert_eq!(
        f.apply(audit_batch(1, 1, 0..long)),
        ObjectResponse::Audited { seq: long }
    );
    assert_eq!(
        f.apply(audit_batch(1, 2, long..long + 3)),
        ObjectResponse::Audited { seq: long + 3 }
    );
    let all = audit_log(&f);
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=long + 3).collect::<Vec<_>>());
    let pages = {
        let prefix = layout::audit_prefix(G, "tenant1");
        let end = crate::raft::keys::prefix_end(&prefix).unwrap();
        crate::storage::Engine::scan(
            &f.engine,
            std::ops::Bound::Included(&prefix),
            std::ops::Bound::Excluded(&end),
            usize::MAX,
        )
        .unwrap()
        .len()
    };
    assert_eq!(
        pages, 4,
        "three pages for the long batch, one for the short"
    );
    for seq in [1, 2, 128, 129, 130, 256, 257, long, long + 1, long + 3] {
        let record = f.reader.audit_record("tenant1", seq).unwrap();
        assert_eq!(record.as_ref(), all.get(seq as usize - 1), "record {seq}");
    }
    assert_eq!(f.reader.audit_record("tenant1", 0).unwrap(), None);
    assert_eq!(f.reader.audit_record("tenant1", long + 4).unwrap(), None);
    for after in [0, 1, 127, 128, 129, 200, long - 1, long, long + 2, long + 3] {
        for limit in [1, 5, 128, 1000] {
            let got = f.reader.audit_records("tenant1", after, limit).unwrap();
            let from = (after as usize).min(all.len());
            let want = &all[from..(from + limit).min(all.len())];
            assert_eq!(got, want, "after {after}, limit {limit}");
        }
    }
}

/// A fork in the middle of a page: the old primary's page is cut back to the
/// shared records and the new primary's records follow them.
#[test]
fn a_fork_inside_an_audit_page_keeps_the_shared_records_of_that_page() {
    let mut primary = Fixture::new();
    let mut old = Fixture::new();
    primary.apply(audit_batch(1, 1, 0..3));
    old.apply(audit_batch(1, 1, 0..5));
    assert_eq!(
        audit_log(&primary)[..],
        audit_log(&old)[..3],
        "the shared part"
    );
    primary.apply(audit_batch(2, 1, 100..104));
    let theirs = audit_log(&primary)[3..].to_vec();
    ship_audit_to_old_primary(&mut old, theirs);
    assert_eq!(audit_log(&old), audit_log(&primary));
    assert_eq!(audit_bytes(&old).0, audit_bytes(&primary).0);
    let head = old.reader.audit_head("tenant1").unwrap().unwrap();
    assert_eq!(head.seq, 7);
}
