//! Free loopback ports for test clusters.
//!
//! Ports come from below the kernel's ephemeral range (32768-60999 on Linux), so
//! the outgoing connections of running nodes never take a port a cluster is about
//! to bind. A port is handed out at most once per process, so parallel tests (and a
//! node restarted on its old port) never collide with each other. Another process
//! could still take a port between our check and the node's bind; the chance is
//! small and the node then fails with a message naming the port.

use anyhow::bail;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// First port considered.
pub const PORT_MIN: u16 = 20_000;
/// Ports considered end before this one (the start of the ephemeral range).
pub const PORT_END: u16 = 32_768;
/// Candidate ports tried per requested port before giving up.
const ATTEMPTS_PER_PORT: usize = 200;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `n` distinct ports that were free when checked and were never handed out
/// before in this process.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n * ATTEMPTS_PER_PORT {
        if ports.len() == n {
            break;
        }
        let port = rng.gen_range(PORT_MIN..PORT_END);
        if !taken.contains(&port) && is_free(port) {
            taken.insert(port);
            ports.push(port);
        }
    }
    if ports.len() < n {
        bail!(
            "found only {} free ports of {n} in {PORT_MIN}..{PORT_END}",
            ports.len()
        );
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_never_reused() -> anyhow::Result<()> {
        let a = free_ports(5)?;
        let b = free_ports(5)?;
        let all: BTreeSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 10, "{a:?} {b:?}");
        assert!(all.iter().all(|p| (PORT_MIN..PORT_END).contains(p)));
        assert!(all.iter().all(|p| is_free(*p)));
        Ok(())
    }
}
