//! The audit trail: one record per API call that names a tenant (data and
//! management alike, allowed or refused), appended to that tenant's hash chain in
//! its replica group (see `stratus_core::audit` and `ObjectCommand::Audit`).
//!
//! How a call becomes a record:
//! - [`AuditLayer`] wraps every service; it puts an empty [`AuditSlot`] in each
//!   request's extensions and, when the response (or the refusal) is ready, reads
//!   the gRPC status from its headers;
//! - the handler's authentication/authorization step (`crate::auth`) fills the slot
//!   with the tenant, principal, operation and resource, whether it lets the call
//!   through or not; calls that never name a tenant (cluster status, peer calls,
//!   health) leave it empty and are not recorded;
//! - the event goes to this node's bounded [`AuditSink`]; a background task sends
//!   the events in batches per tenant to the tenant's group leader, numbered so a
//!   batch sent again after a lost answer is appended once.
//!
//! Bounds: at most [`AUDIT_QUEUE_MAX`] events wait on a node (beyond, events are
//! dropped and counted in `AuditSink::dropped`, with a warning; not exported as
//! a metric yet); a batch
//! holds at most [`AUDIT_BATCH_MAX`] events. An event is durable once its batch
//! committed, within about [`AUDIT_FLUSH_EVERY`]: a node that crashes loses the
//! events it had not sent yet.

use crate::node::StratusNode;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use stratus_core::audit::AuditEvent;
use tokio::sync::mpsc;

/// Events a node holds before sending them.
pub const AUDIT_QUEUE_MAX: usize = 16_384;
/// Events in one batch.
pub const AUDIT_BATCH_MAX: usize = 512;
/// How long an event waits for others to share its batch.
pub const AUDIT_FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Attempts to append one batch before it is dropped (with a warning).
const AUDIT_ATTEMPTS_MAX: u32 = 8;

/// What a handler knows about a call, for its record.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub tenant: String,
    pub principal: String,
    pub resource: String,
}

/// Filled by the handler, read by [`AuditLayer`] once the response is ready.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<AuditNote>>>);

impl AuditSlot {
    pub fn fill(&self, note: AuditNote) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
    }
    fn take(&self) -> Option<AuditNote> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// This node's queue of events waiting to be appended.
pub struct AuditSink {
    tx: mpsc::Sender<(String, AuditEvent)>,
    rx: Mutex<Option<mpsc::Receiver<(String, AuditEvent)>>>,
    dropped: AtomicU64,
    /// Distinguishes this run of the node in batch numbers.
    incarnation: u64,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    pub fn new(incarnation: u64) -> AuditSink {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE_MAX);
        AuditSink {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            incarnation,
        }
    }

    /// Queues an event of `tenant` (dropped, and counted, when the queue is full).
    pub fn record(&self, tenant: &str, event: AuditEvent) {
        if self.tx.try_send((tenant.to_string(), event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit queue full: events dropped");
            }
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl StratusNode {
    /// Records a call from its note and the gRPC status it ended with.
    fn audit_call(&self, operation: String, note: AuditNote, result: String) {
        let event = AuditEvent {
            time_ms: self.clock.now_ms(),
            principal: note.principal,
            operation,
            resource: note.resource,
            result,
            node: self.id,
        };
        self.audit.record(&note.tenant, event);
    }

    /// Records an event the node caused itself (an automatic failover).
    pub fn audit_event(&self, tenant: &str, operation: &str, resource: String, result: &str) {
        self.audit.record(
            tenant,
            AuditEvent {
                time_ms: self.clock.now_ms(),
                principal: "cluster".into(),
                operation: operation.into(),
                resource,
                result: result.into(),
                node: self.id,
            },
        );
    }

    /// Sends queued events to their tenants' groups until the node stops.
    pub async fn flush_audit(self: Arc<Self>) {
        let Some(mut rx) = self
            .audit
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut number = 0u64;
        while let Some(first) = rx.recv().await {
            let mut by_tenant: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
            by_tenant.entry(first.0).or_default().push(first.1);
            let mut count = 1;
            let window = tokio::time::sleep(AUDIT_FLUSH_EVERY);
            tokio::pin!(window);
            while count < AUDIT_BATCH_MAX {
                tokio::select! {
                    _ = &mut window => break,
                    next = rx.recv() => match next {
                        Some((t, e)) => {
                            by_tenant.entry(t).or_default().push(e);
                            count += 1;
                        }
                        None => break,
                    },
                }
            }
            for (tenant, events) in by_tenant {
                number += 1;
                self.append_audit(&tenant, number, events).await;
            }
        }
    }

    async fn append_audit(&self, tenant: &str, number: u64, events: Vec<AuditEvent>) {
        let n = events.len();
        let command = crate::raft::Command::Object(crate::objects::ObjectCommand::Audit {
            tenant: tenant.to_string(),
            node: self.id,
            incarnation: self.audit.incarnation,
            batch: number,
            events,
        });
        for attempt in 1..=AUDIT_ATTEMPTS_MAX {
            let Some(record) = self.directory.tenant(tenant) else {
                tracing::debug!(
                    tenant,
                    events = n,
                    "audit events of an unknown tenant dropped"
                );
                return;
            };
            match self.propose(record.group, command.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(tenant, attempt, error = %e, "audit batch not appended yet");
                    tokio::time::sleep(Duration::from_millis(250) * attempt).await;
                }
            }
        }
        self.audit.dropped.fetch_add(n as u64, Ordering::Relaxed);
        tracing::warn!(
            tenant,
            events = n,
            "audit batch dropped after {AUDIT_ATTEMPTS_MAX} attempts"
        );
    }
}

/// Wraps every service: one record per call that filled its [`AuditSlot`].
#[derive(Clone)]
pub struct AuditLayer(pub Arc<StratusNode>);

impl<S> tower::Layer<S> for AuditLayer {
    type Service = Audited<S>;
    fn layer(&self, inner: S) -> Audited<S> {
        Audited {
            inner,
            node: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    node: Arc<StratusNode>,
}

/// `ok`, or `<grpc code>/<stratus code>` of a refusal, from response headers.
fn result_of(headers: &http::HeaderMap) -> String {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    if code == 0 {
        return "ok".into();
    }
    let name = format!("{:?}", tonic::Code::from(code));
    match headers
        .get(stratus_proto::ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(s) => format!("{name}/{s}"),
        None => name,
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Audited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let slot = AuditSlot::default();
        request.extensions_mut().insert(slot.clone());
        // `/stratus.v1.ObjectService/GetObject` → `GetObject`.
        let operation = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        // The service that was made ready is the one that serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let node = self.node.clone();
        Box::pin(async move {
            let response = inner.call(request).await;
            if let Ok(r) = &response {
                if let Some(note) = slot.take() {
                    node.audit_call(operation, note, result_of(r.headers()));
                }
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_name_the_grpc_and_stratus_codes() {
        let mut h = http::HeaderMap::new();
        assert_eq!(result_of(&h), "ok");
        h.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(result_of(&h), "PermissionDenied");
        h.insert(
            stratus_proto::ERROR_CODE_KEY,
            "access-denied".parse().unwrap(),
        );
        assert_eq!(result_of(&h), "PermissionDenied/access-denied");
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(result_of(&h), "ok");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let sink = AuditSink::new(1);
        let event = AuditEvent {
            time_ms: 1,
            principal: "anonymous".into(),
            operation: "GetObject".into(),
            resource: "object t/c/k".into(),
            result: "ok".into(),
            node: 1,
        };
        for _ in 0..AUDIT_QUEUE_MAX + 10 {
            sink.record("acme", event.clone());
        }
        assert_eq!(sink.dropped(), 10);
    }
}
