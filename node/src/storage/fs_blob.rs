//! The filesystem blob store, for real runs: blob `a/b` is the file `root/a/b`.
//!
//! Owns: the files and directories under its root, a bounded cache of open handles,
//! and the record of what is not yet durable (files written, directories whose entries
//! changed) that [`BlobStore::sync`] flushes with group commit.
//!
//! Must not: touch paths outside the root (every name is validated first), or report a
//! sync as successful while any file or directory it covers failed to flush.
//!
//! A failed flush leaves everything dirty so the next sync retries it. Linux may drop
//! the dirty pages of a file whose writeback failed and then let a retried `fsync`
//! succeed; callers should treat a failed sync as possibly lost data (checksums catch
//! it on read), not as a transient error.

mod dirty;
#[cfg(test)]
mod tests;

use super::blob::{check_len, validate_blob_name, validate_blob_prefix, write_end};
use super::{BlobStore, StorageError};
use dirty::{Dirty, Handle};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Open handles kept for reuse, so sequential chunk writes to one blob do not reopen
/// its file each time. Least recently used goes first. A handle with unsynced writes
/// stays open (in the dirty set) until a sync flushes it, even after eviction.
pub const OPEN_BLOBS_MAX: usize = 64;
/// Reads up to this long allocate what they ask for without asking the file its
/// length first (a stored chunk frame is 256 KiB + 16).
const READ_UNSIZED_BYTES_MAX: usize = 1024 * 1024;

struct Cached {
    handle: Arc<Handle>,
    used: u64,
}

#[derive(Default)]
struct State {
    handles: BTreeMap<String, Cached>,
    tick: u64,
    next_handle_id: u64,
    dirty: Dirty,
}

/// A [`BlobStore`] over a directory tree.
pub struct FsBlobStore {
    root: PathBuf,
    state: Mutex<State>,
    /// Number of the latest flush that succeeded. Held across a flush, so concurrent
    /// syncs queue behind it and then find their work already done.
    flushed: tokio::sync::Mutex<u64>,
    bytes: AtomicU64,
}

fn io_err(what: &str, name: &str, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("cannot {what} blob {name}: {e}"))
}

/// Errors that mean "no blob by this name": missing, a directory, or under a file.
fn absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

impl FsBlobStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let fail = |e: std::io::Error| {
            StorageError::Io(format!("cannot open blob store {}: {e}", root.display()))
        };
        if !root.is_dir() {
            fs::create_dir_all(root).map_err(fail)?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(fail)?;
            }
        }
        let store = Self {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
            flushed: tokio::sync::Mutex::new(0),
            bytes: AtomicU64::new(0),
        };
        let mut total = 0u64;
        for name in store.list("")? {
            total += fs::metadata(store.root.join(&name)).map_or(0, |m| m.len());
        }
        store.bytes.store(total, Ordering::Relaxed);
        Ok(store)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open handle for `name`, opening (and with `create`, creating) the file on a
    /// cache miss. Opening and creating happen under the state lock, so they never race
    /// with `remove` pruning directories.
    fn handle(&self, name: &str, create: bool) -> Result<Option<Arc<Handle>>, StorageError> {
        let mut s = self.state();
        s.tick += 1;
        let tick = s.tick;
        if let Some(cached) = s.handles.get_mut(name) {
            cached.used = tick;
            return Ok(Some(Arc::clone(&cached.handle)));
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.root.join(name))
        {
            Ok(file) => file,
            Err(e) if absent(&e) && create => self.create_file(&mut s, name)?,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(io_err("open", name, e)),
        };
        s.next_handle_id += 1;
        let handle = Arc::new(Handle {
            id: s.next_handle_id,
            file,
        });
        let cached = Cached {
            handle: Arc::clone(&handle),
            used: tick,
        };
        s.handles.insert(name.to_string(), cached);
        if s.handles.len() > OPEN_BLOBS_MAX {
            let oldest = s
                .handles
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                s.handles.remove(&oldest);
            }
        }
        Ok(Some(handle))
    }

    /// Creates the file for `name` and any missing parent directories, marking every
    /// directory that gained an entry dirty.
    fn create_file(&self, s: &mut State, name: &str) -> Result<File, StorageError> {
        let mut dir = self.root.clone();
        let mut segments: Vec<&str> = name.split('/').collect();
        let file_name = segments.pop().unwrap_or(name);
        for segment in segments {
            let parent = dir.clone();
            dir.push(segment);
            match fs::create_dir(&dir) {
                Ok(()) => s.dirty.mark_dir(&parent),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create a directory for", name, e)),
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(file_name))
            .map_err(|e| io_err("create", name, e))?;
        s.dirty.mark_dir(&dir);
        Ok(file)
    }

    fn existing_or_created(&self, name: &str) -> Result<Arc<Handle>, StorageError> {
        self.handle(name, true)?
            .ok_or_else(|| StorageError::Io(format!("blob {name} vanished while created")))
    }

    fn resized(&self, old: u64, new: u64) {
        if new >= old {
            self.bytes.fetch_add(new - old, Ordering::Relaxed);
        } else {
            let shrink = |b: u64| Some(b.saturating_sub(old - new));
            // The closure never returns None, so the update cannot fail.
            let _ = self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, shrink);
        }
    }

    /// Removes the now possibly empty directories above a removed blob, up to the root,
    /// and marks the deepest surviving one dirty. Best effort: a directory that cannot
    /// be removed (not empty, or any error) just stays.
    fn prune(&self, s: &mut State, removed: &Path) {
        let mut dir = removed.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(&d).is_err() {
                s.dirty.mark_dir(&d);
                return;
            }
            s.dirty.forget_dir(&d);
            dir = d.parent().map(Path::to_path_buf);
        }
    }

    fn walk(&self, rel: &str, prefix: &str, out: &mut Vec<String>) -> Result<(), StorageError> {
        let entries = match fs::read_dir(self.root.join(rel)) {
            Ok(entries) => entries,
            Err(e) if absent(&e) => return Ok(()),
            Err(e) => return Err(io_err("list", prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", prefix, e))?;
            let Some(segment) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8, so not a blob name
            };
            let name = format!("{rel}{segment}");
            let kind = entry.file_type().map_err(|e| io_err("list", &name, e))?;
            if kind.is_dir() {
                let sub = format!("{name}/");
                if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    self.walk(&sub, prefix, out)?;
                }
            } else if kind.is_file()
                && name.starts_with(prefix)
                && validate_blob_name(&name).is_ok()
            {
                out.push(name);
            }
        }
        Ok(())
    }
}

impl BlobStore for FsBlobStore {
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        let end = write_end(name, offset, data.len())?;
        let handle = self.existing_or_created(name)?;
        let old = handle
            .file
            .metadata()
            .map_err(|e| io_err("stat", name, e))?
            .len();
        handle
            .file
            .write_all_at(data, offset)
            .map_err(|e| io_err("write", name, e))?;
        // Marked after the write: a flush that snapshots this mark syncs the bytes.
        self.state().dirty.mark_file(name, &handle);
        if !data.is_empty() {
            self.resized(old, old.max(end));
        }
        Ok(())
    }

    fn read_at(
        &self,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        validate_blob_name(name)?;
        let Some(handle) = self.handle(name, false)? else {
            return Ok(None);
        };
        // A huge `len` (a damaged length field, say) is sized by what the file holds,
        // so it allocates nothing extra. Small reads (chunks, inline objects) skip
        // the stat: a short read tells the end of the file just as well, and the
        // extra syscall was visible per 4 KiB GET.
        let want = if len <= READ_UNSIZED_BYTES_MAX {
            len
        } else {
            let size = handle
                .file
                .metadata()
                .map_err(|e| io_err("stat", name, e))?
                .len();
            size.saturating_sub(offset).min(len as u64) as usize
        };
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match handle.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break, // cut by a concurrent set_len
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("read", name, e)),
            }
        }
        buf.truncate(got);
        Ok(Some(buf))
    }

    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        validate_blob_name(name)?;
        match fs::metadata(self.root.join(name)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(io_err("stat", name, e)),
        }
    }

    fn set_len(&self, name: &str, len: u64) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        check_len(name, len)?;
        let handle = self.existing_or_created(name)?;
        let old = handle
            .file
            .metadata()
            .map_err(|e| io_err("stat", name, e))?
            .len();
        handle
            .file
            .set_len(len)
            .map_err(|e| io_err("resize", name, e))?;
        self.state().dirty.mark_file(name, &handle);
        self.resized(old, len);
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), StorageError> {
        validate_blob_name(name)?;
        let path = self.root.join(name);
        let mut s = self.state();
        let size = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(()), // a directory of other blobs, not a blob
            Err(e) if absent(&e) => return Ok(()),
            Err(e) => return Err(io_err("stat", name, e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if absent(&e) => return Ok(()),
            Err(e) => return Err(io_err("remove", name, e)),
        }
        // Only once the file is gone: its unsynced writes no longer need a flush, and a
        // later write must create a new file, not reach the unlinked one.
        s.handles.remove(name);
        s.dirty.forget_file(name);
        self.prune(&mut s, &path);
        drop(s);
        self.resized(size, 0);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        validate_blob_prefix(prefix)?;
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let mut out = Vec::new();
        self.walk(dir, prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn modified_ms(&self, name: &str) -> Result<Option<u64>, StorageError> {
        validate_blob_name(name)?;
        let meta = match fs::metadata(self.root.join(name)) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(io_err("stat", name, e)),
        };
        let modified = meta.modified().map_err(|e| io_err("stat", name, e))?;
        let since_epoch = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Some(since_epoch.as_millis() as u64))
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        // Read at the call, not at the first poll: flushes numbered above this one
        // started after the call began.
        let ticket = self.state().dirty.flushes_started();
        Box::pin(async move {
            let mut flushed = self.flushed.lock().await;
            if *flushed > ticket {
                return Ok(()); // a flush that started after our call already succeeded
            }
            let mut flush = self.state().dirty.begin_flush();
            if !flush.is_empty() {
                // The fsyncs run on tokio's blocking pool: this adapter is the real-IO
                // side of the seam (like sled's own flusher threads), and an fsync can
                // take tens of milliseconds that must not stall the runtime's workers.
                let (ran, result) = tokio::task::spawn_blocking(move || {
                    let result = flush.run();
                    (flush, result)
                })
                .await
                .map_err(|e| StorageError::Io(format!("blob flush task failed: {e}")))?;
                result?;
                flush = ran;
            }
            self.state().dirty.finish_flush(&flush);
            *flushed = flush.number;
            Ok(())
        })
    }

    fn size_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
