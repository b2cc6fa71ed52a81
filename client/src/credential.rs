//! The caller's credential: an operator secret (`sop1.`...) or a token (`st1.`...),
//! sent on every call as `authorization: Bearer <credential>`.
//!
//! Where it comes from, first match wins ([`resolve_credential`]): `--token`, the
//! `STRATUS_TOKEN` variable, the profile's `token`. Never printed: `Debug` is
//! redacted and the header value is marked sensitive.

use crate::error::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stratus_proto::AUTHORIZATION_KEY;
use tonic::metadata::{Ascii, MetadataValue};
use zeroize::Zeroizing;

/// Environment variable holding a token or the operator secret.
pub const TOKEN_ENV: &str = "STRATUS_TOKEN";

/// A bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(Zeroizing<String>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

impl Credential {
    /// Checks `text` can travel in a header (printable ASCII, no spaces).
    pub fn new(text: &str) -> Result<Credential, Error> {
        let t = text.trim();
        if t.is_empty() {
            return Err(Error::config("the token is empty"));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::config(
                "the token holds characters other than printable ASCII: pass it exactly as `stratus token create` printed it",
            ));
        }
        Ok(Credential(Zeroizing::new(t.to_string())))
    }

    /// The credential itself (to hand to another program; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is the operator secret rather than a token.
    pub fn is_operator(&self) -> bool {
        self.0.starts_with(stratus_core::auth::OPERATOR_PREFIX)
    }

    fn header(&self) -> MetadataValue<Ascii> {
        let mut v: MetadataValue<Ascii> = format!("Bearer {}", self.0.as_str())
            .parse()
            .expect("checked printable ASCII in Credential::new");
        v.set_sensitive(true);
        v
    }
}

impl Serialize for Credential {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Credential, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Credential::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Adds the credential (if any) to every call.
#[derive(Clone, Debug, Default)]
pub struct AuthHeader(Option<Credential>);

impl AuthHeader {
    pub fn new(credential: Option<Credential>) -> AuthHeader {
        AuthHeader(credential)
    }
}

impl tonic::service::Interceptor for AuthHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(c) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION_KEY, c.header());
        }
        Ok(request)
    }
}

/// `--token`, else `STRATUS_TOKEN`, else the profile's token.
pub fn resolve_credential(
    flag: Option<&str>,
    env: Option<&str>,
    profile: Option<&Credential>,
) -> Result<Option<Credential>, Error> {
    if let Some(f) = flag.filter(|f| !f.trim().is_empty()) {
        return Credential::new(f)
            .map(Some)
            .map_err(|e| Error::config(format!("--token: {e}")));
    }
    if let Some(e) = env.filter(|e| !e.trim().is_empty()) {
        return Credential::new(e)
            .map(Some)
            .map_err(|err| Error::config(format!("{TOKEN_ENV}: {err}")));
    }
    Ok(profile.cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_env_profile_and_debug_is_redacted() {
        let p = Credential::new("st1.profile").unwrap();
        let pick = |f, e| resolve_credential(f, e, Some(&p)).unwrap().unwrap();
        assert_eq!(pick(Some("st1.flag"), Some("st1.env")).expose(), "st1.flag");
        assert_eq!(pick(None, Some("st1.env")).expose(), "st1.env");
        assert_eq!(pick(None, None).expose(), "st1.profile");
        assert_eq!(pick(Some("  "), None).expose(), "st1.profile");
        assert!(resolve_credential(None, None, None).unwrap().is_none());
        assert!(resolve_credential(Some("a b"), None, None).is_err());
        assert_eq!(format!("{p:?}"), "Credential(<redacted>)");
        assert!(!format!("{:?}", AuthHeader::new(Some(p))).contains("profile"));
    }
}
