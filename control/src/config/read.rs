//! Reading configuration text: rvsd's file at start and on reload
//! (SIGHUP, `rvsctl reload`), and rvsctl's `apply FILE` and `apply -`.
//!
//! Promises:
//! - Nothing read is larger than [`MAX_CONFIG_BYTES`]: a larger file is
//!   refused from its size before a byte is read, and a stream (standard
//!   input, or a file growing while it is read) is cut off one byte past
//!   the limit and refused.
//! - [`read_file`] never blocks: it takes only a regular file, checked
//!   before opening and again on the open file (which is opened with
//!   `O_NONBLOCK`, so that a FIFO swapped in meanwhile cannot hang the
//!   open); `/dev/zero`, a FIFO, a directory or a socket are refused with
//!   what they are.

use super::ConfigError;
use std::fs::{FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest configuration text rvs reads or accepts, from a file, standard
/// input or `rvsctl apply`. A config of 100,000 services with a real each
/// is about 15 MB as generated, 25 MB as `rvsctl dump` writes it.
pub const MAX_CONFIG_BYTES: usize = 32 << 20;

/// Reads the regular file at `path` as configuration text, without
/// blocking and at most [`MAX_CONFIG_BYTES`] of it; errors name `path`.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let refuse = |reason: String| ConfigError::new(&file, String::new(), reason);
    // stat first, so that not even an open touches a device or a FIFO.
    let meta = std::fs::metadata(path).map_err(|err| ConfigError::unreadable(&file, err))?;
    if !meta.is_file() {
        return Err(refuse(not_a_regular_file(meta.file_type())));
    }
    let mut opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|err| ConfigError::unreadable(&file, err))?;
    let meta = opened
        .metadata()
        .map_err(|err| ConfigError::unreadable(&file, err))?;
    if !meta.is_file() {
        return Err(refuse(not_a_regular_file(meta.file_type())));
    }
    if meta.len() > MAX_CONFIG_BYTES as u64 {
        return Err(refuse(too_large(meta.len())));
    }
    // A file that grew since the stat is cut off like a stream.
    read_limited(&mut opened, meta.len() as usize)
        .map_err(|err| ConfigError::unreadable(&file, err))
}

/// Reads configuration text from a stream (rvsctl's standard input, a
/// pipe): at most [`MAX_CONFIG_BYTES`], else an error saying so.
pub fn read_stream(stream: &mut impl Read) -> io::Result<String> {
    read_limited(stream, 64 * 1024)
}

/// Up to [`MAX_CONFIG_BYTES`] of `source`, as UTF-8; an error if `source`
/// holds more. `expected` sizes the buffer.
fn read_limited(source: &mut impl Read, expected: usize) -> io::Result<String> {
    let mut bytes = Vec::with_capacity(expected.min(MAX_CONFIG_BYTES) + 1);
    source
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "more than the limit of {} MiB for a configuration",
                MAX_CONFIG_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Why a configuration of `size` bytes is refused.
pub(super) fn too_large(size: u64) -> String {
    format!(
        "{size} bytes, over the limit of {} MiB for a configuration",
        MAX_CONFIG_BYTES >> 20
    )
}

/// Why what is at a configuration path is not read: what it is instead.
fn not_a_regular_file(kind: FileType) -> String {
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    format!("not a regular file ({what}); a configuration is read from a regular file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("rvs-read-{}-{name}", std::process::id()))
    }

    /// `read_file` of `path` on a thread, failing the test if it does not
    /// return within 2 s (an unbounded or blocking read never would).
    fn read_within_2s(path: &Path) -> Result<String, ConfigError> {
        let (done, answer) = mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let _ = done.send(read_file(&path));
        });
        answer
            .recv_timeout(Duration::from_secs(2))
            .expect("read_file returned within 2 s")
    }

    #[test]
    fn special_files_are_refused_without_reading_or_blocking() {
        let fifo = temp("fifo");
        let _ = std::fs::remove_file(&fifo);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        for (path, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (Path::new("/"), "a directory"),
        ] {
            let err = read_within_2s(path).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: not a regular file ({what}); a configuration is read from a \
                     regular file",
                    path.display()
                )
            );
        }
        let _ = std::fs::remove_file(&fifo);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let path = temp("big");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: the size is what is checked, nothing is read.
        file.set_len(MAX_CONFIG_BYTES as u64 + 1).unwrap();
        let err = read_within_2s(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: 33554433 bytes, over the limit of 32 MiB for a configuration",
                path.display()
            )
        );
        file.set_len(MAX_CONFIG_BYTES as u64).unwrap();
        assert_eq!(read_within_2s(&path).unwrap().len(), MAX_CONFIG_BYTES);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_stream_is_cut_off_past_the_limit() {
        let mut endless = std::io::repeat(b'#');
        assert_eq!(
            read_stream(&mut endless).unwrap_err().to_string(),
            "more than the limit of 32 MiB for a configuration"
        );
        let mut short: &[u8] = b"ports: []\n";
        assert_eq!(read_stream(&mut short).unwrap(), "ports: []\n");
        let mut binary: &[u8] = b"\xff\xfe";
        assert_eq!(
            read_stream(&mut binary).unwrap_err().to_string(),
            "stream did not contain valid UTF-8"
        );
    }
}
