//! The node's configuration file (`stratus-node --config FILE`).
//!
//! ```toml
//! node_id = 3                     # this node's id in the topology
//! topology = "../../topology.toml" # relative paths are relative to this file
//! data_dir = "data"
//! root_key_file = "root.key"     # 32 raw bytes, mode 0600, the same on every node
//! operator_secret_file = "operator.secret" # `sop1.` + 64 hex digits, mode 0600
//! tls_ca_file = "tls/ca.pem"      # the cluster CA (`stratus-node tls init` makes all three)
//! tls_cert_file = "tls/node-3.pem" # this node's certificate, naming n3.node.stratus
//! tls_key_file = "tls/node-3.key"  # its private key, mode 0600
//! # insecure_plaintext = true     # instead of the three tls_ files: no TLS at all
//! # token_clock_skew_s = 60       # tolerated clock difference on token start/expiry
//! # max_message_bytes = 1114112   # largest gRPC message from a client (1 MiB + 64 KiB)
//! # streams_per_connection_max = 1024  # concurrent HTTP/2 streams per connection
//! # requests_per_connection_max = 512  # requests in service per connection; more: ResourceExhausted
//! # request_deadline_s = 60       # longest unary call (uploads/downloads excepted)
//! # max_metadata_bytes = 16384    # largest request metadata (headers)
//! # tenant_bytes_max = 1099511627776   # bytes one tenant may store (1 TiB)
//! # tenant_objects_max = 10000000 # objects one tenant may hold
//! # key_retention_min_s = 604800  # shortest soft-delete retention of tenant keys
//! # key_retire_grace_s = 30       # an old KEK version may be retired this long after a rotation
//! # listen = "0.0.0.0:7100"       # default: the node's addr in the topology
//! # object_bytes_max = 5368709120 # default 5 GiB
//! # cache_bytes = 67108864        # storage engine cache, default 64 MiB
//! # runtime_workers = 2           # async worker threads; default max(6, cores)
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use stratus_core::limits::OBJECT_BYTES_MAX_DEFAULT;
use stratus_core::topology::{NodeId, Topology, TopologyError};

/// Default storage-engine cache: small, so a node streaming huge objects stays lean.
pub const CACHE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default floor of a key delete's retention: 7 days, as Azure Key Vault.
pub const KEY_RETENTION_MIN_S_DEFAULT: u64 = 7 * 24 * 3600;

/// Default wait between a rotation and retiring the version it superseded.
pub const KEY_RETIRE_GRACE_S_DEFAULT: u64 = 30;

/// Fewest async worker threads a node runs by default. sled blocks the calling
/// thread on some writes (a full IO buffer); with one worker per core a couple of
/// such calls would stall Raft heartbeats on a two-core machine.
pub const RUNTIME_WORKERS_MIN_DEFAULT: usize = 6;

/// Most async worker threads a config may ask for.
pub const RUNTIME_WORKERS_MAX: usize = 256;

/// Largest accepted `token_clock_skew_s`.
pub const TOKEN_CLOCK_SKEW_S_MAX: u64 = 3600;

/// A node's configuration, every path resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id; must be in the topology.
    pub node_id: NodeId,
    /// Path of the topology file.
    pub topology_path: PathBuf,
    /// Where the node keeps its data (created if missing).
    pub data_dir: PathBuf,
    /// Address to bind; defaults to the node's `addr` in the topology. Containers bind
    /// `0.0.0.0:PORT` while peers dial the service name.
    pub listen: Option<String>,
    /// Largest object accepted, in bytes.
    pub object_bytes_max: u64,
    /// Storage engine cache size, in bytes.
    pub cache_bytes: u64,
    /// The cluster root key (32 raw bytes, mode 0600), which wraps every tenant's
    /// key-encryption keys. Every node of a cluster names the same key.
    pub root_key_file: PathBuf,
    /// Shortest retention a key delete may ask for, in seconds (default 7 days).
    pub key_retention_min_s: u64,
    /// How long after a rotation the superseded KEK version may be retired, in
    /// seconds: uploads that began under it commit within this time.
    pub key_retire_grace_s: u64,
    /// The bootstrap operator secret (`sop1.` + 64 hex digits, mode 0600). The
    /// first directory leader that has one records its SHA-256; without any, the
    /// cluster has no operator. Give every node the same file.
    pub operator_secret_file: Option<PathBuf>,
    /// How far a token's start and expiry may be off this node's clock, seconds.
    pub token_clock_skew_s: u64,
    /// The gRPC edge's limits (message size, streams, deadline, quotas...).
    pub limits: crate::server::limits::ServiceLimits,
    /// TLS for clients and mutual TLS between nodes, or explicitly none.
    pub security: TransportSecurity,
    /// Async worker threads; `None`: [`NodeConfig::runtime_workers_default`]. Many
    /// nodes sharing few cores (`stratus dev`) spend less on waking idle workers
    /// with fewer.
    pub runtime_workers: Option<usize>,
}

/// How the node's connections are protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSecurity {
    /// TLS with these files: clients verify the node, nodes verify each other.
    Tls(crate::tls::TlsFiles),
    /// Plaintext, because the config says `insecure_plaintext = true`.
    InsecurePlaintext,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_id: NodeId,
    topology: PathBuf,
    data_dir: PathBuf,
    listen: Option<String>,
    object_bytes_max: Option<u64>,
    cache_bytes: Option<u64>,
    root_key_file: Option<PathBuf>,
    key_retention_min_s: Option<u64>,
    key_retire_grace_s: Option<u64>,
    operator_secret_file: Option<PathBuf>,
    token_clock_skew_s: Option<u64>,
    max_message_bytes: Option<usize>,
    streams_per_connection_max: Option<u32>,
    requests_per_connection_max: Option<usize>,
    request_deadline_s: Option<u64>,
    max_metadata_bytes: Option<usize>,
    tenant_bytes_max: Option<u64>,
    tenant_objects_max: Option<u64>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    runtime_workers: Option<usize>,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path} is malformed: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: field `{field}` {rule}")]
    Field {
        path: PathBuf,
        field: &'static str,
        rule: String,
    },
    #[error("topology file {path}: {error}")]
    Topology { path: PathBuf, error: TopologyError },
    #[error("cannot read topology file {path}: {error}")]
    TopologyRead {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl NodeConfig {
    /// The worker threads a node runs when its config does not say.
    pub fn runtime_workers_default() -> usize {
        RUNTIME_WORKERS_MIN_DEFAULT.max(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The worker threads this node runs.
    pub fn runtime_workers(&self) -> usize {
        self.runtime_workers
            .unwrap_or_else(Self::runtime_workers_default)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.into(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; relative paths resolve against `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let root_key_file = raw.root_key_file.ok_or_else(|| ConfigError::Field {
            path: path.into(),
            field: "root_key_file",
            rule: "is required: name the cluster's 32-byte root key file (create one with `head -c 32 /dev/urandom > root.key && chmod 600 root.key` and give every node the same file)".into(),
        })?;
        let security = match (
            raw.insecure_plaintext.unwrap_or(false),
            raw.tls_ca_file,
            raw.tls_cert_file,
            raw.tls_key_file,
        ) {
            (false, Some(ca), Some(cert), Some(key)) => {
                TransportSecurity::Tls(crate::tls::TlsFiles {
                    ca: base.join(ca),
                    cert: base.join(cert),
                    key: base.join(key),
                })
            }
            (true, None, None, None) => TransportSecurity::InsecurePlaintext,
            (true, ..) => {
                return Err(ConfigError::Field {
                    path: path.into(),
                    field: "insecure_plaintext",
                    rule: "cannot be combined with tls_ca_file, tls_cert_file or tls_key_file: choose TLS or plaintext".into(),
                })
            }
            (false, ca, cert, _) => {
                let missing = if ca.is_none() {
                    "tls_ca_file"
                } else if cert.is_none() {
                    "tls_cert_file"
                } else {
                    "tls_key_file"
                };
                return Err(ConfigError::Field {
                    path: path.into(),
                    field: missing,
                    rule: format!(
                        "is required: nodes speak TLS. Make a CA and node certificates with `stratus-node tls init --topology {} --out tls` and set tls_ca_file = \"tls/ca.pem\", tls_cert_file = \"tls/node-{id}.pem\", tls_key_file = \"tls/node-{id}.key\"; or set insecure_plaintext = true to run without TLS",
                        raw.topology.display(),
                        id = raw.node_id
                    ),
                });
            }
        };
        let config = NodeConfig {
            security,
            runtime_workers: raw.runtime_workers,
            node_id: raw.node_id,
            topology_path: base.join(raw.topology),
            data_dir: base.join(raw.data_dir),
            listen: raw.listen,
            object_bytes_max: raw.object_bytes_max.unwrap_or(OBJECT_BYTES_MAX_DEFAULT),
            cache_bytes: raw.cache_bytes.unwrap_or(CACHE_BYTES_DEFAULT),
            root_key_file: base.join(root_key_file),
            key_retention_min_s: raw
                .key_retention_min_s
                .unwrap_or(KEY_RETENTION_MIN_S_DEFAULT),
            key_retire_grace_s: raw.key_retire_grace_s.unwrap_or(KEY_RETIRE_GRACE_S_DEFAULT),
            operator_secret_file: raw.operator_secret_file.map(|p| base.join(p)),
            token_clock_skew_s: raw
                .token_clock_skew_s
                .unwrap_or(stratus_core::auth::CLOCK_SKEW_MS_DEFAULT / 1000),
            limits: {
                let d = crate::server::limits::ServiceLimits::default();
                crate::server::limits::ServiceLimits {
                    message_bytes_max: raw.max_message_bytes.unwrap_or(d.message_bytes_max),
                    streams_per_connection_max: raw
                        .streams_per_connection_max
                        .unwrap_or(d.streams_per_connection_max),
                    requests_per_connection_max: raw
                        .requests_per_connection_max
                        .unwrap_or(d.requests_per_connection_max),
                    request_deadline: raw
                        .request_deadline_s
                        .map_or(d.request_deadline, std::time::Duration::from_secs),
                    metadata_bytes_max: raw.max_metadata_bytes.unwrap_or(d.metadata_bytes_max),
                    tenant_bytes_max: raw.tenant_bytes_max.unwrap_or(d.tenant_bytes_max),
                    tenant_objects_max: raw.tenant_objects_max.unwrap_or(d.tenant_objects_max),
                }
            },
        };
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let field = |field, rule: &str| ConfigError::Field {
            path: path.into(),
            field,
            rule: rule.into(),
        };
        if self.node_id == 0 {
            return Err(field("node_id", "must be at least 1"));
        }
        if self.object_bytes_max == 0 {
            return Err(field("object_bytes_max", "must be positive"));
        }
        if self.key_retention_min_s == 0 {
            return Err(field("key_retention_min_s", "must be at least 1 second"));
        }
        if self.token_clock_skew_s > TOKEN_CLOCK_SKEW_S_MAX {
            return Err(field(
                "token_clock_skew_s",
                &format!("must be at most {TOKEN_CLOCK_SKEW_S_MAX} (an hour): a larger allowance keeps expired tokens usable; fix the clocks instead (NTP)"),
            ));
        }
        let l = &self.limits;
        let message_min = stratus_core::limits::CLIENT_MESSAGE_BYTES_MAX;
        if l.message_bytes_max < message_min || l.message_bytes_max > 64 * 1024 * 1024 {
            return Err(field(
                "max_message_bytes",
                &format!("must be between {message_min} (a 1 MiB data chunk and its framing) and 67108864"),
            ));
        }
        if l.streams_per_connection_max == 0 {
            return Err(field("streams_per_connection_max", "must be at least 1"));
        }
        if l.requests_per_connection_max == 0 {
            return Err(field("requests_per_connection_max", "must be at least 1"));
        }
        if l.request_deadline.is_zero() {
            return Err(field("request_deadline_s", "must be at least 1 second"));
        }
        if l.metadata_bytes_max < 4096 {
            return Err(field(
                "max_metadata_bytes",
                "must be at least 4096 (room for the authorization header and gRPC's own)",
            ));
        }
        if l.tenant_bytes_max == 0 || l.tenant_objects_max == 0 {
            return Err(field(
                if l.tenant_bytes_max == 0 {
                    "tenant_bytes_max"
                } else {
                    "tenant_objects_max"
                },
                "must be at least 1",
            ));
        }
        if let Some(n) = self.runtime_workers {
            if n == 0 || n > RUNTIME_WORKERS_MAX {
                return Err(field(
                    "runtime_workers",
                    &format!("must be between 1 and {RUNTIME_WORKERS_MAX} (leave it out for max({RUNTIME_WORKERS_MIN_DEFAULT}, cores))"),
                ));
            }
        }
        if self.cache_bytes < 1024 * 1024 {
            return Err(field("cache_bytes", "must be at least 1 MiB"));
        }
        if let Some(l) = &self.listen {
            if l.parse::<std::net::SocketAddr>().is_err() {
                return Err(field("listen", "must be an IP:port such as 0.0.0.0:7100"));
            }
        }
        Ok(())
    }

    /// Loads the topology this config names and checks the node is in it.
    pub fn load_topology(&self) -> Result<Topology, ConfigError> {
        let text = std::fs::read_to_string(&self.topology_path).map_err(|error| {
            ConfigError::TopologyRead {
                path: self.topology_path.clone(),
                error,
            }
        })?;
        let topology = Topology::parse(&text).map_err(|error| ConfigError::Topology {
            path: self.topology_path.clone(),
            error,
        })?;
        if topology.node(self.node_id).is_none() {
            return Err(ConfigError::Field {
                path: self.topology_path.clone(),
                field: "node_id",
                rule: format!("{} is not a node of this topology", self.node_id),
            });
        }
        Ok(topology)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text`, plaintext unless it says something about transport security.
    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        let text = if text.contains("tls_") || text.contains("insecure_plaintext") {
            text.to_owned()
        } else {
            format!("{text}insecure_plaintext = true\n")
        };
        NodeConfig::parse(&text, Path::new("/etc/stratus/node.toml"))
    }

    #[test]
    fn transport_security_is_tls_or_explicitly_plaintext() {
        let base = "node_id = 3\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\n";
        let c = parse(&format!(
            "{base}tls_ca_file = \"tls/ca.pem\"\ntls_cert_file = \"tls/node-3.pem\"\ntls_key_file = \"/k/node-3.key\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.security,
            TransportSecurity::Tls(crate::tls::TlsFiles {
                ca: "/etc/stratus/tls/ca.pem".into(),
                cert: "/etc/stratus/tls/node-3.pem".into(),
                key: "/k/node-3.key".into(),
            })
        );
        assert_eq!(
            parse(base).unwrap().security,
            TransportSecurity::InsecurePlaintext
        );
        // Neither: refused, saying how to make the files or opt out.
        let e = parse(&format!("{base}tls_ca_file = \"ca.pem\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`tls_cert_file`")
                && e.contains("stratus-node tls init")
                && e.contains("insecure_plaintext"),
            "{e}"
        );
        let e = NodeConfig::parse(base, Path::new("/n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tls_ca_file`"), "{e}");
        // Both: refused.
        let e = parse(&format!(
            "{base}insecure_plaintext = true\ntls_ca_file = \"ca.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`insecure_plaintext`"), "{e}");
    }

    #[test]
    fn resolves_relative_paths() {
        let c = parse("node_id = 3\ntopology = \"topology.toml\"\ndata_dir = \"data\"\nroot_key_file = \"k\"\n").unwrap();
        assert_eq!(c.topology_path, Path::new("/etc/stratus/topology.toml"));
        assert_eq!(c.data_dir, Path::new("/etc/stratus/data"));
        assert_eq!(c.object_bytes_max, OBJECT_BYTES_MAX_DEFAULT);
    }

    #[test]
    fn rejects_unknown_field_with_line() {
        let e = parse("node_id = 3\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\nlisten_port = 4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let e = parse("node_id = 0\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`node_id`"), "{e}");
        let e = parse("node_id = 1\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e =
            parse("node_id = \"one\"\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("node_id") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn runtime_workers_default_to_six_or_the_cores_and_must_be_sane() {
        let base = "node_id = 1\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\n";
        let c = parse(base).unwrap();
        assert_eq!(c.runtime_workers, None);
        assert!(c.runtime_workers() >= RUNTIME_WORKERS_MIN_DEFAULT);
        let c = parse(&format!("{base}runtime_workers = 2\n")).unwrap();
        assert_eq!(c.runtime_workers(), 2);
        for bad in ["0", "257"] {
            let e = parse(&format!("{base}runtime_workers = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("`runtime_workers`") && e.contains("between 1 and 256"),
                "{e}"
            );
        }
    }

    #[test]
    fn limits_have_defaults_and_bad_values_name_their_field() {
        let base = "node_id = 1\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"k\"\n";
        let c = parse(base).unwrap();
        assert_eq!(c.limits, crate::server::limits::ServiceLimits::default());
        let c = parse(&format!(
            "{base}tenant_objects_max = 20\nrequest_deadline_s = 5\n"
        ))
        .unwrap();
        assert_eq!(c.limits.tenant_objects_max, 20);
        assert_eq!(c.limits.request_deadline.as_secs(), 5);
        for (line, field) in [
            ("max_message_bytes = 1000", "max_message_bytes"),
            (
                "streams_per_connection_max = 0",
                "streams_per_connection_max",
            ),
            (
                "requests_per_connection_max = 0",
                "requests_per_connection_max",
            ),
            ("request_deadline_s = 0", "request_deadline_s"),
            ("max_metadata_bytes = 100", "max_metadata_bytes"),
            ("tenant_bytes_max = 0", "tenant_bytes_max"),
            ("tenant_objects_max = 0", "tenant_objects_max"),
        ] {
            let e = parse(&format!("{base}{line}\n")).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{line}: {e}");
        }
    }

    #[test]
    fn requires_a_root_key_file_and_says_how_to_make_one() {
        let e = parse("node_id = 1\ntopology = \"t\"\ndata_dir = \"d\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`root_key_file`") && e.contains("/dev/urandom"),
            "{e}"
        );
        let c = parse(
            "node_id = 1\ntopology = \"t\"\ndata_dir = \"d\"\nroot_key_file = \"keys/root.key\"\n",
        )
        .unwrap();
        assert_eq!(c.root_key_file, Path::new("/etc/stratus/keys/root.key"));
    }
}
