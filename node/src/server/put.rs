//! The put pipeline: header, CRC-checked chunks re-cut to storage chunks and
//! proposed through Raft with a bounded pipeline, then an atomic commit.
//!
//! **Invariant:** nothing becomes visible unless the trailer's size and whole-object
//! CRC match what arrived and the commit's conditions hold; on every other path the
//! upload is aborted (and, should the handler be dropped, a guard aborts it; the
//! leader's reaper removes whatever a crash left behind).

use super::objects::{Access, ObjectApi};
use crate::error::{NodeError, NodeResult};
use crate::group::GroupHandle;
use crate::objects::{Conditions, ObjectCommand, ObjectId, ObjectMeta, ObjectResponse};
use crate::raft::{Command, Response as RaftResponse};
use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::BTreeMap;
use stratus_core::limits::{CLIENT_CHUNK_BYTES_MAX, STORAGE_CHUNK_BYTES};
use stratus_core::names::{validate_content_type, validate_metadata};
use stratus_proto::v1 as pb;
use stratus_proto::v1::put_request::Part;
use tonic::Streaming;

/// Chunk proposals one upload may have in flight (bounds its memory to ~2 MiB).
const PIPELINE_DEPTH: usize = 8;

type Proposal<'a> = futures::future::BoxFuture<'a, NodeResult<RaftResponse>>;

struct Upload<'a> {
    group: &'a GroupHandle,
    id: u128,
    object: ObjectId,
    now_ms: u64,
    in_flight: FuturesUnordered<Proposal<'a>>,
    proposed: u32,
    buffer: BytesMut,
    size: u64,
    crc: crc32fast::Hasher,
    done: bool,
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.done && self.proposed > 0 {
            // The handler is gone mid-upload (client vanished or shutdown): abort in
            // the background so no staged chunk lingers.
            let raft = self.group.raft.clone();
            let upload = self.id;
            tokio::spawn(async move {
                let _ = raft
                    .client_write(Command::Object(ObjectCommand::Abort { upload }))
                    .await;
            });
        }
    }
}

impl<'a> Upload<'a> {
    async fn propose_chunk(&mut self, data: Bytes) -> NodeResult<()> {
        while self.in_flight.len() >= PIPELINE_DEPTH {
            self.settle_one().await?;
        }
        let command = Command::Object(ObjectCommand::AppendChunk {
            upload: self.id,
            object: self.object.clone(),
            now_ms: self.now_ms,
            index: self.proposed,
            data,
        });
        self.proposed += 1;
        let group = self.group;
        self.in_flight
            .push(Box::pin(async move { group.propose(command).await }));
        Ok(())
    }

    async fn settle_one(&mut self) -> NodeResult<()> {
        match self.in_flight.next().await {
            None | Some(Ok(RaftResponse::Object(ObjectResponse::Appended))) => Ok(()),
            Some(Ok(other)) => Err(NodeError::Internal(format!(
                "unexpected chunk outcome {other:?}"
            ))),
            Some(Err(e)) => Err(e),
        }
    }

    async fn settle_all(&mut self) -> NodeResult<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn accept(&mut self, chunk: pb::PutChunk, max: u64) -> NodeResult<()> {
        if chunk.data.len() > CLIENT_CHUNK_BYTES_MAX {
            return Err(NodeError::InvalidArgument(format!(
                "a put chunk holds {} bytes; the maximum is {CLIENT_CHUNK_BYTES_MAX}",
                chunk.data.len()
            )));
        }
        let actual = crc32fast::hash(&chunk.data);
        if actual != chunk.crc32 {
            return Err(NodeError::CrcMismatch(format!(
                "the chunk at byte {} failed its CRC-32 check (sent {:08x}, computed {actual:08x}): the data was damaged in transit; nothing was stored, retry the upload",
                self.size, chunk.crc32
            )));
        }
        self.size += chunk.data.len() as u64;
        if self.size > max {
            return Err(too_large(self.size, max));
        }
        self.crc.update(&chunk.data);
        self.buffer.extend_from_slice(&chunk.data);
        while self.buffer.len() >= STORAGE_CHUNK_BYTES {
            let full = self.buffer.split_to(STORAGE_CHUNK_BYTES).freeze();
            self.propose_chunk(full).await?;
        }
        Ok(())
    }

    /// Stores the rest and commits; returns the stored metadata.
    async fn finish(&mut self, meta: ObjectMeta, conditions: Conditions) -> NodeResult<ObjectMeta> {
        let rest = self.buffer.split().freeze();
        let command = if self.proposed == 0 {
            let meta = ObjectMeta {
                chunks: u32::from(!rest.is_empty()),
                ..meta
            };
            ObjectCommand::PutSmall {
                object: self.object.clone(),
                meta,
                data: rest,
                conditions,
            }
        } else {
            if !rest.is_empty() {
                self.propose_chunk(rest).await?;
            }
            self.settle_all().await?;
            ObjectCommand::Commit {
                upload: self.id,
                object: self.object.clone(),
                meta: ObjectMeta {
                    chunks: self.proposed,
                    ..meta
                },
                conditions,
            }
        };
        let outcome = self.group.propose(Command::Object(command)).await;
        // Whatever the outcome, the state machine has consumed the upload record
        // (committed, refused or rejected), so the drop guard must not abort.
        self.done = !matches!(
            outcome,
            Err(NodeError::NotLeader { .. }) | Err(NodeError::Unavailable(_))
        );
        match outcome? {
            RaftResponse::Object(ObjectResponse::Stored(meta)) => Ok(meta),
            RaftResponse::Object(ObjectResponse::PreconditionFailed(why)) => Err(NodeError::FailedPrecondition { code: "condition-not-met", message: why }),
            RaftResponse::Object(ObjectResponse::UploadMissing) => Err(NodeError::Aborted("the upload was abandoned before it committed (idle too long?); nothing was stored, retry".into())),
            other => Err(NodeError::Internal(format!("unexpected commit outcome {other:?}"))),
        }
    }

    async fn abort(&mut self) {
        let _ = self.settle_all().await;
        if self.proposed > 0 {
            let _ = self
                .group
                .propose(Command::Object(ObjectCommand::Abort { upload: self.id }))
                .await;
        }
        self.done = true;
    }
}

fn too_large(size: u64, max: u64) -> NodeError {
    NodeError::ResourceExhausted { code: "object-too-large", message: format!("the object is {size} bytes or more, over this cluster's maximum object size of {max} bytes; nothing was stored") }
}

fn interrupted(status: tonic::Status) -> NodeError {
    NodeError::Aborted(format!(
        "the upload stream broke before its trailer ({}); nothing was stored",
        status.message()
    ))
}

/// Runs one put to completion.
pub(crate) async fn put(
    api: &ObjectApi,
    mut stream: Streaming<pb::PutRequest>,
) -> NodeResult<pb::ObjectInfo> {
    let header = match stream.message().await.map_err(interrupted)? {
        Some(pb::PutRequest {
            part: Some(Part::Header(h)),
        }) => h,
        Some(_) => {
            return Err(NodeError::InvalidArgument(
                "the first message of a put must be its header".into(),
            ))
        }
        None => {
            return Err(NodeError::InvalidArgument(
                "the put stream was empty: send a header, chunks and a trailer".into(),
            ))
        }
    };
    validate_content_type(&header.content_type)?;
    let metadata: BTreeMap<String, String> = header.metadata.into_iter().collect();
    validate_metadata(&metadata)?;
    let max = api.node.settings.object_bytes_max;
    if let Some(hint) = header.size_hint.filter(|h| *h > max) {
        return Err(too_large(hint, max));
    }
    let target = api
        .target(
            &header.tenant,
            &header.container,
            Some(&header.key),
            Access::Write,
        )
        .await?;
    let now_ms = api.node.clock.now_ms();
    let mut upload = Upload {
        group: target.group,
        id: api.node.rng.next_u128(),
        object: target.id.clone(),
        now_ms,
        in_flight: FuturesUnordered::new(),
        proposed: 0,
        buffer: BytesMut::with_capacity(STORAGE_CHUNK_BYTES),
        size: 0,
        crc: crc32fast::Hasher::new(),
        done: false,
    };
    let result = receive_and_commit(
        &mut upload,
        &mut stream,
        header.content_type,
        metadata,
        Conditions {
            if_match: header.if_match,
            if_none_match: header.if_none_match,
        },
        max,
    )
    .await;
    match result {
        Ok(meta) => Ok(super::convert::object_info(&target.id, &meta)),
        Err(e) => {
            if !upload.done {
                upload.abort().await;
            }
            tracing::info!(object = %format!("{}/{}/{}", target.id.tenant, target.id.container, target.id.key), error = %e, "put failed");
            Err(e)
        }
    }
}

async fn receive_and_commit(
    upload: &mut Upload<'_>,
    stream: &mut Streaming<pb::PutRequest>,
    content_type: String,
    metadata: BTreeMap<String, String>,
    conditions: Conditions,
    max: u64,
) -> NodeResult<ObjectMeta> {
    let trailer =
        loop {
            match stream.message().await.map_err(interrupted)? {
                Some(pb::PutRequest {
                    part: Some(Part::Chunk(c)),
                }) => upload.accept(c, max).await?,
                Some(pb::PutRequest {
                    part: Some(Part::Trailer(t)),
                }) => break t,
                Some(pb::PutRequest {
                    part: Some(Part::Header(_)),
                }) => {
                    return Err(NodeError::InvalidArgument(
                        "a put has exactly one header".into(),
                    ))
                }
                Some(pb::PutRequest { part: None }) => {
                    return Err(NodeError::InvalidArgument(
                        "a put message must hold a header, chunk or trailer".into(),
                    ))
                }
                None => return Err(NodeError::Aborted(
                    "the client closed the upload before sending its trailer; nothing was stored"
                        .into(),
                )),
            }
        };
    let crc = upload.crc.clone().finalize();
    if trailer.size != upload.size || trailer.crc32 != crc {
        return Err(NodeError::CrcMismatch(format!(
            "the trailer says {} bytes with CRC-32 {:08x} but {} bytes with CRC-32 {crc:08x} arrived; nothing was stored",
            trailer.size, trailer.crc32, upload.size
        )));
    }
    let meta = ObjectMeta {
        size: upload.size,
        crc32: crc,
        version: upload.id,
        chunks: 0,
        content_type,
        metadata,
        created_ms: upload.now_ms,
        modified_ms: upload.now_ms,
    };
    upload.finish(meta, conditions).await
}
