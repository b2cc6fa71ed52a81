//! The `stratus` command-line tool: definitions (clap derive), dispatch, and
//! [`main`], the whole program. It lives in the library so that other crates can
//! build the same program as their own binary: `client/src/main.rs` (`stratus`) and
//! the integration tests' `it-stratus` are both one call to [`main`].
//!
//! Submodules: [`output`] (text/JSON printing, error reporting, exit codes),
//! [`paths`] (TENANT/CONTAINER/KEY and range parsing), [`objects`], [`admin`],
//! [`progress`], [`dev`] (the local cluster supervisor) and [`bench`].

pub mod access;
pub mod admin;
pub mod audit;
pub mod bench;
pub mod dev;
pub mod keys;
mod metrics;
pub mod objects;
pub mod output;
pub mod paths;
pub mod progress;

use crate::{Client, ClientConfig, EndpointSources, Redundancy};
use clap::{Args, Parser, Subcommand};
use output::{Out, OutputFormat};
use paths::{ContainerPath, ListPath, ObjectPath};
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
Connection: --endpoint, else STRATUS_ENDPOINT, else the profile in STRATUS_PROFILE, \
else ./.stratus-dev/profile.toml (written by `stratus dev`).

TLS: nodes are checked against the cluster CA: --ca, else STRATUS_CA, else the \
profile's `ca_file` (`stratus dev` writes DIR/tls/ca.pem). --insecure (or the profile's \
`insecure = true`) talks plaintext, to clusters run with insecure_plaintext only.

Credentials: --token, else STRATUS_TOKEN, else the profile's `token` (`stratus dev` \
puts the cluster's operator secret there). Create tokens with `stratus token create`.

Exit codes: 0 ok, 1 other error, 2 usage or invalid argument, 3 not found, \
4 precondition failed or already exists, 5 cluster unavailable, 6 integrity or data loss, \
7 outcome unknown.";

/// Stratus: a replicated, encrypted object store you can run, break and measure.
#[derive(Debug, Parser)]
#[command(name = "stratus", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Node address HOST:PORT to contact first (repeatable or comma-separated).
    #[arg(
        long = "endpoint",
        global = true,
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub endpoints: Vec<String>,
    /// Output format of results (errors go to stderr in the same format).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Give up on an operation (after retries) after this many seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Credential to send: a token (`st1.`...) or the operator secret (`sop1.`...).
    #[arg(
        long,
        global = true,
        env = "STRATUS_TOKEN",
        hide_env_values = true,
        value_parser = parse_credential,
        value_name = "TOKEN"
    )]
    pub token: Option<crate::Credential>,
    /// The cluster CA certificate (PEM) to check nodes' TLS certificates against.
    #[arg(long, global = true, env = "STRATUS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Talk plaintext, without TLS (clusters run with insecure_plaintext only).
    #[arg(long, global = true, env = "STRATUS_INSECURE", conflicts_with = "ca")]
    pub insecure: bool,
    /// Debug logs on stderr (-vv for every crate); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local multi-region cluster as separate stratus-node processes.
    #[command(after_help = dev::AFTER_HELP)]
    Dev(dev::DevArgs),
    /// Cluster-wide information.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage tenants (Azure: storage accounts).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage containers.
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// Manage a tenant's encryption keys (KEK versions, revoke, delete, purge).
    Key {
        #[command(subcommand)]
        command: keys::KeyCommand,
    },
    /// Create and revoke access tokens (like Azure SAS).
    Token {
        #[command(subcommand)]
        command: access::TokenCommand,
    },
    /// Grant, revoke and list a tenant's role assignments.
    Role {
        #[command(subcommand)]
        command: access::RoleCommand,
    },
    /// Show who the credential in use is and what it may do.
    Whoami,
    /// Export and verify a tenant's hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Upload a file (or stdin with `-`) as an object.
    Put(objects::PutArgs),
    /// Download an object to a file or stdout.
    Get(objects::GetArgs),
    /// Show an object's metadata.
    Head {
        /// TENANT/CONTAINER/KEY
        #[arg(value_parser = paths::parse_object_path)]
        path: ObjectPath,
        /// Which copy to read (secondary: RA-GRS and RA-GZRS).
        #[arg(long, value_enum, default_value_t = objects::ReadFrom::Primary)]
        from: objects::ReadFrom,
    },
    /// List objects, optionally under a key prefix.
    Ls {
        /// TENANT/CONTAINER[/PREFIX]
        #[arg(value_parser = paths::parse_list_path)]
        path: ListPath,
        /// Objects per request (the listing follows continuation tokens).
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Which copy to list (secondary: RA-GRS and RA-GZRS).
        #[arg(long, value_enum, default_value_t = objects::ReadFrom::Primary)]
        from: objects::ReadFrom,
    },
    /// Delete an object.
    Rm {
        /// TENANT/CONTAINER/KEY
        #[arg(value_parser = paths::parse_object_path)]
        path: ObjectPath,
        /// Delete only if the object's current ETag is this.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Measure throughput and latency against a running cluster and this disk.
    Bench(bench::BenchArgs),
    /// Make a geo-redundant tenant's secondary region primary. Without --planned
    /// (the primary region is unreachable): waits out the old primary's write lease
    /// and reports the loss window; the tenant is then LRS in the new region until
    /// `stratus tenant reprotect`. With --planned: the primary turns read-only,
    /// shipping drains, the roles swap, nothing is lost.
    Failover {
        tenant: String,
        #[arg(long)]
        planned: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Topology with node health, and every Raft group with its leader.
    Status,
    /// Every node's metrics (Prometheus text format; `--output json` gives one
    /// object per series).
    Metrics {
        /// Only this node.
        #[arg(long, value_name = "ID")]
        node: Option<u64>,
    },
    /// Make a new token signing key current (operator only); tokens signed with
    /// the previous key stay valid, older ones are refused.
    RotateSigningKey,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create(TenantCreateArgs),
    /// List tenants.
    List,
    /// Show a tenant and where its replica group lives.
    Show { name: String },
    /// Delete a tenant (it must have no containers left).
    Delete { name: String },
    /// Change the redundancy class (add or remove the geo copy, toggle read access
    /// to it) or the automatic-failover policy.
    Update {
        name: String,
        #[arg(long, value_parser = parse_redundancy, value_name = "CLASS")]
        redundancy: Option<Redundancy>,
        /// Fail over by itself after the primary region was unreachable this long
        /// (`30s`, `5m`, `1h`), or `off`.
        #[arg(long, value_parser = parse_auto_failover, value_name = "DURATION|off")]
        auto_failover_after: Option<AutoFailover>,
    },
    /// After an unplanned failover, once the old region is back: keep the writes
    /// its old primary never shipped in a recovery container and re-seed it as
    /// the secondary (six copies again).
    Reprotect { name: String },
}

/// An automatic-failover policy given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoFailover(pub Option<Duration>);

fn parse_auto_failover(s: &str) -> Result<AutoFailover, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(AutoFailover(None));
    }
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s, 5m or 1h, nor `off`"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m or h")),
    };
    if secs == 0 {
        return Err("the delay must be positive; use `off` to turn automatic failover off".into());
    }
    Ok(AutoFailover(Some(Duration::from_secs(secs))))
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    /// 3-24 lowercase letters and digits.
    pub name: String,
    /// Home region (see `stratus cluster status`).
    #[arg(long)]
    pub region: String,
    /// Redundancy class.
    #[arg(long, value_parser = parse_redundancy, value_name = "lrs|zrs|grs|ra-grs|gzrs|ra-gzrs")]
    pub redundancy: Redundancy,
    /// Allow purging deleted keys before their retention period ends.
    #[arg(long)]
    pub no_purge_protection: bool,
}

fn parse_credential(s: &str) -> Result<crate::Credential, String> {
    crate::Credential::new(s).map_err(|e| e.to_string())
}

fn parse_redundancy(s: &str) -> Result<Redundancy, String> {
    s.parse()
        .map_err(|e: stratus_core::redundancy::UnknownRedundancy| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container.
    Create {
        /// TENANT/CONTAINER
        #[arg(value_parser = paths::parse_container_path)]
        path: ContainerPath,
    },
    /// List a tenant's containers.
    List { tenant: String },
    /// Delete a container.
    Delete {
        /// TENANT/CONTAINER
        #[arg(value_parser = paths::parse_container_path)]
        path: ContainerPath,
    },
}

/// Connection settings shared by every command that talks to a cluster.
#[derive(Debug, Clone)]
pub struct Connection {
    pub endpoints: Vec<String>,
    pub timeout: Duration,
    /// `--token` or `STRATUS_TOKEN`; else the profile's.
    pub token: Option<crate::Credential>,
    /// `--ca` or `STRATUS_CA`; else the profile's `ca_file`.
    pub ca: Option<PathBuf>,
    /// `--insecure`: plaintext whatever the profile says.
    pub insecure: bool,
}

impl Connection {
    /// Resolves endpoints (flag, env, profile) and connects.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let profile = crate::resolve_profile(&EndpointSources::from_env(self.endpoints.clone()))?;
        self.connect_profile(&profile).await
    }

    /// Connects to explicit endpoints.
    pub async fn connect_to(&self, endpoints: Vec<String>) -> anyhow::Result<Client> {
        self.connect_profile(&crate::Profile::of_endpoints(endpoints))
            .await
    }

    /// Connects to a profile's endpoints, dialling through its address map.
    pub async fn connect_profile(&self, profile: &crate::Profile) -> anyhow::Result<Client> {
        // --insecure, else --ca / STRATUS_CA, else what the profile says.
        let (ca_file, insecure) = match (&self.ca, self.insecure) {
            (_, true) => (None, true),
            (Some(ca), false) => (Some(ca.clone()), false),
            (None, false) => (profile.ca_file.clone(), profile.insecure),
        };
        let profile = crate::Profile {
            ca_file,
            insecure,
            ..profile.clone()
        };
        let config = ClientConfig {
            deadline: self.timeout,
            tls: profile.tls()?,
            dialer: profile.dialer(),
            credential: self.token.clone().or_else(|| profile.token.clone()),
            ..ClientConfig::default()
        };
        Ok(Client::connect_with(profile.endpoints.clone(), config).await?)
    }
}

/// Runs the `stratus` program with the process arguments: parses them, sets up
/// logging, runs [`run`] and turns its error into a message on stderr and an exit
/// code ([`output::report_error`]).
pub fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let format = args.output;
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => output::report_error(&e, format),
    }
}

/// `RUST_LOG` wins; otherwise `-v` shows this tool's debug logs, `-vv` everything.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,stratus_client=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Out::new(cli.output);
    let conn = Connection {
        endpoints: cli.endpoints,
        timeout: Duration::from_secs(cli.timeout.max(1)),
        token: cli.token,
        ca: cli.ca,
        insecure: cli.insecure,
    };
    match cli.command {
        Command::Dev(args) => dev::run(args, out).await,
        Command::Bench(args) => bench::run(args, &conn, out).await,
        Command::Cluster { command } => {
            let client = conn.connect().await?;
            match command {
                ClusterCommand::Status => admin::cluster_status(&client, out).await,
                ClusterCommand::Metrics { node } => metrics::show(&client, node, out).await,
                ClusterCommand::RotateSigningKey => access::rotate_signing_key(&client, out).await,
            }
        }
        Command::Tenant { command } => admin::tenant(&conn.connect().await?, command, out).await,
        Command::Container { command } => {
            admin::container(&conn.connect().await?, command, out).await
        }
        Command::Key { command } => keys::run(&conn.connect().await?, command, out).await,
        Command::Token { command } => access::token(&conn.connect().await?, command, out).await,
        Command::Role { command } => access::role(&conn.connect().await?, command, out).await,
        Command::Whoami => access::whoami(&conn.connect().await?, out).await,
        Command::Audit { command } => audit::run(conn.connect(), command, out).await,
        Command::Put(args) => objects::put(&conn.connect().await?, args, out).await,
        Command::Get(args) => objects::get(&conn.connect().await?, args, out).await,
        Command::Head { path, from } => {
            objects::head(&conn.connect().await?, &path, from, out).await
        }
        Command::Ls {
            path,
            page_size,
            from,
        } => objects::ls(&conn.connect().await?, &path, page_size, from, out).await,
        Command::Failover { tenant, planned } => {
            admin::failover(&conn.connect().await?, &tenant, planned, out).await
        }
        Command::Rm { path, if_match } => {
            objects::rm(&conn.connect().await?, &path, if_match.as_deref(), out).await
        }
    }
}

/// Absolute form of a path, for messages (falls back to the path as given).
pub fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
