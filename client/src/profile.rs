//! The client profile file and where tools find their endpoints.
//!
//! A profile is a small TOML file, written by `stratus dev` into its data dir:
//!
//! ```toml
//! endpoints = ["127.0.0.1:7101", "127.0.0.1:7102"]
//! ```
//!
//! A cluster whose nodes advertise addresses this host cannot reach (containers
//! that know each other by service name, reached from the host through published
//! ports: `deploy/up.sh` writes such a profile) adds an address map:
//!
//! ```toml
//! endpoints = ["node1:7100", "node2:7100"]
//! [address_map]
//! "node1:7100" = "127.0.0.1:7201"
//! "node2:7100" = "127.0.0.1:7202"
//! ```
//!
//! A profile may also hold the credential to send (`stratus dev` writes its
//! cluster's operator secret there): `token = "sop1...."`.
//!
//! Nodes speak TLS: the profile names the cluster's CA certificate,
//! `ca_file = "tls/ca.pem"` (relative to the profile's directory), and the client
//! checks every node's certificate against it. Only a cluster run with
//! `insecure_plaintext` is reached with `insecure = true` instead.
//!
//! Precedence, first match wins ([`resolve_endpoints`]):
//! 1. `--endpoint` flags (repeatable, each may be comma-separated);
//! 2. `STRATUS_ENDPOINT` (comma-separated);
//! 3. the profile named by `STRATUS_PROFILE`;
//! 4. `./.stratus-dev/profile.toml`, if it exists.

use crate::channels::Dialer;
use crate::credential::Credential;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variable with comma-separated endpoints.
pub const ENDPOINT_ENV: &str = "STRATUS_ENDPOINT";
/// Environment variable naming a profile file.
pub const PROFILE_ENV: &str = "STRATUS_PROFILE";
/// The data dir `stratus dev` uses by default.
pub const DEV_DATA_DIR: &str = ".stratus-dev";
/// File name of the profile inside a dev data dir.
pub const PROFILE_FILE: &str = "profile.toml";

/// Connection details of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Node addresses, `host:port`.
    pub endpoints: Vec<String>,
    /// Addresses the nodes advertise (in the topology, in leader hints and
    /// placements) → the address this client dials instead. Empty: dial as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub address_map: BTreeMap<String, String>,
    /// The credential to send (a token, or the operator secret `stratus dev`
    /// writes here). `--token` and `STRATUS_TOKEN` override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Credential>,
    /// The cluster CA certificate (PEM) every node's certificate must chain to.
    /// A relative path is relative to the profile file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Plaintext, without TLS: only for clusters run with `insecure_plaintext`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl Profile {
    /// Parses a profile; `origin` names the file in error messages.
    pub fn parse(src: &str, origin: &str) -> Result<Profile, Error> {
        let p: Profile = toml::from_str(src)
            .map_err(|e| Error::config(format!("profile {origin} is malformed: {e}")))?;
        if p.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err(Error::config(format!(
                "profile {origin} lists no endpoint: add `endpoints = [\"host:port\"]`"
            )));
        }
        Ok(p)
    }

    /// Reads and parses a profile file; a relative `ca_file` becomes relative to
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Profile, Error> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read profile {}", path.display()), e))?;
        let mut p = Profile::parse(&src, &path.display().to_string())?;
        if let Some(ca) = &p.ca_file {
            if ca.is_relative() {
                p.ca_file = Some(path.parent().unwrap_or(Path::new(".")).join(ca));
            }
        }
        Ok(p)
    }

    /// The TLS configuration this profile asks for: `None` for plaintext
    /// (`insecure = true`), else one trusting `ca_file`.
    pub fn tls(&self) -> Result<Option<crate::TlsConfig>, Error> {
        match (&self.ca_file, self.insecure) {
            (Some(_), true) => Err(Error::config(
                "the profile sets both `ca_file` and `insecure = true`: choose TLS or plaintext",
            )),
            (Some(ca), false) => crate::TlsConfig::from_ca_file(ca).map(Some),
            (None, true) => Ok(None),
            (None, false) => Err(Error::config(
                "no TLS CA for this cluster: set `ca_file` in the profile (or pass --ca FILE / STRATUS_CA; `stratus dev` writes DIR/tls/ca.pem), or `insecure = true` / --insecure for a cluster run with insecure_plaintext",
            )),
        }
    }

    /// The TOML text of this profile.
    pub fn to_toml(&self) -> String {
        let list: Vec<String> = self.endpoints.iter().map(|e| format!("{e:?}")).collect();
        let mut text = format!(
            "# Stratus client profile: the nodes a client may contact first.\nendpoints = [{}]\n",
            list.join(", ")
        );
        if let Some(t) = &self.token {
            text.push_str(&format!(
                "# Sent on every call; keep this file private (mode 0600).\ntoken = {:?}\n",
                t.expose()
            ));
        }
        if let Some(ca) = &self.ca_file {
            text.push_str(&format!(
                "# The cluster's CA: every node's TLS certificate must chain to it.\nca_file = {:?}\n",
                ca.display().to_string()
            ));
        }
        if self.insecure {
            text.push_str(
                "# Plaintext: the cluster runs with insecure_plaintext.\ninsecure = true\n",
            );
        }
        if !self.address_map.is_empty() {
            text.push_str(
                "\n# Advertised node address -> address this client dials.\n[address_map]\n",
            );
            for (from, to) in &self.address_map {
                text.push_str(&format!("{from:?} = {to:?}\n"));
            }
        }
        text
    }

    /// A profile of endpoints only.
    pub fn of_endpoints(endpoints: Vec<String>) -> Profile {
        Profile {
            endpoints,
            address_map: BTreeMap::new(),
            token: None,
            ca_file: None,
            insecure: false,
        }
    }

    /// The dialer that applies the address map (`None` when it is empty: plain TCP).
    pub fn dialer(&self) -> Option<Dialer> {
        (!self.address_map.is_empty())
            .then(|| Dialer::tcp_with_address_map(self.address_map.clone()))
    }
}

/// Everything endpoint resolution looks at, gathered so the rule is a pure function.
#[derive(Debug, Clone, Default)]
pub struct EndpointSources {
    /// `--endpoint` values.
    pub flags: Vec<String>,
    /// `STRATUS_ENDPOINT`.
    pub env_endpoint: Option<String>,
    /// `STRATUS_PROFILE`.
    pub env_profile: Option<PathBuf>,
    /// The fallback profile (`./.stratus-dev/profile.toml`), used if it exists.
    pub default_profile: PathBuf,
}

impl EndpointSources {
    /// Sources from the process environment and the current directory.
    pub fn from_env(flags: Vec<String>) -> EndpointSources {
        let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        EndpointSources {
            flags,
            env_endpoint: non_empty(ENDPOINT_ENV),
            env_profile: non_empty(PROFILE_ENV).map(PathBuf::from),
            default_profile: Path::new(DEV_DATA_DIR).join(PROFILE_FILE),
        }
    }
}

fn split_list<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Applies the precedence of the module docs: the endpoints to contact.
pub fn resolve_endpoints(src: &EndpointSources) -> Result<Vec<String>, Error> {
    resolve_profile(src).map(|p| p.endpoints)
}

/// Applies the precedence of the module docs: the endpoints, with the address map
/// of the profile they came from (empty for `--endpoint` and `STRATUS_ENDPOINT`).
pub fn resolve_profile(src: &EndpointSources) -> Result<Profile, Error> {
    let flags = split_list(src.flags.iter().map(String::as_str));
    if !flags.is_empty() {
        tracing::debug!(?flags, "endpoints from --endpoint");
        return Ok(Profile::of_endpoints(flags));
    }
    if let Some(env) = &src.env_endpoint {
        let list = split_list([env.as_str()]);
        if !list.is_empty() {
            tracing::debug!(?list, "endpoints from {ENDPOINT_ENV}");
            return Ok(Profile::of_endpoints(list));
        }
    }
    let from_file = |p: Profile| Profile {
        endpoints: split_list(p.endpoints.iter().map(String::as_str)),
        ..p
    };
    if let Some(path) = &src.env_profile {
        let p = Profile::load(path)
            .map_err(|e| Error::config(format!("{PROFILE_ENV}={}: {e}", path.display())))?;
        return Ok(from_file(p));
    }
    if src.default_profile.exists() {
        let p = Profile::load(&src.default_profile)?;
        tracing::debug!(path = %src.default_profile.display(), "endpoints from the dev profile");
        return Ok(from_file(p));
    }
    Err(Error::config(format!(
        "no Stratus cluster configured: start a local one with `stratus dev` (run this \
         command from the same directory, or export {PROFILE_ENV}=DIR/profile.toml as it \
         prints), pass --endpoint HOST:PORT, or set {ENDPOINT_ENV}=HOST:PORT"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_profile(dir: &Path, name: &str, endpoints: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let p = Profile::of_endpoints(endpoints.iter().map(|e| e.to_string()).collect());
        std::fs::write(&path, p.to_toml()).expect("write profile");
        path
    }

    #[test]
    fn the_address_map_round_trips_and_comes_with_the_profile() {
        let p = Profile {
            endpoints: vec!["node1:7100".into(), "node2:7100".into()],
            address_map: BTreeMap::from([
                ("node1:7100".into(), "127.0.0.1:7201".into()),
                ("node2:7100".into(), "127.0.0.1:7202".into()),
            ]),
            ..Profile::of_endpoints(Vec::new())
        };
        let text = p.to_toml();
        assert!(text.contains("[address_map]"), "{text}");
        assert_eq!(Profile::parse(&text, "t").expect("round trip"), p);
        assert!(p.dialer().is_some());
        assert!(Profile::of_endpoints(vec!["a:1".into()]).dialer().is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deploy.toml");
        std::fs::write(&path, &text).expect("write");
        let src = EndpointSources {
            env_profile: Some(path),
            default_profile: dir.path().join("missing.toml"),
            ..EndpointSources::default()
        };
        assert_eq!(resolve_profile(&src).expect("profile"), p);
        // Explicit endpoints carry no map.
        let src = EndpointSources {
            flags: vec!["127.0.0.1:7201".into()],
            ..src
        };
        assert!(resolve_profile(&src).expect("flags").address_map.is_empty());
    }

    #[test]
    fn profile_round_trips_and_rejects_unknown_fields() {
        let p = Profile::parse(r#"endpoints = ["127.0.0.1:7101", "127.0.0.1:7102"]"#, "t")
            .expect("valid profile");
        assert_eq!(p.endpoints, ["127.0.0.1:7101", "127.0.0.1:7102"]);
        assert_eq!(Profile::parse(&p.to_toml(), "t").expect("round trip"), p);

        let e = Profile::parse("endpoints = [\"a:1\"]\ntokens = \"x\"\n", "p.toml")
            .expect_err("unknown field");
        let msg = e.to_string();
        assert!(msg.contains("p.toml") && msg.contains("tokens"), "{msg}");
        let with_token = Profile {
            token: Some(Credential::new("st1.abc.def").expect("token")),
            ..p.clone()
        };
        let text = with_token.to_toml();
        assert_eq!(Profile::parse(&text, "t").expect("round trip"), with_token);
        assert!(
            !format!("{with_token:?}").contains("st1.abc"),
            "Debug hides the token"
        );

        // TLS: a CA file relative to the profile, plaintext only when asked for.
        let with_ca = Profile {
            ca_file: Some("tls/ca.pem".into()),
            ..p.clone()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, with_ca.to_toml()).expect("write");
        let loaded = Profile::load(&path).expect("load");
        assert_eq!(loaded.ca_file, Some(dir.path().join("tls/ca.pem")));
        let e = loaded.tls().expect_err("no such CA file");
        assert!(e.to_string().contains("tls/ca.pem"), "{e}");
        let e = p.tls().expect_err("neither CA nor insecure");
        assert!(
            e.to_string().contains("ca_file") && e.to_string().contains("--insecure"),
            "{e}"
        );
        let insecure = Profile {
            insecure: true,
            ..p.clone()
        };
        assert_eq!(
            Profile::parse(&insecure.to_toml(), "t").expect("round trip"),
            insecure
        );
        assert!(insecure.tls().expect("plaintext").is_none());
        let both = Profile {
            insecure: true,
            ..with_ca
        };
        assert!(both.tls().is_err());

        let e = Profile::parse("endpoints = []", "p.toml").expect_err("empty");
        assert!(e.to_string().contains("no endpoint"), "{e}");
    }

    #[test]
    fn precedence_flag_env_profile_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env_profile = write_profile(dir.path(), "env.toml", &["p:1"]);
        let default_profile = write_profile(dir.path(), "default.toml", &["d:1", "d:2"]);
        let mut src = EndpointSources {
            flags: vec!["f:1,f:2".into(), "f:3".into()],
            env_endpoint: Some("e:1, e:2".into()),
            env_profile: Some(env_profile),
            default_profile,
        };
        assert_eq!(
            resolve_endpoints(&src).expect("flags"),
            ["f:1", "f:2", "f:3"]
        );
        src.flags.clear();
        assert_eq!(resolve_endpoints(&src).expect("env"), ["e:1", "e:2"]);
        src.env_endpoint = None;
        assert_eq!(resolve_endpoints(&src).expect("profile"), ["p:1"]);
        src.env_profile = None;
        assert_eq!(resolve_endpoints(&src).expect("default"), ["d:1", "d:2"]);
        src.default_profile = dir.path().join("missing.toml");
        let e = resolve_endpoints(&src).expect_err("nothing configured");
        assert!(e.to_string().contains("stratus dev"), "{e}");
        assert!(e.to_string().contains("--endpoint"), "{e}");
    }

    #[test]
    fn a_missing_env_profile_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = EndpointSources {
            env_profile: Some(dir.path().join("nope.toml")),
            default_profile: write_profile(dir.path(), "d.toml", &["d:1"]),
            ..EndpointSources::default()
        };
        let e = resolve_endpoints(&src).expect_err("missing profile");
        assert!(e.to_string().contains("STRATUS_PROFILE"), "{e}");
    }
}
