//! `--rejects PATH`: the rejected rows as CSV (`line,reason,detail,raw`), for a person
//! to read, often in a spreadsheet.
//!
//! The file holds customers' names and emails, and the rows came from someone else, so:
//! - an existing file (or symlink) at PATH is refused unless `--force` is given; then the
//!   old entry is removed (a symlink itself, never its target) and a new file created;
//! - the file is created with `O_CREAT | O_EXCL` (never through a symlink: a link planted
//!   between the removal and the creation makes it fail) and mode 0600;
//! - the import creates it only once MySQL and Redis answered ([`check_target`] runs first,
//!   so a refused PATH stops the import before anything happens, and a failed connection
//!   leaves an existing file untouched);
//! - a `detail` or `raw` cell that a spreadsheet would read as a formula (starting with
//!   `=`, `+`, `-`, `@`, tab or carriage return) is written with a leading `'`, which
//!   spreadsheets show as text ([`neutralise`]; the OWASP "CSV injection" advice).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why the rejects file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RejectsFileError {
    #[error("--rejects {0}: the file already exists (use --force to replace it)")]
    Exists(String),
    #[error("--rejects {path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Refuses `path` when something (a file, a symlink, anything) is there and `force` is off.
pub fn check_target(path: &Path, force: bool) -> Result<(), RejectsFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(RejectsFileError::Io {
            path: path.display().to_string(),
            action: "write",
            source: io::Error::other("is a directory"),
        }),
        Ok(_) if !force => Err(RejectsFileError::Exists(path.display().to_string())),
        _ => Ok(()),
    }
}

/// Creates the rejects file (mode 0600, never through a symlink) with its header row;
/// with `force`, first removes what is at `path` (a symlink is removed, not followed).
pub fn create(path: &Path, force: bool) -> Result<csv::Writer<File>, RejectsFileError> {
    let fail = |action: &'static str| {
        move |source: io::Error| RejectsFileError::Io {
            path: path.display().to_string(),
            action,
            source,
        }
    };
    check_target(path, force)?;
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail("replace")(e)),
            _ => {}
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => RejectsFileError::Exists(path.display().to_string()),
            _ => fail("create")(e),
        })?;
    let mut writer = csv::Writer::from_writer(file);
    writer
        .write_record(["line", "reason", "detail", "raw"])
        .map_err(|e| fail("write")(e.into()))?;
    Ok(writer)
}

/// Writes one reject; `detail` and `raw` are [`neutralise`]d.
pub fn write_reject(
    writer: &mut csv::Writer<File>,
    line: u64,
    reason: &str,
    detail: &str,
    raw: &str,
) -> csv::Result<()> {
    writer.write_record([
        line.to_string().as_str(),
        reason,
        &neutralise(detail),
        &neutralise(raw),
    ])
}

/// `cell` with a leading `'` when a spreadsheet would read it as a formula (it starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return); any other cell unchanged.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=x", "\rx"] {
            assert_eq!(neutralise(cell), format!("'{cell}"));
        }
        for cell in ["", "Ann,ann@example.com", "'=already", "1=1", " =x"] {
            assert_eq!(neutralise(cell), cell);
        }
    }

    #[test]
    fn an_existing_file_or_symlink_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.csv");
        std::fs::write(&file, "keep").unwrap();
        assert!(matches!(
            create(&file, false),
            Err(RejectsFileError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create(&link, false).is_err());
        // --force replaces the link itself; the target is untouched.
        drop(create(&link, true).unwrap());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A dangling symlink is refused too, and --force never creates its target.
        let dangling = dir.path().join("dangling.csv");
        let nowhere = dir.path().join("nowhere");
        std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
        assert!(create(&dangling, false).is_err());
        drop(create(&dangling, true).unwrap());
        assert!(!nowhere.exists());
    }

    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        drop(create(&path, false).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line,reason,detail,raw\n"
        );
    }
}
