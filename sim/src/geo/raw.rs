//! Raw `stratus.v1` calls to one chosen node, for what the SDK will not do: send a
//! write to a node of the old primary region without following its redirect, or
//! read from exactly that node. The fence probe uses them.

use crate::history::{content, Outcome, WriteId};
use crate::workload::WRITE_META;
use std::time::Duration;
use stratus_proto::v1 as pb;
use stratus_proto::v1::object_service_client::ObjectServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Longest one raw call may take.
const CALL_MAX: Duration = Duration::from_millis(1500);

/// `req` with the simulation's operator secret as its credential: without one
/// every node refuses the call before it gets to the tenant's role and lease, and
/// a fence probe would prove nothing about fencing.
fn authorized<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let bearer = format!("Bearer {}", crate::workload::SIM_OPERATOR_SECRET);
    if let Ok(v) = bearer.parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// A lazily connected channel to `addr` over turmoil's network.
pub fn channel(addr: &str) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(800));
    Some(
        endpoint.connect_with_connector_lazy(tower::service_fn(|uri: Uri| async move {
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let s = turmoil::net::TcpStream::connect(authority).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        })),
    )
}

/// Puts `data` at `tenant/container/key` on exactly `channel`'s node; `Ok` only
/// when that node acknowledged it.
pub async fn put(
    channel: Channel,
    tenant: &str,
    container: &str,
    key: &str,
    data: Vec<u8>,
) -> Result<pb::ObjectInfo, String> {
    use pb::put_request::Part;
    let crc = crc32fast::hash(&data);
    let size = data.len() as u64;
    let msgs = vec![
        pb::PutRequest {
            part: Some(Part::Header(pb::PutHeader {
                tenant: tenant.into(),
                container: container.into(),
                key: key.into(),
                ..Default::default()
            })),
        },
        pb::PutRequest {
            part: Some(Part::Chunk(pb::PutChunk {
                data: data.into(),
                crc32: crc,
            })),
        },
        pb::PutRequest {
            part: Some(Part::Trailer(pb::PutTrailer { size, crc32: crc })),
        },
    ];
    let mut client = ObjectServiceClient::new(channel);
    match tokio::time::timeout(
        CALL_MAX,
        client.put_object(authorized(futures::stream::iter(msgs))),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r.into_inner().object.unwrap_or_default()),
        Ok(Err(status)) => Err(status
            .metadata()
            .get(stratus_proto::ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no-code")
            .to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// A strong read of `tenant/container/key` on exactly `channel`'s node, checked
/// byte for byte against the write it names. Refusals are `Unknown`.
pub async fn get(channel: Channel, tenant: &str, container: &str, key: &str) -> Outcome {
    let mut client = ObjectServiceClient::new(channel);
    let req = pb::GetRequest {
        tenant: tenant.into(),
        container: container.into(),
        key: key.into(),
        consistency: pb::Consistency::Strong as i32,
        ..Default::default()
    };
    let read = async {
        let mut stream = client.get_object(authorized(req)).await?.into_inner();
        let mut info = None;
        let mut data = Vec::new();
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(pb::get_response::Part::Info(i)) => info = Some(i),
                Some(pb::get_response::Part::Chunk(c)) => data.extend_from_slice(&c.data),
                None => {}
            }
        }
        Ok::<_, tonic::Status>((info, data))
    };
    match tokio::time::timeout(CALL_MAX, read).await {
        Ok(Ok((Some(info), data))) => {
            let Some(id) = info
                .metadata
                .get(WRITE_META)
                .and_then(|v| v.parse::<WriteId>().ok())
            else {
                return Outcome::Corrupt(format!("object {key} carries no write id"));
            };
            if data != content(id, info.size) {
                return Outcome::Corrupt(format!(
                    "object {key} (write {id}) read from one node does not hold that write's bytes"
                ));
            }
            Outcome::Read(Some(id))
        }
        Ok(Ok((None, _))) => Outcome::Unknown("no object info".into()),
        Ok(Err(s))
            if s.metadata()
                .get(stratus_proto::ERROR_CODE_KEY)
                .is_some_and(|c| c == "object-not-found") =>
        {
            Outcome::Read(None)
        }
        Ok(Err(s)) => Outcome::Unknown(s.message().to_string()),
        Err(_) => Outcome::Unknown("timeout".into()),
    }
}
