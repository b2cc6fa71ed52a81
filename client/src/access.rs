//! Access control through the SDK: tokens, role assignments, signing-key rotation
//! and `whoami` (the `AccessService`).

use crate::client::Client;
use crate::credential::Credential;
use crate::error::Error;
use crate::retry::RetryClass;
use serde::Serialize;
use std::time::Duration;
use stratus_core::auth::Role;
use stratus_proto::v1 as pb;

/// What a new token may do and for how long.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub tenant: String,
    pub role: Role,
    /// Limit to one container.
    pub container: Option<String>,
    /// Limit to keys under a prefix (needs `container`).
    pub prefix: Option<String>,
    /// Act for a principal: also limited by its role assignments.
    pub principal: Option<String>,
    /// Start relative to the node's clock, in seconds (negative: in the past).
    pub start_offset_s: i64,
    pub valid_for: Duration,
}

/// A token's claims, as the cluster reports them (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub tenant: String,
    pub container: Option<String>,
    pub prefix: Option<String>,
    /// `r` read, `l` list, `w` write, `d` delete, `m` manage.
    pub permissions: String,
    pub principal: Option<String>,
    pub start_ms: u64,
    pub expiry_ms: u64,
    pub revoked: bool,
}

/// A token just created: the bearer credential (shown once) and its claims.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: Credential,
    pub info: TokenInfo,
}

/// One role assignment of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    pub principal: String,
    pub role: String,
    /// `None`: the whole tenant.
    pub container: Option<String>,
}

/// Who a credential is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `operator` or `token`.
    pub kind: String,
    pub token: Option<TokenInfo>,
}

fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Reader => pb::Role::Reader,
        Role::Contributor => pb::Role::Contributor,
        Role::Owner => pb::Role::Owner,
    }
}

fn role_name(role: i32) -> String {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Reader) => "reader",
        Ok(pb::Role::Contributor) => "contributor",
        Ok(pb::Role::Owner) => "owner",
        _ => "unknown",
    }
    .into()
}

impl From<pb::TokenInfo> for TokenInfo {
    fn from(t: pb::TokenInfo) -> TokenInfo {
        TokenInfo {
            id: t.id,
            tenant: t.tenant,
            container: opt(t.container),
            prefix: opt(t.prefix),
            permissions: t.permissions,
            principal: opt(t.principal),
            start_ms: t.start_ms,
            expiry_ms: t.expiry_ms,
            revoked: t.revoked,
        }
    }
}

fn assignments(list: pb::RoleList) -> Vec<RoleAssignment> {
    list.assignments
        .into_iter()
        .map(|a| RoleAssignment {
            principal: a.principal,
            role: role_name(a.role),
            container: opt(a.container),
        })
        .collect()
}

fn assignment(principal: &str, role: Role, container: Option<&str>) -> pb::RoleAssignment {
    pb::RoleAssignment {
        principal: principal.to_owned(),
        role: role_to_pb(role).into(),
        container: container.unwrap_or_default().to_owned(),
    }
}

impl Client {
    /// Creates a signed token (needs Owner of the tenant, or the operator).
    pub async fn create_token(&self, spec: &TokenSpec) -> Result<NewToken, Error> {
        let req = pb::CreateTokenRequest {
            tenant: spec.tenant.clone(),
            role: role_to_pb(spec.role).into(),
            container: spec.container.clone().unwrap_or_default(),
            prefix: spec.prefix.clone().unwrap_or_default(),
            principal: spec.principal.clone().unwrap_or_default(),
            start_offset_s: spec.start_offset_s,
            valid_for_s: spec.valid_for.as_secs(),
        };
        // Each attempt registers a new token id: a retry after a lost answer leaves
        // an unused token behind, which expires on its own.
        let r = self
            .access_call("create token", RetryClass::Mutation, |mut c| {
                let req = req.clone();
                async move { c.create_token(req).await }
            })
            .await?;
        Ok(NewToken {
            token: Credential::new(&r.token)?,
            info: r
                .info
                .map(TokenInfo::from)
                .ok_or_else(|| Error::config("the node sent a token without its claims"))?,
        })
    }

    /// Revokes token `id` (32 hex digits).
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo, Error> {
        let req = pb::RevokeTokenRequest { id: id.to_owned() };
        let r = self
            .access_call("revoke token", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.revoke_token(req).await }
            })
            .await?;
        r.info
            .map(TokenInfo::from)
            .ok_or_else(|| Error::config("the node sent no token claims"))
    }

    /// Grants `principal` a role on the tenant, or on one container of it.
    pub async fn grant_role(
        &self,
        tenant: &str,
        principal: &str,
        role: Role,
        container: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, Error> {
        let req = pb::GrantRoleRequest {
            tenant: tenant.to_owned(),
            assignment: Some(assignment(principal, role, container)),
        };
        let r = self
            .access_call("grant role", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.grant_role(req).await }
            })
            .await?;
        Ok(assignments(r))
    }

    /// Removes a role assignment.
    pub async fn revoke_role(
        &self,
        tenant: &str,
        principal: &str,
        role: Role,
        container: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, Error> {
        let req = pb::RevokeRoleRequest {
            tenant: tenant.to_owned(),
            assignment: Some(assignment(principal, role, container)),
        };
        let r = self
            .access_call("revoke role", RetryClass::Mutation, |mut c| {
                let req = req.clone();
                async move { c.revoke_role(req).await }
            })
            .await?;
        Ok(assignments(r))
    }

    /// A tenant's role assignments.
    pub async fn list_roles(&self, tenant: &str) -> Result<Vec<RoleAssignment>, Error> {
        let req = pb::ListRolesRequest {
            tenant: tenant.to_owned(),
        };
        let r = self
            .access_call("list roles", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.list_roles(req).await }
            })
            .await?;
        Ok(assignments(r))
    }

    /// Operator only: a new token signing key; returns (current, accepted versions).
    pub async fn rotate_signing_key(&self) -> Result<(u32, Vec<u32>), Error> {
        let r = self
            .access_call(
                "rotate signing key",
                RetryClass::Mutation,
                |mut c| async move { c.rotate_signing_key(pb::RotateSigningKeyRequest {}).await },
            )
            .await?;
        Ok((r.current_version, r.accepted_versions))
    }

    /// Who this client's credential is.
    pub async fn whoami(&self) -> Result<Identity, Error> {
        let r = self
            .access_call("whoami", RetryClass::Read, |mut c| async move {
                c.who_am_i(pb::WhoAmIRequest {}).await
            })
            .await?;
        Ok(Identity {
            kind: r.kind,
            token: r.token.map(TokenInfo::from),
        })
    }
}

/// One page of a tenant's audit log and the chain's current head.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<stratus_core::audit::AuditRecord>,
    /// (seq, hex hash) of the chain's last record; `None` before the first.
    pub head: Option<(u64, String)>,
}

impl Client {
    /// Up to `limit` audit records of `tenant` after `after_seq` (Owner or operator).
    pub async fn audit_page(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<AuditPage, Error> {
        let req = pb::ExportAuditRequest {
            tenant: tenant.to_owned(),
            after_seq,
            limit,
        };
        let r = self
            .access_call("export audit", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.export_audit(req).await }
            })
            .await?;
        Ok(AuditPage {
            records: r
                .records
                .into_iter()
                .map(|a| stratus_core::audit::AuditRecord {
                    tenant: tenant.to_owned(),
                    seq: a.seq,
                    event: stratus_core::audit::AuditEvent {
                        time_ms: a.time_ms,
                        principal: a.principal,
                        operation: a.operation,
                        resource: a.resource,
                        result: a.result,
                        node: a.node,
                    },
                    prev_hash: a.prev_hash,
                    hash: a.hash,
                })
                .collect(),
            head: (r.head_seq > 0).then_some((r.head_seq, r.head_hash)),
        })
    }

    /// Every audit record of `tenant` after `after_seq`, following pages (at most
    /// `max` records), and the head when the last page was read.
    pub async fn audit_all(
        &self,
        tenant: &str,
        after_seq: u64,
        max: usize,
    ) -> Result<AuditPage, Error> {
        let mut out = Vec::new();
        let mut after = after_seq;
        loop {
            let page = self.audit_page(tenant, after, 1000).await?;
            let done = page.records.is_empty() || out.len() + page.records.len() >= max;
            if let Some(last) = page.records.last() {
                after = last.seq;
            }
            out.extend(page.records);
            if done {
                out.truncate(max);
                return Ok(AuditPage {
                    records: out,
                    head: page.head,
                });
            }
        }
    }
}
