//! The simulation's handles for the node's seams: a [`Transport`] over turmoil's
//! network, the SDK's dialer over the same network, and a wall clock read from
//! simulated time (monotonic across host restarts, unlike a per-runtime clock).

use futures::future::BoxFuture;
use std::io;
use stratus_client::{DialedIo, Dialer};
use stratus_node::clock::Clock;
use stratus_node::transport::{Conn, Incoming, Transport};

/// Simulated milliseconds since the Unix epoch when a simulation starts
/// (2026-01-01T00:00:00Z): object times look real and are the same every run.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// Node networking over turmoil.
#[derive(Debug, Default, Clone, Copy)]
pub struct TurmoilTransport;

impl Transport for TurmoilTransport {
    fn listen(&self, addr: &str) -> BoxFuture<'static, io::Result<Incoming>> {
        // Bind the port on this host whatever name the address uses.
        let port = addr
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
            let stream = futures::stream::unfold(listener, |listener| async move {
                let next = listener
                    .accept()
                    .await
                    .map(|(s, remote)| Conn::new(s, Some(remote)));
                Some((next, listener))
            });
            Ok(Box::pin(stream) as Incoming)
        })
    }

    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            let remote = s.peer_addr().ok();
            Ok(Conn::new(s, remote))
        })
    }
}

/// The SDK's dialer over turmoil's network.
pub fn dialer() -> Dialer {
    Dialer::new(|addr| {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as Box<dyn DialedIo>)
        })
    })
}

/// Wall-clock time of the simulation.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        EPOCH_MS
            + turmoil::sim_elapsed()
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
    }
}
