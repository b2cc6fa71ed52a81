//! The encryption envelope: key types, key wrapping and chunked content encryption.
//!
//! Three layers of keys (DESIGN.md, "Encryption at rest"):
//! - the cluster **root key** wraps each tenant's versioned **KEKs** (associated data:
//!   tenant and KEK version, see [`kek_aad`]);
//! - a tenant's current KEK wraps a fresh random **data key** (DEK) per object version
//!   (associated data: tenant, container, key and object version, see [`dek_aad`]);
//! - the DEK encrypts the object's content in fixed-size chunks ([`envelope`]).
//!
//! Every layer is AES-256-GCM. Raw key bytes live only in [`SecretKey`], which is
//! zeroized on drop and whose `Debug` never shows them.
//!
//! Must not: do IO, pick randomness (callers pass nonces and key bytes drawn from
//! their own seeded source), or log.

pub mod envelope;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes of every key (AES-256).
pub const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM authentication tag.
pub const TAG_BYTES: usize = 16;

/// Why a cryptographic operation failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a key must be {KEY_BYTES} bytes (256 bits), not {found}")]
    KeyLength { found: usize },
    /// A wrapped key did not authenticate under the given key and associated data.
    #[error("{what} does not unwrap: wrong key, or it was moved or altered")]
    Unwrap { what: String },
    /// A content chunk did not authenticate.
    #[error(
        "chunk {index} does not decrypt: wrong key, or it was altered, truncated or reordered"
    )]
    Chunk { index: u32 },
    #[error("chunk {index} is {len} bytes, shorter than its {TAG_BYTES}-byte tag")]
    ChunkTooShort { index: u32, len: usize },
}

/// 256 bits of key material, zeroized on drop, never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_BYTES]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Copies exactly [`KEY_BYTES`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<SecretKey, CryptoError> {
        let array: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| CryptoError::KeyLength { found: bytes.len() })?;
        Ok(SecretKey(Zeroizing::new(array)))
    }

    /// Takes ownership of key bytes (the caller's buffer should itself be zeroizing).
    pub fn from_array(bytes: Zeroizing<[u8; KEY_BYTES]>) -> SecretKey {
        SecretKey(bytes)
    }

    /// The raw bytes, for building a cipher. Do not copy them out.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// SHA-256 of the key: what the server keeps of a customer-provided key.
    pub fn sha256(&self) -> [u8; 32] {
        sha256(self.expose())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.expose().into())
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares two digests in time independent of where they differ.
pub fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key wrapped (encrypted and authenticated) under another key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub nonce: [u8; NONCE_BYTES],
    /// The key's ciphertext followed by the tag.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.sealed.len())
    }
}

/// Wraps `key` under `wrapping` with a caller-drawn random `nonce` (unique per
/// wrapping key: at most about 2^32 wraps per key keeps random nonces safe).
pub fn wrap(
    wrapping: &SecretKey,
    key: &SecretKey,
    aad: &[u8],
    nonce: [u8; NONCE_BYTES],
) -> WrappedKey {
    let sealed = wrapping
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: key.expose(),
                aad,
            },
        )
        .expect("AES-GCM encryption of 32 bytes cannot fail");
    WrappedKey { nonce, sealed }
}

/// Unwraps a key wrapped by [`wrap`] with the same key and associated data;
/// `what` names the key in the error.
pub fn unwrap(
    wrapping: &SecretKey,
    wrapped: &WrappedKey,
    aad: &[u8],
    what: &str,
) -> Result<SecretKey, CryptoError> {
    let plain = wrapping
        .cipher()
        .decrypt(
            &Nonce::from(wrapped.nonce),
            Payload {
                msg: &wrapped.sealed,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Unwrap { what: what.into() })?;
    SecretKey::from_slice(&plain).map_err(|_| CryptoError::Unwrap { what: what.into() })
}

/// Appends length-prefixed fields, so no two different tuples encode the same.
fn aad_of(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(domain.as_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Associated data of a token signing key wrapped by the root key.
pub fn signing_key_aad(version: u32) -> Vec<u8> {
    aad_of("stratus signing key v1", &[&version.to_be_bytes()])
}

/// Associated data of a tenant's KEK wrapped by the root key.
pub fn kek_aad(tenant: &str, kek_version: u32) -> Vec<u8> {
    aad_of(
        "stratus/kek/1",
        &[tenant.as_bytes(), &kek_version.to_be_bytes()],
    )
}

/// Associated data of an object version's data key wrapped by a KEK (or by a
/// customer-provided key).
pub fn dek_aad(tenant: &str, container: &str, key: &str, object_version: u128) -> Vec<u8> {
    aad_of(
        "stratus/dek/1",
        &[
            tenant.as_bytes(),
            container.as_bytes(),
            key.as_bytes(),
            &object_version.to_be_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests;
