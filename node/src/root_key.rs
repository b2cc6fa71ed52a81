//! The cluster root key: 32 bytes in a file named by the node config
//! (`root_key_file`). It wraps every tenant's key-encryption keys, so a node refuses
//! to start when the file is missing, has the wrong length or can be read by anyone
//! but its owner: each message names the file and the fix.

use std::path::{Path, PathBuf};
use stratus_core::crypto::{SecretKey, KEY_BYTES};
use zeroize::Zeroizing;

/// Why the root key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    #[error("root key file {path} does not exist: create it with `head -c 32 /dev/urandom > {path} && chmod 600 {path}` (every node of a cluster needs the same key), or point `root_key_file` in the node config at the cluster's key")]
    Missing { path: PathBuf },
    #[error("cannot read root key file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("root key file {path} holds {found} bytes; it must hold exactly {KEY_BYTES} raw bytes (a 256-bit key, not hex or base64): recreate it with `head -c 32 /dev/urandom > {path}`")]
    Length { path: PathBuf, found: usize },
    #[error("root key file {path} has permissions {mode:04o}, readable or writable by group or others: restrict it with `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

/// Reads and checks the root key at `path`.
pub fn load(path: &Path) -> Result<SecretKey, RootKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => RootKeyError::Missing { path: path.into() },
        _ => RootKeyError::Read {
            path: path.into(),
            error,
        },
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(RootKeyError::Permissions {
            path: path.into(),
            mode,
        });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| RootKeyError::Read {
        path: path.into(),
        error,
    })?);
    SecretKey::from_slice(&bytes).map_err(|_| RootKeyError::Length {
        path: path.into(),
        found: bytes.len(),
    })
}

/// Reads and checks the operator secret file (`sop1.` + 64 hex digits, mode 0600).
pub fn load_operator_secret(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        anyhow::anyhow!(
            r#"cannot read operator secret file {}: {e}; create one with `(umask 077; echo "sop1.$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > {})` (`stratus dev` makes its own), or remove `operator_secret_file` from the node config"#,
            path.display(),
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "operator secret file {} has permissions {mode:04o}, readable or writable by group or others: restrict it with `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("cannot read operator secret file {}: {e}", path.display())
    })?);
    stratus_core::auth::parse_operator_secret(&text)
        .map_err(|why| anyhow::anyhow!("operator secret file {}: {why}", path.display()))
}

/// Writes a fresh root key to `path` with mode 0600 (used by `stratus dev` and tests);
/// refuses to overwrite an existing file.
pub fn generate(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(key.expose())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_missing_short_and_open_files_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("root.key") && e.contains("does not exist") && e.contains("chmod 600"),
            "{e}"
        );

        std::fs::write(&path, b"short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("holds 5 bytes") && e.contains("exactly 32"),
            "{e}"
        );

        std::fs::write(&path, [7u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&path).unwrap().expose(), &[7u8; 32]);
        // The message for a good key never shows up, and Debug hides it.
        assert_eq!(
            format!("{:?}", load(&path).unwrap()),
            "SecretKey(<redacted>)"
        );
    }

    #[test]
    fn generate_writes_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let key = SecretKey::from_slice(&[3u8; 32]).unwrap();
        generate(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().expose(), key.expose());
        assert!(generate(&path, &key).is_err());
    }
}
