//! Resource limits over real node processes: a 100 MiB message, thousands of
//! concurrent calls on one connection, oversized metadata and a tenant over its
//! quotas each get ResourceExhausted naming the limit, while the node's memory
//! stays bounded and another tenant keeps working.

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use std::time::Duration;
use stratus_client::{Error, GetOptions, PutOptions, Redundancy};
use stratus_proto::v1 as pb;
use stratus_tests::cluster::peak_rss_bytes;
use stratus_tests::grpc::{self, error_code};
use stratus_tests::{bins, Cluster, ClusterOptions};
use tonic::Code;

const MIB: usize = 1024 * 1024;
const DATA: &str = "data";
/// What the abuse below may add to a node's peak resident memory.
const RSS_GROWTH_MAX: u64 = 64 * MIB as u64;

fn code_of<T>(r: &Result<T, tonic::Status>) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), error_code(s).unwrap_or_default().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_stream_floods_and_quotas_are_refused_while_others_work() -> Result<()> {
    let opts = ClusterOptions {
        extra_config: vec![
            "tenant_bytes_max = 2097152".into(),
            "tenant_objects_max = 5".into(),
            "requests_per_connection_max = 64".into(),
        ],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(&bins!(), opts).await?;
    let client = cluster.client().await?;
    for t in ["full", "free"] {
        cluster
            .create_tenant(&client, t, Redundancy::Lrs, DATA)
            .await?;
    }
    let any = cluster.addr(cluster.node_ids()[0])?;
    let leader = grpc::tenant_leader_addr(&any, "full", Duration::from_secs(20)).await?;
    let leader_id = cluster
        .node_ids()
        .into_iter()
        .find(|id| cluster.addr(*id).ok().as_deref() == Some(leader.as_str()))
        .ok_or_else(|| anyhow::anyhow!("no node at {leader}"))?;
    let pid = cluster.pid(leader_id)?;
    let rss_before = peak_rss_bytes(pid)?;

    // A 100 MiB message: refused from its length prefix, never buffered.
    let huge = vec![0x5a_u8; 100 * MIB];
    let msgs = vec![
        pb::PutRequest {
            part: Some(pb::put_request::Part::Header(grpc::put_header(
                "full", DATA, "huge",
            ))),
        },
        grpc::chunk(&huge),
    ];
    drop(huge);
    let r = grpc::put(&leader, msgs).await?;
    let (code, stratus) = code_of(&r);
    ensure!(
        code == Code::ResourceExhausted && stratus == "message-too-large",
        "100 MiB put chunk: {r:?}"
    );
    ensure!(
        r.unwrap_err().message().contains("max_message_bytes"),
        "the refusal names the setting"
    );
    // The same through a unary call (a 5 MiB container name).
    let unary = grpc::admin(&leader)?
        .create_container(pb::CreateContainerRequest {
            tenant: "full".into(),
            name: "x".repeat(5 * MIB),
        })
        .await;
    let (code, stratus) = code_of(&unary);
    ensure!(
        code == Code::ResourceExhausted && stratus == "message-too-large",
        "5 MiB unary: {code:?}/{stratus}"
    );

    // Metadata over max_metadata_bytes (16 KiB by default).
    let mut objects = grpc::objects(&leader)?;
    let mut req = tonic::Request::new(pb::HeadRequest {
        tenant: "full".into(),
        container: DATA.into(),
        key: "k".into(),
        consistency: 0,
    });
    req.metadata_mut()
        .insert("x-padding", "p".repeat(20 * 1024).parse()?);
    let (code, stratus) = code_of(&objects.head_object(req).await);
    ensure!(
        code == Code::ResourceExhausted && stratus == "metadata-too-large",
        "20 KiB of metadata: {code:?}/{stratus}"
    );

    // 3000 concurrent calls on one connection: beyond 64 in service, refused at once.
    let one_connection = grpc::objects(&leader)?;
    let calls = (0..3000).map(|i| {
        let mut c = one_connection.clone();
        async move {
            c.head_object(pb::HeadRequest {
                tenant: "full".into(),
                container: DATA.into(),
                key: format!("absent-{i}"),
                consistency: 0,
            })
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut shed = 0;
    for r in &results {
        match code_of(r) {
            (Code::NotFound, _) => {}
            (Code::ResourceExhausted, stratus) => {
                shed += 1;
                let m = r
                    .as_ref()
                    .err()
                    .map(|s| s.message().to_string())
                    .unwrap_or_default();
                ensure!(
                    stratus == "too-many-requests" && m.contains("requests_per_connection_max"),
                    "{stratus}: {m}"
                );
            }
            other => bail!("a flooded call ended with {other:?}"),
        }
    }
    ensure!(shed > 0, "no call of 3000 concurrent ones was refused");
    let rss_after = peak_rss_bytes(pid)?;
    eprintln!(
        "node {leader_id} peak RSS: {:.1} MiB before, {:.1} MiB after a 100 MiB message and 3000 concurrent calls ({shed} refused)",
        rss_before as f64 / MIB as f64,
        rss_after as f64 / MIB as f64
    );
    ensure!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_MAX,
        "peak RSS grew by {} bytes",
        rss_after - rss_before
    );

    // Quotas: 5 objects and 2 MiB for tenant `full`.
    for i in 0..5 {
        client
            .put_bytes(
                "full",
                DATA,
                &format!("o{i}"),
                Bytes::from(vec![1u8; 1000]),
                PutOptions::default(),
            )
            .await?;
    }
    match client
        .put_bytes(
            "full",
            DATA,
            "o5",
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::ResourceExhausted { message, code }) => ensure!(
            code.as_deref() == Some("tenant-objects-quota")
                && message.contains("tenant_objects_max"),
            "{message}"
        ),
        other => bail!("a 6th object: {other:?}"),
    }
    // Overwriting an object does not add one; growing it past 2 MiB is refused.
    client
        .put_bytes(
            "full",
            DATA,
            "o0",
            Bytes::from(vec![2u8; 1000]),
            PutOptions::default(),
        )
        .await?;
    match client
        .put_bytes(
            "full",
            DATA,
            "o1",
            Bytes::from(vec![3u8; 3 * MIB]),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::ResourceExhausted { message, code }) => ensure!(
            code.as_deref() == Some("tenant-bytes-quota") && message.contains("tenant_bytes_max"),
            "{message}"
        ),
        other => bail!("3 MiB over a 2 MiB quota: {other:?}"),
    }
    // The other tenant works all along; a delete makes room again.
    let payload = Bytes::from(vec![9u8; 300_000]);
    client
        .put_bytes("free", DATA, "big", payload.clone(), PutOptions::default())
        .await?;
    ensure!(
        client
            .get_bytes("free", DATA, "big", GetOptions::default())
            .await?
            .1
            == payload
    );
    client.delete("full", DATA, "o4", None).await?;
    client
        .put_bytes(
            "full",
            DATA,
            "o5",
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await?;
    Ok(())
}
