//! A docker-compose project of the `deploy/` cluster, for the drill test: brought
//! up by `deploy/up.sh` under a project name and host ports of its own, faults by
//! `docker kill|stop|start`, and torn down with its volumes when dropped (also when
//! the test fails), so a drill leaves no container, network or volume behind.
//!
//! Every command is bounded by a timeout; waits poll a condition.

use crate::cli::{Output, Program};
use crate::deploy;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Time a plain docker or compose command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Time `deploy/up.sh` may take: create 11 containers and wait for their health.
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Time the teardown in `drop` may take before it is abandoned.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(120);
/// Host port prefixes the drill may use (ports `PP01`-`PP11`); the deployment's
/// default (72) and `stratus dev`'s ports (71xx) are left alone.
const DRILL_PORT_PREFIXES: std::ops::RangeInclusive<u16> = 61..=69;

/// The compose command this machine has: the `docker compose` plugin, else the
/// standalone `docker-compose`.
pub fn compose_command() -> anyhow::Result<Vec<String>> {
    let works = |cmd: &[&str]| {
        std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for cmd in [&["docker", "compose"][..], &["docker-compose"][..]] {
        if works(cmd) {
            return Ok(cmd.iter().map(|s| s.to_string()).collect());
        }
    }
    bail!("neither `docker compose` nor docker-compose is installed")
}

/// Whether a Docker engine answers (`docker info`).
pub fn docker_reachable() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A host port prefix whose ports `PP01..=PPnn` can all be bound on loopback now.
pub fn free_port_prefix(nodes: u64) -> anyhow::Result<u16> {
    for prefix in DRILL_PORT_PREFIXES {
        let all_free = (1..=nodes).all(|id| {
            let port = u16::try_from(u64::from(prefix) * 100 + id).unwrap_or(0);
            port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if all_free {
            return Ok(prefix);
        }
    }
    bail!("no free host port range {DRILL_PORT_PREFIXES:?}01..{nodes:02} on 127.0.0.1")
}

/// One compose project of `deploy/docker-compose.yml`.
pub struct ComposeProject {
    name: String,
    compose: Vec<String>,
    port_prefix: u16,
    profile: PathBuf,
    cwd: PathBuf,
    /// Set by [`ComposeProject::passed`]; otherwise `drop` prints the nodes' logs.
    passed: std::sync::atomic::AtomicBool,
}

impl ComposeProject {
    /// A project named `name` publishing on `127.0.0.1:{port_prefix}NN`, whose
    /// client profile is written to `profile`. Nothing is started yet.
    pub fn new(name: &str, port_prefix: u16, profile: &Path) -> anyhow::Result<ComposeProject> {
        let cwd = profile
            .parent()
            .context("the profile path has a directory")?
            .to_path_buf();
        Ok(ComposeProject {
            name: name.to_owned(),
            compose: compose_command()?,
            port_prefix,
            profile: profile.to_path_buf(),
            cwd,
            passed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Marks the drill as passed: `drop` then removes the project without
    /// printing the nodes' last log lines.
    pub fn passed(&self) {
        self.passed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host address node `id` is published on.
    pub fn host_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}{id:02}", self.port_prefix)
    }

    /// The client profile `deploy/up.sh` writes.
    pub fn profile(&self) -> &Path {
        &self.profile
    }

    fn program(&self, bin: &Path, timeout: Duration) -> Program {
        Program::new(bin, &self.cwd)
            .env("COMPOSE_PROJECT_NAME", &self.name)
            .env(deploy::HOST_PORT_PREFIX_ENV, self.port_prefix.to_string())
            .env("STRATUS_DEPLOY_PROFILE", &self.profile)
            .timeout(timeout)
    }

    fn compose_args(&self, args: &[&str]) -> Vec<String> {
        let file = deploy::deploy_dir().join("docker-compose.yml");
        let mut all: Vec<String> = self.compose[1..].to_vec();
        all.extend([
            "--project-name".to_owned(),
            self.name.clone(),
            "--file".to_owned(),
            file.display().to_string(),
        ]);
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// Runs a compose subcommand; fails on a non-zero exit.
    pub async fn compose(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .program(Path::new(&self.compose[0]), COMMAND_TIMEOUT)
            .run(&self.compose_args(args))
            .await?;
        out.ok()
            .with_context(|| format!("compose {}", args.join(" ")))?;
        Ok(out)
    }

    /// Runs a docker subcommand; fails on a non-zero exit.
    pub async fn docker(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .program(Path::new("docker"), COMMAND_TIMEOUT)
            .run(args)
            .await?;
        out.ok()
            .with_context(|| format!("docker {}", args.join(" ")))?;
        Ok(out)
    }

    /// Starts (or restarts after `down`) the cluster with `deploy/up.sh`: returns
    /// once every node is healthy and the profile is written.
    pub async fn up(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = self
            .program(&deploy::deploy_dir().join("up.sh"), UP_TIMEOUT)
            .run::<&str>(&[])
            .await?;
        out.ok().context("deploy/up.sh")?;
        Ok(started.elapsed())
    }

    /// `down` without `-v`: containers and networks go, volumes (data) stay.
    pub async fn down_keep_volumes(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.compose(&["down", "--timeout", "20"]).await?;
        Ok(started.elapsed())
    }

    /// The container id of `service`.
    pub async fn container(&self, service: &str) -> anyhow::Result<String> {
        let out = self.compose(&["ps", "-q", service]).await?;
        let id = out.stdout_text().trim().to_owned();
        if id.is_empty() {
            bail!(
                "service {service} of project {} has no container",
                self.name
            );
        }
        Ok(id)
    }

    /// `docker kill` (SIGKILL) the container of `service`.
    pub async fn kill(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        self.docker(&["kill", "--signal", "KILL", &id]).await?;
        Ok(())
    }

    /// `docker stop` (SIGTERM, then SIGKILL after 20 s) the containers of `services`.
    pub async fn stop(&self, services: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["stop".to_owned(), "--time".to_owned(), "20".to_owned()];
        for s in services {
            args.push(self.container(s).await?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&args).await?;
        Ok(())
    }

    /// `docker start` the containers of `services`.
    pub async fn start(&self, services: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["start".to_owned()];
        for s in services {
            args.push(self.container(s).await?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&args).await?;
        Ok(())
    }

    /// Detaches the containers of `services` from the project's `network` (as
    /// compose names it: `backbone`, `eu-west`, ...): a network partition.
    pub async fn disconnect(&self, network: &str, services: &[String]) -> anyhow::Result<()> {
        let net = format!("{}_{network}", self.name);
        for s in services {
            let id = self.container(s).await?;
            self.docker(&["network", "disconnect", &net, &id]).await?;
        }
        Ok(())
    }

    /// Attaches the containers of `services` to the project's `network` again,
    /// under their service name (so peers resolve them as before).
    pub async fn connect(&self, network: &str, services: &[String]) -> anyhow::Result<()> {
        let net = format!("{}_{network}", self.name);
        for s in services {
            let id = self.container(s).await?;
            self.docker(&["network", "connect", "--alias", s, &net, &id])
                .await?;
        }
        Ok(())
    }

    /// The container's state: `running`, `exited`, ... and its health if it has one.
    pub async fn state(&self, service: &str) -> anyhow::Result<String> {
        let id = self.container(service).await?;
        let out = self
            .docker(&[
                "inspect",
                "--format",
                "{{.State.Status}}{{if .State.Health}}/{{.State.Health.Status}}{{end}}",
                &id,
            ])
            .await?;
        Ok(out.stdout_text().trim().to_owned())
    }

    /// Waits until every container of `services` reports `running/healthy`.
    pub async fn wait_healthy(
        &self,
        services: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let what = format!("containers {services:?} healthy");
        crate::poll::poll(&what, timeout, || async {
            for s in services {
                let state = self.state(s).await?;
                if state != "running/healthy" {
                    bail!("{s} is {state}");
                }
            }
            anyhow::Ok(())
        })
        .await?;
        Ok(started.elapsed())
    }

    /// The last log lines of every service (for a failure report).
    fn print_logs_blocking(&self) {
        let args = self.compose_args(&["logs", "--no-color", "--tail", "15"]);
        let _ = self.run_blocking(&args, true);
    }

    /// Runs a compose command to completion, or kills it past [`TEARDOWN_TIMEOUT`]
    /// (blocking: for `drop`, which cannot await). Returns whether it succeeded.
    fn run_blocking(&self, args: &[String], show_output: bool) -> bool {
        let mut cmd = std::process::Command::new(&self.compose[0]);
        // The file interpolates the port prefix, so compose needs it even for `down`.
        cmd.args(args)
            .env(deploy::HOST_PORT_PREFIX_ENV, self.port_prefix.to_string())
            .stdin(std::process::Stdio::null());
        if !show_output {
            cmd.stdout(std::process::Stdio::null());
        }
        run_bounded(cmd, TEARDOWN_TIMEOUT)
    }
}

/// Runs `cmd` to completion or kills it past `timeout`; whether it succeeded.
fn run_bounded(mut cmd: std::process::Command, timeout: Duration) -> bool {
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

impl Drop for ComposeProject {
    /// Removes the project's containers, networks and volumes, whatever state the
    /// drill left them in; prints the nodes' last log lines first unless the drill
    /// passed (it failed with an error or a panic).
    fn drop(&mut self) {
        if !self.passed.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("drill failed: last log lines of project {}", self.name);
            self.print_logs_blocking();
        }
        let args = self.compose_args(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        let done = self.run_blocking(&args, false);
        if done {
            eprintln!(
                "drill: removed project {} (containers, networks, volumes)",
                self.name
            );
        } else {
            eprintln!(
                "drill: could not remove project {}: run `docker-compose -p {} -f deploy/docker-compose.yml down -v`",
                self.name, self.name
            );
        }
    }
}
