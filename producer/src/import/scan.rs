//! The CPU side of an import, on a thread of its own: read records, validate them, encode
//! valid rows into chunks, and ship chunks and rejects, in file order, to the enqueuer.
//!
//! What leaves this thread is a [`Shipment`]: the full chunks and the rejects read since
//! the previous shipment, and the line through which everything is accounted for. A
//! shipment carries a few thousand rows, so the threads hand over work rarely.
//! The channel is bounded, so a slow Redis slows the reader (memory stays flat).
//! Rejected rows are also written to `--rejects PATH` here (`line,reason,detail,raw`,
//! see [`super::rejects_file`]).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use oms_shared::order::{EncodedChunk, OrderIdentity, OrderRowRef};
use oms_shared::partition::{partition_of, PartitionCount};
use oms_shared::store::imports::RejectRow;
use tokio::sync::mpsc;

use super::progress::Progress;
use super::reader::RecordReader;
use super::validate::{validate_row, Columns, Reject, RejectReason};

/// How rows become stream entries.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The file's name, for errors.
    pub file_name: String,
    pub columns: Columns,
    pub chunk_size: usize,
    pub import_id: u64,
    pub file_sha256: String,
    /// `--new`: identities get the import id, so nothing counts as already imported.
    pub new_identities: bool,
    /// Valid rows up to this line were enqueued by an earlier import of the same file.
    pub already_imported_through: u64,
    /// Partitions of the stream: each row goes to `partition_of` its email.
    pub partitions: PartitionCount,
}

/// Work for the enqueuer, in file order.
#[derive(Debug, Default)]
pub struct Shipment {
    pub chunks: Vec<EncodedChunk>,
    pub rejects: Vec<RejectRow>,
    /// Data rows read since the previous shipment.
    pub rows_read: u64,
    /// Rows skipped since the previous shipment because an earlier import enqueued them.
    pub duplicates: u64,
    /// Every row up to this line is in this shipment or an earlier one.
    pub through_line: u64,
}

impl Shipment {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.rejects.is_empty() && self.rows_read == 0
    }
}

/// How the scan ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The whole file was read.
    Finished,
    /// `stop` was set, or the enqueuer went away.
    Stopped,
    /// The file could not be read any more (named, with the line).
    Failed(String),
}

/// Rows read, or rejects, that make a shipment.
const ROWS_PER_SHIPMENT: u64 = 4_096;
const REJECTS_PER_SHIPMENT: usize = 1_000;

/// Runs the scan to the end of the file or until `stop`; blocking (run it on a thread).
pub fn scan<R: Read>(
    mut reader: RecordReader<R>,
    settings: &ScanSettings,
    mut rejects_file: Option<csv::Writer<std::fs::File>>,
    tx: mpsc::Sender<Shipment>,
    stop: &AtomicBool,
    progress: &Progress,
) -> ScanEnd {
    let hasher = RandomState::new();
    let mut seen_order_ids: HashSet<u64> = HashSet::new();
    let mut shipment = Shipment::default();
    // One open chunk per partition; a shipment takes every non-empty one, so it holds
    // every valid row up to its `through_line`.
    let mut open: Vec<EncodedChunk> = settings
        .partitions
        .all()
        .map(EncodedChunk::for_partition)
        .collect();
    let ship = |shipment: &mut Shipment, open: &mut [EncodedChunk], bytes: u64| -> bool {
        for chunk in open.iter_mut().filter(|c| !c.is_empty()) {
            let partition = chunk.partition;
            let full = std::mem::replace(chunk, EncodedChunk::for_partition(partition));
            shipment.chunks.push(full.finish());
        }
        progress.scanned(shipment.rows_read, bytes);
        tx.blocking_send(std::mem::take(shipment)).is_ok()
    };

    loop {
        if stop.load(Ordering::Relaxed) {
            return ScanEnd::Stopped;
        }
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                return ScanEnd::Failed(format!(
                    "{}: read error after line {}: {e}",
                    settings.file_name, shipment.through_line
                ))
            }
        };
        let line = record.line;
        shipment.rows_read += 1;
        shipment.through_line = line;
        let verdict = validate_row(&record, &settings.columns).and_then(|row| {
            if let Some(order_id) = row.order_id {
                if !seen_order_ids.insert(hasher.hash_one(order_id)) {
                    return Err(Reject {
                        reason: RejectReason::DuplicateOrderId,
                        detail: format!("order_id {order_id:?} appears earlier in the file"),
                    });
                }
            }
            Ok(row)
        });
        match verdict {
            Err(reject) => {
                if let Some(w) = rejects_file.as_mut() {
                    let mut raw = String::from_utf8_lossy(record.raw).into_owned();
                    if record.raw_truncated {
                        raw.push('…');
                    }
                    let written = super::rejects_file::write_reject(
                        w,
                        line,
                        reject.reason.as_str(),
                        &reject.detail,
                        &raw,
                    );
                    if let Err(e) = written {
                        return ScanEnd::Failed(format!("--rejects file: cannot write: {e}"));
                    }
                }
                shipment.rejects.push(RejectRow {
                    line,
                    reason: reject.reason.as_str(),
                    detail: reject.detail,
                });
            }
            Ok(_) if !settings.new_identities && line <= settings.already_imported_through => {
                shipment.duplicates += 1;
            }
            Ok(row) => {
                let new_import = settings.new_identities.then_some(settings.import_id);
                let identity = match (row.order_id, new_import) {
                    (Some(id), None) => OrderIdentity::from_order_id(id),
                    (Some(id), Some(import)) => OrderIdentity::from_order_id_for_import(id, import),
                    (None, new_import) => {
                        OrderIdentity::derived(&settings.file_sha256, line, new_import)
                    }
                };
                let partition = partition_of(&row.customer_email, settings.partitions);
                let chunk = &mut open[partition as usize];
                chunk.push(&OrderRowRef {
                    identity: identity.as_str(),
                    line,
                    customer_name: row.customer_name,
                    customer_email: &row.customer_email,
                    items: &row.items,
                    order_date: row.order_date,
                });
                // Rows or bytes: the consumer refuses an entry above MAX_ENTRY_BYTES.
                if chunk.rows >= settings.chunk_size
                    || chunk.rows_json.len() >= oms_shared::order_rules::CHUNK_CLOSE_BYTES
                {
                    let full = std::mem::replace(chunk, EncodedChunk::for_partition(partition));
                    shipment.chunks.push(full.finish());
                }
            }
        }
        if (shipment.rejects.len() >= REJECTS_PER_SHIPMENT
            || shipment.rows_read >= ROWS_PER_SHIPMENT)
            && !ship(&mut shipment, &mut open, reader.bytes_consumed())
        {
            return ScanEnd::Stopped;
        }
    }
    if let Some(w) = rejects_file.as_mut() {
        if let Err(e) = w.flush() {
            return ScanEnd::Failed(format!("--rejects file: cannot write: {e}"));
        }
    }
    let any_open = open.iter().any(|c| !c.is_empty());
    if (any_open || !shipment.is_empty())
        && !ship(&mut shipment, &mut open, reader.bytes_consumed())
    {
        return ScanEnd::Stopped;
    }
    progress.scanned(0, reader.bytes_consumed());
    ScanEnd::Finished
}
