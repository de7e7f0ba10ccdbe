//! Opening files from the polling thread without ever blocking it.
//!
//! `open(2)` of a FIFO for reading waits until a writer appears, and a read of a
//! character device (a terminal, `/dev/zero`) may wait or never end. The manager opens
//! files (static files, PEM certificates and keys) on the thread that drives every
//! connection, so a path that names anything but a regular file must be refused without
//! waiting: [`open_regular`] opens with `O_NONBLOCK` (which never blocks, for any kind
//! of file) and checks the type of what it opened with `fstat`, so there is no gap
//! between a check and the open for the file to be swapped in.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading if it is a regular file (symlinks followed). Anything else
/// (a FIFO, socket, device or directory) is an `InvalidInput` error that says what it
/// is; the open itself never waits.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        let t = meta.file_type();
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {what}, not a regular file"),
        ));
    }
    // O_NONBLOCK means nothing for a regular file's reads: the descriptor stays as is.
    Ok((f, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_without_waiting() {
        let dir = std::env::temp_dir().join(format!("wss-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        mkfifo(&fifo);
        let t0 = Instant::now();
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("FIFO"), "{e}");
        for (p, what) in [
            (Path::new("/dev/zero"), "device"),
            (Path::new("/dev/null"), "device"),
            (dir.as_path(), "directory"),
        ] {
            let e = open_regular(p).unwrap_err();
            assert!(e.to_string().contains(what), "{p:?}: {e}");
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
        let file = dir.join("f");
        std::fs::write(&file, b"abc").unwrap();
        let (_, m) = open_regular(&file).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            open_regular(&dir.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
