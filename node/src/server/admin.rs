//! The administration service: tenants (in the directory), containers (in the
//! tenant's replica group), routing and cluster status ([`super::status`]).

use super::{convert, status};
use crate::directory::{DirectoryCommand, DirectoryRejection, DirectoryResponse, TenantRecord};
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery};
use crate::node::StratusNode;
use crate::objects::{ObjectCommand, ObjectResponse};
use crate::raft::{Command, Response as RaftResponse};
use std::sync::Arc;
use stratus_core::auth::{Permissions, Resource};
use stratus_core::names::{validate_container, validate_tenant};
use stratus_core::placement::DIRECTORY_GROUP;
use stratus_proto::v1 as pb;
use stratus_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

pub struct AdminApi {
    pub node: Arc<StratusNode>,
}

pub(crate) fn rejection(r: DirectoryRejection) -> NodeError {
    use crate::directory::vault::KeyRefusal;
    use DirectoryRejection as R;
    match r {
        R::Keys(KeyRefusal::State(m)) => NodeError::FailedPrecondition {
            code: "key-state",
            message: m,
        },
        R::Keys(KeyRefusal::Protected(m)) => NodeError::FailedPrecondition {
            code: "purge-protected",
            message: m,
        },
        R::Keys(KeyRefusal::Conflict(m)) => NodeError::Aborted(m),
        R::TenantExists(_) => NodeError::AlreadyExists(r.to_string()),
        R::TenantNotFound(t) => NodeError::TenantNotFound(t),
        R::Placement(m) => NodeError::FailedPrecondition {
            code: "placement-impossible",
            message: m,
        },
        R::Geo(crate::directory::geo::GeoRefusal::State(m)) => NodeError::FailedPrecondition {
            code: "tenant-state",
            message: m,
        },
        R::Geo(crate::directory::geo::GeoRefusal::Invalid(m)) => NodeError::InvalidArgument(m),
        R::Access(crate::directory::access::AccessRefusal::NotFound(m)) => NodeError::NotFound {
            code: "token-or-role-not-found",
            message: m,
        },
        R::Access(crate::directory::access::AccessRefusal::Limit(m)) => {
            NodeError::ResourceExhausted {
                code: "access-limit",
                message: m,
            }
        }
        R::Access(crate::directory::access::AccessRefusal::State(m)) => NodeError::UnavailableFor {
            code: "access-bootstrapping",
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

fn container_not_found(tenant: &str, name: &str) -> NodeError {
    NodeError::ContainerNotFound {
        tenant: tenant.into(),
        container: name.into(),
    }
}

impl AdminApi {
    /// A container command, proposed to the tenant's replica group.
    async fn container_command(
        &self,
        tenant: &TenantRecord,
        command: ObjectCommand,
    ) -> NodeResult<ObjectResponse> {
        match self
            .node
            .propose(tenant.group, Command::Object(command))
            .await?
        {
            RaftResponse::Object(r) => Ok(r),
            other => Err(NodeError::Internal(format!(
                "unexpected container response {other:?}"
            ))),
        }
    }

    async fn containers_of(
        &self,
        tenant: &TenantRecord,
    ) -> NodeResult<Vec<crate::objects::ContainerRecord>> {
        match self
            .node
            .query(
                tenant.group,
                GroupQuery::Containers {
                    tenant: tenant.name.clone(),
                },
            )
            .await?
        {
            GroupAnswer::Containers(list) => Ok(list),
            other => Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.node
            .allow_operator(&request, "creating a tenant", Some(&request.get_ref().name))
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.name).map_err(NodeError::from)?;
        let redundancy = convert::redundancy_from_wire(r.redundancy)?;
        if r.region.is_empty() {
            return Err(NodeError::InvalidArgument(
                "region is required: name one of the topology's storage regions".into(),
            )
            .into());
        }
        // The tenant's first KEK is born here and leaves this node only wrapped.
        let kek = self.node.rng.secret_key();
        let wrapped = self.node.keys.wrap_kek(&self.node.rng, &r.name, 1, &kek);
        drop(kek);
        let command = DirectoryCommand::CreateTenant {
            name: r.name,
            region: r.region,
            redundancy,
            now_ms: self.node.clock.now_ms(),
            kek: wrapped,
            purge_protection: !r.disable_purge_protection,
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Tenant(t) => Ok(Response::new(convert::tenant(&t))),
            other => Err(unexpected(other).into()),
        }
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.node
            .allow_operator(&request, "listing tenants", None)
            .await?;
        match self
            .node
            .query(DIRECTORY_GROUP, GroupQuery::Tenants)
            .await?
        {
            GroupAnswer::Tenants(list) => Ok(Response::new(pb::ListTenantsResponse {
                tenants: list.iter().map(convert::tenant).collect(),
            })),
            other => {
                Err(NodeError::Internal(format!("unexpected directory answer {other:?}")).into())
            }
        }
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.node
            .allow_tenant_member(&request, &request.get_ref().name)
            .await?;
        let name = request.into_inner().name;
        validate_tenant(&name).map_err(NodeError::from)?;
        match self
            .node
            .query(DIRECTORY_GROUP, GroupQuery::Tenant(name.clone()))
            .await?
        {
            GroupAnswer::Tenant(Some(t)) => {
                let mut wire = convert::tenant(&t);
                wire.geo = crate::geo::status::geo_info(&self.node, &t).await;
                Ok(Response::new(wire))
            }
            _ => Err(NodeError::TenantNotFound(name).into()),
        }
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        self.node
            .allow_operator(&request, "deleting a tenant", Some(&request.get_ref().name))
            .await?;
        let name = request.into_inner().name;
        validate_tenant(&name).map_err(NodeError::from)?;
        let tenant = self.node.tenant(&name).await?;
        let containers = self.containers_of(&tenant).await?;
        if let Some(c) = containers.first() {
            return Err(NodeError::FailedPrecondition {
                code: "tenant-not-empty",
                message: format!(
                    "tenant {name:?} still has {} container(s), such as {:?}; delete them first",
                    containers.len(),
                    c.name
                ),
            }
            .into());
        }
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
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::WRITE,
                Resource::Container(&r.tenant, &r.name),
            )
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        validate_container(&r.name).map_err(NodeError::from)?;
        let tenant = self.node.tenant(&r.tenant).await?;
        let command = ObjectCommand::CreateContainer {
            tenant: r.tenant.clone(),
            name: r.name.clone(),
            now_ms: self.node.clock.now_ms(),
        };
        match self.container_command(&tenant, command).await? {
            ObjectResponse::Container(c) => Ok(Response::new(convert::container(&c))),
            ObjectResponse::ContainerExists => Err(NodeError::AlreadyExists(format!(
                "container {}/{} already exists",
                r.tenant, r.name
            ))
            .into()),
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let caller = self
            .node
            .authenticate_for(
                request.metadata(),
                crate::auth::slot_of(&request),
                &Resource::Tenant(&request.get_ref().tenant),
            )
            .await?;
        let tenant = request.into_inner().tenant;
        // A container-scoped token lists only its own container.
        let only = match &caller {
            crate::auth::Caller::Token(c) if c.scope.tenant == tenant => c.scope.container.clone(),
            _ => None,
        };
        let resource = match &only {
            Some(c) => Resource::Container(&tenant, c),
            None => Resource::Tenant(&tenant),
        };
        self.node
            .authorize(&caller, Permissions::LIST, resource)
            .await?;
        validate_tenant(&tenant).map_err(NodeError::from)?;
        let tenant = self.node.tenant(&tenant).await?;
        let containers = self.containers_of(&tenant).await?;
        Ok(Response::new(pb::ListContainersResponse {
            containers: containers
                .iter()
                .filter(|c| only.as_ref().is_none_or(|o| *o == c.name))
                .map(convert::container)
                .collect(),
        }))
    }

    async fn delete_container(
        &self,
        request: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<pb::DeleteContainerResponse>, Status> {
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::DELETE,
                Resource::Container(&r.tenant, &r.name),
            )
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        validate_container(&r.name).map_err(NodeError::from)?;
        let tenant = self.node.tenant(&r.tenant).await?;
        let command = ObjectCommand::DeleteContainer {
            tenant: r.tenant.clone(),
            name: r.name.clone(),
        };
        match self.container_command(&tenant, command).await? {
            ObjectResponse::ContainerDeleted => Ok(Response::new(pb::DeleteContainerResponse {})),
            ObjectResponse::ContainerNotFound => {
                Err(container_not_found(&r.tenant, &r.name).into())
            }
            ObjectResponse::ContainerNotEmpty { example } => Err(NodeError::FailedPrecondition {
                code: "container-not-empty",
                message: format!(
                    "container {}/{} still holds objects, such as {example:?}; delete them first",
                    r.tenant, r.name
                ),
            }
            .into()),
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn resolve_tenant(
        &self,
        request: Request<pb::ResolveTenantRequest>,
    ) -> Result<Response<pb::Placement>, Status> {
        self.node
            .allow_tenant_member(&request, &request.get_ref().tenant)
            .await?;
        let name = request.into_inner().tenant;
        validate_tenant(&name).map_err(NodeError::from)?;
        // Fresh from the directory's leader: a client re-resolves after its
        // requests failed, and a stale copy (on a node cut off with the old
        // primary region) would send it back to the fenced old primary.
        let tenant = self.node.tenant_fresh(&name).await?;
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
        let leader = status::group_leader(&self.node, tenant.group).await;
        let secondary_members = tenant
            .secondary
            .as_ref()
            .and_then(|s| self.node.spec(s.group))
            .map(|spec| {
                spec.voters
                    .iter()
                    .map(|id| pb::Member {
                        node_id: *id,
                        addr: self.node.peers.addr(*id).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::Placement {
            tenant: name,
            group_id: tenant.group,
            members,
            leader_id: leader.unwrap_or(0),
            leader_addr: leader
                .and_then(|l| self.node.peers.addr(l))
                .unwrap_or_default(),
            secondary_group_id: tenant.secondary.as_ref().map_or(0, |s| s.group),
            secondary_members,
            read_access: tenant.redundancy.read_access(),
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.node
            .allow_operator(&request, "changing a tenant", Some(&request.get_ref().name))
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.name).map_err(NodeError::from)?;
        let redundancy = convert::redundancy_from_wire_opt(r.redundancy)?;
        let auto_failover_after_ms = r
            .auto_failover_after_s
            .map(|s| (s > 0).then(|| s.saturating_mul(1000)));
        if redundancy.is_none() && auto_failover_after_ms.is_none() {
            return Err(NodeError::InvalidArgument(
                "nothing to change: give a redundancy class, an automatic-failover delay, or both"
                    .into(),
            )
            .into());
        }
        let command = DirectoryCommand::UpdateTenant {
            name: r.name,
            redundancy,
            auto_failover_after_ms,
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Tenant(t) => {
                let mut wire = convert::tenant(&t);
                wire.geo = crate::geo::status::geo_info(&self.node, &t).await;
                Ok(Response::new(wire))
            }
            other => Err(unexpected(other).into()),
        }
    }

    async fn failover(
        &self,
        request: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::FailoverResponse>, Status> {
        self.node
            .allow_operator(&request, "a failover", Some(&request.get_ref().tenant))
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        let (t, record) = crate::geo::failover::failover(&self.node, &r.tenant, r.planned).await?;
        Ok(Response::new(pb::FailoverResponse {
            tenant: Some(convert::tenant(&t)),
            failover: Some(convert::failover(&record)),
        }))
    }

    async fn reprotect(
        &self,
        request: Request<pb::ReprotectRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.node
            .allow_operator(&request, "a reprotect", Some(&request.get_ref().tenant))
            .await?;
        let r = request.into_inner();
        validate_tenant(&r.tenant).map_err(NodeError::from)?;
        let t = crate::geo::failover::reprotect(&self.node, &r.tenant).await?;
        Ok(Response::new(convert::tenant(&t)))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        // Any caller may learn the nodes (the SDK discovers the cluster this way);
        // which tenants live where is for the operator only.
        let caller = self.node.authenticate(request.metadata()).await?;
        let mut status = status::cluster_status(&self.node).await;
        if !caller.is_operator() {
            for g in &mut status.groups {
                g.tenants.clear();
            }
        }
        Ok(Response::new(status))
    }

    async fn metrics(
        &self,
        request: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsResponse>, Status> {
        self.node
            .allow_operator(&request, "reading metrics", None)
            .await?;
        Ok(Response::new(pb::MetricsResponse {
            node_id: self.node.id,
            text: self.node.metrics.render(self.node.id),
        }))
    }
}
