//! Process handling for the supervisor: signals, liveness, graceful stop.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;

/// Time a node gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

/// Whether a process with this pid exists.
pub fn is_alive(pid: u32) -> bool {
    match pid_of(pid) {
        Some(p) => matches!(kill(p, None), Ok(()) | Err(Errno::EPERM)),
        None => false,
    }
}

/// Whether the process's command line mentions `needle` (guards against a reused
/// pid). Where `/proc` is not available the answer is `true`.
pub fn command_mentions(pid: u32, needle: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).contains(needle),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            !std::path::Path::new("/proc/self").exists()
        }
        Err(_) => true,
    }
}

/// Sends `sig`; a process that is already gone is not an error.
pub fn send(pid: u32, sig: Signal) {
    if let Some(p) = pid_of(pid) {
        if let Err(e) = kill(p, sig) {
            if e != Errno::ESRCH {
                tracing::warn!(pid, ?sig, error = %e, "cannot signal process");
            }
        }
    }
}

/// `exit code 1`, `killed by SIGKILL`.
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "unknown status".to_owned(),
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL. Returns how the child ended.
pub async fn terminate(child: &mut Child, grace: Duration) -> String {
    if let Some(pid) = child.id() {
        send(pid, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => describe(status),
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => {
            tracing::warn!(pid = ?child.id(), "node ignored SIGTERM; killing it");
            let _ = child.start_kill();
            match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("unknown ({e})"),
            }
        }
    }
}

/// Stops a process that is not our child (left over by a previous supervisor).
pub async fn terminate_pid(pid: u32, grace: Duration) {
    send(pid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while is_alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_alive(pid) {
        send(pid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_mentions_itself() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(!is_alive(0));
        assert!(!command_mentions(me, "definitely-not-in-the-cmdline-xyz"));
    }

    #[tokio::test]
    async fn terminate_reports_the_signal() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let how = terminate(&mut child, Duration::from_secs(5)).await;
        assert_eq!(how, "killed by SIGTERM");
    }
}
