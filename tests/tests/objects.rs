//! Object round trips through the SDK (LRS and ZRS tenants) and through the
//! `stratus` CLI binary, on a 5-node one-region cluster.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use stratus_client::{Client, Error, GetOptions, PutOptions, Redundancy};
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use stratus_tests::cli::Program;
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
async fn cli_round_trip() -> Result<()> {
    let cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = Program::new(&bins!().cli, work.path());
    let endpoint = cluster.addr(1)?;
    let run = |args: &[&str]| {
        let mut all = vec!["--endpoint", endpoint.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        let cli = cli.clone();
        async move { cli.run(&all).await }
    };

    run(&[
        "tenant",
        "create",
        "clit",
        "--region",
        "local",
        "--redundancy",
        "lrs",
    ])
    .await?
    .ok()?;
    run(&["container", "create", "clit/files"]).await?.ok()?;

    let data = random_bytes(MIB + 17, 300);
    let file = work.path().join("upload.bin");
    std::fs::write(&file, &data)?;
    let file_arg = file.to_str().context("utf-8 path")?;
    let put = run(&[
        "put",
        file_arg,
        "clit/files/dir/upload.bin",
        "--output",
        "json",
    ])
    .await?;
    let info = put.ok()?.json()?;
    ensure!(info["size"] == data.len() as u64, "{info}");
    ensure!(info["crc32"] == u64::from(crc32fast::hash(&data)), "{info}");
    ensure!(info["key"] == "dir/upload.bin", "{info}");

    // To a file, and to stdout.
    let back = work.path().join("back.bin");
    let back_arg = back.to_str().context("utf-8 path")?;
    run(&["get", "clit/files/dir/upload.bin", back_arg])
        .await?
        .ok()?;
    ensure!(std::fs::read(&back)? == data, "the downloaded file differs");
    let out = run(&["get", "clit/files/dir/upload.bin"]).await?;
    ensure!(out.ok()?.stdout == data, "stdout differs from the upload");

    // From stdin.
    let text = b"hello from stdin\n";
    let all: Vec<String> = [
        "--endpoint",
        endpoint.as_str(),
        "put",
        "-",
        "clit/files/dir/hello.txt",
        "--content-type",
        "text/plain",
        "--output",
        "json",
    ]
    .map(str::to_owned)
    .to_vec();
    let put = cli.run_with_stdin(&all, Some(text)).await?;
    let info = put.ok()?.json()?;
    ensure!(info["size"] == text.len() as u64, "{info}");

    let head = run(&["head", "clit/files/dir/hello.txt", "--output", "json"]).await?;
    let head = head.ok()?.json()?;
    ensure!(head["size"] == text.len() as u64, "{head}");
    ensure!(head["content_type"] == "text/plain", "{head}");
    ensure!(head["crc32"] == u64::from(crc32fast::hash(text)), "{head}");
    let out = run(&["get", "clit/files/dir/hello.txt"]).await?;
    ensure!(out.ok()?.stdout == text, "stdin object differs");

    let ls = run(&[
        "ls",
        "clit/files/dir/",
        "--page-size",
        "1",
        "--output",
        "json",
    ])
    .await?;
    let listed = ls.ok()?.json()?;
    let keys: Vec<&str> = listed
        .as_array()
        .context("ls --output json is an array")?
        .iter()
        .filter_map(|o| o["key"].as_str())
        .collect();
    ensure!(keys == ["dir/hello.txt", "dir/upload.bin"], "{listed}");
    let ls_text = run(&["ls", "clit/files/dir/"]).await?;
    ensure!(
        ls_text.ok()?.stdout_text().contains("dir/upload.bin"),
        "{ls_text:?}"
    );

    let rm = run(&["rm", "clit/files/dir/upload.bin", "--output", "json"]).await?;
    let rm = rm.ok()?.json()?;
    ensure!(rm["deleted"] == "clit/files/dir/upload.bin", "{rm}");

    let gone = work.path().join("gone.bin");
    let gone_arg = gone.to_str().context("utf-8 path")?;
    let missing = run(&[
        "get",
        "clit/files/dir/upload.bin",
        gone_arg,
        "--output",
        "json",
    ])
    .await?;
    ensure!(
        missing.code == Some(3),
        "exit code {:?} (3 is not found): {missing:?}",
        missing.code
    );
    let err: serde_json::Value = serde_json::from_str(missing.stderr.trim())
        .with_context(|| format!("stderr is not JSON: {}", missing.stderr))?;
    ensure!(err["error"]["kind"] == "not-found", "{err}");
    ensure!(err["error"]["code"] == "object-not-found", "{err}");
    ensure!(!gone.exists(), "a failed get left {}", gone.display());
    Ok(())
}
