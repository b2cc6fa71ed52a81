//! The put pipeline: header, CRC-checked client chunks, trailer, then one entry that
//! makes the object visible.
//!
//! Objects of at most `INLINE_BYTES_MAX` bytes go as one `PutInline` entry. Larger
//! ones are re-cut into `STORAGE_CHUNK_BYTES` chunks and fanned out to the group's
//! members outside the log ([`Fanout`]); once a majority holds every chunk durably
//! and the trailer's size and CRC match what arrived, a `Commit` entry carrying the
//! metadata and per-chunk CRCs makes the version visible.
//!
//! Every byte is encrypted here, on the group leader, before it reaches the log or
//! any blob store: the version's fresh data key (wrapped in its envelope, see
//! `crate::keyring`) seals each stored chunk, or the one inline chunk. A chunk is cut
//! only once more data follows it, so the last chunk is known when it is sealed.
//!
//! **Invariant:** nothing becomes visible unless the trailer matches and the commit's
//! conditions hold. On every failure before the commit is proposed the staged chunks
//! are removed (here and on the members); if the commit's outcome is unknown they
//! are left for the orphan sweep, since the version may be live.

use super::objects::{Access, ObjectApi};
use crate::dataplane::fanout::Fanout;
use crate::error::{NodeError, NodeResult};
use crate::group::GroupHandle;
use crate::keyring::{customer_key, NewVersionKey};
use crate::objects::{Conditions, Layout, ObjectCommand, ObjectId, ObjectMeta, ObjectResponse};
use crate::raft::{Command, Response as RaftResponse};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use stratus_core::auth::{Permissions, Resource};
use stratus_core::crypto::envelope::KeySource;
use stratus_core::limits::{CLIENT_CHUNK_BYTES_MAX, INLINE_BYTES_MAX, STORAGE_CHUNK_BYTES};
use stratus_core::names::{validate_content_type, validate_metadata};
use stratus_proto::v1 as pb;
use stratus_proto::v1::put_request::Part;
use tonic::Streaming;

/// Initial capacity of a put's buffer when the size is unknown (or small).
const BUFFER_BYTES_INITIAL: usize = 16 * 1024;

/// What one put has received so far.
struct Upload<'a> {
    api: &'a ObjectApi,
    group: &'a GroupHandle,
    /// The tenant's directory record (its epoch fences the write).
    tenant: crate::directory::TenantRecord,
    object_id: ObjectId,
    version: u128,
    /// Bytes not yet cut into a stored chunk.
    buffer: BytesMut,
    size: u64,
    crc: crc32fast::Hasher,
    /// The version's data key, its envelope (stored in its metadata) and the
    /// cipher sealing its chunks.
    key: NewVersionKey,
    /// Set once the object outgrew the inline limit.
    fanout: Option<Fanout>,
    chunk_crcs: Vec<u32>,
    /// How long the commit entry took to be committed and applied (for tracing).
    propose_us: u64,
    /// Bytes this object may reach before its tenant's quota is exceeded.
    quota_room: u64,
    quota_max: u64,
}

impl Upload<'_> {
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
        if self.size > self.quota_room {
            return Err(over_bytes_quota(&self.object_id.tenant, self.quota_max));
        }
        self.crc.update(&chunk.data);
        self.buffer.extend_from_slice(&chunk.data);
        if self.fanout.is_none() && self.buffer.len() > INLINE_BYTES_MAX {
            self.fanout = Some(Fanout::start(
                self.api.node.clone(),
                self.group.id(),
                self.version,
            )?);
        }
        // Strictly more than a chunk: the bytes kept back make the last chunk, which
        // is sealed as such once the trailer arrives.
        while self.buffer.len() > STORAGE_CHUNK_BYTES {
            let full = self.buffer.split_to(STORAGE_CHUNK_BYTES).freeze();
            self.store_chunk(&full, false).await?;
        }
        Ok(())
    }

    async fn store_chunk(&mut self, plain: &[u8], last: bool) -> NodeResult<()> {
        let Some(fanout) = self.fanout.as_mut() else {
            return Err(NodeError::Internal(
                "chunk stored before the upload left the inline path".into(),
            ));
        };
        let index = self.chunk_crcs.len() as u32;
        let sealed = Bytes::from(self.key.cipher.seal(index, last, plain));
        let crc = fanout.write(index, sealed).await?;
        self.chunk_crcs.push(crc);
        Ok(())
    }

    /// Stores the rest, makes it durable on a majority and commits.
    async fn finish(
        &mut self,
        mut meta: ObjectMeta,
        conditions: Conditions,
    ) -> NodeResult<ObjectMeta> {
        let rest = self.buffer.split().freeze();
        // A rotation while the bytes streamed in: commit the data key under the new
        // current KEK (the data key itself, and so the chunks, stay as they are).
        // Wrapped again from the data key itself, so the older KEK is not needed (it
        // may have been retired meanwhile).
        let node = &self.api.node;
        if let KeySource::Tenant { kek_version } = self.key.envelope.source {
            if kek_version != node.keys.current_version(&self.object_id.tenant)? {
                self.key.envelope = node.keys.wrap_under_current(
                    &node.rng,
                    &self.object_id,
                    self.version,
                    &self.key.dek,
                )?;
            }
        }
        meta.encryption = self.key.envelope.clone();
        let command = if self.fanout.is_none() {
            ObjectCommand::PutInline {
                object: self.object_id.clone(),
                meta: ObjectMeta {
                    layout: Layout::Inline,
                    ..meta
                },
                data: Bytes::from(self.key.cipher.seal(0, true, &rest)),
                conditions,
            }
        } else {
            self.store_chunk(&rest, true).await?;
            let count = self.chunk_crcs.len() as u32;
            if let Some(fanout) = self.fanout.as_mut() {
                fanout.finish(count).await?;
            }
            meta.layout = Layout::Chunked { chunks: count };
            ObjectCommand::Commit {
                object: self.object_id.clone(),
                meta,
                chunk_crcs: std::mem::take(&mut self.chunk_crcs),
                conditions,
            }
        };
        // The keys may have been revoked while the bytes streamed in.
        self.api.node.keys.check_usable(&self.object_id.tenant)?;
        let proposed = tokio::time::Instant::now();
        let outcome = self
            .api
            .node
            .propose_write(self.group, &self.tenant, Command::Object(command))
            .await;
        self.propose_us = proposed.elapsed().as_micros() as u64;
        if let Some(fanout) = self.fanout.as_mut() {
            // Committed, refused by the state machine (which drops the chunks itself)
            // or of unknown outcome (the version may be live): never undo from here.
            fanout.settle();
        }
        match outcome? {
            RaftResponse::Object(ObjectResponse::Stored(meta)) => Ok(meta),
            RaftResponse::Object(ObjectResponse::PreconditionFailed(why)) => {
                Err(NodeError::FailedPrecondition {
                    code: "condition-not-met",
                    message: why,
                })
            }
            RaftResponse::Object(ObjectResponse::ContainerNotFound) => {
                Err(NodeError::ContainerNotFound {
                    tenant: self.object_id.tenant.clone(),
                    container: self.object_id.container.clone(),
                })
            }
            other => Err(NodeError::Internal(format!(
                "unexpected commit outcome {other:?}"
            ))),
        }
    }
}

fn too_large(size: u64, max: u64) -> NodeError {
    NodeError::ResourceExhausted { code: "object-too-large", message: format!("the object is {size} bytes or more, over this cluster's maximum object size of {max} bytes; nothing was stored") }
}

fn over_bytes_quota(tenant: &str, max: u64) -> NodeError {
    NodeError::ResourceExhausted {
        code: "tenant-bytes-quota",
        message: format!(
            "tenant {tenant:?} would store more than its quota of {max} bytes (tenant_bytes_max); delete objects first; nothing was stored"
        ),
    }
}

fn interrupted(status: tonic::Status) -> NodeError {
    if super::limits::is_too_large(&status) {
        return NodeError::ResourceExhausted {
            code: "message-too-large",
            message: format!(
                "{} (max_message_bytes): send object data in chunks of at most 1 MiB",
                status.message()
            ),
        };
    }
    NodeError::Aborted(format!(
        "the upload stream broke before its trailer ({}); nothing was stored",
        status.message()
    ))
}

/// Runs one put to completion.
pub(crate) async fn put(
    api: &ObjectApi,
    md: &tonic::metadata::MetadataMap,
    slot: Option<&crate::audit::AuditSlot>,
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
    // Only the header is read before the caller is checked (bounded by the
    // message size limit), so the refusal can name the object for the audit log.
    api.node
        .allow_with(
            md,
            slot,
            Permissions::WRITE,
            Resource::Object(&header.tenant, &header.container, &header.key),
        )
        .await?;
    validate_content_type(&header.content_type)?;
    let metadata: BTreeMap<String, String> = header.metadata.into_iter().collect();
    validate_metadata(&metadata)?;
    let max = api.node.settings.object_bytes_max;
    if let Some(hint) = header.size_hint.filter(|h| *h > max) {
        return Err(too_large(hint, max));
    }
    let started = tokio::time::Instant::now();
    let target = api
        .target(
            &header.tenant,
            &header.container,
            Some(&header.key),
            Access::Write,
        )
        .await?;
    // The tenant's quotas, against what its group holds now (concurrent uploads
    // can each pass this check: the overshoot is bounded by what is in flight).
    let limits = api.node.settings.limits;
    let reader = api.node.objects(target.group.id());
    let usage = reader.usage(&header.tenant).map_err(NodeError::from)?;
    // The version this put replaces frees its count and its bytes, which matters
    // only near a quota: looked up only then (a read per put otherwise; the state
    // machine checks the conditions against the current version itself).
    let near_quota = usage.objects >= limits.tenant_objects_max
        || limits.tenant_bytes_max.saturating_sub(usage.bytes) < max;
    let existing = if near_quota {
        reader.head(&target.id).map_err(NodeError::from)?
    } else {
        None
    };
    if existing.is_none() && usage.objects >= limits.tenant_objects_max {
        return Err(NodeError::ResourceExhausted {
            code: "tenant-objects-quota",
            message: format!(
                "tenant {:?} holds {} objects, its quota (tenant_objects_max) is {}: delete objects first; nothing was stored",
                header.tenant, usage.objects, limits.tenant_objects_max
            ),
        });
    }
    let quota_room = limits
        .tenant_bytes_max
        .saturating_sub(usage.bytes)
        .saturating_add(existing.as_ref().map_or(0, |m| m.size));
    if header.size_hint.is_some_and(|h| h > quota_room) {
        return Err(over_bytes_quota(&header.tenant, limits.tenant_bytes_max));
    }
    let now_ms = api.node.clock.now_ms();
    let customer = customer_key(header.encryption_key.as_deref())?;
    let version = api.node.rng.next_u128();
    let key = api
        .node
        .keys
        .seal_new(&api.node.rng, &target.id, version, customer.as_ref())?;
    drop(customer);
    let mut upload = Upload {
        api,
        group: target.group,
        tenant: target.tenant.clone(),
        object_id: target.id.clone(),
        version,
        key,
        // Sized for what is coming: most objects are small, and a 256 KiB buffer per
        // put was a visible allocation cost under load. It grows as needed.
        buffer: BytesMut::with_capacity(
            header
                .size_hint
                .map_or(BUFFER_BYTES_INITIAL, |h| h as usize)
                .clamp(BUFFER_BYTES_INITIAL, STORAGE_CHUNK_BYTES),
        ),
        size: 0,
        crc: crc32fast::Hasher::new(),
        fanout: None,
        chunk_crcs: Vec::new(),
        propose_us: 0,
        quota_room,
        quota_max: limits.tenant_bytes_max,
    };
    let conditions = Conditions {
        if_match: header.if_match,
        if_none_match: header.if_none_match,
    };
    let result = receive_and_commit(
        &mut upload,
        &mut stream,
        header.content_type,
        metadata,
        conditions,
        now_ms,
        max,
    )
    .await;
    match result {
        Ok(meta) => {
            tracing::debug!(object = %target.id, size = meta.size, total_us = started.elapsed().as_micros() as u64, propose_us = upload.propose_us, "put stored");
            Ok(super::convert::object_info(&target.id, &meta))
        }
        Err(e) => {
            if let Some(fanout) = upload.fanout.as_mut() {
                fanout.abandon().await;
            }
            tracing::info!(object = %target.id, error = %e, "put failed");
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
    now_ms: u64,
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
        version: upload.version,
        layout: Layout::Inline,
        content_type,
        metadata,
        created_ms: now_ms,
        modified_ms: now_ms,
        encryption: upload.key.envelope.clone(),
    };
    upload.finish(meta, conditions).await
}
