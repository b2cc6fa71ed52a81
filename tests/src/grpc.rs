//! Raw `stratus.v1` gRPC, for what the SDK will not do: send a wrong CRC, stop an
//! upload half-way, read from one chosen replica, or show the exact status and
//! `stratus-error` code a node answers.

use crate::poll::poll;
use anyhow::{bail, Context};
use std::time::Duration;
use stratus_proto::v1 as pb;
use stratus_proto::v1::admin_service_client::AdminServiceClient;
use stratus_proto::v1::object_service_client::ObjectServiceClient;
use stratus_proto::v1::put_request::Part;
use stratus_proto::ERROR_CODE_KEY;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Time to connect to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time one unary call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to `addr` (`host:port`), connected lazily.
pub fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy(),
    )
}

/// The object service of the node at `addr`.
pub fn objects(addr: &str) -> anyhow::Result<ObjectServiceClient<Channel>> {
    Ok(ObjectServiceClient::new(channel(addr)?))
}

/// The admin service of the node at `addr`.
pub fn admin(addr: &str) -> anyhow::Result<AdminServiceClient<Channel>> {
    Ok(AdminServiceClient::new(channel(addr)?))
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

/// Sends a complete put stream to `addr`.
pub async fn put(
    addr: &str,
    msgs: Vec<pb::PutRequest>,
) -> anyhow::Result<Result<pb::ObjectInfo, Status>> {
    let mut client = objects(addr)?;
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
