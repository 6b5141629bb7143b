//! Reading the small files a user or an attacker controls (the identity,
//! `bridge.toml`, task files, `pins.toml`) without hanging or running out
//! of memory.
//!
//! `std::fs::read_to_string` on a FIFO blocks until someone writes to it,
//! and on `/dev/zero` (or a link to it) it reads until memory runs out
//! (issue 12, item 17). Here a file is opened without blocking, checked to be
//! a regular file through its open descriptor (so a swap after the check
//! changes nothing), and read up to a limit. Symbolic links are followed: a
//! dotfile manager may link the identity, and what counts is what the link
//! leads to.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest `bridge.toml` or `pins.toml` read.
pub const CONFIG_MAX: u64 = 1024 * 1024;

/// Opens `path` for reading, refusing anything but a regular file (without
/// blocking on a FIFO). Returns the file and its size.
pub fn open_regular(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = File::options()
        .read(true)
        // Opening a FIFO for reading blocks until a writer appears; with
        // O_NONBLOCK it returns at once, and it changes nothing for a
        // regular file.
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {kind}", path.display()),
        ));
    }
    Ok((file, meta))
}

/// Reads a regular file of at most `max` bytes as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    let (file, meta) = open_regular(path)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{} is larger than {max} bytes", path.display()),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut text = String::new();
    // The size can grow after the check: never read past the limit.
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(too_big());
    }
    Ok(text)
}

/// `error` and its causes on one line, `a: b: c` (what `{:#}` shows of an
/// `anyhow::Error`), for log lines.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn issue12_fifo_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_text(&fifo, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_text(&link, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_text(dir.path(), 100).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
    }

    #[test]
    fn issue12_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let f = File::create(&big).unwrap();
        // Sparse: no disk space used.
        f.set_len(10 * 1024 * 1024 * 1024).unwrap();
        let e = read_text(&big, 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        std::fs::write(&big, "small").unwrap();
        assert_eq!(read_text(&big, 1024).unwrap(), "small");
    }
}
