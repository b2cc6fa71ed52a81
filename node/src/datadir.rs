//! The node's data directory: a format marker that guards against opening data
//! written by an incompatible version, another node or another topology.
//!
//! `DIR/FORMAT` holds `stratus-data-format N`, `node ID` and `topology FINGERPRINT`
//! lines. A directory without it must be empty; one with another version, node or
//! topology is refused with a message and never touched.

use std::path::{Path, PathBuf};

/// The on-disk format this build reads and writes.
/// 3: object versions carry an encryption envelope and hold only ciphertext;
/// the directory holds key vaults.
/// 4: inline object bytes live in inline segment blobs, not in the engine; tenants
/// carry geo-redundancy (secondary, epoch, failovers, leases); groups keep roles
/// and outboxes.
/// 5: a tenant's audit chain is stored in pages of consecutive records, not one
/// key per record; an inline version's length, CRC and location are one record.
pub const FORMAT_VERSION: u32 = 5;
const MARKER: &str = "FORMAT";

/// Why a data directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {path} was written by data format {found}; this stratus-node reads format {FORMAT_VERSION}. It was left untouched: use a matching stratus-node or another data dir")]
    Version { path: PathBuf, found: String },
    #[error("data dir {path} belongs to {what}; it was left untouched: point this node at its own data dir")]
    Mismatch { path: PathBuf, what: String },
    #[error("data dir {path} is not empty and has no {MARKER} file, so it is not a Stratus data dir; it was left untouched")]
    Foreign { path: PathBuf },
}

/// Where a node's stores live inside its data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPaths {
    /// The metadata engine (sled).
    pub store: PathBuf,
    /// The blob store (chunk bytes, snapshot spools).
    pub blobs: PathBuf,
}

/// Checks (or initialises) `dir` for node `node` under topology `fingerprint`.
/// Returns the paths the stores should open.
pub fn prepare(dir: &Path, node: u64, fingerprint: u64) -> Result<DataPaths, DataDirError> {
    let io = |source| DataDirError::Io {
        path: dir.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let marker = dir.join(MARKER);
    let expected =
        format!("stratus-data-format {FORMAT_VERSION}\nnode {node}\ntopology {fingerprint:016x}\n");
    match std::fs::read_to_string(&marker) {
        Ok(found) => {
            let mut lines = found.lines();
            let version = lines.next().unwrap_or_default();
            if version != format!("stratus-data-format {FORMAT_VERSION}") {
                return Err(DataDirError::Version {
                    path: dir.into(),
                    found: version
                        .trim_start_matches("stratus-data-format ")
                        .to_string(),
                });
            }
            if found != expected {
                let what = found.lines().skip(1).collect::<Vec<_>>().join(", ");
                return Err(DataDirError::Mismatch {
                    path: dir.into(),
                    what: format!("{what} (this node is node {node}, topology {fingerprint:016x})"),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).map_err(io)?.next().is_some() {
                return Err(DataDirError::Foreign { path: dir.into() });
            }
            std::fs::write(&marker, expected).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    Ok(DataPaths {
        store: dir.join("store"),
        blobs: dir.join("blobs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialises_then_accepts_then_refuses_mismatches() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        prepare(&dir, 1, 42).unwrap();
        prepare(&dir, 1, 42).unwrap();
        assert!(matches!(
            prepare(&dir, 2, 42),
            Err(DataDirError::Mismatch { .. })
        ));
        assert!(matches!(
            prepare(&dir, 1, 43),
            Err(DataDirError::Mismatch { .. })
        ));
        std::fs::write(dir.join(MARKER), "stratus-data-format 9\nnode 1\n").unwrap();
        let e = prepare(&dir, 1, 42).unwrap_err();
        assert!(matches!(e, DataDirError::Version { .. }), "{e}");
        assert!(e.to_string().contains("format 9"));
        assert_eq!(
            std::fs::read_to_string(dir.join(MARKER)).unwrap(),
            "stratus-data-format 9\nnode 1\n",
            "never overwritten"
        );
    }

    #[test]
    fn refuses_foreign_non_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            prepare(tmp.path(), 1, 1),
            Err(DataDirError::Foreign { .. })
        ));
    }
}
