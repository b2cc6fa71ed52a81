//! One `it-stratus-node` child process: start, signal, restart, and its log.
//!
//! The node's stdout and stderr are appended to one log file, with a harness line
//! before every start, so one file tells a node's whole story across restarts.

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use stratus_core::topology::NodeId;
use tokio::time::Instant;

/// Time a node gets to exit after SIGTERM before the harness calls it a bug.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Sends `sig` to `pid`; a process already gone is not an error.
pub fn signal(pid: u32, sig: Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).context("pid out of range")?;
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => bail!("cannot send {sig} to pid {pid}: {e}"),
    }
}

/// Whether a process with this pid exists (a zombie counts as existing).
pub fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        kill(Pid::from_raw(raw), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

/// The last `n` lines of a file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A node of a test cluster and, while it runs, its process.
#[derive(Debug)]
pub struct NodeProcess {
    pub id: NodeId,
    pub addr: String,
    pub config: PathBuf,
    pub log: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl NodeProcess {
    /// A node that is not running yet.
    pub fn new(bin: &Path, id: NodeId, addr: &str, config: PathBuf, log: PathBuf) -> NodeProcess {
        NodeProcess {
            id,
            addr: addr.to_owned(),
            config,
            log,
            bin: bin.to_path_buf(),
            child: None,
            starts: 0,
        }
    }

    /// Starts `it-stratus-node --config FILE run`; returns its pid.
    pub fn start(&mut self) -> anyhow::Result<u32> {
        if self.is_running() {
            bail!("node {} is already running", self.id);
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "=== harness: start #{} of node {} on {}",
            self.starts, self.id, self.addr
        )?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info,openraft=warn,sled=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }

    /// The pid while the process runs.
    pub fn pid(&mut self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    /// Whether the process is running (an exited child is reaped and forgotten,
    /// with its status written to the log).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = &mut self.child else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.note(&format!("node exited on its own: {status}"));
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    fn note(&self, line: &str) {
        if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(log, "=== harness: {line}");
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(child.id(), Signal::SIGKILL)?;
        let status = child.wait()?;
        self.note(&format!("SIGKILL sent; {status}"));
        Ok(())
    }

    /// Sends `sig` to the running process.
    pub fn send(&mut self, sig: Signal) -> anyhow::Result<()> {
        match &self.child {
            Some(child) => signal(child.id(), sig),
            None => bail!("node {} is not running", self.id),
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit; see [`Self::wait_stopped`].
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.send(Signal::SIGTERM)?;
        self.wait_stopped().await
    }

    /// Waits for the process to exit after a stop signal. A node that does not
    /// exit within [`STOP_GRACE`] is killed and reported as an error; so is a
    /// non-zero exit status.
    pub async fn wait_stopped(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("node {} is not running", self.id);
        };
        let deadline = Instant::now() + STOP_GRACE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                signal(child.id(), Signal::SIGKILL)?;
                let status = child.wait()?;
                self.note(&format!(
                    "did not stop within {STOP_GRACE:?}; killed: {status}"
                ));
                bail!(
                    "node {} did not exit within {:?} of SIGTERM (killed: {status})",
                    self.id,
                    STOP_GRACE
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.note(&format!("stopped: {status}"));
        if !status.success() {
            bail!("node {} exited with {status} after SIGTERM", self.id);
        }
        Ok(status)
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}
