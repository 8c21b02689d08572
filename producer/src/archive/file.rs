//! The archive file of `producer archive --to FILE.csv.zst`: a zstd-compressed CSV
//! (crates `zstd` and `csv`), one row per order with its items as a JSON array in the
//! last column ([`HEADER`]; docs/interface.md, "Archive file").
//!
//! - The file holds customers' names and emails: it is created new (`O_EXCL`, never
//!   through a symlink) with mode 0600, and an existing FILE is refused.
//! - Rows go to `FILE.partial` first. After each batch the zstd block is flushed and the
//!   file synced *before* the batch's transaction commits, so an order is never gone from
//!   MySQL without being on disk. [`ArchiveFile::finish`] ends the zstd frame (with its
//!   checksum), syncs, and links the file to FILE (refusing one that appeared meanwhile).
//! - A run that stops on an error leaves `FILE.partial`: every committed batch is in it and
//!   decodes (`zstdcat` then reports the missing end of the frame); the batch whose commit
//!   failed may be in it too, while its orders stay in MySQL for a later run.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oms_shared::store::archive::{ArchivedItem, ArchivedOrder};
use serde::Serialize;

/// The columns of the archive file, in order.
pub const HEADER: [&str; 14] = [
    "order_id",
    "identity",
    "import_id",
    "line",
    "customer_email",
    "customer_name",
    "status",
    "failure_reason",
    "total",
    "order_date",
    "kpi_date",
    "created_at",
    "updated_at",
    "items",
];

/// zstd's default level: ~4× smaller than the CSV at hundreds of MB/s on one core.
const ZSTD_LEVEL: i32 = 3;

/// Why the archive file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFileError {
    #[error("--to {0}: the file already exists (archive files are never replaced)")]
    Exists(String),
    #[error("--to {path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("--to {path}: cannot write a row: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
}

/// One order as a row of the file.
#[derive(Serialize)]
struct OrderLine<'a> {
    order_id: u64,
    identity: &'a str,
    import_id: Option<u64>,
    line: Option<u64>,
    customer_email: &'a str,
    customer_name: &'a str,
    status: &'a str,
    failure_reason: Option<&'a str>,
    total: String,
    order_date: Option<String>,
    kpi_date: String,
    created_at: String,
    updated_at: String,
    items: String,
}

/// One item in the `items` JSON array.
#[derive(Serialize)]
struct ItemJson<'a> {
    sku: &'a str,
    quantity: u32,
    /// A decimal string ("12.50"); null for an sku the catalog did not know.
    unit_price: Option<String>,
}

fn items_json(items: &[ArchivedItem]) -> String {
    let items: Vec<ItemJson<'_>> = items
        .iter()
        .map(|i| ItemJson {
            sku: &i.sku,
            quantity: i.quantity,
            unit_price: i.unit_price.map(|p| p.to_string()),
        })
        .collect();
    serde_json::to_string(&items).expect("items serialize")
}

fn order_line(o: &ArchivedOrder) -> OrderLine<'_> {
    const AT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";
    OrderLine {
        order_id: o.id,
        identity: &o.identity,
        import_id: o.import_id,
        line: o.line,
        customer_email: &o.customer_email,
        customer_name: &o.customer_name,
        status: &o.status,
        failure_reason: o.failure_reason.as_deref(),
        total: o.total.to_string(),
        order_date: o
            .order_date
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        kpi_date: o.kpi_date.format("%Y-%m-%d").to_string(),
        created_at: o.created_at.format(AT).to_string(),
        updated_at: o.updated_at.format(AT).to_string(),
        items: items_json(&o.items),
    }
}

/// An archive file being written (see the module documentation).
pub struct ArchiveFile {
    path: PathBuf,
    partial: PathBuf,
    csv: csv::Writer<zstd::Encoder<'static, File>>,
}

/// A finished archive file.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedFile {
    pub path: PathBuf,
    /// Compressed size.
    pub bytes: u64,
}

impl ArchiveFile {
    /// Creates `FILE.partial` (new, mode 0600) with the header row; refuses when FILE
    /// exists.
    pub fn create(path: &Path) -> Result<ArchiveFile, ArchiveFileError> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(ArchiveFileError::Exists(path.display().to_string()));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&partial)
            .map_err(io_error(&partial, "create"))?;
        let mut encoder =
            zstd::Encoder::new(file, ZSTD_LEVEL).map_err(io_error(&partial, "compress"))?;
        encoder
            .include_checksum(true)
            .map_err(io_error(&partial, "compress"))?;
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(encoder);
        csv.write_record(HEADER).map_err(csv_error(&partial))?;
        Ok(ArchiveFile {
            path: path.to_path_buf(),
            partial,
            csv,
        })
    }

    /// Where rows go until [`finish`](ArchiveFile::finish).
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Writes one batch's orders and makes them durable: the CSV buffer and the zstd
    /// block flushed, the file synced.
    pub fn write_batch(&mut self, orders: &[ArchivedOrder]) -> Result<(), ArchiveFileError> {
        for order in orders {
            self.csv
                .serialize(order_line(order))
                .map_err(csv_error(&self.partial))?;
        }
        self.csv.flush().map_err(io_error(&self.partial, "write"))?;
        self.csv
            .get_ref()
            .get_ref()
            .sync_data()
            .map_err(io_error(&self.partial, "sync"))
    }

    /// Ends the zstd frame, syncs, and gives the file its name (never replacing a file).
    pub fn finish(self) -> Result<FinishedFile, ArchiveFileError> {
        let partial = self.partial;
        let encoder = self
            .csv
            .into_inner()
            .map_err(|e| io_error(&partial, "write")(io::Error::other(e.to_string())))?;
        let mut file = encoder.finish().map_err(io_error(&partial, "compress"))?;
        file.flush().map_err(io_error(&partial, "write"))?;
        file.sync_all().map_err(io_error(&partial, "sync"))?;
        let bytes = file
            .metadata()
            .map_err(io_error(&partial, "read the size of"))?
            .len();
        std::fs::hard_link(&partial, &self.path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                ArchiveFileError::Exists(self.path.display().to_string())
            }
            _ => io_error(&self.path, "create")(e),
        })?;
        std::fs::remove_file(&partial).map_err(io_error(&partial, "remove"))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(dir, "sync the directory of"))?;
        }
        Ok(FinishedFile {
            path: self.path,
            bytes,
        })
    }
}

fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(io::Error) -> ArchiveFileError + 'a {
    move |source| ArchiveFileError::Io {
        path: path.display().to_string(),
        action,
        source,
    }
}

fn csv_error(path: &Path) -> impl Fn(csv::Error) -> ArchiveFileError + '_ {
    move |source| ArchiveFileError::Csv {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use chrono::NaiveDate;
    use oms_shared::money::Cents;

    use super::*;

    fn order() -> ArchivedOrder {
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        ArchivedOrder {
            id: 42,
            identity: "A-1".into(),
            import_id: Some(3),
            line: Some(2),
            customer_id: 9,
            customer_email: "ann@example.com".into(),
            customer_name: "Ann, \"the\" buyer".into(),
            status: "completed".into(),
            failure_reason: None,
            total: Cents(1250),
            order_date: Some(day.and_hms_opt(23, 59, 59).unwrap()),
            kpi_date: day,
            created_at: day.and_hms_milli_opt(1, 2, 3, 4).unwrap(),
            updated_at: day.and_hms_milli_opt(1, 2, 3, 50).unwrap(),
            items: vec![
                ArchivedItem {
                    sku: "SKU-1".into(),
                    product_id: Some(1),
                    quantity: 2,
                    unit_price: Some(Cents(625)),
                },
                ArchivedItem {
                    sku: "GONE".into(),
                    product_id: None,
                    quantity: 1,
                    unit_price: None,
                },
            ],
        }
    }

    #[test]
    fn a_finished_file_decodes_to_the_header_and_one_row_per_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv.zst");
        let mut file = ArchiveFile::create(&path).unwrap();
        assert!(file.partial_path().exists());
        file.write_batch(&[order()]).unwrap();
        let done = file.finish().unwrap();
        assert!(!dir.path().join("a.csv.zst.partial").exists());
        assert_eq!(done.bytes, std::fs::metadata(&path).unwrap().len());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut text = String::new();
        zstd::Decoder::new(File::open(&path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            "order_id,identity,import_id,line,customer_email,customer_name,status,failure_reason,\
             total,order_date,kpi_date,created_at,updated_at,items\n\
             42,A-1,3,2,ann@example.com,\"Ann, \"\"the\"\" buyer\",completed,,12.50,\
             2026-01-31T23:59:59Z,2026-01-31,2026-01-31T01:02:03.004Z,2026-01-31T01:02:03.050Z,\
             \"[{\"\"sku\"\":\"\"SKU-1\"\",\"\"quantity\"\":2,\"\"unit_price\"\":\"\"6.25\"\"},\
             {\"\"sku\"\":\"\"GONE\"\",\"\"quantity\"\":1,\"\"unit_price\"\":null}]\"\n"
        );
    }

    #[test]
    fn an_existing_file_is_refused_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv.zst");
        std::fs::write(&path, "keep").unwrap();
        assert!(matches!(
            ArchiveFile::create(&path),
            Err(ArchiveFileError::Exists(_))
        ));
        let other = dir.path().join("b.csv.zst");
        let file = ArchiveFile::create(&other).unwrap();
        std::fs::write(&other, "appeared meanwhile").unwrap();
        assert!(matches!(file.finish(), Err(ArchiveFileError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "appeared meanwhile"
        );
    }
}
