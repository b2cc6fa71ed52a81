//! Access control's replicated state in the directory: the operator secret's
//! SHA-256, the token signing keys (wrapped by the root key), each tenant's role
//! assignments and the registry of issued tokens (for revocation).
//!
//! Transitions are pure functions on [`AccessData`], applied by
//! `DirectoryState` and tested here alone. No secret is held in clear: the
//! operator secret only as a hash, signing keys only wrapped, tokens only as their
//! claims (the MAC, which is the bearer secret, is never stored).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stratus_core::auth::{RoleGrant, GRANTS_PER_TENANT_MAX, TOKENS_PER_TENANT_MAX};
use stratus_core::crypto::WrappedKey;

/// Signing key versions kept: the current one and the one before it.
pub const SIGNING_KEYS_KEPT: usize = 2;

/// The cluster-wide part: operator hash and signing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRoot {
    /// SHA-256 of the bootstrap operator secret.
    pub operator_sha256: Option<[u8; 32]>,
    /// Signing keys by version, wrapped by the root key.
    pub signing_keys: BTreeMap<u32, WrappedKey>,
    pub current_key: u32,
    pub rotated_ms: u64,
}

/// A token the cluster issued (its claims, never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: u128,
    pub tenant: String,
    pub container: Option<String>,
    pub prefix: Option<String>,
    pub permissions: u8,
    pub principal: Option<String>,
    pub start_ms: u64,
    pub expiry_ms: u64,
    pub revoked: bool,
}

/// Access state, in memory.
#[derive(Debug, Clone, Default)]
pub struct AccessData {
    /// `None` until the cluster's first directory leader bootstrapped it.
    pub root: Option<AccessRoot>,
    /// Role assignments per tenant.
    pub grants: BTreeMap<String, Vec<RoleGrant>>,
    /// Issued tokens by id, until they expire.
    pub tokens: BTreeMap<u128, IssuedToken>,
}

/// A change to access state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AccessOp {
    /// First start: the first signing key, and the operator secret's hash when the
    /// proposing node has one. Fills in only what is missing.
    Bootstrap {
        signing_key: WrappedKey,
        operator_sha256: Option<[u8; 32]>,
    },
    /// A new current signing key, `version` = current + 1 (wrapped for that
    /// version, so a proposer with a stale view is refused); only the previous one
    /// is kept beside it.
    RotateSigningKey {
        version: u32,
        signing_key: WrappedKey,
    },
    Issue(IssuedToken),
    Revoke {
        id: u128,
    },
    Grant {
        tenant: String,
        grant: RoleGrant,
    },
    /// Removes exactly this assignment.
    Ungrant {
        tenant: String,
        grant: RoleGrant,
    },
}

/// Why an access change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AccessRefusal {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    State(String),
}

/// The outcome of an applied [`AccessOp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccessOutcome {
    Root(AccessRoot),
    Token(IssuedToken),
    Grants(Vec<RoleGrant>),
}

impl AccessData {
    /// Applies `op` at the proposer's clock reading `now_ms`, noting in `changes`
    /// which records the caller must store or remove.
    pub fn apply(
        &mut self,
        op: AccessOp,
        now_ms: u64,
        changes: &mut AccessChanges,
    ) -> Result<AccessOutcome, AccessRefusal> {
        match op {
            AccessOp::Bootstrap {
                signing_key,
                operator_sha256,
            } => {
                let root = self.root.get_or_insert_with(|| {
                    changes.root = true;
                    AccessRoot {
                        operator_sha256: None,
                        signing_keys: BTreeMap::from([(1, signing_key)]),
                        current_key: 1,
                        rotated_ms: now_ms,
                    }
                });
                if root.operator_sha256.is_none() && operator_sha256.is_some() {
                    root.operator_sha256 = operator_sha256;
                    changes.root = true;
                }
                Ok(AccessOutcome::Root(root.clone()))
            }
            AccessOp::RotateSigningKey {
                version,
                signing_key,
            } => {
                let Some(root) = self.root.as_mut() else {
                    return Err(AccessRefusal::State(
                        "the cluster has no signing key yet (still bootstrapping); retry shortly"
                            .into(),
                    ));
                };
                let next = root.current_key + 1;
                if version != next {
                    return Err(AccessRefusal::State(format!(
                        "signing key version {version} was prepared while version {} is current (a concurrent rotation); retry",
                        root.current_key
                    )));
                }
                root.signing_keys.insert(next, signing_key);
                root.current_key = next;
                root.rotated_ms = now_ms;
                while root.signing_keys.len() > SIGNING_KEYS_KEPT {
                    root.signing_keys.pop_first();
                }
                changes.root = true;
                Ok(AccessOutcome::Root(root.clone()))
            }
            AccessOp::Issue(token) => {
                self.prune_expired(now_ms, changes);
                let live = self
                    .tokens
                    .values()
                    .filter(|t| t.tenant == token.tenant)
                    .count();
                if live >= TOKENS_PER_TENANT_MAX {
                    return Err(AccessRefusal::Limit(format!(
                        "tenant {:?} already has {live} unexpired tokens, the limit is {TOKENS_PER_TENANT_MAX}: revoke some or wait for them to expire",
                        token.tenant
                    )));
                }
                changes.tokens_written.push(token.id);
                self.tokens.insert(token.id, token.clone());
                Ok(AccessOutcome::Token(token))
            }
            AccessOp::Revoke { id } => {
                let Some(token) = self.tokens.get_mut(&id) else {
                    return Err(AccessRefusal::NotFound(format!(
                        "no unexpired token has id {id:032x}"
                    )));
                };
                token.revoked = true;
                changes.tokens_written.push(id);
                Ok(AccessOutcome::Token(token.clone()))
            }
            AccessOp::Grant { tenant, grant } => {
                let list = self.grants.entry(tenant.clone()).or_default();
                if !list.contains(&grant) {
                    if list.len() >= GRANTS_PER_TENANT_MAX {
                        return Err(AccessRefusal::Limit(format!(
                            "tenant {tenant:?} already has {GRANTS_PER_TENANT_MAX} role assignments, the limit: revoke some first"
                        )));
                    }
                    list.push(grant);
                    list.sort_by(|a, b| {
                        (&a.principal, &a.container, a.role).cmp(&(
                            &b.principal,
                            &b.container,
                            b.role,
                        ))
                    });
                }
                changes.grants = Some(tenant);
                Ok(AccessOutcome::Grants(list.clone()))
            }
            AccessOp::Ungrant { tenant, grant } => {
                let list = self.grants.entry(tenant.clone()).or_default();
                let before = list.len();
                list.retain(|g| g != &grant);
                if list.len() == before {
                    return Err(AccessRefusal::NotFound(format!(
                        "principal {:?} holds no {} role on {} of tenant {tenant:?}",
                        grant.principal,
                        grant.role.as_str(),
                        grant
                            .container
                            .as_deref()
                            .map_or("the whole tenant".to_string(), |c| format!(
                                "container {c:?}"
                            ))
                    )));
                }
                let list = list.clone();
                changes.grants = Some(tenant);
                Ok(AccessOutcome::Grants(list))
            }
        }
    }

    /// Drops registry entries of tokens that expired (with a day's margin, so a
    /// revoked token stays revoked on nodes whose clocks lag).
    fn prune_expired(&mut self, now_ms: u64, changes: &mut AccessChanges) {
        const KEEP_AFTER_EXPIRY_MS: u64 = 24 * 3600 * 1000;
        let gone: Vec<u128> = self
            .tokens
            .values()
            .filter(|t| t.expiry_ms.saturating_add(KEEP_AFTER_EXPIRY_MS) < now_ms)
            .map(|t| t.id)
            .collect();
        for id in gone {
            self.tokens.remove(&id);
            changes.tokens_removed.push(id);
        }
    }

    /// Forgets a deleted tenant's grants and tokens.
    pub fn forget_tenant(&mut self, tenant: &str, changes: &mut AccessChanges) {
        if self.grants.remove(tenant).is_some() {
            changes.grants = Some(tenant.to_string());
        }
        let ids: Vec<u128> = self
            .tokens
            .values()
            .filter(|t| t.tenant == tenant)
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.tokens.remove(&id);
            changes.tokens_removed.push(id);
        }
    }

    /// Whether token `id` was revoked.
    pub fn is_revoked(&self, id: u128) -> bool {
        self.tokens.get(&id).is_some_and(|t| t.revoked)
    }
}

/// What an apply changed, for the directory to store.
#[derive(Debug, Default)]
pub struct AccessChanges {
    pub root: bool,
    pub grants: Option<String>,
    pub tokens_written: Vec<u128>,
    pub tokens_removed: Vec<u128>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_core::auth::Role;

    fn wrapped(b: u8) -> WrappedKey {
        WrappedKey {
            nonce: [b; 12],
            sealed: vec![b; 48],
        }
    }

    fn token(id: u128, tenant: &str, expiry_ms: u64) -> IssuedToken {
        IssuedToken {
            id,
            tenant: tenant.into(),
            container: None,
            prefix: None,
            permissions: Role::Reader.permissions().0,
            principal: None,
            start_ms: 0,
            expiry_ms,
            revoked: false,
        }
    }

    #[test]
    fn bootstrap_fills_in_only_what_is_missing() {
        let mut a = AccessData::default();
        let mut ch = AccessChanges::default();
        a.apply(
            AccessOp::Bootstrap {
                signing_key: wrapped(1),
                operator_sha256: None,
            },
            5,
            &mut ch,
        )
        .unwrap();
        assert!(ch.root);
        let mut ch = AccessChanges::default();
        a.apply(
            AccessOp::Bootstrap {
                signing_key: wrapped(2),
                operator_sha256: Some([7; 32]),
            },
            6,
            &mut ch,
        )
        .unwrap();
        let root = a.root.clone().unwrap();
        assert_eq!(root.signing_keys[&1], wrapped(1), "the first key stays");
        assert_eq!(root.operator_sha256, Some([7; 32]));
        let mut ch = AccessChanges::default();
        a.apply(
            AccessOp::Bootstrap {
                signing_key: wrapped(3),
                operator_sha256: Some([8; 32]),
            },
            7,
            &mut ch,
        )
        .unwrap();
        assert!(!ch.root, "a second bootstrap changes nothing");
        assert_eq!(a.root.as_ref().unwrap().operator_sha256, Some([7; 32]));
    }

    #[test]
    fn rotation_keeps_the_current_and_previous_key_only() {
        let mut a = AccessData::default();
        let mut ch = AccessChanges::default();
        assert!(a
            .apply(
                AccessOp::RotateSigningKey {
                    version: 2,
                    signing_key: wrapped(9)
                },
                1,
                &mut ch
            )
            .is_err());
        a.apply(
            AccessOp::Bootstrap {
                signing_key: wrapped(1),
                operator_sha256: None,
            },
            1,
            &mut ch,
        )
        .unwrap();
        for b in 2..=4 {
            a.apply(
                AccessOp::RotateSigningKey {
                    version: b.into(),
                    signing_key: wrapped(b),
                },
                b.into(),
                &mut ch,
            )
            .unwrap();
        }
        let root = a.root.unwrap();
        assert_eq!(root.current_key, 4);
        assert_eq!(
            root.signing_keys.keys().copied().collect::<Vec<_>>(),
            [3, 4]
        );
    }

    #[test]
    fn revocation_sticks_and_expired_tokens_are_pruned() {
        let mut a = AccessData::default();
        let mut ch = AccessChanges::default();
        a.apply(AccessOp::Issue(token(1, "acme", 1_000)), 0, &mut ch)
            .unwrap();
        a.apply(AccessOp::Revoke { id: 1 }, 10, &mut ch).unwrap();
        assert!(a.is_revoked(1));
        assert!(matches!(
            a.apply(AccessOp::Revoke { id: 2 }, 10, &mut ch),
            Err(AccessRefusal::NotFound(_))
        ));
        // A day after its expiry the entry goes with the next issue.
        let mut ch = AccessChanges::default();
        a.apply(
            AccessOp::Issue(token(2, "acme", u64::MAX)),
            1_000 + 24 * 3600 * 1000 + 1,
            &mut ch,
        )
        .unwrap();
        assert_eq!(ch.tokens_removed, [1]);
        assert!(!a.tokens.contains_key(&1));
    }

    #[test]
    fn grants_are_set_like_and_ungrant_names_what_is_missing() {
        let mut a = AccessData::default();
        let mut ch = AccessChanges::default();
        let g = RoleGrant {
            principal: "bob".into(),
            role: Role::Reader,
            container: None,
        };
        for _ in 0..2 {
            a.apply(
                AccessOp::Grant {
                    tenant: "acme".into(),
                    grant: g.clone(),
                },
                0,
                &mut ch,
            )
            .unwrap();
        }
        assert_eq!(a.grants["acme"].len(), 1);
        a.apply(
            AccessOp::Ungrant {
                tenant: "acme".into(),
                grant: g.clone(),
            },
            0,
            &mut ch,
        )
        .unwrap();
        let e = a
            .apply(
                AccessOp::Ungrant {
                    tenant: "acme".into(),
                    grant: g,
                },
                0,
                &mut ch,
            )
            .unwrap_err();
        assert!(e.to_string().contains("bob"), "{e}");
    }
}
