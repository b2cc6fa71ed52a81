//! The object service: get, head, delete and list here; put in [`super::put`].

use super::convert;
use crate::dataplane::repair;
use crate::directory::TenantRecord;
use crate::error::{NodeError, NodeResult};
use crate::group::GroupHandle;
use crate::keyring::customer_key;
use crate::metrics;
use crate::node::StratusNode;
use crate::objects::reader::ObjectReader;
use crate::objects::{Layout, ObjectCommand, ObjectId, ObjectMeta, ObjectResponse};
use crate::raft::{Command, Response as RaftResponse};
use futures::stream::BoxStream;
use std::sync::Arc;
use stratus_core::auth::{Permissions, Resource};
use stratus_core::crypto::envelope::{sealed_len, ContentCipher};
use stratus_core::crypto::CryptoError;
use stratus_core::limits::{LIST_PAGE_DEFAULT, LIST_PAGE_MAX, STORAGE_CHUNK_BYTES};
use stratus_core::names::{validate_container, validate_key, validate_tenant};
use stratus_proto::v1 as pb;
use stratus_proto::v1::object_service_server::ObjectService;
use tonic::{Request, Response, Status, Streaming};

pub struct ObjectApi {
    pub node: Arc<StratusNode>,
}

/// Validated request target plus the local replica of its group.
pub(crate) struct Target<'a> {
    pub id: ObjectId,
    pub tenant: TenantRecord,
    /// The local replica the request is served from: the tenant's primary group,
    /// or its secondary for a read from the secondary.
    pub group: &'a GroupHandle,
    /// For reads from the secondary: its last sync time.
    pub last_sync_ms: Option<u64>,
}

impl ObjectApi {
    /// Validates names, finds the tenant's group and checks this node may serve it:
    /// as leader (writes, strong reads, with a leadership barrier for reads) or as
    /// any replica (eventual reads).
    pub(crate) async fn target(
        &self,
        tenant: &str,
        container: &str,
        key: Option<&str>,
        access: Access,
    ) -> NodeResult<Target<'_>> {
        validate_tenant(tenant)?;
        validate_container(container)?;
        if let Some(k) = key {
            validate_key(k)?;
        }
        let record = self.node.tenant(tenant).await?;
        // Revoked, deleted or purged keys refuse every data request on every node,
        // before any routing.
        self.node.keys.check_usable(tenant)?;
        let (group, last_sync_ms) = if access == Access::SecondaryRead {
            let (group, as_of) = self.secondary_of(&record)?;
            (group, Some(as_of))
        } else {
            (self.node.replica_of(&record)?, None)
        };
        match access {
            Access::Write => {
                group.require_leader()?;
                crate::geo::lease::check_writable(&self.node, group.id(), &record)?;
            }
            Access::StrongRead => {
                group.require_leader()?;
                group.linearizable_barrier().await?;
            }
            Access::EventualRead | Access::SecondaryRead => {}
        }
        let objects = self.node.objects(group.id());
        let mut exists = objects.container(tenant, container)?.is_some();
        if !exists && access == Access::Write {
            // A new leader may not have applied everything committed yet: catch up
            // before refusing. (The commit checks again; this only fails early.)
            group.linearizable_barrier().await?;
            exists = objects.container(tenant, container)?.is_some();
        }
        if !exists {
            return Err(NodeError::ContainerNotFound {
                tenant: tenant.into(),
                container: container.into(),
            });
        }
        let id = ObjectId {
            tenant: tenant.into(),
            container: container.into(),
            key: key.unwrap_or_default().into(),
        };
        Ok(Target {
            id,
            tenant: record,
            group,
            last_sync_ms,
        })
    }

    /// The local replica of the tenant's secondary, for a read from it, and the
    /// secondary's last sync time; or why such a read is refused here.
    fn secondary_of(&self, record: &TenantRecord) -> NodeResult<(&GroupHandle, u64)> {
        let t = &record.name;
        let Some(secondary) = &record.secondary else {
            return Err(NodeError::FailedPrecondition {
                code: "no-secondary",
                message: format!(
                    "tenant {t:?} is {} and has no secondary copy to read from",
                    record.redundancy
                ),
            });
        };
        if !record.redundancy.read_access() {
            return Err(NodeError::FailedPrecondition {
                code: "secondary-read-not-allowed",
                message: format!(
                    "tenant {t:?} is {}: its secondary copy can be read only with read access ({}); convert it with `stratus tenant update {t} --redundancy {}`",
                    record.redundancy,
                    stratus_core::Redundancy::compose(record.redundancy.local(), true, true),
                    stratus_core::Redundancy::compose(record.redundancy.local(), true, true).as_str()
                ),
            });
        }
        let Some(group) = self.node.groups.get(&secondary.group) else {
            let member = self
                .node
                .spec(secondary.group)
                .and_then(|s| s.voters.first().copied());
            return Err(NodeError::NotLeader {
                me: self.node.id,
                group: secondary.group,
                leader_id: member,
                leader_addr: member.and_then(|m| self.node.peers.addr(m)),
            });
        };
        match self.node.geo.roles(secondary.group).get(t) {
            crate::objects::geo::TenantRole::Secondary {
                as_of_ms,
                seeded: true,
                ..
            } => Ok((group, as_of_ms)),
            other => Err(NodeError::UnavailableFor {
                code: "secondary-not-ready",
                message: format!(
                    "the secondary copy of tenant {t:?} in {} is not readable yet (it is {} here{}); retry shortly",
                    secondary.region,
                    other.name(),
                    if secondary.seeded { "" } else { ", bootstrapping" }
                ),
            }),
        }
    }

    fn head_local(&self, t: &Target<'_>) -> NodeResult<ObjectMeta> {
        self.node
            .objects(t.group.id())
            .head(&t.id)?
            .ok_or_else(|| NodeError::ObjectNotFound {
                tenant: t.id.tenant.clone(),
                container: t.id.container.clone(),
                key: t.id.key.clone(),
            })
    }
}

/// What a request needs from the local replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Write,
    StrongRead,
    EventualRead,
    /// Any replica of the tenant's secondary group (RA classes).
    SecondaryRead,
}

pub(crate) fn read_access(consistency: i32) -> Access {
    match pb::Consistency::try_from(consistency) {
        Ok(pb::Consistency::Eventual) => Access::EventualRead,
        Ok(pb::Consistency::Secondary) => Access::SecondaryRead,
        _ => Access::StrongRead,
    }
}

/// The byte range `[start, end)` a get asks for, checked against the object size.
fn byte_range(size: u64, offset: Option<u64>, length: Option<u64>) -> NodeResult<(u64, u64)> {
    let start = offset.unwrap_or(0);
    if start > size || (start == size && size > 0 && offset.is_some()) {
        return Err(NodeError::OutOfRange(format!(
            "range start {start} is beyond the object's size {size}"
        )));
    }
    let end = match length {
        Some(len) => start.saturating_add(len).min(size),
        None => size,
    };
    Ok((start, end))
}

/// Streams the bytes `[start, end)` of one version: inline bytes in one message,
/// chunked versions chunk by chunk, each checked against its committed CRC and
/// repaired from a peer when the local copy is missing or damaged.
fn content_stream(
    node: Arc<StratusNode>,
    reader: ObjectReader,
    id: ObjectId,
    meta: ObjectMeta,
    cipher: Arc<ContentCipher>,
    start: u64,
    end: u64,
) -> BoxStream<'static, Result<pb::GetResponse, Status>> {
    let group = reader.group().to_string();
    let undecryptable = {
        let (node, group) = (node.clone(), group.clone());
        move |id: &ObjectId, e: CryptoError| {
            node.metrics
                .inc(metrics::DECRYPT_FAILURES, &[("group", group.as_str())]);
            tracing::error!(object = %id, error = %e, "stored ciphertext failed authentication");
            Status::from(NodeError::DataLoss(format!("object {id}: {e}")))
        }
    };
    let chunk_message = |data: &[u8]| {
        let slice = bytes::Bytes::copy_from_slice(data);
        pb::GetResponse {
            part: Some(pb::get_response::Part::Chunk(pb::GetChunk {
                crc32: crc32fast::hash(&slice),
                data: slice,
            })),
        }
    };
    let changed = move |id: &ObjectId| {
        Status::from(NodeError::Aborted(format!(
            "object {id} changed while it was being read; retry"
        )))
    };
    match meta.layout {
        Layout::Inline => {
            let message = match reader.inline(meta.version) {
                Ok(Some(data)) if data.len() == sealed_len(meta.size as usize) => {
                    match cipher.open(0, true, &data) {
                        Ok(plain) => Ok(chunk_message(&plain[start as usize..end as usize])),
                        Err(e) => Err(undecryptable(&id, e)),
                    }
                }
                Ok(Some(data)) => Err(NodeError::DataLoss(format!(
                    "object {id} holds {} bytes inline, its metadata says {}",
                    data.len(),
                    meta.size
                ))
                .into()),
                Ok(None) => Err(changed(&id)),
                Err(e) => {
                    node.metrics
                        .inc(metrics::INLINE_CORRUPT, &[("group", group.as_str())]);
                    tracing::error!(object = %id, error = %e, "damaged inline object record");
                    Err(NodeError::DataLoss(format!(
                        "object {id}: its stored record on node {} is damaged ({e})",
                        node.id
                    ))
                    .into())
                }
            };
            Box::pin(futures::stream::iter((start < end).then_some(message)))
        }
        Layout::Chunked { chunks } => {
            let chunk = STORAGE_CHUNK_BYTES as u64;
            let first = (start / chunk) as u32;
            let last = if end == 0 {
                0
            } else {
                ((end - 1) / chunk) as u32 + 1
            };
            let crcs = match reader.chunk_list(meta.version) {
                Ok(Some(crcs)) if crcs.len() == chunks as usize => crcs,
                Ok(_) => return Box::pin(futures::stream::once(async move { Err(changed(&id)) })),
                Err(e) => {
                    return Box::pin(futures::stream::once(async move {
                        Err(Status::from(NodeError::from(e)))
                    }))
                }
            };
            let stream = futures::stream::iter(first..last.max(first)).then(move |index| {
                let (node, reader, id, crcs, cipher) = (node.clone(), reader.clone(), id.clone(), crcs.clone(), cipher.clone());
                let undecryptable = undecryptable.clone();
                async move {
                    // A revoke reaches a read already streaming at its next chunk.
                    node.keys.check_usable(&id.tenant)?;
                    let data = repair::read_chunk(&node, &reader, meta.version, index, crcs[index as usize]).await.map_err(|e| match e {
                        NodeError::DataLoss(why) => {
                            tracing::error!(object = %id, chunk = index, why, "no intact copy of a chunk");
                            Status::from(NodeError::DataLoss(format!("chunk {index} of {id}: {why}")))
                        }
                        other => Status::from(other),
                    })?;
                    let data = cipher.open(index, index + 1 == chunks, &data).map_err(|e| undecryptable(&id, e))?;
                    let base = u64::from(index) * chunk;
                    let from = start.saturating_sub(base).min(data.len() as u64) as usize;
                    let to = (end - base).min(data.len() as u64) as usize;
                    Ok(chunk_message(&data[from..to]))
                }
            });
            Box::pin(stream)
        }
    }
}

use futures::StreamExt;

#[tonic::async_trait]
impl ObjectService for ObjectApi {
    async fn put_object(
        &self,
        request: Request<Streaming<pb::PutRequest>>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let (md, extensions, stream) = request.into_parts();
        let slot = extensions.get::<crate::audit::AuditSlot>();
        let info = super::put::put(self, &md, slot, stream).await?;
        Ok(Response::new(pb::PutResponse { object: Some(info) }))
    }

    type GetObjectStream = BoxStream<'static, Result<pb::GetResponse, Status>>;

    async fn get_object(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<Self::GetObjectStream>, Status> {
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::READ,
                Resource::Object(&r.tenant, &r.container, &r.key),
            )
            .await?;
        let r = request.into_inner();
        let t = self
            .target(
                &r.tenant,
                &r.container,
                Some(&r.key),
                read_access(r.consistency),
            )
            .await?;
        let meta = self.head_local(&t)?;
        let customer = customer_key(r.encryption_key.as_deref())?;
        let cipher =
            self.node
                .keys
                .open(&t.id, meta.version, &meta.encryption, customer.as_ref())?;
        drop(customer);
        let (start, end) = byte_range(meta.size, r.offset, r.length)?;
        let mut info = convert::object_info(&t.id, &meta);
        info.last_sync_ms = t.last_sync_ms;
        let info = pb::GetResponse {
            part: Some(pb::get_response::Part::Info(info)),
        };
        let chunks = content_stream(
            self.node.clone(),
            self.node.objects(t.group.id()),
            t.id.clone(),
            meta,
            Arc::new(cipher),
            start,
            end,
        );
        Ok(Response::new(Box::pin(
            futures::stream::once(async move { Ok(info) }).chain(chunks),
        )))
    }

    async fn head_object(
        &self,
        request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::ObjectInfo>, Status> {
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::READ,
                Resource::Object(&r.tenant, &r.container, &r.key),
            )
            .await?;
        let r = request.into_inner();
        let t = self
            .target(
                &r.tenant,
                &r.container,
                Some(&r.key),
                read_access(r.consistency),
            )
            .await?;
        let meta = self.head_local(&t)?;
        let mut info = convert::object_info(&t.id, &meta);
        info.last_sync_ms = t.last_sync_ms;
        Ok(Response::new(info))
    }

    async fn delete_object(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::DELETE,
                Resource::Object(&r.tenant, &r.container, &r.key),
            )
            .await?;
        let r = request.into_inner();
        let t = self
            .target(&r.tenant, &r.container, Some(&r.key), Access::Write)
            .await?;
        let command = Command::Object(ObjectCommand::Delete {
            object: t.id.clone(),
            if_match: r.if_match,
        });
        match self.node.propose_write(t.group, &t.tenant, command).await? {
            RaftResponse::Object(ObjectResponse::Deleted { version }) => {
                Ok(Response::new(pb::DeleteResponse {
                    version_id: format!("{version:032x}"),
                }))
            }
            RaftResponse::Object(ObjectResponse::ContainerNotFound) => {
                Err(NodeError::ContainerNotFound {
                    tenant: r.tenant,
                    container: r.container,
                }
                .into())
            }
            RaftResponse::Object(ObjectResponse::NotFound) => Err(NodeError::ObjectNotFound {
                tenant: r.tenant,
                container: r.container,
                key: r.key,
            }
            .into()),
            RaftResponse::Object(ObjectResponse::PreconditionFailed(why)) => {
                Err(NodeError::FailedPrecondition {
                    code: "condition-not-met",
                    message: why,
                }
                .into())
            }
            other => {
                Err(NodeError::Internal(format!("unexpected delete outcome {other:?}")).into())
            }
        }
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = request.get_ref();
        self.node
            .allow(
                &request,
                Permissions::LIST,
                Resource::Listing(&r.tenant, &r.container, &r.prefix),
            )
            .await?;
        let r = request.into_inner();
        let t = self
            .target(&r.tenant, &r.container, None, read_access(r.consistency))
            .await?;
        let page = match r.page_size {
            0 => LIST_PAGE_DEFAULT,
            n if n > LIST_PAGE_MAX => {
                return Err(NodeError::InvalidArgument(format!(
                    "page size {n} is over the maximum of {LIST_PAGE_MAX}"
                ))
                .into())
            }
            n => n,
        } as usize;
        let after = if r.continuation_token.is_empty() {
            None
        } else {
            let raw = hex::decode(&r.continuation_token).map_err(|_| NodeError::InvalidArgument("continuation token is malformed: pass the token from the previous page unchanged".into()))?;
            Some(String::from_utf8(raw).map_err(|_| {
                NodeError::InvalidArgument("continuation token is malformed".into())
            })?)
        };
        let mut rows = self
            .node
            .objects(t.group.id())
            .list(
                &r.tenant,
                &r.container,
                &r.prefix,
                after.as_deref(),
                page + 1,
            )
            .map_err(NodeError::from)?;
        let next = if rows.len() > page {
            rows.truncate(page);
            rows.last().map(|(k, _)| hex::encode(k)).unwrap_or_default()
        } else {
            String::new()
        };
        let objects = rows
            .iter()
            .map(|(key, meta)| {
                let mut info = convert::object_info(
                    &ObjectId {
                        tenant: r.tenant.clone(),
                        container: r.container.clone(),
                        key: key.clone(),
                    },
                    meta,
                );
                info.last_sync_ms = t.last_sync_ms;
                info
            })
            .collect();
        Ok(Response::new(pb::ListResponse {
            objects,
            next_continuation_token: next,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range(10, None, None).unwrap(), (0, 10));
        assert_eq!(byte_range(10, Some(3), Some(4)).unwrap(), (3, 7));
        assert_eq!(byte_range(10, Some(3), Some(400)).unwrap(), (3, 10));
        assert_eq!(byte_range(0, None, None).unwrap(), (0, 0));
        assert!(byte_range(10, Some(10), None).is_err());
        assert!(byte_range(10, Some(11), Some(1)).is_err());
    }
}
