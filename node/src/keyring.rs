//! A node's keys: the cluster root key, and on top of the tenants' key vaults (in
//! the directory) the access check every data request passes, KEK unwrapping (with
//! a cache the directory empties whenever a vault changes) and the envelopes of
//! object versions.
//!
//! Must not: log, print or return key material; every `Debug` here is redacted and
//! every error names the tenant, object or version, never a key.

use crate::directory::vault::{KeyVault, VaultState};
use crate::directory::DirectoryView;
use crate::error::{NodeError, NodeResult};
use crate::objects::ObjectId;
use crate::rng::NodeRng;
use std::sync::Arc;
use stratus_core::crypto::envelope::{ContentCipher, Envelope, KeySource};
use stratus_core::crypto::{self, digest_eq, SecretKey, WrappedKey};

/// The root key and what is derived from it on this node.
pub struct KeyRing {
    root: SecretKey,
    directory: DirectoryView,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

/// The refusal for a tenant whose vault is not active.
fn unusable(vault: &KeyVault) -> Option<NodeError> {
    let message = vault.why_unusable()?;
    let code = match vault.state {
        VaultState::Active => return None,
        VaultState::Revoked { .. } => "keys-revoked",
        VaultState::Deleted { .. } => "keys-deleted",
        VaultState::Purged { .. } => "keys-purged",
    };
    Some(NodeError::PermissionDenied { code, message })
}

impl KeyRing {
    pub fn new(root: SecretKey, directory: DirectoryView) -> KeyRing {
        KeyRing { root, directory }
    }

    fn vault(&self, tenant: &str) -> NodeResult<KeyVault> {
        // Callers found the tenant first: a missing vault means this node's copy of
        // the directory has not caught up yet.
        self.directory.vault(tenant).ok_or_else(|| {
            NodeError::Unavailable(format!(
                "node has not yet received the key vault of tenant {tenant:?}; retry shortly"
            ))
        })
    }

    /// Fails with PermissionDenied unless `tenant`'s keys are active on this node's
    /// copy of the directory (and drops its cached KEKs when they are not).
    pub fn check_usable(&self, tenant: &str) -> NodeResult<()> {
        let vault = self.vault(tenant)?;
        match unusable(&vault) {
            None => Ok(()),
            Some(e) => {
                self.directory.forget_keks(tenant);
                Err(e)
            }
        }
    }

    /// Wraps a new KEK `version` of `tenant` under the root key.
    pub fn wrap_kek(
        &self,
        rng: &NodeRng,
        tenant: &str,
        version: u32,
        kek: &SecretKey,
    ) -> WrappedKey {
        crypto::wrap(
            &self.root,
            kek,
            &crypto::kek_aad(tenant, version),
            rng.nonce(),
        )
    }

    /// The unwrapped KEK `version` of `tenant`, if its vault is usable.
    pub fn kek(&self, tenant: &str, version: u32) -> NodeResult<Arc<SecretKey>> {
        let vault = self.vault(tenant)?;
        if let Some(e) = unusable(&vault) {
            self.directory.forget_keks(tenant);
            return Err(e);
        }
        if let Some(kek) = self.directory.cached_kek(tenant, version) {
            return Ok(kek);
        }
        let wrapped = vault
            .versions
            .get(&version)
            .and_then(|v| v.wrapped.as_ref())
            .ok_or_else(|| {
                NodeError::DataLoss(format!(
                    "tenant {tenant:?} has no KEK version {version}; data it protects cannot be decrypted"
                ))
            })?;
        let kek = crypto::unwrap(
            &self.root,
            wrapped,
            &crypto::kek_aad(tenant, version),
            &format!("KEK version {version} of tenant {tenant:?}"),
        )
        .map_err(|e| {
            NodeError::Internal(format!(
                "{e}: is this node's root key the cluster's? (check `root_key_file`)"
            ))
        })?;
        let kek = Arc::new(kek);
        self.directory.cache_kek(tenant, version, kek.clone());
        Ok(kek)
    }

    /// A fresh data key for `version` of `object`, wrapped by the tenant's current
    /// KEK or by the customer's key; returns its envelope and the content cipher.
    pub fn seal_new(
        &self,
        rng: &NodeRng,
        object: &ObjectId,
        version: u128,
        customer: Option<&SecretKey>,
    ) -> NodeResult<(Envelope, ContentCipher)> {
        let dek = rng.secret_key();
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        let envelope = match customer {
            Some(key) => Envelope {
                source: KeySource::Customer {
                    key_sha256: key.sha256(),
                },
                dek: crypto::wrap(key, &dek, &aad, rng.nonce()),
            },
            None => {
                let current = self.vault(&object.tenant)?.current;
                let kek = self.kek(&object.tenant, current)?;
                Envelope {
                    source: KeySource::Tenant {
                        kek_version: current,
                    },
                    dek: crypto::wrap(&kek, &dek, &aad, rng.nonce()),
                }
            }
        };
        Ok((envelope, ContentCipher::new(&dek)))
    }

    /// The content cipher of `version` of `object`: unwraps its data key with the
    /// tenant's KEK, or checks and uses the customer's key.
    pub fn open(
        &self,
        object: &ObjectId,
        version: u128,
        envelope: &Envelope,
        customer: Option<&SecretKey>,
    ) -> NodeResult<ContentCipher> {
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        let what = format!("the data key of {object}");
        let dek = match (&envelope.source, customer) {
            (KeySource::Tenant { kek_version }, None) => {
                let kek = self.kek(&object.tenant, *kek_version)?;
                crypto::unwrap(&kek, &envelope.dek, &aad, &what)
                    .map_err(|e| NodeError::DataLoss(e.to_string()))?
            }
            (KeySource::Tenant { .. }, Some(_)) => {
                return Err(NodeError::InvalidArgument(format!(
                    "object {object} is not protected by a customer-provided key: send the request without --encryption-key-file"
                )))
            }
            (KeySource::Customer { .. }, None) => {
                return Err(NodeError::FailedPrecondition {
                    code: "encryption-key-required",
                    message: format!(
                        "object {object} is encrypted with a customer-provided key: a key is required; send the key it was written with (--encryption-key-file FILE)"
                    ),
                })
            }
            (KeySource::Customer { key_sha256 }, Some(key)) => {
                if !digest_eq(key_sha256, &key.sha256()) {
                    return Err(NodeError::PermissionDenied {
                        code: "encryption-key-mismatch",
                        message: format!(
                            "the encryption key sent does not match the key object {object} was written with (SHA-256 differs); send the right key"
                        ),
                    });
                }
                crypto::unwrap(key, &envelope.dek, &aad, &what)
                    .map_err(|e| NodeError::DataLoss(e.to_string()))?
            }
        };
        Ok(ContentCipher::new(&dek))
    }

    /// `envelope` re-wrapped under the tenant's current KEK, or `None` when it is
    /// already current or protected by a customer-provided key.
    pub fn rewrap(
        &self,
        rng: &NodeRng,
        object: &ObjectId,
        version: u128,
        envelope: &Envelope,
    ) -> NodeResult<Option<Envelope>> {
        let KeySource::Tenant { kek_version } = envelope.source else {
            return Ok(None);
        };
        let current = self.vault(&object.tenant)?.current;
        if kek_version == current {
            return Ok(None);
        }
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        let old = self.kek(&object.tenant, kek_version)?;
        let dek = crypto::unwrap(
            &old,
            &envelope.dek,
            &aad,
            &format!("the data key of {object}"),
        )
        .map_err(|e| NodeError::DataLoss(e.to_string()))?;
        let new = self.kek(&object.tenant, current)?;
        Ok(Some(Envelope {
            source: KeySource::Tenant {
                kek_version: current,
            },
            dek: crypto::wrap(&new, &dek, &aad, rng.nonce()),
        }))
    }
}

/// Parses a customer-provided key sent with a request.
pub fn customer_key(bytes: Option<&[u8]>) -> NodeResult<Option<SecretKey>> {
    bytes
        .map(|b| {
            SecretKey::from_slice(b).map_err(|_| {
                NodeError::InvalidArgument(format!(
                    "an encryption key must be exactly 32 bytes (256 bits); {} bytes were sent",
                    b.len()
                ))
            })
        })
        .transpose()
}
