//! Authentication and authorization of API calls, on every node.
//!
//! [`StratusNode::authenticate`] turns the `authorization` metadata of a request
//! into a [`Caller`]: the operator (secret checked against the SHA-256 in the
//! directory) or a token (MAC checked in constant time under the signing key it
//! names, validity window against this node's clock handle with a bounded skew,
//! then the revocation registry). [`StratusNode::authorize`] checks a caller
//! against what a request touches. Both read only this node's copy of the
//! directory; before refusing for a reason a newer copy could change (unknown
//! signing key, missing role assignment, no operator hash yet) the node catches
//! its copy up with the directory's leader once.
//!
//! The peer service accepts only the cluster credential ([`ClusterCredential`]),
//! derived from the root key, which every node also presents on its own calls.
//!
//! Must not: log or echo a credential. Denials name the caller's own scope and the
//! resource the caller named, never whether another tenant's resource exists.

use crate::audit::{AuditNote, AuditSlot};
use crate::directory::access::AccessRoot;
use crate::error::{NodeError, NodeResult};
use crate::forward::{GroupAnswer, GroupQuery};
use crate::node::StratusNode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::auth::token::{self, Claims, TokenError, TOKEN_PREFIX};
use stratus_core::auth::{
    credential_eq, granted, operator_secret_ok, Permissions, Resource, CLUSTER_PREFIX,
    OPERATOR_PREFIX,
};
use stratus_core::crypto::SecretKey;
use stratus_core::placement::DIRECTORY_GROUP;
use stratus_core::topology::NodeId;
use stratus_proto::AUTHORIZATION_KEY;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Request;

/// Longest a refusal waits for this node's directory copy to catch up.
const REFRESH_MAX: Duration = Duration::from_secs(2);

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The holder of the operator secret: cluster administration, and every
    /// tenant's data (break-glass; audited).
    Operator,
    Token(Claims),
}

impl Caller {
    /// How logs and the audit log name the caller (never the credential).
    pub fn name(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Token(c) => match &c.principal {
                Some(p) => format!("token:{}/{p}", c.id_hex()),
                None => format!("token:{}", c.id_hex()),
            },
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator)
    }

    /// Fails unless the caller is the operator; `what` says what was asked.
    pub fn require_operator(&self, what: &str) -> NodeResult<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Token(c) => Err(NodeError::PermissionDenied {
                code: "operator-only",
                message: format!(
                    "{what} is cluster administration, for the operator only; token {} is limited to {}",
                    c.id_hex(),
                    c.scope.describe()
                ),
            }),
        }
    }
}

/// This node's authentication material.
pub struct Auth {
    /// What peers must present (and what this node presents to them).
    cluster_credential: String,
    /// SHA-256 of this node's operator secret file, proposed at bootstrap.
    pub(crate) local_operator_sha256: Option<[u8; 32]>,
    /// Unwrapped signing keys by version (a version's key never changes).
    signing_keys: Mutex<BTreeMap<u32, Arc<SecretKey>>>,
    /// Allowed difference between a token's times and this node's clock.
    pub(crate) skew_ms: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<redacted>)")
    }
}

impl Auth {
    pub fn new(
        cluster_credential: String,
        local_operator_sha256: Option<[u8; 32]>,
        skew_ms: u64,
    ) -> Auth {
        Auth {
            cluster_credential,
            local_operator_sha256,
            signing_keys: Mutex::new(BTreeMap::new()),
            skew_ms,
        }
    }

    /// The `Bearer` header value of the cluster credential.
    pub fn cluster_header(&self) -> MetadataValue<tonic::metadata::Ascii> {
        let mut v: MetadataValue<_> = format!("Bearer {}", self.cluster_credential)
            .parse()
            .expect("the cluster credential is ASCII hex");
        v.set_sensitive(true);
        v
    }

    /// Whether `md` carries the cluster credential.
    pub fn is_cluster(&self, md: &MetadataMap) -> bool {
        bearer(md)
            .ok()
            .filter(|c| c.starts_with(CLUSTER_PREFIX))
            .is_some_and(|c| credential_eq(c, &self.cluster_credential))
    }
}

fn unauthenticated(code: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Unauthenticated {
        code,
        message: message.into(),
    }
}

/// The credential of `Bearer <credential>`.
fn bearer(md: &MetadataMap) -> NodeResult<&str> {
    let Some(value) = md.get(AUTHORIZATION_KEY) else {
        return Err(unauthenticated(
            "credentials-missing",
            "this call needs credentials: send `authorization: Bearer <token>` (the stratus CLI and SDK take --token, STRATUS_TOKEN or `token` in the profile; `stratus dev` writes the operator secret into its profile; create tokens with `stratus token create`)",
        ));
    };
    let text = value.to_str().map_err(|_| {
        unauthenticated(
            "credentials-malformed",
            "the authorization header is not ASCII: send `Bearer <token>`",
        )
    })?;
    let (scheme, credential) = text.split_once(' ').ok_or_else(|| {
        unauthenticated(
            "credentials-malformed",
            "the authorization header must be `Bearer <token>`",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthenticated(
            "credentials-malformed",
            "the authorization header must use the Bearer scheme: `Bearer <token>`",
        ));
    }
    Ok(credential.trim())
}

fn token_refusal(e: TokenError) -> NodeError {
    let code = match e {
        TokenError::Malformed(_) => "token-malformed",
        TokenError::UnknownKey { .. } => "token-key-unknown",
        TokenError::BadSignature => "token-signature-invalid",
        TokenError::NotYetValid { .. } => "token-not-yet-valid",
        TokenError::Expired { .. } => "token-expired",
    };
    unauthenticated(code, e.to_string())
}

impl StratusNode {
    fn access_root(&self) -> Option<AccessRoot> {
        self.directory.read(|d| d.access.root.clone())
    }

    /// Catches this node's copy of the directory up with the leader's applied
    /// index (at most [`REFRESH_MAX`]): used only before a refusal.
    pub(crate) async fn refresh_directory(&self) {
        let fetch = async {
            if let Ok(GroupAnswer::Applied(index)) =
                self.query(DIRECTORY_GROUP, GroupQuery::Applied).await
            {
                self.catch_up_directory(index).await;
            }
        };
        let _ = tokio::time::timeout(REFRESH_MAX, fetch).await;
    }

    /// Signing key `version`, unwrapped (cached), if the directory holds it.
    pub(crate) fn signing_key(&self, version: u32) -> NodeResult<Option<Arc<SecretKey>>> {
        let Some(wrapped) = self
            .directory
            .read(|d| d.access.root.as_ref()?.signing_keys.get(&version).cloned())
        else {
            return Ok(None);
        };
        let mut cache = self
            .auth
            .signing_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(&version) {
            return Ok(Some(k.clone()));
        }
        let key = Arc::new(self.keys.unwrap_signing_key(version, &wrapped)?);
        cache.insert(version, key.clone());
        Ok(Some(key))
    }

    /// The current signing key and its version.
    pub(crate) fn current_signing_key(&self) -> NodeResult<(u32, Arc<SecretKey>)> {
        let version = self
            .access_root()
            .map(|r| r.current_key)
            .ok_or_else(bootstrapping)?;
        let key = self.signing_key(version)?.ok_or_else(bootstrapping)?;
        Ok((version, key))
    }

    /// Who sent `md`'s credentials, or why they are not accepted.
    pub async fn authenticate(&self, md: &MetadataMap) -> NodeResult<Caller> {
        let credential = bearer(md)?;
        if credential.starts_with(OPERATOR_PREFIX) {
            let mut hash = self.access_root().and_then(|r| r.operator_sha256);
            if hash.is_none() {
                self.refresh_directory().await;
                hash = self.access_root().and_then(|r| r.operator_sha256);
            }
            let Some(hash) = hash else {
                return Err(bootstrapping());
            };
            return if operator_secret_ok(credential, &hash) {
                Ok(Caller::Operator)
            } else {
                Err(unauthenticated(
                    "operator-secret-invalid",
                    "the operator secret is not this cluster's: use the one `stratus dev` wrote into its profile (or the cluster's operator_secret_file)",
                ))
            };
        }
        if credential.starts_with(TOKEN_PREFIX) {
            let version = token::key_version_of(credential).map_err(token_refusal)?;
            let mut key = self.signing_key(version)?;
            if key.is_none() {
                // A rotation this copy has not applied yet?
                self.refresh_directory().await;
                key = self.signing_key(version)?;
            }
            let now_ms = self.clock.now_ms();
            let claims = token::verify(credential, key.as_deref(), now_ms, self.auth.skew_ms)
                .map_err(token_refusal)?;
            if self.directory.read(|d| d.access.is_revoked(claims.id)) {
                return Err(unauthenticated(
                    "token-revoked",
                    format!(
                        "token {} was revoked: ask an Owner of tenant {:?} for a new one",
                        claims.id_hex(),
                        claims.scope.tenant
                    ),
                ));
            }
            return Ok(Caller::Token(claims));
        }
        Err(unauthenticated(
            "credentials-unknown",
            format!(
                "unrecognised credential: expected an operator secret ({OPERATOR_PREFIX}...) or a token ({TOKEN_PREFIX}...) from `stratus token create`"
            ),
        ))
    }

    /// What `caller` may do on `resource` (per this node's directory copy).
    fn permitted(&self, claims: &Claims, resource: &Resource<'_>) -> Permissions {
        if !claims.scope.covers(resource) {
            return Permissions::NONE;
        }
        match &claims.principal {
            None => claims.permissions,
            Some(p) => {
                let roles = self.directory.read(|d| {
                    d.access
                        .grants
                        .get(resource.tenant())
                        .map(|g| granted(g, p, resource))
                        .unwrap_or_default()
                });
                claims.permissions.intersect(roles)
            }
        }
    }

    /// Fails with PermissionDenied unless `caller` holds `need` on `resource`.
    pub async fn authorize(
        &self,
        caller: &Caller,
        need: Permissions,
        resource: Resource<'_>,
    ) -> NodeResult<()> {
        let Caller::Token(claims) = caller else {
            return Ok(());
        };
        let covered = claims.scope.covers(&resource);
        let mut have = self.permitted(claims, &resource);
        if covered && !have.contains(need) && claims.principal.is_some() {
            // A role assignment this copy has not applied yet?
            self.refresh_directory().await;
            have = self.permitted(claims, &resource);
        }
        if covered && !have.is_empty() && have.contains(need) {
            return Ok(());
        }
        let message = if !covered {
            format!(
                "token {} is limited to {}; {resource} is outside it: use a token for that resource",
                claims.id_hex(),
                claims.scope.describe()
            )
        } else {
            format!(
                "token {} allows {} on {}{}; this call on {resource} needs {}: ask an Owner of the tenant for a token with that role",
                claims.id_hex(),
                have.words(),
                claims.scope.describe(),
                claims
                    .principal
                    .as_ref()
                    .map(|p| format!(" (as principal {p:?}, through its role assignments)"))
                    .unwrap_or_default(),
                need.words()
            )
        };
        Err(NodeError::PermissionDenied {
            code: "access-denied",
            message,
        })
    }

    /// Notes the call for its audit record (see `crate::audit`).
    pub fn note_call(
        &self,
        slot: Option<&AuditSlot>,
        tenant: &str,
        principal: String,
        resource: String,
    ) {
        if let Some(slot) = slot {
            slot.fill(AuditNote {
                tenant: tenant.to_string(),
                principal,
                resource,
            });
        }
    }

    /// Authenticates the caller of a call on `resource`, noting it for the audit
    /// log whether or not the credential is accepted.
    pub async fn authenticate_for(
        &self,
        md: &MetadataMap,
        slot: Option<&AuditSlot>,
        resource: &Resource<'_>,
    ) -> NodeResult<Caller> {
        match self.authenticate(md).await {
            Ok(caller) => {
                self.note_call(slot, resource.tenant(), caller.name(), resource.to_string());
                Ok(caller)
            }
            Err(e) => {
                let who = if md.contains_key(AUTHORIZATION_KEY) {
                    "unverified-credential"
                } else {
                    "anonymous"
                };
                self.note_call(slot, resource.tenant(), who.into(), resource.to_string());
                Err(e)
            }
        }
    }

    /// Authenticates and authorizes in one step (and notes the call for audit).
    pub async fn allow_with(
        &self,
        md: &MetadataMap,
        slot: Option<&AuditSlot>,
        need: Permissions,
        resource: Resource<'_>,
    ) -> NodeResult<Caller> {
        let caller = self.authenticate_for(md, slot, &resource).await?;
        self.authorize(&caller, need, resource).await?;
        Ok(caller)
    }

    /// [`StratusNode::allow_with`] for a unary request.
    pub async fn allow<T>(
        &self,
        request: &Request<T>,
        need: Permissions,
        resource: Resource<'_>,
    ) -> NodeResult<Caller> {
        self.allow_with(request.metadata(), slot_of(request), need, resource)
            .await
    }

    /// Authenticates a caller that may see tenant `tenant` as a whole (its record,
    /// its placement): the operator, or a token of that tenant at any scope.
    pub async fn allow_tenant_member<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
    ) -> NodeResult<Caller> {
        let caller = self
            .authenticate_for(
                request.metadata(),
                slot_of(request),
                &Resource::Tenant(tenant),
            )
            .await?;
        if let Caller::Token(c) = &caller {
            if c.scope.tenant != tenant || c.permissions.is_empty() {
                return Err(NodeError::PermissionDenied {
                    code: "access-denied",
                    message: format!(
                        "token {} is limited to {}; tenant {tenant} is outside it: use a token for that tenant",
                        c.id_hex(),
                        c.scope.describe()
                    ),
                });
            }
        }
        Ok(caller)
    }

    /// Authenticates and requires the operator; a call about one tenant (`tenant`)
    /// is noted for that tenant's audit log.
    pub async fn allow_operator<T>(
        &self,
        request: &Request<T>,
        what: &str,
        tenant: Option<&str>,
    ) -> NodeResult<Caller> {
        let caller = match tenant {
            Some(t) => {
                self.authenticate_for(request.metadata(), slot_of(request), &Resource::Tenant(t))
                    .await?
            }
            None => self.authenticate(request.metadata()).await?,
        };
        caller.require_operator(what)?;
        Ok(caller)
    }
}

/// The audit slot [`crate::audit::AuditLayer`] put in a request.
pub fn slot_of<T>(request: &Request<T>) -> Option<&AuditSlot> {
    request.extensions().get::<AuditSlot>()
}

fn bootstrapping() -> NodeError {
    NodeError::UnavailableFor {
        code: "access-bootstrapping",
        message: "this cluster has not finished setting up its credentials (its directory is starting, or no node names an `operator_secret_file`); retry shortly".into(),
    }
}

/// Metadata naming the node a peer call comes from; checked against the node the
/// caller's TLS certificate names.
pub const FROM_NODE_KEY: &str = "x-stratus-from-node";

/// The peer service's check: only the cluster credential passes, and on a TLS
/// cluster only from a connection whose certificate names the node the call says
/// it comes from (mutual TLS: a client without a node certificate, or a node
/// claiming to be another, is refused).
#[derive(Clone)]
pub struct PeerGate(pub Arc<StratusNode>);

impl PeerGate {
    fn check(&self, request: &tonic::Request<()>) -> NodeResult<()> {
        if !self.0.auth.is_cluster(request.metadata()) {
            return Err(unauthenticated(
                "peer-credentials-invalid",
                "the peer service is for the cluster's nodes only: the caller did not present the cluster credential (is its root key the cluster's?)",
            ));
        }
        let security = request
            .extensions()
            .get::<crate::transport::ConnInfo>()
            .map(|c| c.security);
        let Some(crate::transport::Security::Tls { peer_node }) = security else {
            // A plaintext cluster (`insecure_plaintext`, the simulation): the
            // cluster credential is all there is.
            return Ok(());
        };
        let claimed = request
            .metadata()
            .get(FROM_NODE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok());
        match (peer_node, claimed) {
            (Some(cert), Some(claimed)) if cert == claimed => Ok(()),
            (None, _) => Err(unauthenticated(
                "peer-certificate-missing",
                "the peer service needs mutual TLS: the caller presented no certificate of a node of this cluster",
            )),
            (Some(cert), claimed) => Err(unauthenticated(
                "peer-identity-mismatch",
                format!(
                    "the caller's certificate names node {cert} but the call says it comes from {}",
                    claimed.map_or_else(|| "no node".to_owned(), |c| format!("node {c}"))
                ),
            )),
        }
    }
}

impl tonic::service::Interceptor for PeerGate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self.check(&request) {
            Ok(()) => Ok(request),
            Err(e) => {
                tracing::warn!(error = %e, "refused a peer call");
                Err(e.into())
            }
        }
    }
}

/// Adds the cluster credential and this node's id to every call a node makes to
/// a peer.
#[derive(Clone)]
pub struct ClusterCredential {
    pub authorization: MetadataValue<tonic::metadata::Ascii>,
    pub from_node: MetadataValue<tonic::metadata::Ascii>,
}

impl ClusterCredential {
    pub fn new(authorization: MetadataValue<tonic::metadata::Ascii>, me: NodeId) -> Self {
        ClusterCredential {
            authorization,
            from_node: MetadataValue::from(me),
        }
    }
}

impl tonic::service::Interceptor for ClusterCredential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let md = request.metadata_mut();
        md.insert(AUTHORIZATION_KEY, self.authorization.clone());
        md.insert(FROM_NODE_KEY, self.from_node.clone());
        Ok(request)
    }
}
