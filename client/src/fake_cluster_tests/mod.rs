//! SDK tests against tiny in-process fake nodes (tonic servers on loopback):
//! leader redirects, CRC verification, upload framing, resumed downloads and retry
//! rules.

mod fake_node;

use crate::{Client, Error, GetOptions, PutOptions, PutSource};
use fake_node::{add_secondary, bind, calls, pair, quick, serving, Behavior, Serving};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn not_leader_redirect_is_followed_to_the_hinted_node() {
    let p = pair(Behavior::Serve(serving(b"hello world!"))).await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let (info, bytes) = client
        .get_bytes("acme", "box", "k", GetOptions::default())
        .await
        .expect("get via redirect");
    assert_eq!(&bytes[..], b"hello world!");
    assert_eq!(info.size, 12);
    assert_eq!(calls(&p.follower), ["get"]);
    assert_eq!(calls(&p.leader), ["get"]);
    // The hint is cached: the next call goes straight to the leader.
    client.head("acme", "box", "k").await.expect("head");
    assert_eq!(calls(&p.follower), ["get"]);
    assert_eq!(calls(&p.leader), ["get", "head"]);
}

/// `get --from secondary` used to be routed like a strong read (to the primary's
/// leader), so while the primary region was down it waited out the dead primary
/// instead of asking the secondary group. It goes to the secondary's members.
#[tokio::test]
async fn a_read_from_the_secondary_goes_to_the_secondary_group() {
    let p = pair(Behavior::Serve(serving(b"primary"))).await;
    let secondary = add_secondary(&p, b"geo copy").await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let opts = GetOptions {
        consistency: crate::Consistency::Secondary,
        ..GetOptions::default()
    };
    let (_, bytes) = client
        .get_bytes("acme", "box", "k", opts)
        .await
        .expect("get from the secondary");
    assert_eq!(&bytes[..], b"geo copy");
    assert_eq!(calls(&secondary), ["get"]);
    assert!(calls(&p.follower).is_empty() && calls(&p.leader).is_empty());
}

#[tokio::test]
async fn a_corrupt_chunk_is_an_integrity_error() {
    let p = pair(Behavior::Serve(Serving {
        corrupt_chunk: true,
        ..serving(b"0123456789abcdef")
    }))
    .await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let mut stream = client
        .get("acme", "box", "k", GetOptions::default())
        .await
        .expect("open");
    let first = stream.next_chunk().await.expect("first chunk is fine");
    assert_eq!(first.as_deref(), Some(&b"0123"[..]));
    match stream.next_chunk().await {
        Err(Error::Integrity { what, .. }) => assert!(what.contains("offset 4"), "{what}"),
        other => panic!("expected Integrity, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_whole_object_crc_is_an_integrity_error_but_ranges_skip_it() {
    let p = pair(Behavior::Serve(Serving {
        wrong_object_crc: true,
        ..serving(b"0123456789")
    }))
    .await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let mut sink = Vec::new();
    let e = client
        .get_to_writer("acme", "box", "k", GetOptions::default(), &mut sink)
        .await
        .expect_err("whole-object CRC mismatch");
    assert!(
        matches!(&e, Error::Integrity { what, .. } if what.contains("object k")),
        "{e:?}"
    );

    let range = GetOptions {
        range: Some((2, Some(5))),
        ..GetOptions::default()
    };
    let (_, bytes) = client
        .get_bytes("acme", "box", "k", range)
        .await
        .expect("a ranged read checks chunk CRCs only");
    assert_eq!(&bytes[..], b"23456");
}

#[tokio::test]
async fn put_streams_header_chunks_and_trailer_with_crcs() {
    let p = pair(Behavior::Serve(serving(b""))).await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let data: Vec<u8> = (0..600 * 1024u32).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("obj.bin");
    std::fs::write(&path, &data).expect("write");
    let info = client
        .put(
            "acme",
            "box",
            "k",
            PutSource::File(path),
            PutOptions::default(),
        )
        .await
        .expect("put via redirect");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.crc32, crc32fast::hash(&data));
    let parts = p.leader.put_parts.lock().expect("lock").clone();
    let trailer = format!("trailer {} {:08x}", data.len(), crc32fast::hash(&data));
    assert_eq!(
        parts,
        [
            "header",
            "chunk 262144",
            "chunk 262144",
            "chunk 90112",
            trailer.as_str()
        ]
    );
}

#[tokio::test]
async fn a_one_shot_put_rejected_by_a_follower_is_replayed_at_the_leader() {
    let p = pair(Behavior::Serve(serving(b""))).await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let data = vec![9u8; 300 * 1024];
    let info = client
        .put(
            "acme",
            "box",
            "k",
            PutSource::reader(std::io::Cursor::new(data.clone())),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert_eq!(info.crc32, crc32fast::hash(&data));
    assert_eq!(calls(&p.follower), ["put"]);
    assert_eq!(calls(&p.leader), ["put"]);
}

#[tokio::test]
async fn a_conditional_put_failing_after_its_trailer_is_not_retried() {
    let p = pair(Behavior::Serve(Serving {
        fail_after_trailer: true,
        ..serving(b"")
    }))
    .await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let opts = PutOptions {
        if_none_match: Some("*".into()),
        ..PutOptions::default()
    };
    let e = client
        .put_bytes("acme", "box", "k", &b"abc"[..], opts)
        .await
        .expect_err("outcome unknown");
    assert!(matches!(e, Error::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(
        calls(&p.leader),
        ["put"],
        "exactly one attempt at the leader"
    );
}

#[tokio::test]
async fn an_unreachable_seed_is_skipped() {
    let p = pair(Behavior::Serve(serving(b"x"))).await;
    // A port that was bound and released: nothing listens there.
    let dead = {
        let (l, addr) = bind().await;
        drop(l);
        addr
    };
    let client = Client::connect_with(vec![dead.clone(), p.follower_addr.clone()], quick())
        .await
        .expect("connect through the second seed");
    assert!(client.endpoints().contains(&dead));
    assert_eq!(
        client.endpoints().len(),
        3,
        "seeds plus the discovered leader"
    );
    let err = Client::connect_with(vec![dead], quick())
        .await
        .expect_err("no seed answers");
    assert!(
        matches!(err, Error::Transport { sent: false, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let serving = serving(b"0123456789abcdefghij");
    let breaker = serving.break_next_get.clone();
    breaker.store(true, Ordering::SeqCst);
    let p = pair(Behavior::Serve(serving)).await;
    let client = Client::connect_with(vec![p.follower_addr.clone()], quick())
        .await
        .expect("connect");
    let (info, bytes) = client
        .get_bytes("acme", "box", "k", GetOptions::default())
        .await
        .expect("resumed download");
    assert_eq!(&bytes[..], b"0123456789abcdefghij");
    assert_eq!(info.crc32, crc32fast::hash(&bytes));
    assert_eq!(calls(&p.leader), ["get", "get"], "one resume at the leader");
    assert!(!breaker.load(Ordering::SeqCst));
}
