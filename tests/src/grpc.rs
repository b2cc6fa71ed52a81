//! Raw `stratus.v1` gRPC, for what the SDK will not do: send a wrong CRC, stop an
//! upload half-way, read from one chosen replica, or show the exact status and
//! `stratus-error` code a node answers.

use crate::poll::poll;
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::Duration;
use stratus_proto::v1 as pb;
use stratus_proto::v1::access_service_client::AccessServiceClient;
use stratus_proto::v1::admin_service_client::AdminServiceClient;
use stratus_proto::v1::key_service_client::KeyServiceClient;
use stratus_proto::v1::object_service_client::ObjectServiceClient;
use stratus_proto::v1::put_request::Part;
use stratus_proto::ERROR_CODE_KEY;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Time to connect to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time one unary call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel that sends a credential (`authorization: Bearer ...`) on every call.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <credential>` (nothing for an empty credential).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(credential: &str) -> anyhow::Result<Bearer> {
        if credential.is_empty() {
            return Ok(Bearer(None));
        }
        let mut v: MetadataValue<Ascii> = format!("Bearer {credential}")
            .parse()
            .context("a credential must be printable ASCII")?;
        v.set_sensitive(true);
        Ok(Bearer(Some(v)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut()
                .insert(stratus_proto::AUTHORIZATION_KEY, v.clone());
        }
        Ok(r)
    }
}

/// TLS client settings by node address, registered by whoever started the
/// cluster at that address ([`register_ca`]); addresses not listed are plaintext.
static TLS_BY_ADDR: std::sync::LazyLock<
    std::sync::Mutex<
        std::collections::HashMap<String, Arc<stratus_core::tls::rustls::ClientConfig>>,
    >,
> = std::sync::LazyLock::new(Default::default);

/// Makes [`channel`] speak TLS to `addr`, trusting the CA certificate in `ca`.
pub fn register_ca(addr: &str, ca: &std::path::Path) -> anyhow::Result<()> {
    let pem =
        std::fs::read_to_string(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let config = stratus_core::tls::client_config(&pem)?;
    TLS_BY_ADDR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(addr.to_owned(), config);
    Ok(())
}

/// A channel to `addr` (`host:port`), connected lazily: TLS when a CA was
/// registered for it, else plaintext.
pub fn channel(addr: &str) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    let tls = TLS_BY_ADDR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(addr)
        .cloned();
    let Some(config) = tls else {
        return Ok(endpoint.connect_lazy());
    };
    Ok(tls_channel(endpoint, addr, config))
}

/// A lazily connected channel over TLS with `config`, checking `addr`'s host.
pub fn tls_channel(
    endpoint: tonic::transport::Endpoint,
    addr: &str,
    config: Arc<stratus_core::tls::rustls::ClientConfig>,
) -> Channel {
    let connector = tokio_rustls::TlsConnector::from(config);
    let target = addr.to_owned();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
        let (connector, target) = (connector.clone(), target.clone());
        async move {
            let name = stratus_core::tls::server_name_of(&target)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tcp = tokio::net::TcpStream::connect(&target).await?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    }))
}

fn conn(addr: &str, credential: &str) -> anyhow::Result<Conn> {
    Ok(InterceptedService::new(
        channel(addr)?,
        Bearer::new(credential)?,
    ))
}

/// The operator secret of every cluster this test process starts (drawn once per
/// process): the harness and the raw helpers authenticate as operator with it.
pub fn operator_secret() -> &'static str {
    static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        use rand::RngCore;
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        stratus_core::auth::operator_secret_from(&random)
    })
}

/// The object service of the node at `addr`, as operator.
pub fn objects(addr: &str) -> anyhow::Result<ObjectServiceClient<Conn>> {
    objects_as(addr, operator_secret())
}

/// The admin service of the node at `addr`, as operator.
pub fn admin(addr: &str) -> anyhow::Result<AdminServiceClient<Conn>> {
    admin_as(addr, operator_secret())
}

/// The object service of the node at `addr`, called with `credential` (a token or
/// the operator secret; empty: none).
pub fn objects_as(addr: &str, credential: &str) -> anyhow::Result<ObjectServiceClient<Conn>> {
    Ok(ObjectServiceClient::new(conn(addr, credential)?))
}

/// The admin service of the node at `addr`, called with `credential`.
pub fn admin_as(addr: &str, credential: &str) -> anyhow::Result<AdminServiceClient<Conn>> {
    Ok(AdminServiceClient::new(conn(addr, credential)?))
}

/// The key service of the node at `addr`, called with `credential`.
pub fn keys_as(addr: &str, credential: &str) -> anyhow::Result<KeyServiceClient<Conn>> {
    Ok(KeyServiceClient::new(conn(addr, credential)?))
}

/// The access service of the node at `addr`, called with `credential`.
pub fn access_as(addr: &str, credential: &str) -> anyhow::Result<AccessServiceClient<Conn>> {
    Ok(AccessServiceClient::new(conn(addr, credential)?))
}

/// The stable Stratus error code of a status (`stratus-error` metadata).
pub fn error_code(status: &Status) -> Option<&str> {
    status.metadata().get(ERROR_CODE_KEY)?.to_str().ok()
}

/// Fails unless `result` is a status with gRPC code `code` and Stratus code
/// `stratus_code`; returns the status for further checks on its message.
pub fn expect_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    stratus_code: &str,
) -> anyhow::Result<Status> {
    match result {
        Ok(v) => bail!("expected {code:?} / {stratus_code}, got success: {v:?}"),
        Err(s) if s.code() == code && error_code(&s) == Some(stratus_code) => Ok(s),
        Err(s) => bail!(
            "expected {code:?} / {stratus_code}, got {:?} / {:?}: {}",
            s.code(),
            error_code(&s),
            s.message()
        ),
    }
}

/// A put header for `tenant/container/key` with no conditions.
pub fn put_header(tenant: &str, container: &str, key: &str) -> pb::PutHeader {
    pb::PutHeader {
        tenant: tenant.to_owned(),
        container: container.to_owned(),
        key: key.to_owned(),
        ..Default::default()
    }
}

/// A chunk with its correct CRC.
pub fn chunk(data: &[u8]) -> pb::PutRequest {
    pb::PutRequest {
        part: Some(Part::Chunk(pb::PutChunk {
            data: bytes::Bytes::copy_from_slice(data),
            crc32: crc32fast::hash(data),
        })),
    }
}

/// The messages of a correct put: header, `data` in chunks of `chunk_bytes`, and
/// a trailer with the size and whole-object CRC.
pub fn put_messages(header: pb::PutHeader, data: &[u8], chunk_bytes: usize) -> Vec<pb::PutRequest> {
    let mut msgs = vec![pb::PutRequest {
        part: Some(Part::Header(header)),
    }];
    msgs.extend(data.chunks(chunk_bytes.max(1)).map(chunk));
    msgs.push(pb::PutRequest {
        part: Some(Part::Trailer(pb::PutTrailer {
            size: data.len() as u64,
            crc32: crc32fast::hash(data),
        })),
    });
    msgs
}

/// Sends a complete put stream to `addr`, as operator of a harness cluster.
pub async fn put(
    addr: &str,
    msgs: Vec<pb::PutRequest>,
) -> anyhow::Result<Result<pb::ObjectInfo, Status>> {
    put_as(addr, operator_secret(), msgs).await
}

/// Sends a complete put stream to `addr` with `credential`.
pub async fn put_as(
    addr: &str,
    credential: &str,
    msgs: Vec<pb::PutRequest>,
) -> anyhow::Result<Result<pb::ObjectInfo, Status>> {
    let mut client = objects_as(addr, credential)?;
    let call = client.put_object(futures::stream::iter(msgs));
    let reply = tokio::time::timeout(CALL_TIMEOUT * 6, call)
        .await
        .with_context(|| format!("put to {addr} did not answer"))?;
    Ok(reply.map(|r| r.into_inner().object.unwrap_or_default()))
}

/// Reads a whole object (or a range) from the node at `addr`, checking every
/// chunk's CRC. Returns the object info and the bytes.
pub async fn get(addr: &str, req: pb::GetRequest) -> Result<(pb::ObjectInfo, Vec<u8>), Status> {
    let mut client = objects(addr).map_err(|e| Status::internal(e.to_string()))?;
    let mut stream = client.get_object(req).await?.into_inner();
    let info = match stream.message().await? {
        Some(pb::GetResponse {
            part: Some(pb::get_response::Part::Info(info)),
        }) => info,
        other => {
            return Err(Status::internal(format!(
                "first message is not the info: {other:?}"
            )))
        }
    };
    let mut data = Vec::new();
    while let Some(msg) = stream.message().await? {
        match msg.part {
            Some(pb::get_response::Part::Chunk(c)) => {
                if crc32fast::hash(&c.data) != c.crc32 {
                    return Err(Status::data_loss(format!(
                        "chunk at {} failed its CRC",
                        data.len()
                    )));
                }
                data.extend_from_slice(&c.data);
            }
            other => return Err(Status::internal(format!("expected a chunk, got {other:?}"))),
        }
    }
    Ok((info, data))
}

/// A get request for a whole object.
pub fn get_request(
    tenant: &str,
    container: &str,
    key: &str,
    consistency: pb::Consistency,
) -> pb::GetRequest {
    pb::GetRequest {
        tenant: tenant.to_owned(),
        container: container.to_owned(),
        key: key.to_owned(),
        offset: None,
        length: None,
        consistency: consistency as i32,
        encryption_key: None,
    }
}

/// The address of the current leader of `tenant`'s replica group, as the
/// cluster reports it (polled until one is known).
pub async fn tenant_leader_addr(
    any_node: &str,
    tenant: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    poll(
        &format!("a leader for tenant {tenant}"),
        timeout,
        || async {
            let p = admin(any_node)?
                .resolve_tenant(pb::ResolveTenantRequest {
                    tenant: tenant.to_owned(),
                })
                .await?
                .into_inner();
            if p.leader_addr.is_empty() {
                bail!("no leader known for group {}", p.group_id);
            }
            anyhow::Ok(p.leader_addr)
        },
    )
    .await
}

/// Sends `msgs` as a put to the leader of `tenant`'s group, following a leader
/// change (`not-leader`) a bounded number of times. Returns the node's answer.
pub async fn put_at_leader(
    any_node: &str,
    tenant: &str,
    msgs: Vec<pb::PutRequest>,
) -> anyhow::Result<Result<pb::ObjectInfo, Status>> {
    const ATTEMPTS: usize = 10;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let leader = tenant_leader_addr(any_node, tenant, Duration::from_secs(20)).await?;
        match put(&leader, msgs.clone()).await? {
            Err(s) if error_code(&s) == Some("not-leader") => {
                last = Some(s);
                // Back off: the cluster may still name the old leader.
                tokio::time::sleep(crate::poll::POLL_INTERVAL * 3).await;
            }
            other => return Ok(other),
        }
    }
    bail!("no leader accepted the put after {ATTEMPTS} attempts; last: {last:?}")
}
