//! A fake node for the SDK tests: a tonic server on loopback that either serves
//! one object (and accepts puts) or redirects every object call to a leader.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_proto::v1 as pb;
use stratus_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use stratus_proto::v1::object_service_server::{ObjectService, ObjectServiceServer};
use stratus_proto::{ERROR_CODE_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::ClientConfig;

/// What a serving fake node does.
#[derive(Clone, Default)]
pub(super) struct Serving {
    pub(super) object: Bytes,
    /// Send a chunk whose CRC does not match its data.
    pub(super) corrupt_chunk: bool,
    /// Announce a whole-object CRC that does not match the content.
    pub(super) wrong_object_crc: bool,
    /// Fail every put with UNAVAILABLE after reading its trailer.
    pub(super) fail_after_trailer: bool,
    /// Break the next download after its first chunk.
    pub(super) break_next_get: Arc<AtomicBool>,
}

/// How a fake node answers object calls.
#[derive(Clone)]
pub(super) enum Behavior {
    /// Reject every object call with `not-leader`, pointing at this address.
    Redirect(String),
    /// Serve an object (and accept puts).
    Serve(Serving),
}

#[derive(Clone)]
pub(super) struct FakeNode {
    pub(super) behavior: Behavior,
    /// Every node address, for ClusterStatus; members of the one replica group.
    pub(super) members: Arc<Mutex<Vec<String>>>,
    /// Members of the tenant's secondary group, as placements report them.
    pub(super) secondary: Arc<Mutex<Vec<String>>>,
    /// Object calls received, as "method" strings.
    pub(super) calls: Arc<Mutex<Vec<String>>>,
    /// Parts of every put received, in order: "header", "chunk <len>", "trailer <size> <crc>".
    pub(super) put_parts: Arc<Mutex<Vec<String>>>,
}

type GetStream = Pin<Box<dyn Stream<Item = Result<pb::GetResponse, Status>> + Send>>;

fn not_leader(to: &str) -> Status {
    let mut s = Status::unavailable("not the leader of group 1");
    let meta = s.metadata_mut();
    meta.insert(ERROR_CODE_KEY, "not-leader".parse().expect("ascii"));
    meta.insert(LEADER_ID_KEY, "2".parse().expect("ascii"));
    meta.insert(LEADER_ADDR_KEY, to.parse().expect("ascii"));
    s
}

fn info_of(object: &[u8], crc32: u32) -> pb::ObjectInfo {
    pb::ObjectInfo {
        tenant: "acme".into(),
        container: "box".into(),
        key: "k".into(),
        size: object.len() as u64,
        crc32,
        etag: "e1".into(),
        version_id: "v1".into(),
        ..Default::default()
    }
}

impl FakeNode {
    fn record(&self, call: &str) -> Result<(), Status> {
        self.calls.lock().expect("lock").push(call.to_owned());
        match &self.behavior {
            Behavior::Redirect(to) => Err(not_leader(to)),
            Behavior::Serve(_) => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl ObjectService for FakeNode {
    async fn put_object(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.record("put")?;
        let mut stream = request.into_inner();
        let mut body = Vec::new();
        while let Some(msg) = stream.message().await? {
            let part = match msg.part {
                Some(pb::put_request::Part::Header(_)) => "header".to_string(),
                Some(pb::put_request::Part::Chunk(c)) => {
                    if crc32fast::hash(&c.data) != c.crc32 {
                        return Err(Status::data_loss("chunk crc"));
                    }
                    body.extend_from_slice(&c.data);
                    format!("chunk {}", c.data.len())
                }
                Some(pb::put_request::Part::Trailer(t)) => {
                    format!("trailer {} {:08x}", t.size, t.crc32)
                }
                None => "empty".to_string(),
            };
            self.put_parts.lock().expect("lock").push(part);
        }
        if let Behavior::Serve(Serving {
            fail_after_trailer: true,
            ..
        }) = self.behavior
        {
            return Err(Status::unavailable("commit timed out"));
        }
        Ok(Response::new(pb::PutResponse {
            object: Some(info_of(&body, crc32fast::hash(&body))),
        }))
    }

    type GetObjectStream = GetStream;

    async fn get_object(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<GetStream>, Status> {
        self.record("get")?;
        let req = request.into_inner();
        let Behavior::Serve(Serving {
            object,
            corrupt_chunk,
            wrong_object_crc,
            break_next_get,
            ..
        }) = self.behavior.clone()
        else {
            return Err(Status::internal("unreachable"));
        };
        let break_now = break_next_get.swap(false, Ordering::SeqCst);
        let crc = crc32fast::hash(&object) ^ u32::from(wrong_object_crc);
        let mut parts = vec![Ok(pb::GetResponse {
            part: Some(pb::get_response::Part::Info(info_of(&object, crc))),
        })];
        let start = (req.offset.unwrap_or(0) as usize).min(object.len());
        let end = req
            .length
            .map_or(object.len(), |l| (start + l as usize).min(object.len()));
        for (i, data) in object[start..end].chunks(4).enumerate() {
            let data = Bytes::copy_from_slice(data);
            let crc32 = crc32fast::hash(&data) ^ u32::from(corrupt_chunk && i == 1);
            parts.push(Ok(pb::GetResponse {
                part: Some(pb::get_response::Part::Chunk(pb::GetChunk { data, crc32 })),
            }));
            if break_now {
                parts.push(Err(Status::unavailable("leader stepped down")));
                break;
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(parts))))
    }

    async fn head_object(
        &self,
        _request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::ObjectInfo>, Status> {
        self.record("head")?;
        Ok(Response::new(info_of(b"", 0)))
    }

    async fn delete_object(
        &self,
        _request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.record("delete")?;
        Ok(Response::new(pb::DeleteResponse {
            version_id: "v1".into(),
        }))
    }

    async fn list_objects(
        &self,
        _request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        self.record("list")?;
        Ok(Response::new(pb::ListResponse::default()))
    }
}

#[tonic::async_trait]
impl AdminService for FakeNode {
    async fn create_tenant(
        &self,
        _: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_tenants(
        &self,
        _: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_tenant(
        &self,
        _: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_tenant(
        &self,
        _: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_container(
        &self,
        _: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::Container>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_containers(
        &self,
        _: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_container(
        &self,
        _: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<pb::DeleteContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn resolve_tenant(
        &self,
        request: Request<pb::ResolveTenantRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        let members = self.members.lock().expect("lock").clone();
        Ok(Response::new(pb::Placement {
            tenant: request.into_inner().tenant,
            group_id: 1,
            members: members
                .iter()
                .enumerate()
                .map(|(i, addr)| pb::Member {
                    node_id: i as u64 + 1,
                    addr: addr.clone(),
                })
                .collect(),
            // A stale answer: the first node, which redirects.
            leader_id: 1,
            leader_addr: members.first().cloned().unwrap_or_default(),
            secondary_members: self
                .secondary
                .lock()
                .expect("lock")
                .iter()
                .enumerate()
                .map(|(i, addr)| pb::Member {
                    node_id: i as u64 + 100,
                    addr: addr.clone(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn update_tenant(
        &self,
        _: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        Err(Status::unimplemented("the fake node has no geo-redundancy"))
    }

    async fn failover(
        &self,
        _: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::FailoverResponse>, Status> {
        Err(Status::unimplemented("the fake node has no geo-redundancy"))
    }

    async fn reprotect(
        &self,
        _: Request<pb::ReprotectRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        Err(Status::unimplemented("the fake node has no geo-redundancy"))
    }

    async fn metrics(
        &self,
        _: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsResponse>, Status> {
        Err(Status::unimplemented("the fake node keeps no metrics"))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let members = self.members.lock().expect("lock").clone();
        Ok(Response::new(pb::ClusterStatusResponse {
            nodes: members
                .iter()
                .enumerate()
                .map(|(i, addr)| pb::NodeInfo {
                    id: i as u64 + 1,
                    addr: addr.clone(),
                    up: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }
}

/// Binds a loopback port without serving yet.
pub(super) async fn bind() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("local addr").to_string();
    (l, addr)
}

fn serve(listener: tokio::net::TcpListener, node: FakeNode) {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ObjectServiceServer::new(node.clone()))
            .add_service(AdminServiceServer::new(node))
            .serve_with_incoming(incoming),
    );
}

/// A follower (first, and named leader by the stale placement) that redirects to a
/// serving leader (second).
pub(super) struct Pair {
    pub(super) follower: FakeNode,
    pub(super) leader: FakeNode,
    pub(super) follower_addr: String,
}

pub(super) fn serving(object: &[u8]) -> Serving {
    Serving {
        object: Bytes::copy_from_slice(object),
        ..Serving::default()
    }
}

pub(super) async fn pair(leader_behavior: Behavior) -> Pair {
    let (fl, follower_addr) = bind().await;
    let (ll, leader_addr) = bind().await;
    let members = Arc::new(Mutex::new(vec![follower_addr.clone(), leader_addr.clone()]));
    let node = |behavior| FakeNode {
        behavior,
        members: members.clone(),
        secondary: Arc::default(),
        calls: Arc::default(),
        put_parts: Arc::default(),
    };
    let follower = node(Behavior::Redirect(leader_addr.clone()));
    let leader = node(leader_behavior);
    serve(fl, follower.clone());
    serve(ll, leader.clone());
    Pair {
        follower,
        leader,
        follower_addr,
    }
}

/// Starts a node serving `object` and names it the only member of the secondary
/// group in every placement the pair's nodes give out.
pub(super) async fn add_secondary(p: &Pair, object: &[u8]) -> FakeNode {
    let (l, addr) = bind().await;
    let node = FakeNode {
        behavior: Behavior::Serve(serving(object)),
        members: p.follower.members.clone(),
        secondary: p.follower.secondary.clone(),
        calls: Arc::default(),
        put_parts: Arc::default(),
    };
    node.secondary.lock().expect("lock").push(addr);
    serve(l, node.clone());
    node
}

pub(super) fn calls(n: &FakeNode) -> Vec<String> {
    n.calls.lock().expect("lock").clone()
}

pub(super) fn quick() -> ClientConfig {
    ClientConfig {
        deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}
