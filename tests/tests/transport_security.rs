//! Transport security on real node processes: TLS for clients, mutual TLS with
//! node identity on the peer service, plaintext only for a cluster run insecure.

use anyhow::{ensure, Context, Result};
use std::sync::Arc;
use stratus_core::tls::rustls::ClientConfig;
use stratus_proto::v1 as pb;
use stratus_proto::v1::peer_service_client::PeerServiceClient;
use stratus_tests::grpc;
use stratus_tests::layout::Layout;
use stratus_tests::{bins, Cluster, ClusterOptions};

/// A peer-service `LocalStatus` call to `addr` over TLS with `tls` (plaintext
/// when `None`), presenting `credential` and claiming to come from `from_node`.
async fn local_status(
    addr: &str,
    tls: Option<Arc<ClientConfig>>,
    credential: &str,
    from_node: u64,
) -> Result<Result<pb::LocalStatusResponse, tonic::Status>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(grpc::CONNECT_TIMEOUT);
    let channel = match tls {
        Some(config) => grpc::tls_channel(endpoint, addr, config),
        None => endpoint.connect_lazy(),
    };
    let mut client = PeerServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::LocalStatusRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {credential}").parse()?);
    request
        .metadata_mut()
        .insert(stratus_node::auth::FROM_NODE_KEY, from_node.into());
    request.set_timeout(grpc::CALL_TIMEOUT);
    Ok(client
        .local_status(request)
        .await
        .map(tonic::Response::into_inner))
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Refused as an unauthenticated peer, with this Stratus error code.
fn refused_with(result: &Result<pb::LocalStatusResponse, tonic::Status>, code: &str) -> Result<()> {
    match result {
        Err(s) if s.code() == tonic::Code::Unauthenticated && grpc::error_code(s) == Some(code) => {
            Ok(())
        }
        other => anyhow::bail!("expected Unauthenticated {code}, got {other:?}"),
    }
}

/// Refused before any answer: the connection failed (a transport error made on
/// the client's side, never a reply of the node). With TLS 1.3 a refused client
/// certificate surfaces on the first write after the handshake (a broken pipe);
/// a plaintext HTTP/2 client reads the node's TLS alert as a malformed frame.
fn refused_at_handshake(result: &Result<pb::LocalStatusResponse, tonic::Status>) -> Result<()> {
    match result {
        Err(s) if grpc::error_code(s).is_none() && std::error::Error::source(s).is_some() => Ok(()),
        other => anyhow::bail!("expected a refused connection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_need_a_certificate_naming_the_node_they_claim_to_be() -> Result<()> {
    let cluster = Cluster::start(
        &bins!(),
        ClusterOptions {
            layout: Layout::OneRegion,
            ..ClusterOptions::default()
        },
    )
    .await?;
    let addr = cluster.addr(1)?;
    let tls_dir = cluster.dir().join("tls");
    let ca = read(&tls_dir.join("ca.pem"))?;
    let root = stratus_node::root_key::load(&cluster.dir().join("root.key"))?;
    let credential = stratus_core::auth::cluster_credential(&root);
    let node2 = (
        read(&tls_dir.join("node-2.pem"))?,
        zeroize::Zeroizing::new(read(&tls_dir.join("node-2.key"))?),
    );

    // Positive control: node 2's own certificate, claiming node 2, gets through.
    let own = stratus_core::tls::node_client_config(&ca, &node2.0, &node2.1)?;
    let status = local_status(&addr, Some(own.clone()), &credential, 2)
        .await?
        .map_err(|s| anyhow::anyhow!("node 2 as itself was refused: {s:?}"))?;
    ensure!(status.node_id == 1, "{status:?}");

    // The same valid certificate claiming to be node 3: refused.
    refused_with(
        &local_status(&addr, Some(own), &credential, 3).await?,
        "peer-identity-mismatch",
    )?;

    // TLS without a client certificate, even with the cluster credential: refused.
    let anonymous = stratus_core::tls::client_config(&ca)?;
    refused_with(
        &local_status(&addr, Some(anonymous), &credential, 2).await?,
        "peer-certificate-missing",
    )?;

    // A certificate for node 2 from another CA: the handshake fails.
    let other_ca = stratus_core::tls::generate_ca("intruder", 2026)?;
    let forged = stratus_core::tls::issue_node_cert(&other_ca, 2, &["127.0.0.1".into()], 2026)?;
    let forged = stratus_core::tls::node_client_config(&ca, &forged.cert_pem, &forged.key_pem)?;
    refused_at_handshake(&local_status(&addr, Some(forged), &credential, 2).await?)?;

    // A client without TLS: the node does not speak plaintext.
    refused_at_handshake(&local_status(&addr, None, &credential, 2).await?)?;
    let plain = stratus_client::Client::connect_with(
        vec![addr.clone()],
        stratus_client::ClientConfig {
            credential: Some(stratus_client::Credential::new(cluster.operator())?),
            deadline: std::time::Duration::from_secs(3),
            ..stratus_client::ClientConfig::default()
        },
    )
    .await;
    ensure!(
        plain.is_err(),
        "a plaintext SDK client reached a TLS cluster"
    );

    // A client trusting another CA refuses the node (and says why).
    let wrong_ca = stratus_client::TlsConfig::from_ca_pem(&other_ca.cert_pem)?;
    let e = stratus_client::Client::connect_with(
        vec![addr.clone()],
        stratus_client::ClientConfig {
            credential: Some(stratus_client::Credential::new(cluster.operator())?),
            tls: Some(wrong_ca),
            deadline: std::time::Duration::from_secs(3),
            ..stratus_client::ClientConfig::default()
        },
    )
    .await
    .err()
    .context("a client trusting another CA accepted the node")?;
    ensure!(e.to_string().contains("TLS handshake"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_cluster_speaks_plaintext_only_when_configured_so() -> Result<()> {
    let mut cluster = Cluster::start(
        &bins!(),
        ClusterOptions {
            layout: Layout::OneRegion,
            insecure: true,
            ..ClusterOptions::default()
        },
    )
    .await?;
    ensure!(cluster.tls().is_none());
    let client = cluster.client().await?;
    let status = client.cluster_status().await?;
    ensure!(!status.nodes.is_empty(), "{status:?}");
    // The peer gate still wants the cluster credential.
    let addr = cluster.addr(1)?;
    refused_with(
        &local_status(&addr, None, "not-the-credential", 2).await?,
        "peer-credentials-invalid",
    )?;
    let root = stratus_node::root_key::load(&cluster.dir().join("root.key"))?;
    let credential = stratus_core::auth::cluster_credential(&root);
    let status = local_status(&addr, None, &credential, 2)
        .await?
        .map_err(|s| anyhow::anyhow!("plaintext peer call refused: {s:?}"))?;
    ensure!(status.node_id == 1, "{status:?}");
    Ok(())
}
