//! Objects and containers under concurrent change: deleting containers,
//! overwriting an object while it is read.

use anyhow::{ensure, Result};
use std::time::Duration;
use stratus_client::{Error, GetOptions, PutOptions, Redundancy};
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use stratus_tests::{bins, random_bytes, Cluster, ClusterOptions};

const MIB: usize = 1024 * 1024;
const CONTAINER: &str = "things";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_container_does_not_bring_back_its_objects() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "lifecycle";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;
    client
        .put_bytes(
            tenant,
            CONTAINER,
            "old",
            b"old data".to_vec(),
            PutOptions::default(),
        )
        .await?;

    match client.delete_container(tenant, CONTAINER).await {
        // Refusing to delete a container that holds objects is one right answer
        // (the SDK documents "container not empty" as a failed precondition)...
        Err(Error::FailedPrecondition { .. }) => {
            let (_, back) = client
                .get_bytes(tenant, CONTAINER, "old", GetOptions::default())
                .await?;
            ensure!(back.as_ref() == b"old data");
            Ok(())
        }
        // ...deleting its objects with it is the other: a new container of the
        // same name must then start empty.
        Ok(()) => {
            client.create_container(tenant, CONTAINER).await?;
            let listed = client.list_all(tenant, CONTAINER, "").await?;
            let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
            ensure!(
                keys.is_empty(),
                "the container was deleted, yet its re-created namesake lists {keys:?}"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Bug: `DeleteContainer` checks emptiness in the admin handler, then deletes in
/// the directory, while the put path checks the container only at its header; an
/// upload open across the delete commits into the deleted container and its
/// object reappears in a new container of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_deleted_during_an_upload_does_not_bring_the_upload_back() -> Result<()> {
    use stratus_proto::v1 as pb;
    use stratus_proto::v1::put_request::Part;
    use stratus_tests::grpc;
    use tokio_stream::wrappers::ReceiverStream;
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "racing";
    cluster
        .create_tenant(&client, tenant, Redundancy::Lrs, CONTAINER)
        .await?;
    let leader =
        grpc::tenant_leader_addr(&cluster.addr(1)?, tenant, Duration::from_secs(20)).await?;

    // An upload that has passed its header: 6 MiB is far more than HTTP/2 lets a
    // sender have in flight, so the node has read the header and most chunks.
    let data = random_bytes(6 * MIB, 400);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut objects = grpc::objects(&leader)?;
    let call = tokio::spawn(async move { objects.put_object(ReceiverStream::new(rx)).await });
    let header = grpc::put_header(tenant, CONTAINER, "late");
    tx.send(pb::PutRequest {
        part: Some(Part::Header(header)),
    })
    .await?;
    for piece in data.chunks(STORAGE_CHUNK_BYTES) {
        tx.send(grpc::chunk(piece)).await?;
    }

    let deleted = client.delete_container(tenant, CONTAINER).await;
    let trailer = pb::PutTrailer {
        size: data.len() as u64,
        crc32: crc32fast::hash(&data),
    };
    tx.send(pb::PutRequest {
        part: Some(Part::Trailer(trailer)),
    })
    .await?;
    drop(tx);
    let put = call.await?;
    eprintln!("delete during the upload: {deleted:?}; the upload: {put:?}");
    match deleted {
        // Refused while an upload is open: the upload must then succeed.
        Err(Error::FailedPrecondition { .. }) => {
            ensure!(
                put.is_ok(),
                "the delete was refused, yet the put failed: {put:?}"
            );
        }
        Ok(()) => {
            client.create_container(tenant, CONTAINER).await?;
            let listed = client.list_all(tenant, CONTAINER, "").await?;
            let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
            ensure!(
                keys.is_empty(),
                "the container was deleted while `late` was uploading (put answered {:?}); \
                 its re-created namesake lists {keys:?}",
                put.as_ref()
                    .map(|_| "ok")
                    .map_err(|s| s.message().to_owned())
            );
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_overwrites_see_one_whole_version() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    let tenant = "overwrite";
    cluster
        .create_tenant(&client, tenant, Redundancy::Zrs, CONTAINER)
        .await?;
    let versions = [
        random_bytes(2 * MIB + 3, 500),
        random_bytes(2 * MIB + 3, 501),
    ];
    client
        .put_bytes(
            tenant,
            CONTAINER,
            "hot",
            versions[0].clone(),
            PutOptions::default(),
        )
        .await?;

    const ROUNDS: usize = 12;
    let writer = {
        let (client, versions) = (client.clone(), versions.clone());
        tokio::spawn(async move {
            for round in 1..=ROUNDS {
                let data = versions[round % 2].clone();
                client
                    .put_bytes(tenant, CONTAINER, "hot", data, PutOptions::default())
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let (mut whole, mut changed) = (0, 0);
    while !writer.is_finished() {
        match client
            .get_bytes(tenant, CONTAINER, "hot", GetOptions::default())
            .await
        {
            Ok((info, back)) => {
                ensure!(
                    versions.contains(&back),
                    "a read returned {} bytes that are neither version (etag {})",
                    back.len(),
                    info.etag
                );
                whole += 1;
            }
            // The object changed under the read: reported, never mixed.
            Err(Error::FailedPrecondition { .. }) => changed += 1,
            Err(e) => return Err(e.into()),
        }
    }
    writer.await??;
    eprintln!("{whole} whole reads, {changed} reads that saw a change");
    let (_, last) = client
        .get_bytes(tenant, CONTAINER, "hot", GetOptions::default())
        .await?;
    ensure!(
        last == versions[ROUNDS % 2],
        "the last write is not what is stored"
    );
    Ok(())
}
