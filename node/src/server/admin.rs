//! The administration service: tenants, containers, routing and cluster status.

use super::convert;
use super::peer::{DirectoryAnswer, DirectoryQuery};
use crate::directory::{DirectoryCommand, DirectoryRejection, DirectoryResponse};
use crate::error::{NodeError, NodeResult};
use crate::node::StratusNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stratus_core::names::{validate_container, validate_tenant};
use stratus_core::placement::GroupKind;
use stratus_proto::v1 as pb;
use stratus_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

/// How long cluster status waits for each node.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AdminApi {
    pub node: Arc<StratusNode>,
}

fn rejection(r: DirectoryRejection) -> NodeError {
    use DirectoryRejection as R;
    match r {
        R::TenantExists(_) | R::ContainerExists { .. } => NodeError::AlreadyExists(r.to_string()),
        R::TenantNotFound(t) => NodeError::TenantNotFound(t),
        R::ContainerNotFound { tenant, name } => NodeError::ContainerNotFound {
            tenant,
            container: name,
        },
        R::TenantNotEmpty { .. } => NodeError::FailedPrecondition {
            code: "tenant-not-empty",
            message: r.to_string(),
        },
        R::Placement(m) => NodeError::FailedPrecondition {
            code: "placement-impossible",
            message: m,
        },
    }
}

fn unexpected(r: DirectoryResponse) -> NodeError {
    match r {
        DirectoryResponse::Rejected(r) => rejection(r),
        other => NodeError::Internal(format!("unexpected directory response {other:?}")),
    }
}

impl AdminApi {
    async fn containers_of(&self, tenant: &str) -> NodeResult<Vec<pb::Container>> {
        match self
            .node
            .directory_read(DirectoryQuery::Containers(tenant.to_string()))
            .await?
        {
            DirectoryAnswer::Containers(Some(list)) => {
                Ok(list.iter().map(convert::container).collect())
            }
            _ => Err(NodeError::TenantNotFound(tenant.to_string())),
        }
    }

    /// Whether a container still holds objects, asked of its group's leader.
    async fn container_is_empty(&self, tenant: &str, container: &str) -> NodeResult<bool> {
        let record = self.node.tenant(tenant).await?;
        let request = pb::ListRequest {
            tenant: tenant.into(),
            container: container.into(),
            page_size: 1,
            ..Default::default()
        };
        let members: Vec<u64> = self
            .node
            .spec(record.group)
            .map(|s| s.voters.clone())
            .unwrap_or_default();
        let mut last = String::from("no member reachable");
        for id in members {
            let Some(channel) = self.node.peers.channel(id) else {
                continue;
            };
            let mut client = pb::object_service_client::ObjectServiceClient::new(channel);
            match tokio::time::timeout(
                Duration::from_secs(10),
                client.list_objects(request.clone()),
            )
            .await
            {
                Ok(Ok(r)) => return Ok(r.into_inner().objects.is_empty()),
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => {
                    return Err(NodeError::ContainerNotFound {
                        tenant: tenant.into(),
                        container: container.into(),
                    })
                }
                Ok(Err(s)) => last = s.message().to_string(),
                Err(_) => last = format!("node {id} timed out"),
            }
        }
        Err(NodeError::Unavailable(format!(
            "cannot check whether {tenant}/{container} is empty: {last}"
        )))
    }

    async fn status_of_all(&self) -> Vec<(u64, Result<pb::LocalStatusResponse, String>)> {
        let calls = self.node.topology.nodes().keys().map(|id| {
            let client = self.node.peers.client(*id);
            let id = *id;
            async move {
                let Some(mut client) = client else {
                    return (id, Err("no address".to_string()));
                };
                match tokio::time::timeout(
                    STATUS_TIMEOUT,
                    client.local_status(pb::LocalStatusRequest {}),
                )
                .await
                {
                    Ok(Ok(r)) => (id, Ok(r.into_inner())),
                    Ok(Err(s)) => (id, Err(s.message().to_string())),
                    Err(_) => (
                        id,
                        Err(format!("no answer within {}s", STATUS_TIMEOUT.as_secs())),
                    ),
                }
            }
        });
        futures::future::join_all(calls).await
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let r = request.into_inner();
        validate_tenant(&r.name).map_err(NodeError::from)?;
        let redundancy = convert::redundancy_from_wire(r.redundancy)?;
        if r.region.is_empty() {
            return Err(NodeError::InvalidArgument(
                "region is required: name one of the topology's storage regions".into(),
            )
            .into());
        }
        let command = DirectoryCommand::CreateTenant {
            name: r.name,
            region: r.region,
            redundancy,
            now_ms: self.node.clock.now_ms(),
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Tenant(t) => Ok(Response::new(convert::tenant(&t))),
            other => Err(unexpected(other).into()),
        }
    }

    async fn list_tenants(
        &self,
        _request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        match self.node.directory_read(DirectoryQuery::Tenants).await? {
            DirectoryAnswer::Tenants(list) => Ok(Response::new(pb::ListTenantsResponse {
                tenants: list.iter().map(convert::tenant).collect(),
            })),
            other => Err(Status::internal(format!(
                "unexpected directory answer {other:?}"
            ))),
        }
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let name = request.into_inner().name;
        validate_tenant(&name).map_err(NodeError::from)?;
        match self
            .node
            .directory_read(DirectoryQuery::Tenant(name.clone()))
            .await?
        {
            DirectoryAnswer::Tenant(Some(t)) => Ok(Response::new(convert::tenant(&t))),
            _ => Err(NodeError::TenantNotFound(name).into()),
        }
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let name = request.into_inner().name;
        validate_tenant(&name).map_err(NodeError::from)?;
        match self
            .node
            .directory_write(DirectoryCommand::DeleteTenant { name })
            .await?
        {
            DirectoryResponse::Deleted => Ok(Response::new(pb::DeleteTenantResponse {})),
            other => Err(unexpected(other).into()),
        }
    }

    async fn create_container(
        &self,
        request: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::Container>, Status> {
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        validate_container(&r.name).map_err(NodeError::from)?;
        let command = DirectoryCommand::CreateContainer {
            tenant: r.tenant,
            name: r.name,
            now_ms: self.node.clock.now_ms(),
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Container(c) => Ok(Response::new(convert::container(&c))),
            other => Err(unexpected(other).into()),
        }
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let tenant = request.into_inner().tenant;
        validate_tenant(&tenant).map_err(NodeError::from)?;
        Ok(Response::new(pb::ListContainersResponse {
            containers: self.containers_of(&tenant).await?,
        }))
    }

    async fn delete_container(
        &self,
        request: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<pb::DeleteContainerResponse>, Status> {
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        validate_container(&r.name).map_err(NodeError::from)?;
        self.node.require_container(&r.tenant, &r.name).await?;
        if !self.container_is_empty(&r.tenant, &r.name).await? {
            return Err(NodeError::FailedPrecondition {
                code: "container-not-empty",
                message: format!(
                    "container {}/{} still holds objects; delete them first",
                    r.tenant, r.name
                ),
            }
            .into());
        }
        match self
            .node
            .directory_write(DirectoryCommand::DeleteContainer {
                tenant: r.tenant,
                name: r.name,
            })
            .await?
        {
            DirectoryResponse::Deleted => Ok(Response::new(pb::DeleteContainerResponse {})),
            other => Err(unexpected(other).into()),
        }
    }

    async fn resolve_tenant(
        &self,
        request: Request<pb::ResolveTenantRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        let name = request.into_inner().tenant;
        validate_tenant(&name).map_err(NodeError::from)?;
        let tenant = self.node.tenant(&name).await?;
        let spec = self
            .node
            .spec(tenant.group)
            .ok_or_else(|| NodeError::Internal(format!("group {} is not planned", tenant.group)))?;
        let members = spec
            .voters
            .iter()
            .map(|id| pb::Member {
                node_id: *id,
                addr: self.node.peers.addr(*id).unwrap_or_default(),
            })
            .collect();
        let mut leader = self.node.groups.get(&tenant.group).and_then(|g| g.leader());
        if leader.is_none() {
            // Not a member: ask the members who leads.
            for (_, status) in self.status_of_all().await {
                if let Some(g) = status.ok().and_then(|s| {
                    s.groups
                        .into_iter()
                        .find(|g| g.group_id == tenant.group && g.leader_id != 0)
                }) {
                    leader = Some(g.leader_id);
                    break;
                }
            }
        }
        let leader_id = leader.unwrap_or(0);
        Ok(Response::new(pb::Placement {
            tenant: name,
            group_id: tenant.group,
            members,
            leader_id,
            leader_addr: leader
                .and_then(|l| self.node.peers.addr(l))
                .unwrap_or_default(),
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let topology = &self.node.topology;
        let statuses = self.status_of_all().await;
        let regions = topology
            .regions()
            .iter()
            .map(|r| pb::RegionInfo {
                name: r.name.clone(),
                pair: r.pair.clone().unwrap_or_default(),
                witness: r.witness,
            })
            .collect();
        let mut replicas: BTreeMap<u64, Vec<(u64, pb::GroupReplicaStatus)>> = BTreeMap::new();
        let mut nodes = Vec::new();
        for (id, status) in statuses {
            let n = &topology.nodes()[&id];
            let (up, error) = match status {
                Ok(s) => {
                    for g in s.groups {
                        replicas.entry(g.group_id).or_default().push((id, g));
                    }
                    (true, String::new())
                }
                Err(e) => (false, e),
            };
            nodes.push(pb::NodeInfo {
                id,
                name: n.name(),
                region: n.region.clone(),
                zone: n.zone.clone(),
                facility: n.facility.clone(),
                addr: n.addr.clone(),
                up,
                error,
            });
        }
        let tenants = self.node.directory.read(|d| {
            d.tenants
                .values()
                .map(|t| (t.group, t.name.clone()))
                .collect::<Vec<_>>()
        });
        let groups = self
            .node
            .plan
            .iter()
            .map(|spec| {
                let reps = replicas.remove(&spec.id).unwrap_or_default();
                // The leader with the highest term any replica reports.
                let best = reps
                    .iter()
                    .filter(|(_, g)| g.leader_id != 0)
                    .max_by_key(|(_, g)| g.replica.as_ref().map(|r| r.term).unwrap_or(0));
                let (kind, region, redundancy) = match &spec.kind {
                    GroupKind::Directory => {
                        ("directory", String::new(), pb::Redundancy::Unspecified)
                    }
                    GroupKind::Replica { region, redundancy } => (
                        "replica",
                        region.clone(),
                        convert::redundancy_to_wire(*redundancy),
                    ),
                };
                pb::GroupInfo {
                    id: spec.id,
                    kind: kind.to_string(),
                    region,
                    redundancy: redundancy as i32,
                    members: spec.voters.clone(),
                    leader_id: best.map(|(_, g)| g.leader_id).unwrap_or(0),
                    term: reps
                        .iter()
                        .filter_map(|(_, g)| g.replica.as_ref().map(|r| r.term))
                        .max()
                        .unwrap_or(0),
                    replicas: reps.iter().filter_map(|(_, g)| g.replica.clone()).collect(),
                    tenants: tenants
                        .iter()
                        .filter(|(g, _)| *g == spec.id)
                        .map(|(_, t)| t.clone())
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            regions,
            nodes,
            groups,
        }))
    }
}
