//! The file being imported: opened, measured and hashed before anything is enqueued.
//!
//! Identities of rows without `order_id` are `<SHA-256 of the file>:<line>`, so the hash
//! must be known before the first row goes out. [`prepare`] streams the file once through
//! SHA-256 in 1 MiB blocks (flat memory); the import then streams it a second time through
//! the CSV reader. Standard input cannot be read twice, so `-` is spooled to a temporary
//! file while it is hashed (disk, not memory).
//!
//! The spool is an unnamed file (`O_TMPFILE` in `$TMPDIR`, or created and unlinked at
//! once where the file system lacks it): it has no name anyone could read it by, and the
//! kernel frees it when the process ends, however it ends (SIGKILL included), so no stale
//! spool can pile up and there is nothing to clean at start. `stop` (set on SIGINT or
//! SIGTERM) ends the hashing between two blocks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

/// A readable, hashed source.
#[derive(Debug)]
pub struct Source {
    /// What the operator gave (`-` for stdin): the name errors and `imports.file_name` use.
    pub name: String,
    pub sha256: String,
    pub size: u64,
    content: Content,
}

/// Where the bytes are read from for the import's pass.
#[derive(Debug)]
enum Content {
    Path(PathBuf),
    /// Stdin's spool: an unnamed temporary file.
    Spool(File),
}

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {action}: {source}")]
pub struct SourceError {
    pub name: String,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

const BLOCK: usize = 1 << 20;

/// Hashes `file` (or spools and hashes stdin for `-`); gives up between two blocks once
/// `stop` is set (error kind `Interrupted`).
pub fn prepare(file: &str, stop: &AtomicBool) -> Result<Source, SourceError> {
    let err = |action: &'static str| {
        move |source: io::Error| SourceError {
            name: file.to_string(),
            action,
            source,
        }
    };
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; BLOCK];
    let mut size = 0u64;
    if file == "-" {
        let mut spool =
            tempfile::tempfile().map_err(err("cannot create a temporary file to spool stdin"))?;
        let mut stdin = io::stdin().lock();
        loop {
            stopped(stop).map_err(err("stopped while spooling stdin"))?;
            let n = read_some(&mut stdin, &mut block).map_err(err("cannot read stdin"))?;
            if n == 0 {
                break;
            }
            hasher.update(&block[..n]);
            spool
                .write_all(&block[..n])
                .map_err(err("cannot spool stdin to a temporary file"))?;
            size += n as u64;
        }
        spool
            .flush()
            .map_err(err("cannot spool stdin to a temporary file"))?;
        return Ok(Source {
            name: "-".into(),
            sha256: hex::encode(hasher.finalize()),
            size,
            content: Content::Spool(spool),
        });
    }
    let mut f = File::open(file).map_err(err("cannot open"))?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(err("cannot read")(io::Error::other("is a directory")));
    }
    loop {
        stopped(stop).map_err(err("stopped while hashing"))?;
        let n = read_some(&mut f, &mut block).map_err(err("cannot read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        size += n as u64;
    }
    Ok(Source {
        name: file.to_string(),
        sha256: hex::encode(hasher.finalize()),
        size,
        content: Content::Path(PathBuf::from(file)),
    })
}

fn stopped(stop: &AtomicBool) -> io::Result<()> {
    if stop.load(Ordering::Relaxed) {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

impl Source {
    /// Opens the content, from its start, for the import's pass (call it once).
    pub fn open(&self) -> Result<File, SourceError> {
        let err = |source| SourceError {
            name: self.name.clone(),
            action: "cannot open",
            source,
        };
        match &self.content {
            Content::Path(path) => File::open(path).map_err(err),
            Content::Spool(spool) => {
                let mut f = spool.try_clone().map_err(err)?;
                f.seek(SeekFrom::Start(0)).map_err(err)?;
                Ok(f)
            }
        }
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_content() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        let s = prepare(f.path().to_str().unwrap(), &AtomicBool::new(false)).unwrap();
        assert_eq!(
            s.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.size, 3);
    }

    #[test]
    fn a_missing_file_is_one_line_naming_it() {
        let go = AtomicBool::new(false);
        let e = prepare("/nonexistent/orders.csv", &go)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/orders.csv: cannot open:"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = prepare(dir.path().to_str().unwrap(), &go)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn a_set_stop_ends_hashing() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = prepare(f.path().to_str().unwrap(), &AtomicBool::new(true)).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::Interrupted);
    }
}
