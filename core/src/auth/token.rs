//! The token format: `st1.<hex payload>.<hex HMAC-SHA256>`.
//!
//! The payload is a canonical binary encoding (fixed fields, then length-prefixed
//! strings), so exactly one byte string signs each set of claims; the MAC is over
//! `"st1." ‖ payload` under the signing key whose version the payload names.
//! Verification recomputes the MAC and compares in constant time (`subtle`) before
//! it trusts any claim, then checks the validity window with a clock-skew
//! allowance.

use super::{Permissions, Scope};
use crate::crypto::SecretKey;
use hmac::Mac;
use subtle::ConstantTimeEq;

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "st1.";
/// Longest token accepted (payload strings are bounded by the name rules).
pub const TOKEN_CHARS_MAX: usize = 4096;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a token says.
#[derive(Clone, PartialEq, Eq)]
pub struct Claims {
    /// Random id: revocation and the audit log name tokens by it.
    pub id: u128,
    /// Version of the signing key that signed it.
    pub key_version: u32,
    pub scope: Scope,
    pub permissions: Permissions,
    /// When set, the token acts for this principal of the tenant: its permissions
    /// are further limited to the principal's current role assignments.
    pub principal: Option<String>,
    pub start_ms: u64,
    pub expiry_ms: u64,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secret here (the MAC is not kept), but keep it short for logs.
        write!(
            f,
            "Token({} on {} for {:?}, {}..{})",
            self.id_hex(),
            self.scope.describe(),
            self.permissions,
            self.start_ms,
            self.expiry_ms
        )
    }
}

impl Claims {
    /// The id as 32 hex digits (what `stratus token revoke` takes).
    pub fn id_hex(&self) -> String {
        format!("{:032x}", self.id)
    }
}

/// Why a token was not accepted. Messages say what to do and never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed ({0}); pass it exactly as `stratus token create` printed it")]
    Malformed(String),
    #[error("the token was signed with signing key version {version}, which this cluster does not hold (it was rotated out, or the token is from another cluster): create a new token")]
    UnknownKey { version: u32 },
    #[error("the token's signature does not match: it was altered or was not issued by this cluster; create a new token")]
    BadSignature,
    #[error("token {id} is not valid yet: it starts at {start_ms} ms since the epoch, this node's clock reads {now_ms}")]
    NotYetValid {
        id: String,
        start_ms: u64,
        now_ms: u64,
    },
    #[error("token {id} expired at {expiry_ms} ms since the epoch (this node's clock reads {now_ms}): create a new token")]
    Expired {
        id: String,
        expiry_ms: u64,
        now_ms: u64,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical payload of `claims`.
pub fn encode_payload(c: &Claims) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&c.id.to_be_bytes());
    out.extend_from_slice(&c.key_version.to_be_bytes());
    out.extend_from_slice(&c.start_ms.to_be_bytes());
    out.extend_from_slice(&c.expiry_ms.to_be_bytes());
    out.push(c.permissions.0);
    put_str(&mut out, &c.scope.tenant);
    put_str(&mut out, c.scope.container.as_deref().unwrap_or(""));
    put_str(&mut out, c.scope.prefix.as_deref().unwrap_or(""));
    put_str(&mut out, c.principal.as_deref().unwrap_or(""));
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed("payload too short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self) -> Result<String, TokenError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| TokenError::Malformed("a field is not UTF-8".into()))
    }
}

/// Decodes a payload (after its MAC was checked).
pub fn decode_payload(bytes: &[u8]) -> Result<Claims, TokenError> {
    let mut r = Reader(bytes);
    let id = u128::from_be_bytes(r.array()?);
    let key_version = u32::from_be_bytes(r.array()?);
    let start_ms = u64::from_be_bytes(r.array()?);
    let expiry_ms = u64::from_be_bytes(r.array()?);
    let permissions = Permissions(r.array::<1>()?[0]);
    let tenant = r.string()?;
    let container = Some(r.string()?).filter(|s| !s.is_empty());
    let prefix = Some(r.string()?).filter(|s| !s.is_empty());
    let principal = Some(r.string()?).filter(|s| !s.is_empty());
    if !r.0.is_empty() {
        return Err(TokenError::Malformed(
            "trailing bytes in the payload".into(),
        ));
    }
    if permissions.0 & !Permissions::ALL.0 != 0 {
        return Err(TokenError::Malformed("unknown permission bits".into()));
    }
    Ok(Claims {
        id,
        key_version,
        scope: Scope {
            tenant,
            container,
            prefix,
        },
        permissions,
        principal,
        start_ms,
        expiry_ms,
    })
}

fn mac_of(key: &SecretKey, payload: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key.expose()).expect("HMAC takes a key of any length");
    mac.update(TOKEN_PREFIX.as_bytes());
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// The token string for `claims`, signed with `key` (version `claims.key_version`).
pub fn sign(claims: &Claims, key: &SecretKey) -> String {
    let payload = encode_payload(claims);
    let mac = mac_of(key, &payload);
    format!(
        "{TOKEN_PREFIX}{}.{}",
        hex::encode(&payload),
        hex::encode(mac)
    )
}

/// Splits a token into its payload and MAC without trusting either.
fn split(token: &str) -> Result<(Vec<u8>, Vec<u8>), TokenError> {
    if token.len() > TOKEN_CHARS_MAX {
        return Err(TokenError::Malformed(format!(
            "longer than {TOKEN_CHARS_MAX} characters"
        )));
    }
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or_else(|| TokenError::Malformed(format!("it does not start with {TOKEN_PREFIX:?}")))?;
    let (payload, mac) = body
        .split_once('.')
        .ok_or_else(|| TokenError::Malformed("no signature part".into()))?;
    let payload =
        hex::decode(payload).map_err(|_| TokenError::Malformed("payload is not hex".into()))?;
    let mac = hex::decode(mac).map_err(|_| TokenError::Malformed("signature is not hex".into()))?;
    if mac.len() != 32 {
        return Err(TokenError::Malformed(
            "signature has the wrong length".into(),
        ));
    }
    Ok((payload, mac))
}

/// The signing key version a token names, read before its MAC is checked (only
/// to pick the key; nothing else is trusted yet).
pub fn key_version_of(token: &str) -> Result<u32, TokenError> {
    let (payload, _) = split(token)?;
    let bytes = payload
        .get(16..20)
        .ok_or_else(|| TokenError::Malformed("payload too short".into()))?;
    let mut v = [0u8; 4];
    v.copy_from_slice(bytes);
    Ok(u32::from_be_bytes(v))
}

/// Verifies `token`: `key` must be the signing key of the version it names
/// (`None`: the cluster does not hold that version). Checks the MAC in constant
/// time, then the validity window against `now_ms` with `skew_ms` allowance.
pub fn verify(
    token: &str,
    key: Option<&SecretKey>,
    now_ms: u64,
    skew_ms: u64,
) -> Result<Claims, TokenError> {
    let (payload, mac) = split(token)?;
    let version = key_version_of(token)?;
    let Some(key) = key else {
        return Err(TokenError::UnknownKey { version });
    };
    let expected = mac_of(key, &payload);
    if !bool::from(expected.as_slice().ct_eq(&mac)) {
        return Err(TokenError::BadSignature);
    }
    let claims = decode_payload(&payload)?;
    if claims.start_ms > now_ms.saturating_add(skew_ms) {
        return Err(TokenError::NotYetValid {
            id: claims.id_hex(),
            start_ms: claims.start_ms,
            now_ms,
        });
    }
    if claims.expiry_ms.saturating_add(skew_ms) <= now_ms {
        return Err(TokenError::Expired {
            id: claims.id_hex(),
            expiry_ms: claims.expiry_ms,
            now_ms,
        });
    }
    Ok(claims)
}
