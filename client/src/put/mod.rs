//! Streaming upload: header, 256 KiB chunks each with its CRC-32, then a trailer
//! with the total size and the whole-object CRC-32. The object is never held in
//! memory as a whole.
//!
//! A producer task reads the source and feeds a small bounded channel that tonic
//! drains, so memory stays at a few chunks whatever the object size.
//!
//! What is retried: a file or in-memory source can be sent again from the start,
//! so an unconditional put is retried on every transient failure (writing the same
//! bytes twice leaves the same content). A one-shot reader (stdin) keeps the chunks
//! it has read in a replay buffer up to [`REPLAY_BYTES_MAX`]; past that it cannot
//! be retried. A conditional put (`if_match` / `if_none_match`) is not retried
//! once its trailer was sent: the node may have committed it, and a retry could
//! fail the condition against our own write, so the caller gets
//! [`Error::OutcomeUnknown`]. The exception is a `not-leader` rejection, which by
//! contract means the node did nothing (a node that loses leadership after
//! proposing a write must answer with another code). With
//! [`ClientConfig::at_most_once`](crate::ClientConfig) every put follows the
//! conditional rule: a write that may have reached a node is never sent again.

use crate::client::Client;
use crate::error::Error;
use crate::model::ObjectInfo;
use crate::objects::validate_object_path;
use crate::retry::{is_rejected_before_acting, is_transient, Failure};
mod source;

pub use source::{PutSource, PUT_CHUNK_BYTES, REPLAY_BYTES_MAX};

use crate::routing::Route;
use crate::{Progress, ProgressFn};
use bytes::Bytes;
use source::{Feed, Upload};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stratus_core::names;
use stratus_proto::v1 as pb;
use stratus_proto::v1::put_request::Part;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Messages buffered between the reading task and the gRPC stream.
const PUT_QUEUE_MESSAGES: usize = 2;

/// Options of a put.
#[derive(Clone, Default)]
pub struct PutOptions {
    /// MIME type stored with the object (the node's default when `None`).
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Succeed only if the current object's ETag is this.
    pub if_match: Option<String>,
    /// Succeed only if no current object has this ETag; `*`: only if absent.
    pub if_none_match: Option<String>,
    /// Called after every chunk sent.
    pub progress: Option<ProgressFn>,
    /// A customer-provided key protecting this version (reads must send it too).
    pub encryption_key: Option<crate::EncryptionKey>,
}

impl fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutOptions")
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field("if_match", &self.if_match)
            .field("if_none_match", &self.if_none_match)
            .field("progress", &self.progress.is_some())
            .field("encryption_key", &self.encryption_key)
            .finish()
    }
}

/// State shared by an attempt and its producer task.
#[derive(Default)]
struct Shared {
    /// Messages handed to the gRPC stream (the stall watchdog watches it).
    sent: AtomicU64,
    trailer_sent: AtomicBool,
}

/// Sends one message unless the attempt has ended.
async fn send(
    tx: &mpsc::Sender<pb::PutRequest>,
    part: Part,
    stop: &mut watch::Receiver<bool>,
    shared: &Shared,
) -> bool {
    let msg = pb::PutRequest { part: Some(part) };
    let sent = tokio::select! {
        r = tx.send(msg) => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    };
    if sent {
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
    sent
}

/// Reads the source and feeds the request stream; ends early (without a trailer)
/// when the attempt is over or the source fails to read.
async fn produce(
    upload: &mut Upload,
    mut header: pb::PutHeader,
    tx: mpsc::Sender<pb::PutRequest>,
    mut stop: watch::Receiver<bool>,
    shared: &Shared,
    progress: Option<ProgressFn>,
) -> Result<(), Error> {
    let (mut feed, size) = Feed::open(upload).await?;
    header.size_hint = size;
    if !send(&tx, Part::Header(header), &mut stop, shared).await {
        return Ok(());
    }
    let mut whole = crc32fast::Hasher::new();
    let mut done = 0u64;
    while let Some(data) = feed
        .next()
        .await
        .map_err(|e| Error::io("cannot read the upload source", e))?
    {
        whole.update(&data);
        done += data.len() as u64;
        let chunk = pb::PutChunk {
            crc32: crc32fast::hash(&data),
            data,
        };
        if !send(&tx, Part::Chunk(chunk), &mut stop, shared).await {
            return Ok(());
        }
        if let Some(p) = &progress {
            p(Progress { done, total: size });
        }
    }
    let trailer = pb::PutTrailer {
        size: done,
        crc32: whole.finalize(),
    };
    shared.trailer_sent.store(true, Ordering::SeqCst);
    send(&tx, Part::Trailer(trailer), &mut stop, shared).await;
    Ok(())
}

/// Checks of [`stalled`] per idle period: it notices a stall at most
/// `idle / STALL_CHECKS_PER_IDLE` late.
const STALL_CHECKS_PER_IDLE: u32 = 8;

/// Resolves when `counter` has not moved for `idle`. (Sleeping a whole `idle`
/// between checks noticed a stall only up to 2 × `idle` after the last progress:
/// a small put whose node died just after it was sent waited twice the timeout.)
async fn stalled(counter: &AtomicU64, idle: Duration) {
    let tick = (idle / STALL_CHECKS_PER_IDLE).max(Duration::from_millis(1));
    let mut last = counter.load(Ordering::Relaxed);
    let mut moved_at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            last = now;
            moved_at = tokio::time::Instant::now();
        } else if moved_at.elapsed() >= idle {
            return;
        }
    }
}

/// What one put needs besides its source.
struct PutPlan {
    header: pb::PutHeader,
    /// Never re-send once the trailer may have arrived (conditional puts, and every
    /// put of an at-most-once client).
    conditional: bool,
    progress: Option<ProgressFn>,
    what: String,
}

impl Client {
    /// Uploads an object from `source`, streaming it in chunks with CRCs.
    pub async fn put(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        source: PutSource,
        opts: PutOptions,
    ) -> Result<ObjectInfo, Error> {
        validate_object_path(tenant, container, key)?;
        if let Some(ct) = &opts.content_type {
            names::validate_content_type(ct).map_err(|e| Error::invalid(e.to_string()))?;
        }
        names::validate_metadata(&opts.metadata).map_err(|e| Error::invalid(e.to_string()))?;
        let plan = Arc::new(PutPlan {
            conditional: opts.if_match.is_some()
                || opts.if_none_match.is_some()
                || self.config().at_most_once,
            header: pb::PutHeader {
                tenant: tenant.to_owned(),
                container: container.to_owned(),
                key: key.to_owned(),
                content_type: opts.content_type.unwrap_or_default(),
                metadata: opts.metadata.into_iter().collect(),
                if_match: opts.if_match,
                if_none_match: opts.if_none_match,
                size_hint: None,
                encryption_key: opts
                    .encryption_key
                    .as_ref()
                    .map(crate::EncryptionKey::to_wire),
            },
            progress: opts.progress,
            what: format!("put of {tenant}/{container}/{key}"),
        });
        let slot = Arc::new(Mutex::new(Some(Upload::from(source))));
        self.routed(Route::Tenant(tenant), "put", |addr, _| {
            let (plan, slot) = (plan.clone(), slot.clone());
            async move {
                let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                let upload = taken.ok_or_else(|| {
                    Failure::Fatal(Error::invalid(
                        "the upload source was lost after a failed attempt",
                    ))
                })?;
                let (upload, result) = self.put_attempt(&addr, &plan, upload).await;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(upload);
                result
            }
        })
        .await
    }

    /// Uploads `data` from memory.
    pub async fn put_bytes(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        data: impl Into<Bytes>,
        opts: PutOptions,
    ) -> Result<ObjectInfo, Error> {
        self.put(tenant, container, key, PutSource::Bytes(data.into()), opts)
            .await
    }

    /// One attempt at `addr`; gives the source back for the next attempt.
    async fn put_attempt(
        &self,
        addr: &str,
        plan: &PutPlan,
        mut upload: Upload,
    ) -> (Upload, Result<ObjectInfo, Failure>) {
        let mut grpc = match self.inner.channels.objects(addr) {
            Ok(c) => c,
            Err(e) => return (upload, Err(Failure::Fatal(e))),
        };
        let (tx, rx) = mpsc::channel(PUT_QUEUE_MESSAGES);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let (header, progress, task_shared) =
            (plan.header.clone(), plan.progress.clone(), shared.clone());
        let producer = tokio::spawn(async move {
            let r = produce(&mut upload, header, tx, stop_rx, &task_shared, progress).await;
            (upload, r)
        });
        let idle = self.config().stream_idle_timeout;
        let rpc = tokio::select! {
            r = grpc.put_object(ReceiverStream::new(rx)) => r.map_err(|s| Error::from_status(&s, addr)),
            _ = stalled(&shared.sent, idle) => Err(Error::Transport {
                addr: addr.to_owned(),
                message: format!("upload made no progress for {} s", idle.as_secs()),
                sent: true,
            }),
        };
        let _ = stop_tx.send(true);
        let (upload, produced) = match producer.await {
            Ok(r) => r,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let result = match (rpc, produced) {
            (Ok(resp), Ok(())) => resp
                .into_inner()
                .object
                .map(ObjectInfo::from)
                .ok_or_else(|| {
                    Failure::Fatal(Error::Other {
                        grpc_code: tonic::Code::Internal,
                        message: "the node acknowledged the put without object info".into(),
                        code: None,
                    })
                }),
            (_, Err(read_failed)) => Err(Failure::Fatal(read_failed)),
            (Err(e), Ok(())) => Err(classify_put_failure(
                e,
                plan,
                shared.trailer_sent.load(Ordering::SeqCst),
                upload.replayable(),
            )),
        };
        (upload, result)
    }
}

/// The retry rules of the module docs, for one failed attempt.
fn classify_put_failure(e: Error, plan: &PutPlan, trailer_sent: bool, replayable: bool) -> Failure {
    if !is_transient(&e) {
        return Failure::Fatal(e);
    }
    let did_nothing = is_rejected_before_acting(&e);
    if trailer_sent && !did_nothing && (plan.conditional || !replayable) {
        return Failure::Fatal(Error::OutcomeUnknown {
            operation: plan.what.clone(),
            cause: Box::new(e),
        });
    }
    if replayable {
        Failure::Retry(e)
    } else {
        // Nothing was committed (no trailer, or a rejection); the source is spent.
        Failure::Fatal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_noticed_within_one_check_of_the_idle_time() {
        let idle = Duration::from_secs(4);
        let counter = Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now();
        let c = counter.clone();
        // Progress at 1 s, then silence: the stall is 4 s after that, not 8 s.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.fetch_add(1, Ordering::Relaxed);
        });
        stalled(&counter, idle).await;
        let waited = start.elapsed();
        let late_max = idle / STALL_CHECKS_PER_IDLE;
        assert!(
            waited >= Duration::from_secs(5) && waited <= Duration::from_secs(5) + late_max,
            "stall noticed after {waited:?}"
        );
    }

    fn plan(conditional: bool) -> PutPlan {
        PutPlan {
            header: pb::PutHeader::default(),
            conditional,
            progress: None,
            what: "put of t/c/k".into(),
        }
    }

    fn unavailable() -> Error {
        Error::Unavailable {
            message: "x".into(),
            code: None,
        }
    }

    #[test]
    fn conditional_put_after_trailer_is_outcome_unknown() {
        let f = classify_put_failure(unavailable(), &plan(true), true, true);
        assert!(
            matches!(f, Failure::Fatal(Error::OutcomeUnknown { .. })),
            "{f:?}"
        );
        let f = classify_put_failure(unavailable(), &plan(true), false, true);
        assert!(matches!(f, Failure::Retry(_)), "{f:?}");
        let f = classify_put_failure(unavailable(), &plan(false), true, true);
        assert!(matches!(f, Failure::Retry(_)), "{f:?}");
        let f = classify_put_failure(unavailable(), &plan(false), true, false);
        assert!(
            matches!(f, Failure::Fatal(Error::OutcomeUnknown { .. })),
            "{f:?}"
        );
        let f = classify_put_failure(unavailable(), &plan(false), false, false);
        assert!(
            matches!(f, Failure::Fatal(Error::Unavailable { .. })),
            "{f:?}"
        );
        let not_leader = Error::NotLeader {
            leader_id: None,
            leader_addr: None,
            message: String::new(),
        };
        let f = classify_put_failure(not_leader, &plan(true), true, true);
        assert!(
            matches!(f, Failure::Retry(_)),
            "a not-leader rejection did nothing: {f:?}"
        );
    }

    /// A geo write refused before the node proposed it (no lease during a
    /// failover) did nothing: a conditional put may go again. Refused after
    /// proposing, it is unknown.
    #[test]
    fn a_geo_refusal_before_acting_is_retried_after_it_is_not() {
        let refused = |code: &str| Error::Unavailable {
            message: "x".into(),
            code: Some(code.into()),
        };
        for code in crate::error::REFUSED_BEFORE_ACTING {
            let f = classify_put_failure(refused(code), &plan(true), true, true);
            assert!(matches!(f, Failure::Retry(_)), "{code}: {f:?}");
        }
        let f = classify_put_failure(refused("lease-lapsed-after-write"), &plan(true), true, true);
        assert!(
            matches!(f, Failure::Fatal(Error::OutcomeUnknown { .. })),
            "{f:?}"
        );
    }
}
