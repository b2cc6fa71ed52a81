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

    /// Wraps token signing key `version` under the root key.
    pub fn wrap_signing_key(&self, rng: &NodeRng, version: u32, key: &SecretKey) -> WrappedKey {
        crypto::wrap(
            &self.root,
            key,
            &crypto::signing_key_aad(version),
            rng.nonce(),
        )
    }

    /// Unwraps token signing key `version`.
    pub fn unwrap_signing_key(&self, version: u32, wrapped: &WrappedKey) -> NodeResult<SecretKey> {
        crypto::unwrap(
            &self.root,
            wrapped,
            &crypto::signing_key_aad(version),
            &format!("token signing key version {version}"),
        )
        .map_err(|e| {
            NodeError::Internal(format!(
                "{e}: is this node's root key the cluster's? (check `root_key_file`)"
            ))
        })
    }

    /// The credential this node presents to its peers (derived from the root key).
    pub fn cluster_credential(&self) -> String {
        stratus_core::auth::cluster_credential(&self.root)
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
    /// KEK or by the customer's key.
    pub fn seal_new(
        &self,
        rng: &NodeRng,
        object: &ObjectId,
        version: u128,
        customer: Option<&SecretKey>,
    ) -> NodeResult<NewVersionKey> {
        let dek = rng.secret_key();
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        let envelope = match customer {
            Some(key) => Envelope {
                source: KeySource::Customer {
                    key_sha256: key.sha256(),
                },
                dek: crypto::wrap(key, &dek, &aad, rng.nonce()),
            },
            None => self.wrap_under_current(rng, object, version, &dek)?,
        };
        Ok(NewVersionKey {
            cipher: ContentCipher::new(&dek),
            envelope,
            dek,
        })
    }

    /// `dek` of `version` of `object` wrapped by the tenant's current KEK.
    pub fn wrap_under_current(
        &self,
        rng: &NodeRng,
        object: &ObjectId,
        version: u128,
        dek: &SecretKey,
    ) -> NodeResult<Envelope> {
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        let current = self.vault(&object.tenant)?.current;
        let kek = self.kek(&object.tenant, current)?;
        Ok(Envelope {
            source: KeySource::Tenant {
                kek_version: current,
            },
            dek: crypto::wrap(&kek, dek, &aad, rng.nonce()),
        })
    }

    /// The KEK version new data keys of `tenant` are wrapped under.
    pub fn current_version(&self, tenant: &str) -> NodeResult<u32> {
        Ok(self.vault(tenant)?.current)
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

    /// The envelope of `version` of `from` re-bound to the name `to` (same data
    /// key, wrapped under the current KEK with `to`'s associated data), for a
    /// version copied under another name; `None` for a customer-provided key,
    /// which the cluster does not hold.
    pub fn rename_envelope(
        &self,
        rng: &NodeRng,
        from: &ObjectId,
        to: &ObjectId,
        version: u128,
        envelope: &Envelope,
    ) -> NodeResult<Option<Envelope>> {
        let KeySource::Tenant { kek_version } = envelope.source else {
            return Ok(None);
        };
        let aad = crypto::dek_aad(&from.tenant, &from.container, &from.key, version);
        let kek = self.kek(&from.tenant, kek_version)?;
        let dek = crypto::unwrap(
            &kek,
            &envelope.dek,
            &aad,
            &format!("the data key of {from}"),
        )
        .map_err(|e| NodeError::DataLoss(e.to_string()))?;
        self.wrap_under_current(rng, to, version, &dek).map(Some)
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

/// The key of a new object version: its data key (kept by the upload until the
/// commit, so a rotation meanwhile re-wraps it without the older KEK), the
/// envelope to store and the cipher sealing its chunks.
pub struct NewVersionKey {
    pub dek: SecretKey,
    pub envelope: Envelope,
    pub cipher: ContentCipher,
}

impl std::fmt::Debug for NewVersionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewVersionKey(<redacted>)")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::vault::KeyVault;
    use std::collections::BTreeSet;
    use stratus_core::crypto::envelope::chunk_nonce;

    /// A key ring whose directory holds one active vault for each of `tenants`.
    fn ring(rng: &NodeRng, tenants: &[&str]) -> KeyRing {
        let root = rng.secret_key();
        let view = DirectoryView::default();
        let ring = KeyRing::new(root, view.clone());
        for t in tenants {
            let kek = rng.secret_key();
            let wrapped = ring.wrap_kek(rng, t, 1, &kek);
            view.write(|d| {
                d.vaults
                    .insert(t.to_string(), KeyVault::new(t, wrapped, 0, true))
            });
        }
        ring
    }

    fn object(tenant: &str, key: &str) -> ObjectId {
        ObjectId {
            tenant: tenant.into(),
            container: "box".into(),
            key: key.into(),
        }
    }

    /// The data key inside a tenant-KEK envelope, as a node would unwrap it.
    fn dek_of(ring: &KeyRing, object: &ObjectId, version: u128, env: &Envelope) -> [u8; 32] {
        let KeySource::Tenant { kek_version } = env.source else {
            panic!("not a tenant envelope");
        };
        let kek = ring.kek(&object.tenant, kek_version).unwrap();
        let aad = crypto::dek_aad(&object.tenant, &object.container, &object.key, version);
        *crypto::unwrap(&kek, &env.dek, &aad, "test")
            .unwrap()
            .expose()
    }

    /// (data key, nonce) pairs never repeat: over a million stored chunks (244 GiB
    /// of content at 256 KiB a chunk) written by four runs of a node, each with
    /// a fresh operating-system seed as after a restart. Every version draws its own
    /// data key and numbers its chunks from zero, so this checks both halves: no two
    /// versions share a data key, and no two chunks of a version share a nonce.
    #[test]
    fn no_data_key_and_nonce_pair_repeats_across_a_million_chunks_and_restarts() {
        const RUNS: usize = 4;
        const VERSIONS_PER_RUN: usize = 500;
        const CHUNKS_PER_VERSION: u32 = 500;
        let mut deks = BTreeSet::new();
        let mut chunks = 0u64;
        for run in 0..RUNS {
            let rng = NodeRng::from_entropy();
            let ring = ring(&rng, &["acme"]);
            for v in 0..VERSIONS_PER_RUN {
                let id = object("acme", &format!("run{run}/obj{v}"));
                let version = rng.next_u128();
                let new = ring.seal_new(&rng, &id, version, None).unwrap();
                assert_eq!(
                    dek_of(&ring, &id, version, &new.envelope),
                    *new.dek.expose()
                );
                assert!(
                    deks.insert(*new.dek.expose()),
                    "a data key repeated in run {run}"
                );
                let mut nonces = BTreeSet::new();
                for i in 0..CHUNKS_PER_VERSION {
                    assert!(nonces.insert(chunk_nonce(i, i + 1 == CHUNKS_PER_VERSION)));
                    chunks += 1;
                }
            }
        }
        assert_eq!(chunks, 1_000_000);
    }

    #[test]
    fn a_data_key_moved_to_another_object_or_tenant_does_not_open() {
        let rng = NodeRng::from_seed(7);
        let ring = ring(&rng, &["acme", "umbrella"]);
        let a = object("acme", "report.pdf");
        let version = rng.next_u128();
        let sealed = ring.seal_new(&rng, &a, version, None).unwrap();
        let chunk = sealed.cipher.seal(0, true, b"quarterly numbers");
        let opened = ring.open(&a, version, &sealed.envelope, None).unwrap();
        assert_eq!(opened.open(0, true, &chunk).unwrap(), b"quarterly numbers");
        for (moved, v) in [
            (object("acme", "other.pdf"), version),
            (object("umbrella", "report.pdf"), version),
            (a.clone(), version + 1),
        ] {
            match ring.open(&moved, v, &sealed.envelope, None) {
                Err(NodeError::DataLoss(why)) => assert!(why.contains("does not unwrap"), "{why}"),
                other => panic!("{moved} v{v}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn an_upload_rewraps_its_data_key_after_a_rotation_without_the_old_kek() {
        let rng = NodeRng::from_seed(9);
        let ring = ring(&rng, &["acme"]);
        let id = object("acme", "big");
        let version = rng.next_u128();
        let new = ring.seal_new(&rng, &id, version, None).unwrap();
        // Rotate, then destroy version 1 as a retire would.
        let kek2 = rng.secret_key();
        let wrapped2 = ring.wrap_kek(&rng, "acme", 2, &kek2);
        ring.directory.write(|d| {
            let v = d.vaults.get_mut("acme").unwrap();
            v.apply(
                crate::directory::vault::KeyOp::AddVersion {
                    version: 2,
                    wrapped: wrapped2,
                    origin: crate::directory::vault::KeyOrigin::Service,
                },
                1,
            )
            .unwrap();
            v.apply(crate::directory::vault::KeyOp::Retire { version: 1 }, 2)
                .unwrap();
        });
        ring.directory.forget_keks("acme");
        let env = ring
            .wrap_under_current(&rng, &id, version, &new.dek)
            .unwrap();
        assert_eq!(env.source, KeySource::Tenant { kek_version: 2 });
        assert_eq!(dek_of(&ring, &id, version, &env), *new.dek.expose());
        assert!(ring.open(&id, version, &new.envelope, None).is_err());
    }
}
