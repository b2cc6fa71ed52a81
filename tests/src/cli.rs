//! Running a program to completion: the `it-stratus` CLI, or `it-stratus-node`
//! when a test expects it to refuse to start.
//!
//! Every run is bounded by a timeout (the process is killed past it), starts in a
//! directory the test chooses (so no `./.stratus-dev` is picked up by accident) and
//! without the caller's `STRATUS_*` variables unless the test sets them.

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Default time one command may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variables of the CLI that a test must set explicitly.
const CLEARED_ENV: [&str; 7] = [
    "STRATUS_TOKEN",
    "STRATUS_CA",
    "STRATUS_INSECURE",
    "STRATUS_ENDPOINT",
    "STRATUS_PROFILE",
    "STRATUS_NODE_BIN",
    "RUST_LOG",
];

/// What a finished program did.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Fails (showing stdout and stderr) unless the exit code was 0.
    pub fn ok(&self) -> anyhow::Result<&Output> {
        if self.code != Some(0) {
            bail!(
                "exit code {:?}\nstdout: {}\nstderr: {}",
                self.code,
                self.stdout_text(),
                self.stderr
            );
        }
        Ok(self)
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.stdout)
            .with_context(|| format!("stdout is not JSON: {}", self.stdout_text()))
    }
}

/// A program and the environment it runs in.
#[derive(Debug, Clone)]
pub struct Program {
    bin: PathBuf,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl Program {
    /// `bin`, run in `cwd`.
    pub fn new(bin: &Path, cwd: &Path) -> Program {
        Program {
            bin: bin.to_path_buf(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            timeout: RUN_TIMEOUT,
        }
    }

    /// Sets an environment variable for every run.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Program {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Program {
        self.timeout = timeout;
        self
    }

    /// A command with this program's directory and environment.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).current_dir(&self.cwd).kill_on_drop(true);
        for k in CLEARED_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs with `args` and no stdin.
    pub async fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<Output> {
        self.run_with_stdin(args, None).await
    }

    /// Runs with `args`, feeding `stdin` when given.
    pub async fn run_with_stdin<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&[u8]>,
    ) -> anyhow::Result<Output> {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let feed = {
            let pipe = child.stdin.take();
            let data = stdin.map(<[u8]>::to_vec);
            async move {
                if let (Some(mut pipe), Some(data)) = (pipe, data) {
                    pipe.write_all(&data).await?;
                    pipe.shutdown().await?;
                }
                std::io::Result::Ok(())
            }
        };
        let run = async {
            let (fed, out) = tokio::join!(feed, child.wait_with_output());
            fed.context("cannot write stdin")?;
            anyhow::Ok(out?)
        };
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .with_context(|| {
                format!(
                    "{} {:?} did not finish within {:?}",
                    self.bin.display(),
                    args.iter()
                        .map(|a| a.as_ref().to_owned())
                        .collect::<Vec<_>>(),
                    self.timeout
                )
            })??;
        Ok(Output {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
