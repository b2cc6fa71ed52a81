//! Encryption at rest over real node processes: no plaintext on any disk, key
//! rotation, revoke/restore on every node, soft delete, purge protection and
//! purge, customer-provided keys, and no key bytes in any log.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use std::path::Path;
use std::time::Duration;
use stratus_client::{
    Client, EncryptionKey, Error, GetOptions, KeyInfo, KeyOperation, PutOptions, Redundancy,
};
use stratus_proto::v1 as pb;
use stratus_tests::grpc::{self, get_request};
use stratus_tests::poll::poll;
use stratus_tests::{bins, Cluster, ClusterOptions};

const CONTAINER: &str = "vault-test";
/// Revocation must reach every node within this.
const REVOKE_BOUND: Duration = Duration::from_secs(5);

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` holding any of `needles` (with which needle).
fn find_in_files(dir: &Path, needles: &[(&str, Vec<u8>)]) -> Result<Vec<String>> {
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    let mut hits = Vec::new();
    for f in files {
        let data = std::fs::read(&f).with_context(|| format!("read {}", f.display()))?;
        for (name, n) in needles {
            if contains(&data, n) {
                hits.push(format!("{} holds {name}", f.display()));
            }
        }
    }
    Ok(hits)
}

/// A recognisable pattern: a numbered, repeated sentence.
fn pattern(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("PATTERN-LINE-{i:010}-the-quick-brown-fox;").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out.into()
}

async fn get_all(
    client: &Client,
    tenant: &str,
    key: &str,
    opts: GetOptions,
) -> Result<Bytes, Error> {
    client
        .get_bytes(tenant, CONTAINER, key, opts)
        .await
        .map(|(_, b)| b)
}

async fn show(client: &Client, tenant: &str) -> Result<KeyInfo> {
    Ok(client.key(tenant, KeyOperation::Show).await?)
}

async fn start(retention_min_s: Option<u64>) -> Result<(Cluster, Client)> {
    let opts = ClusterOptions {
        key_retention_min_s: retention_min_s,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    Ok((cluster, client))
}

#[tokio::test]
async fn no_plaintext_or_key_reaches_any_disk_and_rotation_keeps_objects_readable() -> Result<()> {
    let (mut cluster, client) = start(None).await?;
    cluster
        .create_tenant(&client, "plain", Redundancy::Zrs, CONTAINER)
        .await?;
    let marker = format!("STRATUS-MARKER-{:016x}", rand::random::<u64>());
    let small = Bytes::from(format!("inline object carrying {marker} twice: {marker}"));
    let large = pattern(3 * 1024 * 1024 + 12_345);
    let odd = pattern(256 * 1024); // exactly one stored chunk: its last chunk is full
    let cpk = EncryptionKey::from_bytes(&[0xc7; 32])?;
    let cpk_opts = PutOptions {
        encryption_key: Some(cpk.clone()),
        ..PutOptions::default()
    };
    for (key, data, opts) in [
        ("small", small.clone(), PutOptions::default()),
        ("large", large.clone(), PutOptions::default()),
        ("exact", odd.clone(), PutOptions::default()),
        ("cpk", large.slice(..100_000), cpk_opts),
    ] {
        client
            .put_bytes("plain", CONTAINER, key, data, opts)
            .await
            .with_context(|| format!("put {key}"))?;
    }
    // Rotate and import: old objects stay readable, new ones use the new version,
    // and the background re-wrap moves every data key to the current version.
    let before = show(&client, "plain").await?;
    ensure!(
        before.current_version == 1 && before.state == "active",
        "{before:?}"
    );
    let rotated = client.key("plain", KeyOperation::Rotate).await?;
    ensure!(rotated.current_version == 2, "{rotated:?}");
    let imported_material = [0x9e_u8; 32];
    let imported = client
        .key(
            "plain",
            KeyOperation::Import(EncryptionKey::from_bytes(&imported_material)?),
        )
        .await?;
    ensure!(
        imported.current_version == 3
            && imported
                .versions
                .iter()
                .any(|v| v.version == 3 && v.origin == "imported"),
        "{imported:?}"
    );
    client
        .put_bytes(
            "plain",
            CONTAINER,
            "after-rotation",
            small.clone(),
            PutOptions::default(),
        )
        .await?;
    for (key, data) in [
        ("small", &small),
        ("large", &large),
        ("exact", &odd),
        ("after-rotation", &small),
    ] {
        let back = get_all(&client, "plain", key, GetOptions::default()).await?;
        ensure!(
            back == *data,
            "{key} read back different bytes after rotation"
        );
    }
    let done = poll("re-wrap to version 3", Duration::from_secs(30), || async {
        let k = show(&client, "plain").await?;
        if k.usage_known && k.rewrap_pending == 0 {
            Ok(k)
        } else {
            Err(anyhow::anyhow!("{k:?}"))
        }
    })
    .await?;
    let v3 = done
        .versions
        .iter()
        .find(|v| v.version == 3)
        .context("version 3")?;
    ensure!(
        v3.objects == 4 && done.customer_key_objects == 1,
        "{done:?}"
    );

    cluster.terminate_all().await?;
    let needles = vec![
        ("the marker", marker.as_bytes().to_vec()),
        ("the pattern", large[1000..1064].to_vec()),
        (
            "the pattern's last bytes",
            large[large.len() - 64..].to_vec(),
        ),
        ("the customer-provided key", vec![0xc7; 32]),
        ("the imported KEK", imported_material.to_vec()),
    ];
    let mut hits = Vec::new();
    let mut scanned = 0;
    for id in cluster.node_ids() {
        let dir = cluster.data_dir(id);
        let mut files = Vec::new();
        files_under(&dir, &mut files)?;
        scanned += files.len();
        hits.extend(find_in_files(&dir, &needles)?);
    }
    ensure!(
        scanned > 20,
        "only {scanned} files scanned: wrong directories?"
    );
    // Control: names are metadata and stored in the clear, so the scan must see one.
    let mut control = Vec::new();
    for id in cluster.node_ids() {
        control.extend(find_in_files(
            &cluster.data_dir(id),
            &[("the container name", CONTAINER.as_bytes().to_vec())],
        )?);
    }
    ensure!(
        !control.is_empty(),
        "the scan cannot find even plaintext metadata"
    );
    if !hits.is_empty() {
        bail!("plaintext or key material on disk:\n{}", hits.join("\n"));
    }
    Ok(())
}

/// The status of a strong get of `key` sent to `addr` itself.
async fn get_status(addr: &str, tenant: &str, key: &str) -> Result<(), tonic::Status> {
    grpc::get(
        addr,
        get_request(tenant, CONTAINER, key, pb::Consistency::Strong),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn revoke_reaches_every_node_and_delete_recover_purge_follow_the_rules() -> Result<()> {
    let (mut cluster, client) = start(Some(1)).await?;
    cluster
        .create_tenant(&client, "keyed", Redundancy::Lrs, CONTAINER)
        .await?;
    let data = pattern(700_000);
    client
        .put_bytes(
            "keyed",
            CONTAINER,
            "obj",
            data.clone(),
            PutOptions::default(),
        )
        .await?;
    let addrs: Vec<String> = cluster
        .node_ids()
        .into_iter()
        .map(|id| cluster.addr(id))
        .collect::<Result<_>>()?;

    client.key("keyed", KeyOperation::Revoke).await?;
    let revoked_at = tokio::time::Instant::now();
    for addr in &addrs {
        let left = REVOKE_BOUND.saturating_sub(revoked_at.elapsed());
        poll(&format!("PermissionDenied at {addr}"), left, || async {
            match get_status(addr, "keyed", "obj").await {
                Err(s) if s.code() == tonic::Code::PermissionDenied => Ok(s),
                other => Err(anyhow::anyhow!("{other:?}")),
            }
        })
        .await?;
    }
    ensure!(
        revoked_at.elapsed() <= REVOKE_BOUND,
        "revocation took {:?}",
        revoked_at.elapsed()
    );
    match client
        .put_bytes(
            "keyed",
            CONTAINER,
            "new",
            data.slice(..10),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::PermissionDenied { message, .. }) => {
            ensure!(
                message.contains("revoked") && message.contains("stratus key restore keyed"),
                "{message}"
            )
        }
        other => bail!("put while revoked: {other:?}"),
    }

    client.key("keyed", KeyOperation::Restore).await?;
    let back = poll("reads after restore", Duration::from_secs(10), || async {
        get_all(&client, "keyed", "obj", GetOptions::default()).await
    })
    .await?;
    ensure!(back == data, "different bytes after restore");

    // Soft delete: inaccessible, purge refused under protection, recoverable.
    let deleted = client
        .key(
            "keyed",
            KeyOperation::Delete {
                retention_seconds: Some(4),
            },
        )
        .await?;
    ensure!(
        deleted.state == "deleted" && deleted.purge_protection,
        "{deleted:?}"
    );
    match client.key("keyed", KeyOperation::Purge).await {
        Err(Error::FailedPrecondition { message, code }) => ensure!(
            code.as_deref() == Some("purge-protected")
                && message.contains("stratus key recover keyed"),
            "{code:?} {message}"
        ),
        other => bail!("purge under protection: {other:?}"),
    }
    match client
        .key(
            "keyed",
            KeyOperation::Delete {
                retention_seconds: Some(10 * 365 * 24 * 3600),
            },
        )
        .await
    {
        Err(Error::InvalidArgument { message, .. }) => {
            ensure!(message.contains("retention"), "{message}")
        }
        other => bail!("an over-long retention: {other:?}"),
    }
    poll("PermissionDenied while deleted", REVOKE_BOUND, || async {
        match get_all(&client, "keyed", "obj", GetOptions::default()).await {
            Err(Error::PermissionDenied { .. }) => Ok(()),
            other => Err(anyhow::anyhow!("{:?}", other.map(|b| b.len()))),
        }
    })
    .await?;
    client.key("keyed", KeyOperation::Recover).await?;
    let back = poll("reads after recover", Duration::from_secs(10), || async {
        get_all(&client, "keyed", "obj", GetOptions::default()).await
    })
    .await?;
    ensure!(back == data, "different bytes after recover");

    // An object under a customer-provided key: a purge cannot touch its key, so
    // the purge must destroy the object itself.
    client
        .put_bytes(
            "keyed",
            CONTAINER,
            "cpk",
            data.slice(..50_000),
            PutOptions {
                encryption_key: Some(EncryptionKey::from_bytes(&[0x61; 32])?),
                ..PutOptions::default()
            },
        )
        .await?;

    // Delete again, wait out the retention, purge: the data is gone for good.
    client
        .key(
            "keyed",
            KeyOperation::Delete {
                retention_seconds: Some(2),
            },
        )
        .await?;
    let purged = poll("purge after retention", Duration::from_secs(15), || async {
        client.key("keyed", KeyOperation::Purge).await
    })
    .await?;
    ensure!(
        purged.state == "purged" && purged.versions.iter().all(|v| v.destroyed),
        "{purged:?}"
    );
    match client.key("keyed", KeyOperation::Recover).await {
        Err(Error::FailedPrecondition { .. }) => {}
        other => bail!("recover after purge: {other:?}"),
    }
    for addr in &addrs {
        poll(
            &format!("purged tenant refused at {addr}"),
            REVOKE_BOUND,
            || async {
                match get_status(addr, "keyed", "obj").await {
                    Err(s)
                        if s.code() == tonic::Code::PermissionDenied
                            && s.message().contains("unrecoverable") =>
                    {
                        Ok(())
                    }
                    other => Err(anyhow::anyhow!("{other:?}")),
                }
            },
        )
        .await?;
    }
    // Crypto-shredding: the group's leader destroys both objects and the
    // container, and every node removes the directory log entries that carried
    // the wrapped KEKs.
    let ids = cluster.node_ids();
    poll(
        "the purged tenant's data shredded",
        Duration::from_secs(20),
        || async {
            let mut objects = 0;
            let mut containers = 0;
            for id in &ids {
                for line in cluster.log(*id)?.lines() {
                    if line.contains("shredded a purged tenant's data") {
                        objects += field(line, "objects")?;
                        containers += field(line, "containers")?;
                    }
                }
            }
            ensure!(
                objects == 2 && containers == 1,
                "objects {objects}, containers {containers}"
            );
            Ok(())
        },
    )
    .await?;
    for id in &ids {
        poll(
            &format!("node {id} shreds its directory log"),
            Duration::from_secs(30),
            || async {
                ensure!(
                    cluster.log(*id)?.contains("directory log shredded"),
                    "not yet"
                );
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}

/// The value of `name=N` in a log line.
fn field(line: &str, name: &str) -> Result<u64> {
    let at = line
        .find(&format!(" {name}="))
        .with_context(|| format!("no {name} in {line:?}"))?;
    let rest = &line[at + name.len() + 2..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Ok(digits.parse()?)
}

#[tokio::test]
async fn an_old_kek_version_is_retired_once_nothing_uses_it() -> Result<()> {
    let opts = ClusterOptions {
        key_retire_grace_s: Some(2),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    cluster
        .create_tenant(&client, "retiring", Redundancy::Lrs, CONTAINER)
        .await?;
    let data = pattern(600_000);
    for key in ["a", "b", "c"] {
        client
            .put_bytes(
                "retiring",
                CONTAINER,
                key,
                data.clone(),
                PutOptions::default(),
            )
            .await?;
    }
    match client
        .key("retiring", KeyOperation::Retire { version: 1 })
        .await
    {
        Err(Error::FailedPrecondition { message, .. }) => {
            ensure!(message.contains("rotate first"), "{message}")
        }
        other => bail!("retiring the current version: {other:?}"),
    }
    client.key("retiring", KeyOperation::Rotate).await?;
    // Right after the rotation, uploads that began under version 1 may still commit.
    match client
        .key("retiring", KeyOperation::Retire { version: 1 })
        .await
    {
        Err(Error::FailedPrecondition { code, message }) => ensure!(
            code.as_deref() == Some("key-in-use") && message.contains("retry in"),
            "{code:?} {message}"
        ),
        other => bail!("retire within the grace: {other:?}"),
    }
    poll("re-wrap to version 2", Duration::from_secs(30), || async {
        let k = show(&client, "retiring").await?;
        ensure!(k.usage_known && k.rewrap_pending == 0, "{k:?}");
        Ok(())
    })
    .await?;
    let retired = poll("retire version 1", Duration::from_secs(10), || async {
        Ok::<_, anyhow::Error>(
            client
                .key("retiring", KeyOperation::Retire { version: 1 })
                .await?,
        )
    })
    .await?;
    let v1 = retired
        .versions
        .iter()
        .find(|v| v.version == 1)
        .context("v1")?;
    ensure!(v1.destroyed && v1.retired_at_ms.is_some(), "{retired:?}");
    for key in ["a", "b", "c"] {
        let back = get_all(&client, "retiring", key, GetOptions::default()).await?;
        ensure!(back == data, "{key} changed after its old KEK was retired");
    }
    match client
        .key("retiring", KeyOperation::Retire { version: 1 })
        .await
    {
        Err(Error::FailedPrecondition { message, .. }) => {
            ensure!(message.contains("already destroyed"), "{message}")
        }
        other => bail!("retiring twice: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn customer_provided_keys_and_no_key_bytes_in_logs() -> Result<()> {
    let (mut cluster, client) = start(None).await?;
    cluster
        .create_tenant(&client, "cpk", Redundancy::Lrs, CONTAINER)
        .await?;
    let right = EncryptionKey::from_bytes(&[0x3c; 32])?;
    let wrong = EncryptionKey::from_bytes(&[0x3d; 32])?;
    for (key, data) in [("small", pattern(1000)), ("large", pattern(600_000))] {
        client
            .put_bytes(
                "cpk",
                CONTAINER,
                key,
                data.clone(),
                PutOptions {
                    encryption_key: Some(right.clone()),
                    ..PutOptions::default()
                },
            )
            .await?;
        match get_all(&client, "cpk", key, GetOptions::default()).await {
            Err(Error::FailedPrecondition { message, .. }) => {
                ensure!(message.contains("a key is required"), "{message}")
            }
            other => bail!("{key} without a key: {:?}", other.map(|b| b.len())),
        }
        let with = |k: &EncryptionKey| GetOptions {
            encryption_key: Some(k.clone()),
            ..GetOptions::default()
        };
        match get_all(&client, "cpk", key, with(&wrong)).await {
            Err(Error::PermissionDenied { message, .. }) => {
                ensure!(message.contains("does not match"), "{message}")
            }
            other => bail!("{key} with the wrong key: {:?}", other.map(|b| b.len())),
        }
        ensure!(
            get_all(&client, "cpk", key, with(&right)).await? == data,
            "{key}: bytes differ"
        );
    }
    // A key of the wrong length is an invalid argument, before anything is stored.
    let any = cluster.addr(cluster.node_ids()[0])?;
    let leader = grpc::tenant_leader_addr(&any, "cpk", Duration::from_secs(20)).await?;
    let mut header = grpc::put_header("cpk", CONTAINER, "short-key");
    header.encryption_key = Some(Bytes::from_static(&[1; 16]));
    match grpc::put(&leader, grpc::put_messages(header, b"x", 1024)).await? {
        Err(s) => ensure!(
            s.code() == tonic::Code::InvalidArgument && s.message().contains("exactly 32 bytes"),
            "{s:?}"
        ),
        Ok(info) => bail!("a 16-byte key was accepted: {info:?}"),
    }
    // Key operations with known material, then search every log for it.
    let kek = [0x5b_u8; 32];
    client
        .key(
            "cpk",
            KeyOperation::Import(EncryptionKey::from_bytes(&kek)?),
        )
        .await?;
    client.key("cpk", KeyOperation::Rotate).await?;
    client.key("cpk", KeyOperation::Revoke).await?;
    client.key("cpk", KeyOperation::Restore).await?;
    cluster.terminate_all().await?;
    let mut needles = Vec::new();
    for (name, bytes) in [
        ("customer key", [0x3c_u8; 32]),
        ("wrong key", [0x3d; 32]),
        ("imported KEK", kek),
    ] {
        needles.push((name, bytes.to_vec()));
        needles.push((name, hex::encode(bytes).into_bytes()));
        needles.push((name, hex::encode_upper(bytes).into_bytes()));
        let debug = format!("{:?}", &bytes[..8]);
        needles.push((name, debug.as_bytes()[1..debug.len() - 1].to_vec()));
    }
    let hits = find_in_files(cluster.dir(), &needles)?;
    ensure!(hits.is_empty(), "key material found:\n{}", hits.join("\n"));
    Ok(())
}
