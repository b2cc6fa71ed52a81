//! The access service: tokens, role assignments, signing-key rotation, whoami.
//!
//! Tokens are signed here with the cluster's current signing key (unwrapped from
//! the directory with the root key); only their claims go to the directory's
//! registry (for revocation), never the token. Nothing here logs a token.

use super::admin::rejection;
use crate::auth::Caller;
use crate::directory::access::{AccessOp, AccessOutcome, IssuedToken};
use crate::directory::{DirectoryCommand, DirectoryResponse};
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery};
use crate::node::StratusNode;
use std::sync::Arc;
use stratus_core::auth::token::{self, Claims};
use stratus_core::auth::{
    validate_principal, Permissions, Resource, Role, RoleGrant, Scope, TOKEN_LIFETIME_MS_MAX,
};
use stratus_core::names::{validate_container, validate_tenant};
use stratus_core::placement::DIRECTORY_GROUP;
use stratus_proto::v1 as pb;
use stratus_proto::v1::access_service_server::AccessService;
use tonic::{Request, Response, Status};

/// Audit records per export page.
const AUDIT_PAGE_MAX: u32 = 1000;

/// Longest key prefix a token may be limited to.
const TOKEN_PREFIX_BYTES_MAX: usize = 1024;

pub struct AccessApi {
    pub node: Arc<StratusNode>,
}

pub(crate) fn role_from_wire(role: i32) -> NodeResult<Role> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Reader) => Ok(Role::Reader),
        Ok(pb::Role::Contributor) => Ok(Role::Contributor),
        Ok(pb::Role::Owner) => Ok(Role::Owner),
        _ => Err(NodeError::InvalidArgument(
            "a role is required: reader, contributor or owner".into(),
        )),
    }
}

fn role_to_wire(role: Role) -> pb::Role {
    match role {
        Role::Reader => pb::Role::Reader,
        Role::Contributor => pb::Role::Contributor,
        Role::Owner => pb::Role::Owner,
    }
}

fn token_info(t: &IssuedToken) -> pb::TokenInfo {
    pb::TokenInfo {
        id: format!("{:032x}", t.id),
        tenant: t.tenant.clone(),
        container: t.container.clone().unwrap_or_default(),
        prefix: t.prefix.clone().unwrap_or_default(),
        permissions: Permissions(t.permissions).letters(),
        principal: t.principal.clone().unwrap_or_default(),
        start_ms: t.start_ms,
        expiry_ms: t.expiry_ms,
        revoked: t.revoked,
    }
}

fn issued(c: &Claims) -> IssuedToken {
    IssuedToken {
        id: c.id,
        tenant: c.scope.tenant.clone(),
        container: c.scope.container.clone(),
        prefix: c.scope.prefix.clone(),
        permissions: c.permissions.0,
        principal: c.principal.clone(),
        start_ms: c.start_ms,
        expiry_ms: c.expiry_ms,
        revoked: false,
    }
}

fn some_nonempty(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

impl AccessApi {
    async fn access_write(&self, op: AccessOp) -> NodeResult<AccessOutcome> {
        let command = DirectoryCommand::Access {
            op,
            now_ms: self.node.clock.now_ms(),
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Access(outcome) => Ok(outcome),
            DirectoryResponse::Rejected(r) => Err(rejection(r)),
            other => Err(NodeError::Internal(format!(
                "unexpected directory response {other:?}"
            ))),
        }
    }

    /// Checks a role assignment's fields.
    fn assignment(a: Option<pb::RoleAssignment>) -> NodeResult<RoleGrant> {
        let a = a.ok_or_else(|| {
            NodeError::InvalidArgument("the request has no role assignment".into())
        })?;
        validate_principal(&a.principal).map_err(NodeError::InvalidArgument)?;
        if !a.container.is_empty() {
            validate_container(&a.container)?;
        }
        Ok(RoleGrant {
            principal: a.principal,
            role: role_from_wire(a.role)?,
            container: some_nonempty(a.container),
        })
    }

    fn role_list(tenant: &str, grants: &[RoleGrant]) -> pb::RoleList {
        pb::RoleList {
            tenant: tenant.to_string(),
            assignments: grants
                .iter()
                .map(|g| pb::RoleAssignment {
                    principal: g.principal.clone(),
                    role: role_to_wire(g.role).into(),
                    container: g.container.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Authorizes a change to `tenant`'s roles and checks the tenant exists.
    async fn manage<T>(&self, request: &Request<T>, tenant: &str) -> NodeResult<Caller> {
        let caller = self
            .node
            .allow(request, Permissions::MANAGE, Resource::Tenant(tenant))
            .await?;
        validate_tenant(tenant)?;
        self.node.tenant(tenant).await?;
        Ok(caller)
    }

    /// Grants (`grant`) or revokes one role assignment of `tenant` for an
    /// authorized `caller`, and answers the tenant's roles afterwards.
    async fn change_role(
        &self,
        caller: &Caller,
        tenant: String,
        assignment: Option<pb::RoleAssignment>,
        grant: bool,
    ) -> Result<Response<pb::RoleList>, Status> {
        let change = Self::assignment(assignment)?;
        let what = format!(
            "{} {} on {:?}",
            change.principal,
            change.role.as_str(),
            change.container
        );
        let op = if grant {
            AccessOp::Grant {
                tenant: tenant.clone(),
                grant: change,
            }
        } else {
            AccessOp::Ungrant {
                tenant: tenant.clone(),
                grant: change,
            }
        };
        match self.access_write(op).await? {
            AccessOutcome::Grants(list) => {
                let verb = if grant {
                    "role granted"
                } else {
                    "role revoked"
                };
                tracing::info!(tenant = %tenant, grant = %what, by = %caller.name(), "{verb}");
                Ok(Response::new(Self::role_list(&tenant, &list)))
            }
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = self.manage(&request, &request.get_ref().tenant).await?;
        let r = request.into_inner();
        let role = role_from_wire(r.role)?;
        if !r.container.is_empty() {
            validate_container(&r.container).map_err(NodeError::from)?;
        }
        if !r.prefix.is_empty() && r.container.is_empty() {
            return Err(NodeError::InvalidArgument(
                "a key prefix limits a token within one container: give the container too (--container)".into(),
            )
            .into());
        }
        if r.prefix.len() > TOKEN_PREFIX_BYTES_MAX {
            return Err(NodeError::InvalidArgument(format!(
                "the key prefix is {} bytes long; at most {TOKEN_PREFIX_BYTES_MAX}",
                r.prefix.len()
            ))
            .into());
        }
        if !r.principal.is_empty() {
            validate_principal(&r.principal).map_err(NodeError::InvalidArgument)?;
        }
        let lifetime_s_max = TOKEN_LIFETIME_MS_MAX / 1000;
        if r.valid_for_s == 0 || r.valid_for_s > lifetime_s_max {
            return Err(NodeError::InvalidArgument(format!(
                "a token's validity must be between 1 s and {lifetime_s_max} s (30 days); {} s was asked (--expires 1h)",
                r.valid_for_s
            ))
            .into());
        }
        if r.start_offset_s.unsigned_abs() > lifetime_s_max {
            return Err(NodeError::InvalidArgument(format!(
                "a token's start may be at most {lifetime_s_max} s away from now; {} s was asked",
                r.start_offset_s
            ))
            .into());
        }
        let scope = Scope {
            tenant: r.tenant.clone(),
            container: some_nonempty(r.container),
            prefix: some_nonempty(r.prefix),
        };
        if let Caller::Token(c) = &caller {
            // A token can hand on no more than it holds.
            if !c.scope.encloses(&scope) || !c.permissions.contains(role.permissions()) {
                return Err(NodeError::PermissionDenied {
                    code: "access-denied",
                    message: format!(
                        "token {} ({} on {}) cannot issue a {} token on {}: a new token can grant no more than its issuer holds",
                        c.id_hex(),
                        c.permissions.words(),
                        c.scope.describe(),
                        role.as_str(),
                        scope.describe()
                    ),
                }
                .into());
            }
        }
        let now_ms = self.node.clock.now_ms();
        let start_ms = (now_ms as i64)
            .saturating_add(r.start_offset_s.saturating_mul(1000))
            .max(0) as u64;
        let (key_version, key) = self.node.current_signing_key()?;
        let claims = Claims {
            id: self.node.rng.next_u128(),
            key_version,
            scope,
            permissions: role.permissions(),
            principal: some_nonempty(r.principal),
            start_ms,
            expiry_ms: start_ms.saturating_add(r.valid_for_s.saturating_mul(1000)),
        };
        let record = match self.access_write(AccessOp::Issue(issued(&claims))).await? {
            AccessOutcome::Token(t) => t,
            other => {
                return Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into())
            }
        };
        let token = token::sign(&claims, &key);
        tracing::info!(
            tenant = %claims.scope.tenant,
            token = %claims.id_hex(),
            role = role.as_str(),
            by = %caller.name(),
            "token created"
        );
        Ok(Response::new(pb::CreateTokenResponse {
            token,
            info: Some(token_info(&record)),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = self.node.authenticate(request.metadata()).await?;
        let slot = crate::auth::slot_of(&request).cloned();
        let text = request.into_inner().id;
        let id = u128::from_str_radix(text.trim(), 16)
            .ok()
            .filter(|_| text.trim().len() == 32)
            .ok_or_else(|| {
                NodeError::InvalidArgument(format!(
                    "{text:?} is not a token id: ids are 32 hex digits, as `stratus token create` printed"
                ))
            })?;
        // From the directory's leader: a token just issued elsewhere is known there.
        let record = match self
            .node
            .query(DIRECTORY_GROUP, GroupQuery::IssuedToken(id))
            .await?
        {
            GroupAnswer::IssuedToken(t) => t,
            other => return Err(NodeError::Internal(format!("unexpected answer {other:?}")).into()),
        };
        let record = match (record, &caller) {
            (Some(r), _) => r,
            (None, Caller::Operator) => {
                return Err(NodeError::NotFound {
                    code: "token-not-found",
                    message: format!("no unexpired token has id {id:032x}"),
                }
                .into())
            }
            (None, Caller::Token(c)) => {
                return Err(NodeError::PermissionDenied {
                    code: "access-denied",
                    message: format!(
                        "token {id:032x} is not a token of tenant {}, which token {} manages",
                        c.scope.tenant,
                        c.id_hex()
                    ),
                }
                .into())
            }
        };
        self.node.note_call(
            slot.as_ref(),
            &record.tenant,
            caller.name(),
            format!("token {id:032x}"),
        );
        self.node
            .authorize(
                &caller,
                Permissions::MANAGE,
                Resource::Tenant(&record.tenant),
            )
            .await?;
        match self.access_write(AccessOp::Revoke { id }).await? {
            AccessOutcome::Token(t) => {
                tracing::info!(tenant = %t.tenant, token = %format!("{id:032x}"), by = %caller.name(), "token revoked");
                Ok(Response::new(pb::RevokeTokenResponse {
                    info: Some(token_info(&t)),
                }))
            }
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::RoleList>, Status> {
        let caller = self.manage(&request, &request.get_ref().tenant).await?;
        let r = request.into_inner();
        self.change_role(&caller, r.tenant, r.assignment, true)
            .await
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RoleList>, Status> {
        let caller = self.manage(&request, &request.get_ref().tenant).await?;
        let r = request.into_inner();
        self.change_role(&caller, r.tenant, r.assignment, false)
            .await
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::RoleList>, Status> {
        self.manage(&request, &request.get_ref().tenant).await?;
        let tenant = request.into_inner().tenant;
        match self
            .node
            .query(DIRECTORY_GROUP, GroupQuery::Grants(tenant.clone()))
            .await?
        {
            GroupAnswer::Grants(grants) => Ok(Response::new(Self::role_list(&tenant, &grants))),
            other => Err(NodeError::Internal(format!("unexpected answer {other:?}")).into()),
        }
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        self.node
            .allow_operator(&request, "rotating the token signing key", None)
            .await?;
        self.node.refresh_directory().await;
        let current = self
            .node
            .directory
            .read(|d| d.access.root.as_ref().map(|r| r.current_key))
            .ok_or_else(|| NodeError::UnavailableFor {
                code: "access-bootstrapping",
                message: "the cluster has no signing key yet; retry shortly".into(),
            })?;
        let version = current + 1;
        let key = self.node.rng.secret_key();
        let wrapped = self
            .node
            .keys
            .wrap_signing_key(&self.node.rng, version, &key);
        drop(key);
        match self
            .access_write(AccessOp::RotateSigningKey {
                version,
                signing_key: wrapped,
            })
            .await?
        {
            AccessOutcome::Root(root) => {
                tracing::info!(version = root.current_key, "token signing key rotated");
                Ok(Response::new(pb::RotateSigningKeyResponse {
                    current_version: root.current_key,
                    accepted_versions: root.signing_keys.keys().copied().collect(),
                }))
            }
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn export_audit(
        &self,
        request: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<pb::ExportAuditResponse>, Status> {
        self.manage(&request, &request.get_ref().tenant).await?;
        let r = request.into_inner();
        let record = self.node.tenant(&r.tenant).await?;
        let limit = match r.limit {
            0 => AUDIT_PAGE_MAX,
            n => n.min(AUDIT_PAGE_MAX),
        };
        let query = GroupQuery::Audit {
            tenant: r.tenant.clone(),
            after_seq: r.after_seq,
            limit,
        };
        match self.node.query(record.group, query).await? {
            GroupAnswer::Audit { records, head } => Ok(Response::new(pb::ExportAuditResponse {
                records: records
                    .into_iter()
                    .map(|a| pb::AuditRecordInfo {
                        seq: a.seq,
                        time_ms: a.event.time_ms,
                        principal: a.event.principal,
                        operation: a.event.operation,
                        resource: a.event.resource,
                        result: a.event.result,
                        node: a.event.node,
                        prev_hash: a.prev_hash,
                        hash: a.hash,
                    })
                    .collect(),
                head_seq: head.map_or(0, |h| h.0),
                head_hash: head.map(|h| hex::encode(h.1)).unwrap_or_default(),
            })),
            other => Err(NodeError::Internal(format!("unexpected answer {other:?}")).into()),
        }
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.node.authenticate(request.metadata()).await?;
        Ok(Response::new(match caller {
            Caller::Operator => pb::WhoAmIResponse {
                kind: "operator".into(),
                token: None,
            },
            Caller::Token(c) => pb::WhoAmIResponse {
                kind: "token".into(),
                token: Some(token_info(&issued(&c))),
            },
        }))
    }
}
