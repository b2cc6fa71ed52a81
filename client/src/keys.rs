//! Tenant key management ([`Client::key`]) and customer-provided keys
//! ([`EncryptionKey`]) for puts and gets.

use crate::error::Error;
use crate::retry::RetryClass;
use crate::Client;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use stratus_core::names;
use stratus_proto::v1 as pb;
use zeroize::Zeroizing;

/// A customer-provided 256-bit key, sent with each put or get of the objects it
/// protects. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct EncryptionKey(Arc<Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl EncryptionKey {
    /// Exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<EncryptionKey, Error> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid(format!(
                "an encryption key must be exactly 32 bytes (256 bits), not {}",
                bytes.len()
            ))
        })?;
        Ok(EncryptionKey(Arc::new(Zeroizing::new(array))))
    }

    /// Reads a key file holding exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<EncryptionKey, Error> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Error::invalid(format!("cannot read key file {}: {e}", path.display()))
        })?);
        EncryptionKey::from_bytes(&bytes[..]).map_err(|_| {
            Error::invalid(format!(
                "key file {} holds {} bytes; it must hold exactly 32 raw bytes (create one with `head -c 32 /dev/urandom > {}`)",
                path.display(),
                bytes.len(),
                path.display()
            ))
        })
    }

    /// The bytes for the wire.
    pub(crate) fn to_wire(&self) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(&self.0[..])
    }
}

/// A key operation on a tenant's vault.
#[derive(Debug, Clone)]
pub enum KeyOperation {
    Show,
    Rotate,
    /// A customer-managed KEK (32 bytes of material).
    Import(EncryptionKey),
    Revoke,
    Restore,
    /// Soft delete; `None` keeps the default retention (90 days).
    Delete {
        retention_seconds: Option<u64>,
    },
    Recover,
    Purge,
    /// Destroy an older KEK version no data key uses any more.
    Retire {
        version: u32,
    },
}

/// One KEK version of a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct KeyVersion {
    pub version: u32,
    pub origin: String,
    pub created_at_ms: u64,
    pub current: bool,
    pub objects: u64,
    pub destroyed: bool,
    /// When the version was retired, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at_ms: Option<u64>,
}

/// A tenant's key vault as the cluster reports it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub tenant: String,
    pub state: String,
    pub current_version: u32,
    pub versions: Vec<KeyVersion>,
    pub purge_protection: bool,
    pub purge_after_ms: u64,
    pub customer_key_objects: u64,
    /// Objects whose data key still waits for re-wrapping under the current version.
    pub rewrap_pending: u64,
    pub usage_known: bool,
}

impl From<pb::KeyInfo> for KeyInfo {
    fn from(k: pb::KeyInfo) -> Self {
        KeyInfo {
            tenant: k.tenant,
            state: k.state,
            current_version: k.current_version,
            versions: k
                .versions
                .into_iter()
                .map(|v| KeyVersion {
                    version: v.version,
                    origin: v.origin,
                    created_at_ms: v.created_at_ms,
                    current: v.current,
                    objects: v.objects,
                    destroyed: v.destroyed,
                    retired_at_ms: (v.retired_at_ms > 0).then_some(v.retired_at_ms),
                })
                .collect(),
            purge_protection: k.purge_protection,
            purge_after_ms: k.purge_after_ms,
            customer_key_objects: k.customer_key_objects,
            rewrap_pending: k.rewrap_pending,
            usage_known: k.usage_known,
        }
    }
}

impl Client {
    /// Runs `operation` on `tenant`'s key vault and returns the vault afterwards.
    pub async fn key(&self, tenant: &str, operation: KeyOperation) -> Result<KeyInfo, Error> {
        names::validate_tenant(tenant).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::KeyRequest {
            tenant: tenant.to_owned(),
        };
        let info = match operation {
            KeyOperation::Show => {
                self.keys_call("show keys", RetryClass::Read, |mut c| {
                    let req = req.clone();
                    async move { c.show_keys(req).await }
                })
                .await?
            }
            KeyOperation::Rotate => {
                self.keys_call("rotate key", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.rotate_key(req).await }
                })
                .await?
            }
            KeyOperation::Import(key) => {
                let req = pb::ImportKeyRequest {
                    tenant: tenant.to_owned(),
                    key_material: key.to_wire(),
                };
                self.keys_call("import key", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.import_key(req).await }
                })
                .await?
            }
            KeyOperation::Revoke => {
                self.keys_call("revoke keys", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.revoke_keys(req).await }
                })
                .await?
            }
            KeyOperation::Restore => {
                self.keys_call("restore keys", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.restore_keys(req).await }
                })
                .await?
            }
            KeyOperation::Delete { retention_seconds } => {
                let req = pb::DeleteKeysRequest {
                    tenant: tenant.to_owned(),
                    retention_seconds: retention_seconds.unwrap_or(0),
                };
                self.keys_call("delete keys", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.delete_keys(req).await }
                })
                .await?
            }
            KeyOperation::Recover => {
                self.keys_call("recover keys", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.recover_keys(req).await }
                })
                .await?
            }
            KeyOperation::Purge => {
                self.keys_call("purge keys", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.purge_keys(req).await }
                })
                .await?
            }
            KeyOperation::Retire { version } => {
                let req = pb::RetireKeyRequest {
                    tenant: tenant.to_owned(),
                    version,
                };
                self.keys_call("retire key version", RetryClass::Mutation, |mut c| {
                    let req = req.clone();
                    async move { c.retire_key(req).await }
                })
                .await?
            }
        };
        Ok(info.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_printed() {
        let key = EncryptionKey::from_bytes(&[0x41; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "EncryptionKey(<redacted>)");
        assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"0123456789abcdef0123456789abcdef\n").unwrap();
        let e = EncryptionKey::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("33 bytes") && e.contains("exactly 32"), "{e}");
    }
}
