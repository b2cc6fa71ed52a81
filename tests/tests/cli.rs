//! The `stratus` CLI binary (`it-stratus`) against a 5-node one-region cluster:
//! the object commands with `--endpoint`, stdin uploads, `--output json` and
//! exit codes.

use anyhow::{ensure, Context, Result};
use stratus_tests::cli::Program;
use stratus_tests::{bins, random_bytes, Cluster, ClusterOptions};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip() -> Result<()> {
    let cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let work = tempfile::tempdir()?;
    let cli = Program::new(&bins!().cli, work.path())
        .env("STRATUS_TOKEN", cluster.operator())
        .env("STRATUS_CA", cluster.ca_file());
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

    // Stdin larger than the SDK's replay buffer (it cannot be re-read).
    let big = random_bytes(stratus_client::REPLAY_BYTES_MAX + MIB, 301);
    let args = [
        "--endpoint",
        endpoint.as_str(),
        "put",
        "-",
        "clit/files/big/stdin.bin",
    ];
    cli.run_with_stdin(&args, Some(&big)).await?.ok()?;
    let out = run(&["get", "clit/files/big/stdin.bin"]).await?;
    ensure!(out.ok()?.stdout == big, "large stdin object differs");

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
