//! What the filesystem blob store has not made durable yet, and the flush that does.
//!
//! Owns: the dirty files (by open handle) and dirty directories, each stamped with the
//! number of its last change, and the flush snapshot. A flush clears only entries whose
//! last change came before its snapshot, and only after it succeeded, so a change that
//! races a flush stays dirty, and a failed flush leaves everything for the next one.
//!
//! Must not: decide when to flush or who waits (the store's `sync` does), or drop an
//! entry whose data no successful flush covered.

use crate::storage::StorageError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open file. `id` tells apart two files that had the same name (one removed, the
/// other created), so a late write through a stale handle cannot stand in for the new
/// file in the dirty set.
pub(super) struct Handle {
    pub(super) id: u64,
    pub(super) file: File,
}

#[derive(Default)]
pub(super) struct Dirty {
    files: BTreeMap<(String, u64), (Arc<Handle>, u64)>,
    dirs: BTreeMap<PathBuf, u64>,
    /// Numbers every change, so a flush clears only what happened before it started.
    changes: u64,
    flushes_started: u64,
}

/// The work of one flush, taken under the store's lock and run outside it.
pub(super) struct Flush {
    pub(super) number: u64,
    upto: u64,
    files: Vec<(String, Arc<Handle>)>,
    dirs: Vec<PathBuf>,
}

impl Dirty {
    /// Records a write through `handle`. Call it after the write: a flush whose
    /// snapshot includes the mark then syncs the bytes.
    pub(super) fn mark_file(&mut self, name: &str, handle: &Arc<Handle>) {
        self.changes += 1;
        let key = (name.to_string(), handle.id);
        self.files.insert(key, (Arc::clone(handle), self.changes));
    }

    /// Records that entries of `dir` changed (a file or directory created or removed).
    pub(super) fn mark_dir(&mut self, dir: &Path) {
        self.changes += 1;
        self.dirs.insert(dir.to_path_buf(), self.changes);
    }

    /// Forgets every handle of a blob whose file was removed: nothing left to sync.
    pub(super) fn forget_file(&mut self, name: &str) {
        let range = (name.to_string(), 0)..=(name.to_string(), u64::MAX);
        let keys: Vec<(String, u64)> = self.files.range(range).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.files.remove(&key);
        }
    }

    /// Forgets a removed directory; its removal is a change to its parent.
    pub(super) fn forget_dir(&mut self, dir: &Path) {
        self.dirs.remove(dir);
    }

    pub(super) fn flushes_started(&self) -> u64 {
        self.flushes_started
    }

    /// Numbers a new flush and snapshots what it must sync.
    pub(super) fn begin_flush(&mut self) -> Flush {
        self.flushes_started += 1;
        Flush {
            number: self.flushes_started,
            upto: self.changes,
            files: (self.files.iter())
                .map(|((name, _), (handle, _))| (name.clone(), Arc::clone(handle)))
                .collect(),
            dirs: self.dirs.keys().cloned().collect(),
        }
    }

    /// Clears what `flush` covered. Call only after [`Flush::run`] succeeded.
    pub(super) fn finish_flush(&mut self, flush: &Flush) {
        self.files.retain(|_, (_, change)| *change > flush.upto);
        self.dirs.retain(|_, change| *change > flush.upto);
    }

    #[cfg(test)]
    pub(super) fn is_clean(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

impl Flush {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// fdatasyncs every file, then fsyncs every directory; stops at the first failure.
    /// Blocking: the store runs it on tokio's blocking pool.
    pub(super) fn run(&self) -> Result<(), StorageError> {
        for (name, handle) in &self.files {
            handle
                .file
                .sync_data()
                .map_err(|e| StorageError::Io(format!("cannot fdatasync blob {name}: {e}")))?;
        }
        for dir in &self.dirs {
            let fail = |e: std::io::Error| {
                StorageError::Io(format!("cannot fsync directory {}: {e}", dir.display()))
            };
            match File::open(dir) {
                Ok(d) => d.sync_all().map_err(fail)?,
                // Pruned since the snapshot: its removal is a change to its parent,
                // which is dirty in turn and flushed by this or a later sync.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(dir: &Path, id: u64) -> Arc<Handle> {
        let file = File::create(dir.join(format!("f{id}"))).unwrap();
        Arc::new(Handle { id, file })
    }

    #[test]
    fn a_change_racing_a_flush_stays_dirty() {
        let tmp = tempfile::tempdir().unwrap();
        let (h1, h2) = (handle(tmp.path(), 1), handle(tmp.path(), 2));
        let mut dirty = Dirty::default();
        dirty.mark_file("a", &h1);
        dirty.mark_dir(tmp.path());
        let flush = dirty.begin_flush();
        dirty.mark_file("a", &h1); // written again while the flush runs
        dirty.mark_file("b", &h2);
        flush.run().unwrap();
        dirty.finish_flush(&flush);
        assert_eq!(dirty.files.len(), 2, "both later writes must stay dirty");
        assert!(dirty.dirs.is_empty(), "the directory change was covered");
        let second = dirty.begin_flush();
        assert_eq!((flush.number, second.number), (1, 2));
        second.run().unwrap();
        dirty.finish_flush(&second);
        assert!(dirty.is_clean());
    }

    #[test]
    fn forgetting_a_file_keeps_other_blobs_and_their_handles() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirty = Dirty::default();
        dirty.mark_file("a", &handle(tmp.path(), 1));
        dirty.mark_file("a", &handle(tmp.path(), 2)); // a stale and a new handle
        dirty.mark_file("a.b", &handle(tmp.path(), 3));
        dirty.mark_file("a/c", &handle(tmp.path(), 4));
        dirty.forget_file("a");
        let left: Vec<_> = dirty.files.keys().cloned().collect();
        assert_eq!(left, vec![("a.b".to_string(), 3), ("a/c".to_string(), 4)]);
    }

    #[test]
    fn a_failed_flush_reports_the_path_and_clears_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        let mut dirty = Dirty::default();
        dirty.mark_file("a", &handle(tmp.path(), 1));
        let bad = tmp.path().join("file/sub"); // under a regular file: ENOTDIR
        dirty.mark_dir(&bad);
        let flush = dirty.begin_flush();
        let err = flush.run().unwrap_err();
        assert!(err.to_string().contains("file/sub"), "{err}");
        assert_eq!((dirty.files.len(), dirty.dirs.len()), (1, 1));
        std::fs::remove_file(tmp.path().join("file")).unwrap();
        std::fs::create_dir_all(&bad).unwrap();
        let retry = dirty.begin_flush();
        retry.run().unwrap();
        dirty.finish_flush(&retry);
        assert!(dirty.is_clean());
    }
}
