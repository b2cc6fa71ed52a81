//! Access control's pure part: permissions, roles, scopes, the credential formats
//! and their checks. The node wires them to gRPC metadata and the directory.
//!
//! Three kinds of credential travel as `authorization: Bearer <value>`:
//! - the **operator secret** (`sop1.` + 64 hex digits): cluster administration and
//!   break-glass access to everything; the directory keeps only its SHA-256;
//! - a **token** (`st1.<payload>.<mac>`, see [`token`]): like an Azure SAS, a tenant
//!   (optionally a container and a key prefix), permissions, a validity window, an
//!   id and an HMAC-SHA256 under a cluster signing key;
//! - the **cluster credential** (`scl1.` + hex), derived from the root key, which
//!   nodes present to each other on the peer service.
//!
//! Must not: print a credential. Types holding one have a redacted `Debug`.

pub mod token;

use crate::crypto::{sha256, SecretKey};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Prefix of an operator secret.
pub const OPERATOR_PREFIX: &str = "sop1.";
/// Prefix of the node-to-node cluster credential.
pub const CLUSTER_PREFIX: &str = "scl1.";
/// How far a token's start and expiry may be off the verifying node's clock.
pub const CLOCK_SKEW_MS_DEFAULT: u64 = 60_000;
/// Longest validity a token may be given: rotate signing keys less often than this.
pub const TOKEN_LIFETIME_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
/// Live (unexpired) tokens one tenant may have registered at once.
pub const TOKENS_PER_TENANT_MAX: usize = 10_000;
/// Role assignments one tenant may hold.
pub const GRANTS_PER_TENANT_MAX: usize = 1_000;
/// Longest principal name.
pub const PRINCIPAL_BYTES_MAX: usize = 64;

/// A set of permissions (bit flags).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Permissions(pub u8);

impl Permissions {
    /// Get and head objects.
    pub const READ: Permissions = Permissions(1);
    /// List objects and containers.
    pub const LIST: Permissions = Permissions(2);
    /// Put objects, create containers.
    pub const WRITE: Permissions = Permissions(4);
    /// Delete objects and containers.
    pub const DELETE: Permissions = Permissions(8);
    /// Keys, role assignments and tokens of the tenant.
    pub const MANAGE: Permissions = Permissions(16);
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(31);

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }
    pub fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// `r`, `l`, `w`, `d`, `m` in that order (like a SAS `sp` field).
    pub fn letters(self) -> String {
        [
            (Self::READ, 'r'),
            (Self::LIST, 'l'),
            (Self::WRITE, 'w'),
            (Self::DELETE, 'd'),
            (Self::MANAGE, 'm'),
        ]
        .iter()
        .filter(|(p, _)| self.contains(*p))
        .map(|(_, c)| *c)
        .collect()
    }
    /// Words for messages: `read, list`.
    pub fn words(self) -> String {
        let names: Vec<&str> = [
            (Self::READ, "read"),
            (Self::LIST, "list"),
            (Self::WRITE, "write"),
            (Self::DELETE, "delete"),
            (Self::MANAGE, "manage"),
        ]
        .iter()
        .filter(|(p, _)| self.contains(*p))
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        }
    }
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permissions({})", self.letters())
    }
}

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Get, head, list.
    Reader,
    /// Also put and delete (objects and containers).
    Contributor,
    /// Also keys, role assignments and tokens.
    Owner,
}

impl Role {
    pub fn permissions(self) -> Permissions {
        match self {
            Role::Reader => Permissions::READ.union(Permissions::LIST),
            Role::Contributor => Role::Reader
                .permissions()
                .union(Permissions::WRITE)
                .union(Permissions::DELETE),
            Role::Owner => Permissions::ALL,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Contributor => "contributor",
            Role::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Result<Role, String> {
        match s.to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "contributor" => Ok(Role::Contributor),
            "owner" => Ok(Role::Owner),
            _ => Err(format!(
                "unknown role {s:?}: use reader, contributor or owner"
            )),
        }
    }
}

/// What a credential may reach: a tenant, optionally one container, optionally a
/// key prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub tenant: String,
    pub container: Option<String>,
    pub prefix: Option<String>,
}

/// What a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The tenant as a whole: its keys, roles, tokens, its container list.
    Tenant(&'a str),
    /// A container as a whole (create, delete).
    Container(&'a str, &'a str),
    /// One object.
    Object(&'a str, &'a str, &'a str),
    /// The objects of a container under a listing prefix.
    Listing(&'a str, &'a str, &'a str),
}

impl Resource<'_> {
    pub fn tenant(&self) -> &str {
        match self {
            Resource::Tenant(t)
            | Resource::Container(t, _)
            | Resource::Object(t, _, _)
            | Resource::Listing(t, _, _) => t,
        }
    }
    fn container(&self) -> Option<&str> {
        match self {
            Resource::Tenant(_) => None,
            Resource::Container(_, c) | Resource::Object(_, c, _) | Resource::Listing(_, c, _) => {
                Some(c)
            }
        }
    }
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Tenant(t) => write!(f, "tenant {t}"),
            Resource::Container(t, c) => write!(f, "container {t}/{c}"),
            Resource::Object(t, c, k) => write!(f, "object {t}/{c}/{k}"),
            Resource::Listing(t, c, "") => write!(f, "listing of {t}/{c}"),
            Resource::Listing(t, c, p) => write!(f, "listing of {t}/{c}/{p}*"),
        }
    }
}

impl Scope {
    /// Whether this scope covers `resource` (tenant equal; container and prefix, when
    /// set, enclose it).
    pub fn covers(&self, resource: &Resource<'_>) -> bool {
        if self.tenant != resource.tenant() {
            return false;
        }
        if let Some(c) = &self.container {
            if resource.container() != Some(c.as_str()) {
                return false;
            }
        }
        match (&self.prefix, resource) {
            (None, _) => true,
            (Some(p), Resource::Object(_, _, k)) => k.starts_with(p.as_str()),
            (Some(p), Resource::Listing(_, _, lp)) => lp.starts_with(p.as_str()),
            // A prefix-limited scope never covers a whole container or tenant.
            (Some(_), _) => false,
        }
    }

    /// Whether every resource `inner` covers is covered by this scope.
    pub fn encloses(&self, inner: &Scope) -> bool {
        if self.tenant != inner.tenant {
            return false;
        }
        match (&self.container, &inner.container) {
            (None, _) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
        match (&self.prefix, &inner.prefix) {
            (None, _) => true,
            (Some(a), Some(b)) => b.starts_with(a.as_str()),
            (Some(_), None) => false,
        }
    }

    /// `tenant`, `tenant/container` or `tenant/container/prefix*`.
    pub fn describe(&self) -> String {
        match (&self.container, &self.prefix) {
            (None, _) => format!("tenant {}", self.tenant),
            (Some(c), None) => format!("container {}/{c}", self.tenant),
            (Some(c), Some(p)) => format!("keys {}/{c}/{p}*", self.tenant),
        }
    }
}

/// A role assignment of a tenant's principal, at tenant or container scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub principal: String,
    pub role: Role,
    /// `None`: the whole tenant.
    pub container: Option<String>,
}

/// The permissions `grants` give `principal` on `resource`'s container.
pub fn granted(grants: &[RoleGrant], principal: &str, resource: &Resource<'_>) -> Permissions {
    grants
        .iter()
        .filter(|g| g.principal == principal)
        .filter(|g| match (&g.container, resource.container()) {
            (None, _) => true,
            (Some(c), Some(rc)) => c == rc,
            (Some(_), None) => false,
        })
        .fold(Permissions::NONE, |acc, g| acc.union(g.role.permissions()))
}

/// Checks a principal name: 1-64 of lowercase letters, digits, `.`, `_`, `@`, `-`.
pub fn validate_principal(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > PRINCIPAL_BYTES_MAX {
        return Err(format!(
            "principal name {name:?} must be 1-{PRINCIPAL_BYTES_MAX} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._@-".contains(*c)))
    {
        return Err(format!(
            "principal name {name:?} contains {c:?}: use lowercase letters, digits, '.', '_', '@' and '-'"
        ));
    }
    Ok(())
}

/// An operator secret as presented: checked only by its SHA-256.
pub fn operator_secret_ok(presented: &str, stored_sha256: &[u8; 32]) -> bool {
    sha256(presented.as_bytes()).ct_eq(stored_sha256).into()
}

/// Checks the text of an operator secret file (`sop1.` + 64 hex digits).
pub fn parse_operator_secret(text: &str) -> Result<String, String> {
    let s = text.trim();
    let hex_part = s.strip_prefix(OPERATOR_PREFIX).ok_or_else(|| {
        format!("an operator secret starts with {OPERATOR_PREFIX:?} followed by 64 hex digits")
    })?;
    if hex_part.len() != 64 || !hex_part.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "an operator secret is {OPERATOR_PREFIX:?} followed by exactly 64 hex digits (found {} characters after the prefix)",
            hex_part.len()
        ));
    }
    Ok(s.to_string())
}

/// A new operator secret from 32 random bytes.
pub fn operator_secret_from(random: &[u8; 32]) -> String {
    format!("{OPERATOR_PREFIX}{}", hex::encode(random))
}

/// The credential nodes present to each other: an HMAC of a fixed label under the
/// root key, so only holders of the root key can make it.
pub fn cluster_credential(root: &SecretKey) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(root.expose())
        .expect("HMAC takes a key of any length");
    mac.update(b"stratus cluster peer credential v1");
    format!(
        "{CLUSTER_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Compares two credentials in time independent of where they differ.
pub fn credential_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests;
