//! Reading files a user names (an image, a `database.json`) safely: only regular files (a FIFO,
//! a device or a folder is refused before it is opened, so nothing blocks or reads forever),
//! and never more bytes than a limit allows (the read stops at the limit + 1 byte).

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// What kind of thing `path` is, for an error message ("a FIFO", "a folder", ...).
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

/// Fails unless `path` is a regular file (symlinks are followed). Checked before anything
/// opens the path: opening a FIFO for reading blocks until a writer comes.
pub fn check_regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{}: not a regular file ({})",
            path.display(),
            kind_of(&meta)
        )));
    }
    Ok(meta)
}

/// Reads a regular file of at most `max_bytes` bytes; `limit` names the limit in the error.
/// A file that grows while it is read is still cut off at the limit.
pub fn read_limited(path: &Path, max_bytes: u64, limit: &'static str) -> Result<Vec<u8>> {
    let too_big = |size: u64| {
        Error::limit(
            limit,
            max_bytes,
            format!("{}: the file is {size} bytes", path.display()),
        )
    };
    let meta = check_regular_file(path)?;
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::limit(
            limit,
            max_bytes,
            format!(
                "{}: the file is more than {max_bytes} bytes",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_up_to_the_limit() {
        let dir = std::env::temp_dir().join(format!("rap-core-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.bin");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_limited(&f, 100, "max_x").unwrap().len(), 100);
        let err = read_limited(&f, 99, "max_x").unwrap_err();
        assert!(matches!(
            err,
            Error::LimitExceeded {
                limit: "max_x",
                value: 99,
                ..
            }
        ));
        assert!(
            err.to_string().ends_with("over the limit max_x = 99"),
            "{err}"
        );
        let err = read_limited(&dir, 100, "max_x").unwrap_err().to_string();
        assert!(err.contains("not a regular file (a folder)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A device that never ends (`/dev/zero`) is refused up front, and a FIFO with no writer
    /// is refused without blocking.
    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        let err = read_limited(Path::new("/dev/zero"), 1 << 20, "max_x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file (a device)"), "{err}");
        let dir = std::env::temp_dir().join(format!("rap-core-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("f.jpg");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            let err = read_limited(&fifo, 100, "max_x").unwrap_err().to_string();
            assert!(err.contains("not a regular file (a FIFO)"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
