//! Files verigate keeps beside its database (server secret, admin token):
//! created owner-only, with errors that name the file and the operation.

use std::path::{Path, PathBuf};

/// A file operation that failed (the operator's filesystem or permissions).
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", .path.display())]
pub struct FileError {
    /// What we tried: "read", "create", "write".
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// What the OS said.
    pub source: std::io::Error,
}

impl FileError {
    /// `action` on `path` failed with `source`.
    pub fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        FileError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates the directory `path` lives in, if it has one.
pub fn create_parent(path: &Path) -> Result<(), FileError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| FileError::new("create", dir, e)),
        None => Ok(()),
    }
}

/// Writes a new file readable only by its owner, synced to disk.
pub fn write_private(path: &Path, text: &str) -> Result<(), FileError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| FileError::new("create", path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| FileError::new("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_owner_only_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("verigate-files-{}", std::process::id()));
        let path = dir.join("sub").join("secret");
        create_parent(&path).unwrap();
        write_private(&path, "one").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = write_private(&path, "two").unwrap_err();
        assert_eq!(e.action, "create");
        assert!(e.to_string().starts_with("cannot create "), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
