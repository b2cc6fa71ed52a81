//! The key service: each tenant's key vault through the API (`stratus key ...`).
//!
//! New KEK material (rotate) is drawn here and imported material (import) arrives
//! here; either is wrapped by the root key on this node before it is proposed, so
//! the directory's log and every replica hold only wrapped KEKs.

use super::admin::rejection;
use crate::directory::vault::{KeyOp, KeyOrigin, KeyVault, VaultState, RETENTION_MS_DEFAULT};
use crate::directory::{DirectoryCommand, DirectoryResponse};
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery, KeyUsage};
use crate::node::StratusNode;
use std::sync::Arc;
use stratus_core::auth::{Permissions, Resource};
use stratus_core::crypto::SecretKey;
use stratus_core::names::validate_tenant;
use stratus_core::placement::DIRECTORY_GROUP;
use stratus_proto::v1 as pb;
use stratus_proto::v1::key_service_server::KeyService;
use tonic::{Request, Response, Status};

/// Longest retention a delete may ask for.
const RETENTION_MS_MAX: u64 = 365 * 24 * 3600 * 1000;

pub struct KeyApi {
    pub node: Arc<StratusNode>,
}

/// Key requests name their tenant.
trait KeyTenant {
    fn tenant(&self) -> &str;
}

macro_rules! key_tenant {
    ($($t:ty),*) => {$(
        impl KeyTenant for $t {
            fn tenant(&self) -> &str {
                &self.tenant
            }
        }
    )*};
}
key_tenant!(
    pb::KeyRequest,
    pb::ImportKeyRequest,
    pb::DeleteKeysRequest,
    pb::RetireKeyRequest
);

impl KeyApi {
    /// Key operations are the tenant's Owners' (or the operator's).
    async fn gate<T: KeyTenant>(&self, request: &Request<T>) -> NodeResult<()> {
        self.node
            .allow(
                request,
                Permissions::MANAGE,
                Resource::Tenant(request.get_ref().tenant()),
            )
            .await
            .map(|_| ())
    }

    async fn vault(&self, tenant: &str) -> NodeResult<KeyVault> {
        validate_tenant(tenant)?;
        match self
            .node
            .query(DIRECTORY_GROUP, GroupQuery::Vault(tenant.to_string()))
            .await?
        {
            GroupAnswer::Vault(Some(v)) => Ok(v),
            GroupAnswer::Vault(None) => Err(NodeError::TenantNotFound(tenant.to_string())),
            other => Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    async fn usage(&self, tenant: &str) -> NodeResult<KeyUsage> {
        let record = self.node.tenant(tenant).await?;
        match self
            .node
            .query(
                record.group,
                GroupQuery::KeyUsage {
                    tenant: tenant.to_string(),
                },
            )
            .await?
        {
            GroupAnswer::KeyUsage(u) => Ok(u),
            other => Err(NodeError::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    async fn info(&self, vault: &KeyVault) -> NodeResult<pb::KeyInfo> {
        let usage = match vault.state {
            VaultState::Purged { .. } => None,
            _ => Some(self.usage(&vault.tenant).await?),
        };
        Ok(key_info(vault, usage.as_ref()))
    }

    async fn apply(&self, tenant: &str, op: KeyOp) -> NodeResult<pb::KeyInfo> {
        validate_tenant(tenant)?;
        let name = op.name();
        let command = DirectoryCommand::Keys {
            tenant: tenant.to_string(),
            op,
            now_ms: self.node.clock.now_ms(),
        };
        match self.node.directory_write(command).await? {
            DirectoryResponse::Vault(v) => {
                tracing::info!(
                    tenant,
                    operation = name,
                    state = v.state.as_str(),
                    current = v.current,
                    "key operation applied"
                );
                self.info(&v).await
            }
            DirectoryResponse::Rejected(r) => Err(rejection(r)),
            other => Err(NodeError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Adds `kek` as the tenant's next version.
    async fn add_version(
        &self,
        tenant: &str,
        kek: SecretKey,
        origin: KeyOrigin,
    ) -> NodeResult<pb::KeyInfo> {
        let vault = self.vault(tenant).await?;
        let version = vault.next_version();
        let wrapped = self
            .node
            .keys
            .wrap_kek(&self.node.rng, tenant, version, &kek);
        drop(kek);
        self.apply(
            tenant,
            KeyOp::AddVersion {
                version,
                wrapped,
                origin,
            },
        )
        .await
    }
}

/// The wire view of a vault and its usage.
fn key_info(vault: &KeyVault, usage: Option<&KeyUsage>) -> pb::KeyInfo {
    let versions = vault
        .versions
        .iter()
        .map(|(v, k)| pb::KeyVersionInfo {
            version: *v,
            origin: k.origin.as_str().into(),
            created_at_ms: k.created_ms,
            current: *v == vault.current,
            objects: usage
                .and_then(|u| u.kek_versions.get(v).copied())
                .unwrap_or(0),
            destroyed: k.wrapped.is_none(),
            retired_at_ms: k.retired_ms.unwrap_or(0),
        })
        .collect();
    pb::KeyInfo {
        tenant: vault.tenant.clone(),
        state: vault.state.as_str().into(),
        current_version: vault.current,
        versions,
        purge_protection: vault.purge_protection,
        purge_after_ms: match vault.state {
            VaultState::Deleted { purge_after_ms, .. } => purge_after_ms,
            _ => 0,
        },
        customer_key_objects: usage.map_or(0, |u| u.customer),
        rewrap_pending: usage.map_or(0, |u| {
            u.kek_versions
                .iter()
                .filter(|(v, _)| **v != vault.current)
                .map(|(_, n)| n)
                .sum()
        }),
        usage_known: usage.is_some(),
    }
}

#[tonic::async_trait]
impl KeyService for KeyApi {
    async fn show_keys(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        let vault = self.vault(&request.into_inner().tenant).await?;
        Ok(Response::new(self.info(&vault).await?))
    }

    async fn rotate_key(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        let tenant = request.into_inner().tenant;
        let kek = self.node.rng.secret_key();
        Ok(Response::new(
            self.add_version(&tenant, kek, KeyOrigin::Service).await?,
        ))
    }

    async fn import_key(
        &self,
        request: Request<pb::ImportKeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        let r = request.into_inner();
        let kek = SecretKey::from_slice(&r.key_material).map_err(|_| {
            NodeError::InvalidArgument(format!(
                "imported key material must be exactly 32 bytes (a raw 256-bit AES key); {} bytes were sent",
                r.key_material.len()
            ))
        })?;
        Ok(Response::new(
            self.add_version(&r.tenant, kek, KeyOrigin::Imported)
                .await?,
        ))
    }

    async fn revoke_keys(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        Ok(Response::new(
            self.apply(&request.into_inner().tenant, KeyOp::Revoke)
                .await?,
        ))
    }

    async fn restore_keys(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        Ok(Response::new(
            self.apply(&request.into_inner().tenant, KeyOp::Restore)
                .await?,
        ))
    }

    async fn delete_keys(
        &self,
        request: Request<pb::DeleteKeysRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        let r = request.into_inner();
        let min_ms = self.node.settings.key_retention_min.as_millis() as u64;
        let retention_ms = match r.retention_seconds {
            0 => RETENTION_MS_DEFAULT,
            s => s.saturating_mul(1000),
        };
        if retention_ms < min_ms || retention_ms > RETENTION_MS_MAX {
            return Err(NodeError::InvalidArgument(format!(
                "retention of {} s is outside this cluster's range of {} s to {} s; omit it for the default of 90 days",
                retention_ms / 1000,
                min_ms / 1000,
                RETENTION_MS_MAX / 1000
            ))
            .into());
        }
        Ok(Response::new(
            self.apply(&r.tenant, KeyOp::Delete { retention_ms })
                .await?,
        ))
    }

    async fn recover_keys(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        Ok(Response::new(
            self.apply(&request.into_inner().tenant, KeyOp::Recover)
                .await?,
        ))
    }

    async fn retire_key(
        &self,
        request: Request<pb::RetireKeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        let r = request.into_inner();
        let vault = self.vault(&r.tenant).await?;
        let t = &r.tenant;
        // A put that read the current version just before a rotation may still
        // commit a data key wrapped by the older one: give such commits time to land
        // (and the re-wrap to move them) before trusting the usage count.
        let grace_ms = self.node.settings.key_retire_grace.as_millis() as u64;
        let newer_ms = vault
            .versions
            .range(r.version + 1..)
            .map(|(_, k)| k.created_ms)
            .min();
        let now_ms = self.node.clock.now_ms();
        match newer_ms {
            Some(created) if now_ms.saturating_sub(created) >= grace_ms => {}
            Some(created) => {
                return Err(NodeError::FailedPrecondition {
                    code: "key-in-use",
                    message: format!(
                        "KEK version {} of tenant {t:?} was superseded only {} s ago; uploads that began before may still use it: retry in {} s",
                        r.version,
                        now_ms.saturating_sub(created) / 1000,
                        (grace_ms - now_ms.saturating_sub(created)).div_ceil(1000)
                    ),
                }
                .into())
            }
            None => {} // the vault refuses: current or unknown version
        }
        if newer_ms.is_some() {
            let usage = self.usage(t).await?;
            let users = usage.kek_versions.get(&r.version).copied().unwrap_or(0);
            if users > 0 {
                return Err(NodeError::FailedPrecondition {
                    code: "key-in-use",
                    message: format!(
                        "{users} objects of tenant {t:?} still have their data key wrapped by KEK version {}: wait until `stratus key show {t}` reports no re-wrap pending, then retire it",
                        r.version
                    ),
                }
                .into());
            }
        }
        Ok(Response::new(
            self.apply(t, KeyOp::Retire { version: r.version }).await?,
        ))
    }

    async fn purge_keys(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfo>, Status> {
        self.gate(&request).await?;
        Ok(Response::new(
            self.apply(&request.into_inner().tenant, KeyOp::Purge)
                .await?,
        ))
    }
}
