//! Apply-level tests of the object store over the in-memory engine.

use super::store::ObjectStore;
use super::*;
use crate::raft::state_machine::Application;
use crate::raft::{Command, Response};
use crate::storage::mem_engine::MemEngine;
use crate::storage::{EngineRef, WriteBatch};
use std::sync::Arc;

const G: u64 = 1;

struct Fixture {
    engine: MemEngine,
    store: ObjectStore,
    reader: reader::ObjectReader,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let engine = MemEngine::new();
        let shared: EngineRef = Arc::new(engine.clone());
        Self {
            store: ObjectStore::new(shared.clone(), G),
            reader: reader::ObjectReader::new(shared, G),
            engine,
            index: 0,
        }
    }

    fn apply(&mut self, command: ObjectCommand) -> ObjectResponse {
        self.index += 1;
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), self.index);
        let mut batch = WriteBatch::new();
        let response = self
            .store
            .apply(Command::Object(command), log_id, &mut batch)
            .unwrap();
        crate::storage::Engine::apply(&self.engine, batch).unwrap();
        match response {
            Response::Object(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn id(key: &str) -> ObjectId {
    ObjectId {
        tenant: "tenant1".into(),
        container: "box".into(),
        key: key.into(),
    }
}

fn meta(version: u128, data: &[u8], chunks: u32) -> ObjectMeta {
    ObjectMeta {
        size: data.len() as u64,
        crc32: crc32fast::hash(data),
        version,
        chunks,
        content_type: "text/plain".into(),
        metadata: Default::default(),
        created_ms: 10,
        modified_ms: 10,
    }
}

fn append(f: &mut Fixture, upload: u128, key: &str, index: u32, data: &'static [u8]) {
    let r = f.apply(ObjectCommand::AppendChunk {
        upload,
        object: id(key),
        now_ms: 100,
        index,
        data: bytes::Bytes::from_static(data),
    });
    assert_eq!(r, ObjectResponse::Appended);
}

#[test]
fn staged_chunks_are_invisible_until_commit_then_old_version_is_removed() {
    let mut f = Fixture::new();
    append(&mut f, 7, "k", 0, b"hello ");
    append(&mut f, 7, "k", 1, b"world");
    assert_eq!(
        f.reader.head(&id("k")).unwrap(),
        None,
        "nothing visible before commit"
    );
    let r = f.apply(ObjectCommand::Commit {
        upload: 7,
        object: id("k"),
        meta: meta(7, b"hello world", 2),
        conditions: Conditions::default(),
    });
    assert!(matches!(r, ObjectResponse::Stored(_)), "{r:?}");
    assert_eq!(f.reader.head(&id("k")).unwrap().unwrap().version, 7);
    assert_eq!(f.reader.chunk(7, 1).unwrap().unwrap(), b"world");
    assert_eq!(f.reader.upload(7).unwrap(), None, "upload record consumed");

    let r = f.apply(ObjectCommand::PutSmall {
        object: id("k"),
        meta: meta(8, b"x", 1),
        data: bytes::Bytes::from_static(b"x"),
        conditions: Conditions::default(),
    });
    let ObjectResponse::Stored(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.created_ms, 10, "creation time kept across overwrite");
    assert_eq!(
        f.reader.chunk(7, 0).unwrap(),
        None,
        "old version's chunks removed"
    );
    assert_eq!(f.reader.chunk(8, 0).unwrap().unwrap(), b"x");
}

#[test]
fn abort_and_incomplete_commit_leave_nothing() {
    let mut f = Fixture::new();
    append(&mut f, 9, "k", 0, b"abc");
    assert_eq!(
        f.apply(ObjectCommand::Abort { upload: 9 }),
        ObjectResponse::Aborted
    );
    assert_eq!(f.reader.chunk(9, 0).unwrap(), None);
    assert_eq!(f.reader.upload(9).unwrap(), None);

    append(&mut f, 10, "k", 0, b"abc");
    let r = f.apply(ObjectCommand::Commit {
        upload: 10,
        object: id("k"),
        meta: meta(10, b"abcdef", 2),
        conditions: Conditions::default(),
    });
    assert_eq!(
        r,
        ObjectResponse::Incomplete {
            expected: 2,
            appended: 1
        }
    );
    assert_eq!(f.reader.head(&id("k")).unwrap(), None);
    assert_eq!(f.reader.chunk(10, 0).unwrap(), None);
    assert!(f
        .engine
        .keys()
        .iter()
        .all(|k| !k.starts_with(&crate::objects::layout::version_prefix(G, 10))));

    let r = f.apply(ObjectCommand::Commit {
        upload: 99,
        object: id("k"),
        meta: meta(99, b"", 0),
        conditions: Conditions::default(),
    });
    assert_eq!(r, ObjectResponse::UploadMissing);
}

#[test]
fn conditions_are_checked_at_apply_time() {
    let mut f = Fixture::new();
    let put = |version: u128, conditions: Conditions| ObjectCommand::PutSmall {
        object: id("c"),
        meta: meta(version, b"v", 1),
        data: bytes::Bytes::from_static(b"v"),
        conditions,
    };
    let none_star = Conditions {
        if_none_match: Some("*".into()),
        if_match: None,
    };
    assert!(matches!(
        f.apply(put(1, none_star.clone())),
        ObjectResponse::Stored(_)
    ));
    assert!(
        matches!(
            f.apply(put(2, none_star)),
            ObjectResponse::PreconditionFailed(_)
        ),
        "create-only on existing object"
    );
    let stale = Conditions {
        if_match: Some(etag_of(12345)),
        if_none_match: None,
    };
    let r = f.apply(put(3, stale));
    let ObjectResponse::PreconditionFailed(why) = r else {
        panic!("{r:?}")
    };
    assert!(why.contains(&etag_of(1)), "{why}");
    let fresh = Conditions {
        if_match: Some(etag_of(1).trim_matches('"').to_string()),
        if_none_match: None,
    };
    assert!(
        matches!(f.apply(put(4, fresh)), ObjectResponse::Stored(_)),
        "unquoted ETag matches"
    );
    assert_eq!(f.reader.head(&id("c")).unwrap().unwrap().version, 4);
    // A failed conditional commit removes the staged chunks.
    append(&mut f, 5, "c", 0, b"z");
    let r = f.apply(ObjectCommand::Commit {
        upload: 5,
        object: id("c"),
        meta: meta(5, b"z", 1),
        conditions: Conditions {
            if_match: Some(etag_of(1)),
            if_none_match: None,
        },
    });
    assert!(matches!(r, ObjectResponse::PreconditionFailed(_)));
    assert_eq!(f.reader.chunk(5, 0).unwrap(), None);
}

#[test]
fn delete_list_and_reap() {
    let mut f = Fixture::new();
    for (v, k) in [(1u128, "a/1"), (2, "a/2"), (3, "b/1")] {
        f.apply(ObjectCommand::PutSmall {
            object: id(k),
            meta: meta(v, b"d", 1),
            data: bytes::Bytes::from_static(b"d"),
            conditions: Conditions::default(),
        });
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
    assert_eq!(f.reader.chunk(1, 0).unwrap(), None);

    append(&mut f, 50, "slow", 0, b"s");
    assert_eq!(
        f.apply(ObjectCommand::ReapUploads {
            idle_before_ms: 100
        }),
        ObjectResponse::Reaped { uploads: 0 },
        "touched at 100, not before"
    );
    assert_eq!(
        f.apply(ObjectCommand::ReapUploads {
            idle_before_ms: 101
        }),
        ObjectResponse::Reaped { uploads: 1 }
    );
    assert_eq!(f.reader.chunk(50, 0).unwrap(), None);
}

#[test]
fn corrupted_chunk_is_detected_on_read() {
    let mut f = Fixture::new();
    f.apply(ObjectCommand::PutSmall {
        object: id("k"),
        meta: meta(1, b"payload", 1),
        data: bytes::Bytes::from_static(b"payload"),
        conditions: Conditions::default(),
    });
    assert!(f
        .engine
        .flip_byte(&crate::objects::layout::chunk(G, 1, 0), 7));
    assert!(matches!(
        f.reader.chunk(1, 0),
        Err(crate::storage::StorageError::Corrupt { .. })
    ));
}
