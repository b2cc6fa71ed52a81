//! `stratus dev node start|stop ID`: ask the running supervisor (through the
//! node's `desired` file) and wait until its `state` file shows it happened.

use super::layout::{Desired, DevDir, NodeState};
use super::process;
use crate::cli::output::tell;
use crate::cli::output::Out;
use anyhow::bail;
use serde_json::json;
use std::time::Duration;
use stratus_core::topology::NodeId;

/// How long to wait for the supervisor to act.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether `state` is what `desired` asks for.
fn reached(desired: Desired, state: Option<&NodeState>) -> bool {
    matches!(
        (desired, state),
        (Desired::Up, Some(NodeState::Running(_)))
            | (
                Desired::Down,
                Some(NodeState::Stopped | NodeState::Exited(_))
            )
    )
}

pub async fn set_node(dir: &DevDir, id: NodeId, desired: Desired, out: Out) -> anyhow::Result<()> {
    match dir.supervisor_pid() {
        Some(pid) if process::is_alive(pid) => {}
        _ => bail!(
            "no `stratus dev` supervisor is running on {}: start the cluster with `stratus dev --data {}`",
            dir.root().display(),
            dir.root().display()
        ),
    }
    let topology = dir.load_topology()?;
    dir.check_node(&topology, id)?;
    dir.set_desired(id, desired)?;
    let deadline = tokio::time::Instant::now() + CONTROL_TIMEOUT;
    let state = loop {
        let state = dir.state(id);
        if reached(desired, state.as_ref()) {
            break state;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the supervisor did not {} node {id} within {} s (state: {}); see {}",
                if desired == Desired::Up {
                    "start"
                } else {
                    "stop"
                },
                CONTROL_TIMEOUT.as_secs(),
                state.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
                dir.node_log(id).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = match &state {
        Some(NodeState::Running(pid)) => format!("node {id} started (pid {pid})"),
        Some(NodeState::Exited(how)) => format!("node {id} is down (it exited: {how})"),
        _ => format!("node {id} stopped"),
    };
    if out.is_json() {
        return out.json(&json!({"node": id, "state": state.map(|s| s.to_string())}));
    }
    tell!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_states_are_reached_by_the_right_observations() {
        assert!(reached(Desired::Up, Some(&NodeState::Running(3))));
        assert!(!reached(Desired::Up, Some(&NodeState::Stopped)));
        assert!(reached(Desired::Down, Some(&NodeState::Stopped)));
        assert!(reached(
            Desired::Down,
            Some(&NodeState::Exited("code 1".into()))
        ));
        assert!(!reached(Desired::Down, Some(&NodeState::Running(3))));
        assert!(!reached(Desired::Down, None));
    }

    #[tokio::test]
    async fn control_without_a_supervisor_fails_clearly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DevDir::new(tmp.path());
        let topology = dir.prepare_topology(None).expect("topology");
        dir.write_node_files(&topology).expect("files");
        let out = Out::new(crate::cli::output::OutputFormat::Text);
        let e = set_node(&dir, 2, Desired::Down, out)
            .await
            .expect_err("no supervisor");
        assert!(e.to_string().contains("no `stratus dev` supervisor"), "{e}");
        // With a live supervisor pid (ours), the node id is checked.
        std::fs::write(dir.pid_path(), std::process::id().to_string()).expect("pid file");
        let e = set_node(&dir, 99, Desired::Down, out)
            .await
            .expect_err("unknown node");
        assert!(
            e.to_string().contains("node 99 is not in the topology"),
            "{e}"
        );
    }
}
