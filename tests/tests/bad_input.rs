//! Bad input: every refusal has the right gRPC code, the stable `stratus-error`
//! code and a message that says what was wrong, and leaves nothing behind.
//!
//! Requests the SDK would refuse to send (bad CRCs, broken streams, bad names)
//! go through the raw `stratus.v1` client to the node.

use anyhow::{bail, ensure, Context, Result};
use stratus_client::{Client, Error, GetOptions, PutOptions, Redundancy};
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use stratus_proto::v1 as pb;
use stratus_proto::v1::put_request::Part;
use stratus_tests::grpc::{self, expect_status};
use stratus_tests::{bins, random_bytes, Cluster, ClusterOptions};
use tonic::Code;

const TENANT: &str = "acme";
const CONTAINER: &str = "inputs";
const MIB: usize = 1024 * 1024;
/// The nodes' `object_bytes_max` in these tests.
const OBJECT_MAX: usize = 8 * MIB;
const TENANT_RULE: &str = "tenant names are 3-24 characters of lowercase letters and digits";
const CONTAINER_RULE: &str =
    "container names are 3-63 characters of lowercase letters, digits and single hyphens";

/// A cluster with a small object limit and tenant `acme` with container `inputs`.
async fn setup() -> Result<(Cluster, Client, String)> {
    let opts = ClusterOptions {
        object_bytes_max: Some(OBJECT_MAX as u64),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    cluster
        .create_tenant(&client, TENANT, Redundancy::Lrs, CONTAINER)
        .await?;
    let addr = cluster.addr(1)?;
    Ok((cluster, client, addr))
}

/// Fails unless `key` is absent: head says object-not-found, list does not show it.
async fn assert_absent(client: &Client, key: &str) -> Result<()> {
    match client.head(TENANT, CONTAINER, key).await {
        Err(Error::NotFound { code, .. }) if code.as_deref() == Some("object-not-found") => {}
        other => bail!("{key} should not exist, head says {other:?}"),
    }
    let listed = client.list_all(TENANT, CONTAINER, key).await?;
    ensure!(listed.is_empty(), "{key} should not be listed: {listed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_breaking_azure_rules_are_invalid_argument_stating_the_rule() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    let mut admin = grpc::admin(&addr)?;
    let long_tenant = "a".repeat(25);
    for name in ["ab", "Acme", "acme-corp", "acme_corp", long_tenant.as_str()] {
        let r = admin
            .create_tenant(pb::CreateTenantRequest {
                name: name.into(),
                region: "local".into(),
                redundancy: pb::Redundancy::Lrs as i32,
                disable_purge_protection: false,
            })
            .await;
        let s = expect_status(r, Code::InvalidArgument, "invalid-argument")
            .with_context(|| format!("tenant name {name:?}"))?;
        ensure!(
            s.message().contains(TENANT_RULE),
            "{name:?}: {}",
            s.message()
        );
        ensure!(
            s.message().contains(name),
            "{name:?} is not named: {}",
            s.message()
        );
    }
    let long_container = "c".repeat(64);
    for name in [
        "ab",
        "-abc",
        "abc-",
        "a--bc",
        "Abc",
        "a_bc",
        long_container.as_str(),
    ] {
        let r = admin
            .create_container(pb::CreateContainerRequest {
                tenant: TENANT.into(),
                name: name.into(),
            })
            .await;
        let s = expect_status(r, Code::InvalidArgument, "invalid-argument")
            .with_context(|| format!("container name {name:?}"))?;
        ensure!(
            s.message().contains(CONTAINER_RULE),
            "{name:?}: {}",
            s.message()
        );
        // Object requests check the names too.
        let put = grpc::put(
            &addr,
            grpc::put_messages(grpc::put_header(TENANT, name, "k"), b"x", 1),
        )
        .await?;
        let s = expect_status(put, Code::InvalidArgument, "invalid-argument")
            .with_context(|| format!("put into container {name:?}"))?;
        ensure!(
            s.message().contains(CONTAINER_RULE),
            "{name:?}: {}",
            s.message()
        );
    }
    // The SDK refuses the same names before sending, with the same rule.
    match client.create_tenant("Acme", "local", Redundancy::Lrs).await {
        Err(Error::InvalidArgument { message, .. }) => {
            ensure!(message.contains(TENANT_RULE), "{message}")
        }
        other => bail!("SDK create_tenant(\"Acme\"): {other:?}"),
    }
    let tenants = client.list_tenants().await?;
    ensure!(
        tenants.len() == 1 && tenants[0].name == TENANT,
        "{tenants:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenant_container_and_object_are_not_found_naming_which() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    let cases = [
        (
            "nosuchtenant",
            CONTAINER,
            "k",
            "tenant",
            "nosuchtenant".to_owned(),
        ),
        (
            TENANT,
            "nosuch-container",
            "k",
            "container",
            format!("{TENANT}/nosuch-container"),
        ),
        (
            TENANT,
            CONTAINER,
            "no/such/key",
            "object",
            format!("{TENANT}/{CONTAINER}/no/such/key"),
        ),
    ];
    for (tenant, container, key, what, named) in &cases {
        let code = format!("{what}-not-found");
        match client.head(tenant, container, key).await {
            Err(Error::NotFound {
                what: w,
                message,
                code: c,
            }) => {
                ensure!(
                    w == *what && c.as_deref() == Some(code.as_str()),
                    "{w} {c:?}: {message}"
                );
                ensure!(
                    message.contains(named.as_str()),
                    "{message:?} does not name {named}"
                );
            }
            other => bail!("head {tenant}/{container}/{key}: {other:?}"),
        }
        let req = grpc::get_request(tenant, container, key, pb::Consistency::Strong);
        let leader =
            grpc::tenant_leader_addr(&addr, TENANT, std::time::Duration::from_secs(20)).await?;
        let s = expect_status(grpc::get(&leader, req).await, Code::NotFound, &code)?;
        ensure!(s.message().contains(named.as_str()), "{}", s.message());
    }
    let mut admin = grpc::admin(&addr)?;
    let r = admin
        .get_tenant(pb::GetTenantRequest {
            name: "nosuchtenant".into(),
        })
        .await;
    expect_status(r, Code::NotFound, "tenant-not-found")?;
    let r = admin
        .create_container(pb::CreateContainerRequest {
            tenant: "nosuchtenant".into(),
            name: "box".into(),
        })
        .await;
    let s = expect_status(r, Code::NotFound, "tenant-not-found")?;
    ensure!(s.message().contains("nosuchtenant"), "{}", s.message());
    Ok(())
}

/// A correct put of `data` with chunk `bad` (if any) carrying a wrong CRC.
fn with_bad_chunk(key: &str, data: &[u8], bad: usize) -> Vec<pb::PutRequest> {
    let mut msgs = grpc::put_messages(
        grpc::put_header(TENANT, CONTAINER, key),
        data,
        STORAGE_CHUNK_BYTES,
    );
    if let Some(pb::PutRequest {
        part: Some(Part::Chunk(c)),
    }) = msgs.get_mut(1 + bad)
    {
        c.crc32 ^= 1;
    }
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_with_a_wrong_crc_is_refused_and_nothing_is_stored() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    // One chunk (the small-object path), and the third of five chunks.
    let cases = [
        ("small", random_bytes(1000, 1), 0),
        ("multi", random_bytes(5 * STORAGE_CHUNK_BYTES, 2), 2),
    ];
    for (key, data, bad) in &cases {
        let r = grpc::put_at_leader(&addr, TENANT, with_bad_chunk(key, data, *bad)).await?;
        let s = expect_status(r, Code::InvalidArgument, "crc-mismatch").context(*key)?;
        ensure!(s.message().contains("CRC"), "{}", s.message());
        assert_absent(&client, key).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailer_with_a_wrong_crc_or_size_is_refused_and_nothing_is_stored() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    for (key, size) in [("small", 1000), ("multi", 3 * STORAGE_CHUNK_BYTES + 10)] {
        let data = random_bytes(size, 3);
        for (variant, damage) in [("crc", 0usize), ("size", 1)] {
            let key = format!("{key}-{variant}");
            let mut msgs = grpc::put_messages(
                grpc::put_header(TENANT, CONTAINER, &key),
                &data,
                STORAGE_CHUNK_BYTES,
            );
            match msgs.last_mut() {
                Some(pb::PutRequest {
                    part: Some(Part::Trailer(t)),
                }) if damage == 0 => t.crc32 ^= 0x8000_0000,
                Some(pb::PutRequest {
                    part: Some(Part::Trailer(t)),
                }) => t.size += 1,
                other => bail!("the last message is not a trailer: {other:?}"),
            }
            let r = grpc::put_at_leader(&addr, TENANT, msgs).await?;
            expect_status(r, Code::InvalidArgument, "crc-mismatch").context(key.clone())?;
            assert_absent(&client, &key).await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_put_streams_are_refused_and_nothing_is_stored() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    let header = |key: &str| pb::PutRequest {
        part: Some(Part::Header(grpc::put_header(TENANT, CONTAINER, key))),
    };
    let trailer = |data: &[u8]| pb::PutRequest {
        part: Some(Part::Trailer(pb::PutTrailer {
            size: data.len() as u64,
            crc32: crc32fast::hash(data),
        })),
    };
    let over_limit = random_bytes(stratus_core::limits::CLIENT_CHUNK_BYTES_MAX + 1, 7);
    let cases: Vec<(&str, Vec<pb::PutRequest>)> = vec![
        ("empty", vec![]),
        (
            "chunk-first",
            vec![grpc::chunk(b"abc"), header("chunk-first"), trailer(b"abc")],
        ),
        (
            "two-headers",
            vec![
                header("two-headers"),
                header("two-headers"),
                grpc::chunk(b"abc"),
                trailer(b"abc"),
            ],
        ),
        (
            "empty-message",
            vec![
                header("empty-message"),
                pb::PutRequest { part: None },
                trailer(b""),
            ],
        ),
        (
            "chunk-over-limit",
            vec![
                header("chunk-over-limit"),
                grpc::chunk(&over_limit),
                trailer(&over_limit),
            ],
        ),
    ];
    for (key, msgs) in cases {
        let r = grpc::put_at_leader(&addr, TENANT, msgs).await?;
        expect_status(r, Code::InvalidArgument, "invalid-argument").context(key)?;
        assert_absent(&client, key).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_over_the_maximum_is_refused_with_or_without_a_size_hint() -> Result<()> {
    let (_cluster, client, addr) = setup().await?;
    let too_big = random_bytes(OBJECT_MAX + 1, 4);

    // Declared up front: refused before any data.
    let mut header = grpc::put_header(TENANT, CONTAINER, "hinted");
    header.size_hint = Some(too_big.len() as u64);
    let r = grpc::put_at_leader(&addr, TENANT, grpc::put_messages(header, &too_big, MIB)).await?;
    let s = expect_status(r, Code::ResourceExhausted, "object-too-large")?;
    ensure!(
        s.message().contains(&OBJECT_MAX.to_string()),
        "{}",
        s.message()
    );
    assert_absent(&client, "hinted").await?;

    // Not declared: refused once the data passes the limit.
    let header = grpc::put_header(TENANT, CONTAINER, "unhinted");
    let r = grpc::put_at_leader(&addr, TENANT, grpc::put_messages(header, &too_big, MIB)).await?;
    expect_status(r, Code::ResourceExhausted, "object-too-large")?;
    assert_absent(&client, "unhinted").await?;

    // Through the SDK.
    match client
        .put_bytes(
            TENANT,
            CONTAINER,
            "sdk",
            too_big.clone(),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::ResourceExhausted { code, .. })
            if code.as_deref() == Some("object-too-large") => {}
        other => bail!("SDK put of {} bytes: {other:?}", too_big.len()),
    }
    assert_absent(&client, "sdk").await?;

    // Exactly the maximum is fine.
    let max = too_big.slice(..OBJECT_MAX);
    client
        .put_bytes(TENANT, CONTAINER, "max", max.clone(), PutOptions::default())
        .await?;
    let (_, back) = client
        .get_bytes(TENANT, CONTAINER, "max", GetOptions::default())
        .await?;
    ensure!(back == max);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_upload_leaves_nothing_visible() -> Result<()> {
    use tokio_stream::wrappers::ReceiverStream;
    let (_cluster, client, addr) = setup().await?;
    let data = random_bytes(6 * MIB, 5);
    for cancel in [true, false] {
        let key = if cancel { "reset" } else { "half-closed" };
        let leader =
            grpc::tenant_leader_addr(&addr, TENANT, std::time::Duration::from_secs(20)).await?;
        let mut objects = grpc::objects(&leader)?;
        // Capacity 1: each send returns only once tonic took the previous message.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let call = tokio::spawn(async move { objects.put_object(ReceiverStream::new(rx)).await });
        tx.send(pb::PutRequest {
            part: Some(Part::Header(grpc::put_header(TENANT, CONTAINER, key))),
        })
        .await?;
        // 6 MiB is well past HTTP/2's flow-control windows, so most of it has been
        // read by the node when the last send returns.
        for piece in data.chunks(STORAGE_CHUNK_BYTES) {
            tx.send(grpc::chunk(piece)).await?;
        }
        if cancel {
            // Drop the call: the stream is reset (RST_STREAM) mid-upload.
            call.abort();
            drop(tx);
            ensure!(
                call.await.is_err_and(|e| e.is_cancelled()),
                "the call was not cancelled"
            );
        } else {
            // End the stream without a trailer.
            drop(tx);
            let r = call.await?;
            ensure!(r.is_err(), "a put without a trailer succeeded: {r:?}");
        }
        assert_absent(&client, key).await?;
        // The key is usable: a complete put is stored whole.
        let fresh = random_bytes(STORAGE_CHUNK_BYTES + 3, 6);
        client
            .put_bytes(TENANT, CONTAINER, key, fresh.clone(), PutOptions::default())
            .await?;
        let (info, back) = client
            .get_bytes(TENANT, CONTAINER, key, GetOptions::default())
            .await?;
        ensure!(back == fresh && info.size == fresh.len() as u64, "{info:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_stale_etag_fails_and_leaves_the_object_unchanged() -> Result<()> {
    let (_cluster, client, _addr) = setup().await?;
    let v1 = client
        .put_bytes(
            TENANT,
            CONTAINER,
            "doc",
            b"one".to_vec(),
            PutOptions::default(),
        )
        .await?;
    let v2 = client
        .put_bytes(
            TENANT,
            CONTAINER,
            "doc",
            b"two".to_vec(),
            PutOptions::default(),
        )
        .await?;
    ensure!(v1.etag != v2.etag, "two versions share etag {}", v1.etag);
    let stale = PutOptions {
        if_match: Some(v1.etag.clone()),
        ..PutOptions::default()
    };
    match client
        .put_bytes(TENANT, CONTAINER, "doc", b"three".to_vec(), stale)
        .await
    {
        Err(Error::FailedPrecondition { code, message }) => {
            ensure!(
                code.as_deref() == Some("condition-not-met"),
                "{code:?}: {message}"
            );
        }
        other => bail!("put with a stale If-Match: {other:?}"),
    }
    let (info, back) = client
        .get_bytes(TENANT, CONTAINER, "doc", GetOptions::default())
        .await?;
    ensure!(
        back.as_ref() == b"two" && info.etag == v2.etag,
        "{info:?} {back:?}"
    );
    // The current ETag works.
    let current = PutOptions {
        if_match: Some(v2.etag.clone()),
        ..PutOptions::default()
    };
    client
        .put_bytes(TENANT, CONTAINER, "doc", b"three".to_vec(), current)
        .await?;
    let (_, back) = client
        .get_bytes(TENANT, CONTAINER, "doc", GetOptions::default())
        .await?;
    ensure!(back.as_ref() == b"three");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_star_fails_on_an_existing_key() -> Result<()> {
    let (_cluster, client, _addr) = setup().await?;
    let only_if_absent = || PutOptions {
        if_none_match: Some("*".into()),
        ..PutOptions::default()
    };
    let first = client
        .put_bytes(
            TENANT,
            CONTAINER,
            "once",
            b"first".to_vec(),
            only_if_absent(),
        )
        .await?;
    match client
        .put_bytes(
            TENANT,
            CONTAINER,
            "once",
            b"second".to_vec(),
            only_if_absent(),
        )
        .await
    {
        Err(Error::FailedPrecondition { code, message }) => {
            ensure!(
                code.as_deref() == Some("condition-not-met"),
                "{code:?}: {message}"
            );
        }
        other => bail!("second put with If-None-Match *: {other:?}"),
    }
    let (info, back) = client
        .get_bytes(TENANT, CONTAINER, "once", GetOptions::default())
        .await?;
    ensure!(
        back.as_ref() == b"first" && info.etag == first.etag,
        "{info:?}"
    );
    Ok(())
}
