//! Envelope encryption of object content.
//!
//! Each object version has its own random data key (DEK), stored only wrapped
//! ([`Envelope`]). The content is cut into the same fixed-size chunks the store keeps
//! (`STORAGE_CHUNK_BYTES`; an inline object is one chunk) and each chunk is sealed
//! with AES-256-GCM under the DEK with the nonce `index (u32 BE) ‖ last flag ‖ 0…`
//! ([`chunk_nonce`]). A DEK encrypts exactly one version, so (key, nonce) pairs never
//! repeat; a chunk moved to another index, a dropped last chunk or a chunk from
//! another version fails its tag.

use super::{CryptoError, SecretKey, WrappedKey, NONCE_BYTES, TAG_BYTES};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

/// Associated data of every content chunk (the nonce carries index and last flag).
const CHUNK_AAD: &[u8] = b"stratus/chunk/1";

/// What protects a version's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySource {
    /// Wrapped by this version of the tenant's KEK.
    Tenant { kek_version: u32 },
    /// Wrapped by a key the customer sends with each request; the server keeps only
    /// its SHA-256.
    Customer { key_sha256: [u8; 32] },
}

/// The wrapped data key of one object version and what wraps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub source: KeySource,
    pub dek: WrappedKey,
}

/// Stored bytes of a chunk of `plain_len` content bytes.
pub const fn sealed_len(plain_len: usize) -> usize {
    plain_len + TAG_BYTES
}

/// The nonce of chunk `index`; `last` marks the final chunk of the version.
pub fn chunk_nonce(index: u32, last: bool) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[..4].copy_from_slice(&index.to_be_bytes());
    nonce[4] = u8::from(last);
    nonce
}

/// Seals and opens the chunks of one object version.
pub struct ContentCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentCipher(<redacted>)")
    }
}

impl ContentCipher {
    pub fn new(dek: &SecretKey) -> ContentCipher {
        ContentCipher {
            cipher: Aes256Gcm::new(dek.expose().into()),
        }
    }

    /// Encrypts chunk `index` (ciphertext followed by the tag).
    pub fn seal(&self, index: u32, last: bool, plain: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(
                &Nonce::from(chunk_nonce(index, last)),
                Payload {
                    msg: plain,
                    aad: CHUNK_AAD,
                },
            )
            .expect("AES-GCM encryption of a chunk under 64 GiB cannot fail")
    }

    /// Decrypts and authenticates chunk `index`.
    pub fn open(&self, index: u32, last: bool, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < TAG_BYTES {
            return Err(CryptoError::ChunkTooShort {
                index,
                len: sealed.len(),
            });
        }
        self.cipher
            .decrypt(
                &Nonce::from(chunk_nonce(index, last)),
                Payload {
                    msg: sealed,
                    aad: CHUNK_AAD,
                },
            )
            .map_err(|_| CryptoError::Chunk { index })
    }
}
