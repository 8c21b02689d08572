//! The file being imported: opened, measured and hashed before anything is enqueued.
//!
//! Identities of rows without `order_id` are `<SHA-256 of the file>:<line>`, so the hash
//! must be known before the first row goes out. [`prepare`] streams the file once through
//! SHA-256 in 1 MiB blocks (flat memory); the import then streams it a second time through
//! the CSV reader. Standard input cannot be read twice, so `-` is spooled to a temporary
//! file while it is hashed (disk, not memory), removed when the import ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// A readable, hashed source.
#[derive(Debug)]
pub struct Source {
    /// What the operator gave (`-` for stdin): the name errors and `imports.file_name` use.
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Keeps a spooled stdin alive (deleted on drop).
    _spool: Option<tempfile::NamedTempFile>,
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

/// Hashes `file` (or spools and hashes stdin for `-`).
pub fn prepare(file: &str) -> Result<Source, SourceError> {
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
        let mut spool = tempfile::Builder::new()
            .prefix("oms-import-stdin-")
            .tempfile()
            .map_err(err("cannot create a temporary file to spool stdin"))?;
        let mut stdin = io::stdin().lock();
        loop {
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
            path: spool.path().to_path_buf(),
            sha256: hex::encode(hasher.finalize()),
            size,
            _spool: Some(spool),
        });
    }
    let mut f = File::open(file).map_err(err("cannot open"))?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(err("cannot read")(io::Error::other("is a directory")));
    }
    loop {
        let n = read_some(&mut f, &mut block).map_err(err("cannot read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        size += n as u64;
    }
    Ok(Source {
        name: file.to_string(),
        path: PathBuf::from(file),
        sha256: hex::encode(hasher.finalize()),
        size,
        _spool: None,
    })
}

impl Source {
    /// Opens the content for the import's pass.
    pub fn open(&self) -> Result<File, SourceError> {
        File::open(&self.path).map_err(|source| SourceError {
            name: self.name.clone(),
            action: "cannot open",
            source,
        })
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
        let s = prepare(f.path().to_str().unwrap()).unwrap();
        assert_eq!(
            s.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.size, 3);
    }

    #[test]
    fn a_missing_file_is_one_line_naming_it() {
        let e = prepare("/nonexistent/orders.csv").unwrap_err().to_string();
        assert!(
            e.starts_with("/nonexistent/orders.csv: cannot open:"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = prepare(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
