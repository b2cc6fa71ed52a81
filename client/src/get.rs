//! Streaming download with verification.
//!
//! Every `GetChunk` carries the CRC-32 of its data and is checked on arrival. A
//! whole-object read also checks the CRC-32 of everything received against the
//! object's `crc32` at the end, and every read checks it received exactly the
//! expected number of bytes; a mismatch is [`Error::Integrity`]. Chunks are handed
//! out as they arrive (nothing is buffered), so a consumer writing to a final
//! destination must treat an error at the end as "discard what you wrote" (the CLI
//! writes to a temporary file and renames it only on success).
//!
//! A transfer interrupted by a transient failure resumes from the last verified
//! byte (a ranged request to the current leader), provided the object's version did
//! not change in between.

use crate::client::Client;
use crate::convert::consistency_to_pb;
use crate::error::Error;
use crate::model::{Consistency, ObjectInfo};
use crate::objects::validate_object_path;
use crate::retry::{is_transient, with_timeout, Failure, RetryClass};
use crate::routing::Route;
use crate::{Progress, ProgressFn};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use std::fmt;
use stratus_proto::v1 as pb;
use stratus_proto::v1::get_response::Part;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tonic::codec::Streaming;

/// Largest buffer `get_bytes` reserves up front (it grows past this if needed).
const GET_BYTES_PREALLOC_MAX: usize = 64 * 1024 * 1024;

/// Resumptions of one download after transient failures, at most.
const RESUMES_MAX: u32 = 8;

/// Options of a get.
#[derive(Clone, Default)]
pub struct GetOptions {
    /// `(offset, length)`: bytes `[offset, offset + length)`, or to the end when
    /// `length` is `None`. `None` reads the whole object (and checks its CRC).
    pub range: Option<(u64, Option<u64>)>,
    pub consistency: Consistency,
    /// Called after every chunk received.
    pub progress: Option<ProgressFn>,
    /// The customer-provided key the object was written with, if any.
    pub encryption_key: Option<crate::EncryptionKey>,
}

impl fmt::Debug for GetOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetOptions")
            .field("range", &self.range)
            .field("consistency", &self.consistency)
            .field("progress", &self.progress.is_some())
            .field("encryption_key", &self.encryption_key)
            .finish()
    }
}

/// Where an open download reads from.
struct Open {
    info: ObjectInfo,
    stream: Streaming<pb::GetResponse>,
    addr: String,
}

/// An object being downloaded: its metadata, then its content chunk by chunk.
pub struct ObjectStream {
    client: Client,
    request: pb::GetRequest,
    info: ObjectInfo,
    stream: Streaming<pb::GetResponse>,
    addr: String,
    /// First byte requested.
    start: u64,
    /// Bytes this read must deliver.
    expected: u64,
    delivered: u64,
    /// CRC of everything delivered, for whole-object reads.
    whole: Option<crc32fast::Hasher>,
    progress: Option<ProgressFn>,
    resumes: u32,
    done: bool,
}

impl fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStream")
            .field("info", &self.info)
            .field("addr", &self.addr)
            .field("delivered", &self.delivered)
            .field("expected", &self.expected)
            .finish()
    }
}

fn integrity(what: impl Into<String>, expected: String, actual: String) -> Error {
    Error::Integrity {
        what: what.into(),
        expected,
        actual,
    }
}

fn malformed(message: &str) -> Error {
    Error::Other {
        grpc_code: tonic::Code::Internal,
        message: format!("malformed download stream: {message}"),
        code: None,
    }
}

impl ObjectStream {
    /// The object's metadata (of the whole object, also for ranged reads).
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// Bytes this read will deliver.
    pub fn expected_len(&self) -> u64 {
        self.expected
    }

    /// The next verified chunk; `Ok(None)` once everything arrived and verified.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        while !self.done {
            let idle = self.client.config().stream_idle_timeout;
            let (stream, addr) = (&mut self.stream, &self.addr);
            let msg = with_timeout(idle, addr, async {
                stream
                    .message()
                    .await
                    .map_err(|s| Error::from_status(&s, addr))
            })
            .await;
            match msg {
                Ok(Some(pb::GetResponse {
                    part: Some(Part::Chunk(c)),
                })) => {
                    if let Some(data) = self.accept(c)? {
                        return Ok(Some(data));
                    }
                }
                Ok(Some(_)) => return Err(malformed("expected a chunk")),
                Ok(None) => self.finish()?,
                Err(e) if is_transient(&e) && self.resumes < RESUMES_MAX => self.resume(e).await?,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Verifies one chunk; `None` for an empty one.
    fn accept(&mut self, c: pb::GetChunk) -> Result<Option<Bytes>, Error> {
        let offset = self.start + self.delivered;
        let actual = crc32fast::hash(&c.data);
        if actual != c.crc32 {
            return Err(integrity(
                format!("chunk at offset {offset} from {}", self.addr),
                format!("CRC-32 {:08x}", c.crc32),
                format!("{actual:08x}"),
            ));
        }
        let len = c.data.len() as u64;
        if self.delivered + len > self.expected {
            return Err(integrity(
                "download length",
                format!("{} bytes", self.expected),
                format!("more ({} bytes)", self.delivered + len),
            ));
        }
        if c.data.is_empty() {
            return Ok(None);
        }
        self.delivered += len;
        if let Some(h) = &mut self.whole {
            h.update(&c.data);
        }
        if let Some(p) = &self.progress {
            p(Progress {
                done: self.delivered,
                total: Some(self.expected),
            });
        }
        Ok(Some(c.data))
    }

    /// End of stream: checks the length and, for whole objects, the CRC.
    fn finish(&mut self) -> Result<(), Error> {
        self.done = true;
        if self.delivered != self.expected {
            return Err(integrity(
                "download length",
                format!("{} bytes", self.expected),
                format!("{} bytes (the stream ended early)", self.delivered),
            ));
        }
        if let Some(h) = self.whole.take() {
            let actual = h.finalize();
            if actual != self.info.crc32 {
                return Err(integrity(
                    format!("object {}", self.info.key),
                    format!("CRC-32 {:08x}", self.info.crc32),
                    format!("{actual:08x}"),
                ));
            }
        }
        Ok(())
    }

    /// Re-opens the download at the first byte not yet delivered.
    async fn resume(&mut self, cause: Error) -> Result<(), Error> {
        self.resumes += 1;
        tracing::debug!(error = %cause, delivered = self.delivered, "resuming download");
        let mut req = self.request.clone();
        req.offset = Some(self.start + self.delivered);
        req.length = Some(self.expected - self.delivered);
        let open = self.client.open_get(&req).await?;
        if open.info.version_id != self.info.version_id || open.info.etag != self.info.etag {
            return Err(Error::FailedPrecondition {
                message: format!(
                    "object {} changed during the download (version {} → {}); download it again",
                    self.info.key, self.info.version_id, open.info.version_id
                ),
                code: None,
            });
        }
        self.stream = open.stream;
        self.addr = open.addr;
        Ok(())
    }

    /// The content as a `Stream` of verified chunks.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut s = state?;
            match s.next_chunk().await {
                Ok(Some(b)) => Some((Ok(b), Some(s))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

impl Client {
    /// Sends a `GetObject` to the tenant's leader and reads the leading `ObjectInfo`.
    async fn open_get(&self, req: &pb::GetRequest) -> Result<Open, Error> {
        let timeout = self.config().request_timeout;
        // The route follows the consistency: a read from the secondary goes to the
        // secondary group's members (it used to be routed as a strong read, to the
        // primary, which is down exactly when the secondary matters most).
        let consistency = [Consistency::Eventual, Consistency::Secondary]
            .into_iter()
            .find(|c| req.consistency == consistency_to_pb(*c))
            .unwrap_or(Consistency::Strong);
        self.routed(
            Route::read(&req.tenant, consistency),
            "get",
            |addr, remaining| {
                let grpc = self.inner.channels.objects(&addr);
                let req = req.clone();
                async move {
                    let mut grpc = grpc.map_err(Failure::Fatal)?;
                    let attempt = async {
                        let status = |s: tonic::Status| Error::from_status(&s, &addr);
                        let mut stream = grpc.get_object(req).await.map_err(status)?.into_inner();
                        match stream.message().await.map_err(status)? {
                            Some(pb::GetResponse {
                                part: Some(Part::Info(info)),
                            }) => Ok((info, stream)),
                            _ => Err(malformed("the first message is not the object info")),
                        }
                    };
                    let (info, stream) = with_timeout(timeout.min(remaining), &addr, attempt)
                        .await
                        .map_err(|e| Failure::classify(e, RetryClass::Read))?;
                    Ok(Open {
                        info: info.into(),
                        stream,
                        addr,
                    })
                }
            },
        )
        .await
    }

    /// Starts downloading an object; read it with [`ObjectStream::next_chunk`].
    pub async fn get(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        opts: GetOptions,
    ) -> Result<ObjectStream, Error> {
        validate_object_path(tenant, container, key)?;
        let (offset, length) = opts.range.unwrap_or((0, None));
        let request = pb::GetRequest {
            tenant: tenant.to_owned(),
            container: container.to_owned(),
            key: key.to_owned(),
            offset: opts.range.map(|_| offset),
            length,
            consistency: consistency_to_pb(opts.consistency),
            encryption_key: opts
                .encryption_key
                .as_ref()
                .map(crate::EncryptionKey::to_wire),
        };
        let open = self.open_get(&request).await?;
        let available = open.info.size.saturating_sub(offset);
        let whole = offset == 0 && length.is_none_or(|l| l >= open.info.size);
        Ok(ObjectStream {
            client: self.clone(),
            request,
            expected: length.map_or(available, |l| l.min(available)),
            info: open.info,
            stream: open.stream,
            addr: open.addr,
            start: offset,
            delivered: 0,
            whole: whole.then(crc32fast::Hasher::new),
            progress: opts.progress,
            resumes: 0,
            done: false,
        })
    }

    /// Downloads an object into `writer`; returns its metadata once every byte is
    /// written and verified. On error, `writer` may hold a partial or unverified
    /// prefix that the caller must discard.
    pub async fn get_to_writer<W: AsyncWrite + Unpin>(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        opts: GetOptions,
        writer: &mut W,
    ) -> Result<ObjectInfo, Error> {
        let mut s = self.get(tenant, container, key, opts).await?;
        while let Some(chunk) = s.next_chunk().await? {
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Error::io("cannot write the downloaded data", e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::io("cannot write the downloaded data", e))?;
        Ok(s.info)
    }

    /// Downloads an object into memory.
    pub async fn get_bytes(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Bytes), Error> {
        let mut s = self.get(tenant, container, key, opts).await?;
        // A single chunk (small objects) is returned as is, without a copy.
        let Some(first) = s.next_chunk().await? else {
            return Ok((s.info, Bytes::new()));
        };
        let Some(second) = s.next_chunk().await? else {
            return Ok((s.info, first));
        };
        let capacity = usize::try_from(s.expected_len()).unwrap_or(usize::MAX);
        let mut buf = BytesMut::with_capacity(capacity.min(GET_BYTES_PREALLOC_MAX));
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        while let Some(chunk) = s.next_chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        let data = buf.freeze();
        Ok((s.info, data))
    }
}
