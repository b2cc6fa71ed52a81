//! Object round trips through the SDK on a 5-node one-region cluster: sizes
//! from 0 B to 64 MiB on LRS and ZRS tenants, ranges, paged listings, deletes,
//! attributes, unusual keys and overwrites.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use stratus_client::{Client, Error, GetOptions, PutOptions, Redundancy};
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use stratus_tests::{bins, random_bytes, Cluster, ClusterOptions};

const MIB: usize = 1024 * 1024;
const CONTAINER: &str = "round-trip";

/// Puts `data` at `key` and checks what the node reports.
async fn put_checked(client: &Client, tenant: &str, key: &str, data: &Bytes) -> Result<()> {
    let info = client
        .put_bytes(tenant, CONTAINER, key, data.clone(), PutOptions::default())
        .await
        .with_context(|| format!("put {key}"))?;
    ensure!(
        info.size == data.len() as u64,
        "{key}: put reports {info:?}"
    );
    ensure!(
        info.crc32 == crc32fast::hash(data),
        "{key}: put reports {info:?}"
    );
    Ok(())
}

/// Gets `key` whole and checks bytes, size and CRC.
async fn get_checked(client: &Client, tenant: &str, key: &str, data: &Bytes) -> Result<()> {
    let (info, back) = client
        .get_bytes(tenant, CONTAINER, key, GetOptions::default())
        .await
        .with_context(|| format!("get {key}"))?;
    ensure!(
        back.len() == data.len(),
        "{key}: got {} bytes, put {}",
        back.len(),
        data.len()
    );
    ensure!(
        back == *data,
        "{key}: the bytes read differ from the bytes written"
    );
    ensure!(
        info.size == data.len() as u64 && info.crc32 == crc32fast::hash(data),
        "{info:?}"
    );
    Ok(())
}

/// Reads `[offset, offset + len)` (or to the end) and compares with `data`.
async fn range_checked(
    client: &Client,
    tenant: &str,
    key: &str,
    data: &Bytes,
    offset: usize,
    len: Option<usize>,
) -> Result<()> {
    let opts = GetOptions {
        range: Some((offset as u64, len.map(|l| l as u64))),
        ..GetOptions::default()
    };
    let (_, back) = client.get_bytes(tenant, CONTAINER, key, opts).await?;
    let end = len.map_or(data.len(), |l| (offset + l).min(data.len()));
    ensure!(
        back == data.slice(offset..end),
        "{key}: range {offset}..{end} returned {} bytes that differ from the slice",
        back.len()
    );
    Ok(())
}

/// The whole SDK round trip for one tenant.
async fn sdk_round_trip(redundancy: Redundancy, seed: u64) -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = format!("rt{}", redundancy.as_str());
    cluster
        .create_tenant(&client, &tenant, redundancy, CONTAINER)
        .await?;

    let objects: Vec<(String, Bytes)> = [0, 1, MIB, 64 * MIB]
        .iter()
        .enumerate()
        .map(|(i, size)| {
            (
                format!("sizes/{size:09}"),
                random_bytes(*size, seed + i as u64),
            )
        })
        .collect();
    for (key, data) in &objects {
        put_checked(&client, &tenant, key, data).await?;
    }
    for (key, data) in &objects {
        get_checked(&client, &tenant, key, data).await?;
        let head = client.head(&tenant, CONTAINER, key).await?;
        ensure!(
            head.size == data.len() as u64 && head.crc32 == crc32fast::hash(data),
            "{head:?}"
        );
    }
    let listed = client.list_all(&tenant, CONTAINER, "sizes/").await?;
    let summary: Vec<(String, u64, u32)> = listed
        .iter()
        .map(|o| (o.key.clone(), o.size, o.crc32))
        .collect();
    let expected: Vec<(String, u64, u32)> = objects
        .iter()
        .map(|(k, d)| (k.clone(), d.len() as u64, crc32fast::hash(d)))
        .collect();
    ensure!(
        summary == expected,
        "list: {summary:?}\nexpected: {expected:?}"
    );

    // Ranges: inside one storage chunk, across a chunk boundary, to the end.
    let (one_mib_key, one_mib) = &objects[2];
    range_checked(&client, &tenant, one_mib_key, one_mib, 10, Some(100)).await?;
    range_checked(&client, &tenant, one_mib_key, one_mib, 1000, Some(300_000)).await?;
    let (big_key, big) = &objects[3];
    let boundary = 5 * STORAGE_CHUNK_BYTES;
    range_checked(&client, &tenant, big_key, big, boundary - 7, Some(14)).await?;
    range_checked(
        &client,
        &tenant,
        big_key,
        big,
        big.len() - 3 * MIB - 5,
        None,
    )
    .await?;

    // A range that starts past the end is refused.
    let past_end = GetOptions {
        range: Some((one_mib.len() as u64 + 1, None)),
        ..GetOptions::default()
    };
    match client
        .get_bytes(&tenant, CONTAINER, one_mib_key, past_end)
        .await
    {
        Err(Error::InvalidArgument { code, .. })
            if code.as_deref() == Some("range-not-satisfiable") => {}
        other => anyhow::bail!("range past the end: {other:?}"),
    }

    list_pages(&client, &tenant).await?;

    for (key, _) in &objects {
        client.delete(&tenant, CONTAINER, key, None).await?;
        match client
            .get_bytes(&tenant, CONTAINER, key, GetOptions::default())
            .await
        {
            Err(Error::NotFound {
                what,
                message,
                code,
            }) => {
                ensure!(what == "object", "{what}: {message}");
                ensure!(code.as_deref() == Some("object-not-found"), "{code:?}");
                let path = format!("{tenant}/{CONTAINER}/{key}");
                ensure!(message.contains(&path), "{message:?} does not name {path}");
            }
            other => anyhow::bail!("get after delete of {key}: {other:?}"),
        }
    }
    let left = client.list_all(&tenant, CONTAINER, "sizes/").await?;
    ensure!(
        left.is_empty(),
        "deleted objects are still listed: {left:?}"
    );
    Ok(())
}

/// Seven keys under `page/` (and two elsewhere) listed three at a time.
async fn list_pages(client: &Client, tenant: &str) -> Result<()> {
    let keys: Vec<String> = (0..7).map(|i| format!("page/{i:02}")).collect();
    for key in keys.iter().chain(&["pagf/x".to_owned(), "pag".to_owned()]) {
        client
            .put_bytes(
                tenant,
                CONTAINER,
                key,
                key.clone().into_bytes(),
                PutOptions::default(),
            )
            .await?;
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = client
            .list(tenant, CONTAINER, "page/", 3, token.as_deref())
            .await?;
        pages.push(page.objects.len());
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_continuation {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    ensure!(seen == keys, "listed {seen:?}, expected {keys:?}");
    ensure!(pages == [3, 3, 1], "page sizes {pages:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_round_trips_on_an_lrs_tenant() -> Result<()> {
    sdk_round_trip(Redundancy::Lrs, 100).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_round_trips_on_a_zrs_tenant() -> Result<()> {
    sdk_round_trip(Redundancy::Zrs, 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_unusual_keys_and_overwrites_round_trip() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "attrs";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;

    let key = "dir/ünïcödé/😀 name with spaces.txt";
    let metadata: std::collections::BTreeMap<String, String> = [
        ("owner".to_owned(), "alice".to_owned()),
        ("_n1".to_owned(), "a value, with = signs".to_owned()),
    ]
    .into();
    let opts = PutOptions {
        content_type: Some("image/png".into()),
        metadata: metadata.clone(),
        ..PutOptions::default()
    };
    let v1 = client
        .put_bytes(tenant, CONTAINER, key, b"first".to_vec(), opts)
        .await?;
    let head = client.head(tenant, CONTAINER, key).await?;
    ensure!(
        head.content_type == "image/png" && head.metadata == metadata,
        "{head:?}"
    );
    ensure!(
        head.etag == v1.etag && head.version_id == v1.version_id,
        "{head:?} vs {v1:?}"
    );
    let listed = client.list_all(tenant, CONTAINER, "dir/").await?;
    ensure!(
        listed.len() == 1 && listed[0].key == key && listed[0].metadata == metadata,
        "{listed:?}"
    );

    // An overwrite is a new version with new content; its attributes are its own.
    let v2 = client
        .put_bytes(
            tenant,
            CONTAINER,
            key,
            b"second".to_vec(),
            PutOptions::default(),
        )
        .await?;
    ensure!(
        v2.etag != v1.etag && v2.version_id != v1.version_id,
        "{v1:?} {v2:?}"
    );
    let (info, back) = client
        .get_bytes(tenant, CONTAINER, key, GetOptions::default())
        .await?;
    ensure!(
        back.as_ref() == b"second" && info.etag == v2.etag,
        "{info:?}"
    );
    ensure!(
        info.metadata.is_empty(),
        "the overwrite kept old metadata: {info:?}"
    );

    // The longest key (1024 bytes) works; one byte more is refused.
    let longest = "k".repeat(1024);
    client
        .put_bytes(
            tenant,
            CONTAINER,
            &longest,
            b"long".to_vec(),
            PutOptions::default(),
        )
        .await?;
    let (_, back) = client
        .get_bytes(tenant, CONTAINER, &longest, GetOptions::default())
        .await?;
    ensure!(back.as_ref() == b"long");
    let too_long = "k".repeat(1025);
    match client
        .put_bytes(
            tenant,
            CONTAINER,
            &too_long,
            b"x".to_vec(),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            ensure!(message.contains("1-1024 bytes"), "{message}")
        }
        other => anyhow::bail!("1025-byte key: {other:?}"),
    }

    // A zero-length range of a non-empty object is empty.
    let zero = GetOptions {
        range: Some((2, Some(0))),
        ..GetOptions::default()
    };
    let (_, back) = client.get_bytes(tenant, CONTAINER, key, zero).await?;
    ensure!(
        back.is_empty(),
        "zero-length range returned {} bytes",
        back.len()
    );
    Ok(())
}
