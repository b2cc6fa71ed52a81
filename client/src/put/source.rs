//! Where the bytes of a put come from, and how a source is re-read for a retry.
//!
//! Files and in-memory bytes are simply read again from the start. A one-shot
//! reader keeps what it has read in a replay buffer (at most [`REPLAY_BYTES_MAX`]);
//! a later attempt first re-sends the buffer, then continues reading.

use crate::error::Error;
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::path::PathBuf;
use stratus_core::limits::STORAGE_CHUNK_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of object data in one `PutChunk`.
pub const PUT_CHUNK_BYTES: usize = STORAGE_CHUNK_BYTES;

/// How much of a one-shot source is kept to replay it after a rejected attempt.
pub const REPLAY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Where the bytes of a put come from.
pub enum PutSource {
    /// A file, re-opened (and so re-readable) on every attempt.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
    /// A one-shot stream such as stdin; see the module docs for its retry rules.
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

impl PutSource {
    /// A one-shot stream.
    pub fn reader(r: impl AsyncRead + Send + Unpin + 'static) -> PutSource {
        PutSource::Reader(Box::new(r))
    }
}

impl fmt::Debug for PutSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutSource::File(p) => write!(f, "File({})", p.display()),
            PutSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            PutSource::Reader(_) => f.write_str("Reader"),
        }
    }
}

/// A one-shot reader and what has been read from it so far.
pub(crate) struct StreamUpload {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    replay: Vec<Bytes>,
    replay_bytes: usize,
    /// More was read than the replay buffer holds: the source cannot be re-sent.
    overflowed: bool,
    eof: bool,
}

impl StreamUpload {
    fn remember(&mut self, chunk: &Bytes) {
        if self.overflowed {
            return;
        }
        self.replay_bytes += chunk.len();
        if self.replay_bytes > REPLAY_BYTES_MAX {
            self.overflowed = true;
            self.replay = Vec::new();
        } else {
            self.replay.push(chunk.clone());
        }
    }
}

/// The source as it moves from attempt to attempt.
pub(crate) enum Upload {
    File(PathBuf),
    Bytes(Bytes),
    Stream(StreamUpload),
}

impl Upload {
    pub(crate) fn replayable(&self) -> bool {
        match self {
            Upload::File(_) | Upload::Bytes(_) => true,
            Upload::Stream(s) => !s.overflowed,
        }
    }
}

impl From<PutSource> for Upload {
    fn from(s: PutSource) -> Self {
        match s {
            PutSource::File(p) => Upload::File(p),
            PutSource::Bytes(b) => Upload::Bytes(b),
            PutSource::Reader(reader) => Upload::Stream(StreamUpload {
                reader,
                replay: Vec::new(),
                replay_bytes: 0,
                overflowed: false,
                eof: false,
            }),
        }
    }
}

/// Reads up to one chunk; `None` at the end.
async fn read_chunk<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> std::io::Result<Option<Bytes>> {
    let mut buf = BytesMut::with_capacity(PUT_CHUNK_BYTES);
    while buf.len() < PUT_CHUNK_BYTES {
        if r.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok((!buf.is_empty()).then(|| buf.freeze()))
}

/// One attempt's cursor over an [`Upload`].
pub(crate) enum Feed<'a> {
    File(tokio::fs::File),
    Bytes {
        data: &'a Bytes,
        pos: usize,
    },
    Stream {
        s: &'a mut StreamUpload,
        replayed: usize,
    },
}

impl<'a> Feed<'a> {
    /// Opens the source from its start; also returns its size when known.
    pub(crate) async fn open(upload: &'a mut Upload) -> Result<(Feed<'a>, Option<u64>), Error> {
        match upload {
            Upload::File(path) => {
                let ctx = || format!("cannot read {}", path.display());
                let file = tokio::fs::File::open(&*path)
                    .await
                    .map_err(|e| Error::io(ctx(), e))?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| Error::io(ctx(), e))?
                    .len();
                Ok((Feed::File(file), Some(len)))
            }
            Upload::Bytes(data) => {
                let len = data.len() as u64;
                Ok((Feed::Bytes { data, pos: 0 }, Some(len)))
            }
            Upload::Stream(s) => Ok((Feed::Stream { s, replayed: 0 }, None)),
        }
    }

    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        match self {
            Feed::File(f) => read_chunk(f).await,
            Feed::Bytes { data, pos } => {
                if *pos >= data.len() {
                    return Ok(None);
                }
                let end = (*pos + PUT_CHUNK_BYTES).min(data.len());
                let chunk = data.slice(*pos..end);
                *pos = end;
                Ok(Some(chunk))
            }
            Feed::Stream { s, replayed } => {
                if *replayed < s.replay.len() {
                    *replayed += 1;
                    return Ok(Some(s.replay[*replayed - 1].clone()));
                }
                if s.eof {
                    return Ok(None);
                }
                let chunk = read_chunk(&mut s.reader).await?;
                match &chunk {
                    Some(c) => {
                        s.remember(c);
                        // Already sent in this attempt: not to be replayed again.
                        *replayed = s.replay.len();
                    }
                    None => s.eof = true,
                }
                Ok(chunk)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_shot_source_replays_until_its_buffer_overflows() {
        let data = vec![7u8; PUT_CHUNK_BYTES * 2 + 10];
        let mut upload = Upload::from(PutSource::reader(std::io::Cursor::new(data.clone())));
        let mut first = Vec::new();
        {
            let (mut feed, size) = Feed::open(&mut upload).await.expect("open");
            assert_eq!(size, None);
            // Read one chunk, then "fail" the attempt.
            first.extend_from_slice(&feed.next().await.expect("read").expect("chunk"));
        }
        assert!(upload.replayable());
        let (mut feed, _) = Feed::open(&mut upload).await.expect("open");
        let mut all = Vec::new();
        while let Some(c) = feed.next().await.expect("read") {
            all.extend_from_slice(&c);
        }
        assert_eq!(all.len(), data.len(), "every byte once");
        assert!(
            all == data,
            "the replayed attempt sends every byte in order"
        );

        let big = vec![1u8; REPLAY_BYTES_MAX + PUT_CHUNK_BYTES];
        let mut upload = Upload::from(PutSource::reader(std::io::Cursor::new(big)));
        let (mut feed, _) = Feed::open(&mut upload).await.expect("open");
        while feed.next().await.expect("read").is_some() {}
        assert!(!upload.replayable());
    }
}
