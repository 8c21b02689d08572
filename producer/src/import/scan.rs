//! The CPU side of an import: scan workers read, validate and encode the file's blocks in
//! parallel ([`super::scan_block`], [`super::blocks`]); this module's *sequencer* takes
//! their batches back in file order and does what needs the whole file: line numbers
//! from the file's start, duplicate `order_id`s, rows an earlier import already enqueued,
//! identities, chunks (one open chunk per stream partition), the `--rejects` file.
//!
//! What leaves the sequencer is a [`Shipment`]: the full chunks and the rejects read since
//! the previous shipment, and the line through which everything is accounted for. A
//! shipment carries a few thousand rows, so the threads hand over work rarely. Every
//! channel is bounded, so a slow Redis slows the workers (memory stays flat). The result
//! is the same, byte for byte, whatever the number of workers: chunks close after
//! `--chunk-size` rows (or [`CHUNK_CLOSE_BYTES`]) as with one reader.
//!
//! [`CHUNK_CLOSE_BYTES`]: oms_shared::order::rules::CHUNK_CLOSE_BYTES

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};

use oms_shared::order::json::IdentityParts;
use oms_shared::order::EncodedChunk;
use oms_shared::redis::partition::PartitionCount;
use oms_shared::store::imports::RejectRow;
use tokio::sync::mpsc;

use super::blocks::{Chain, Layout, BLOCK_BYTES};
use super::progress::Progress;
use super::scan_block::{self, Batch, Verdict, WorkerContext};
use super::validate::{Columns, RejectReason};

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;

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
    /// Partitions of the stream: each gets chunks of its own rows.
    pub partitions: PartitionCount,
    /// Scan workers (validation and encoding run on this many threads).
    pub workers: usize,
    /// `producer recover`: only the valid rows of these lines are shipped.
    pub only_lines: Option<std::sync::Arc<super::line_set::LineSet>>,
}

/// Where the data rows of the file are: after the header, which ends at byte
/// `data_start`, with the next line numbered `data_line`.
#[derive(Debug, Clone, Copy)]
pub struct DataStart {
    pub offset: u64,
    pub line: u64,
    /// Size of the file read.
    pub size: u64,
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
/// Batches a worker may have waiting for the sequencer.
const BATCHES_IN_FLIGHT: usize = 4;

/// The default number of scan workers: the machine's cores, at most 4.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Runs the scan to the end of the file or until `stop`; blocking (run it on a thread).
pub fn scan(
    file: &File,
    data: DataStart,
    settings: &ScanSettings,
    rejects_file: Option<csv::Writer<File>>,
    tx: mpsc::Sender<Shipment>,
    stop: &AtomicBool,
    progress: &Progress,
) -> ScanEnd {
    let layout = Layout::new(data.offset, data.size, BLOCK_BYTES);
    scan_layout(
        file,
        layout,
        data.line,
        settings,
        rejects_file,
        tx,
        stop,
        progress,
    )
}

/// [`scan`] with the blocks of `layout` (tests use tiny ones).
#[allow(clippy::too_many_arguments)]
fn scan_layout(
    file: &File,
    layout: Layout,
    first_line: u64,
    settings: &ScanSettings,
    rejects_file: Option<csv::Writer<File>>,
    tx: mpsc::Sender<Shipment>,
    stop: &AtomicBool,
    progress: &Progress,
) -> ScanEnd {
    let chain = Chain::default();
    let quit = AtomicBool::new(false);
    let workers = settings.workers.max(1);
    let hasher = RandomState::new();
    let ctx = WorkerContext {
        file,
        layout: &layout,
        chain: &chain,
        columns: &settings.columns,
        partitions: settings.partitions,
        order_id_hasher: hasher.clone(),
        keep_raw: rejects_file.is_some(),
        quit: &quit,
    };
    std::thread::scope(|s| {
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (batch_tx, batch_rx) = sync_channel(BATCHES_IN_FLIGHT);
            receivers.push(batch_rx);
            let ctx = &ctx;
            let spawned = std::thread::Builder::new()
                .name(format!("import-scan-{w}"))
                .spawn_scoped(s, move || {
                    scan_block::work(w as u64, workers as u64, ctx, batch_tx)
                });
            if let Err(e) = spawned {
                quit.store(true, Ordering::Relaxed);
                return ScanEnd::Failed(format!("cannot start a scan thread: {e}"));
            }
        }
        let mut sequencer = Sequencer {
            settings,
            rejects_file,
            tx,
            stop,
            progress,
            seen_order_ids: HashSet::new(),
            open: settings
                .partitions
                .all()
                .map(EncodedChunk::for_partition)
                .collect(),
            shipment: Shipment::default(),
            last_line: 0,
            bytes: layout.data_start,
        };
        let end = sequencer.run(&receivers, &layout, &chain, first_line);
        // Workers waiting on a full channel or on the chain see this and stop.
        quit.store(true, Ordering::Relaxed);
        drop(receivers);
        end
    })
}

/// Takes batches in file order and turns them into shipments.
struct Sequencer<'a> {
    settings: &'a ScanSettings,
    rejects_file: Option<csv::Writer<File>>,
    tx: mpsc::Sender<Shipment>,
    stop: &'a AtomicBool,
    progress: &'a Progress,
    seen_order_ids: HashSet<u64>,
    /// The chunk being filled, per partition.
    open: Vec<EncodedChunk>,
    shipment: Shipment,
    /// Line of the last record taken.
    last_line: u64,
    /// Bytes of the file accounted for.
    bytes: u64,
}

impl Sequencer<'_> {
    fn run(
        &mut self,
        receivers: &[Receiver<Batch>],
        layout: &Layout,
        chain: &Chain,
        first_line: u64,
    ) -> ScanEnd {
        let mut block = 0u64;
        let mut base_line = first_line;
        chain.move_to(0);
        while block < layout.blocks() {
            let rx = &receivers[(block % receivers.len() as u64) as usize];
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    return ScanEnd::Stopped;
                }
                let Ok(batch) = rx.recv() else {
                    return ScanEnd::Failed(format!(
                        "{}: a scan thread ended early after line {}",
                        self.settings.file_name, self.last_line
                    ));
                };
                if batch.block < block {
                    continue; // A block absorbed by the one before it.
                }
                if let Err(end) = self.take(&batch, base_line) {
                    return end;
                }
                if let Some(e) = batch.error {
                    return ScanEnd::Failed(format!(
                        "{}: read error after line {}: {e}",
                        self.settings.file_name, self.last_line
                    ));
                }
                if let Some(end) = batch.end {
                    base_line += end.newlines;
                    self.bytes = end.offset;
                    block = end.next_block.max(block + 1);
                    chain.move_to(block);
                    break;
                }
            }
        }
        if let Some(w) = self.rejects_file.as_mut() {
            if let Err(e) = w.flush() {
                return ScanEnd::Failed(format!("--rejects file: cannot write: {e}"));
            }
        }
        for chunk in &mut self.open {
            if !chunk.is_empty() {
                let full = std::mem::replace(chunk, EncodedChunk::for_partition(chunk.partition));
                self.shipment.chunks.push(full.finish());
            }
        }
        if !self.shipment.is_empty() && !self.ship() {
            return ScanEnd::Stopped;
        }
        self.progress.scanned(0, layout.size);
        ScanEnd::Finished
    }

    /// Sends the shipment; false when the enqueuer is gone. Its `through_line` stops
    /// before the first row still in an open chunk: an import interrupted now resumes
    /// from there, so those rows are not taken for enqueued.
    fn ship(&mut self) -> bool {
        let open_from = self
            .open
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.first_line)
            .min();
        if let Some(first) = open_from {
            self.shipment.through_line = self.shipment.through_line.min(first - 1);
        }
        self.progress.scanned(self.shipment.rows_read, self.bytes);
        self.tx
            .blocking_send(std::mem::take(&mut self.shipment))
            .is_ok()
    }

    /// Takes a batch's records (`base_line`: the file's line where the block starts).
    fn take(&mut self, batch: &Batch, base_line: u64) -> Result<(), ScanEnd> {
        let settings = self.settings;
        let new_import = settings.new_identities.then_some(settings.import_id);
        let (mut tail_start, mut order_id_start) = (0usize, 0usize);
        for record in &batch.records {
            let line = base_line + record.line - 1;
            self.shipment.rows_read += 1;
            self.shipment.through_line = line;
            self.last_line = line;
            match &record.verdict {
                Verdict::Rejected {
                    reason,
                    detail,
                    raw,
                } => self.reject(line, *reason, detail.clone(), raw.as_deref())?,
                Verdict::Valid {
                    tail_end,
                    order_id_end,
                    order_id_hash,
                    partition,
                    raw,
                } => {
                    let tail = &batch.tails[tail_start..*tail_end];
                    tail_start = *tail_end;
                    let order_id = order_id_end.map(|end| {
                        let id = &batch.order_ids[order_id_start..end];
                        order_id_start = end;
                        id
                    });
                    if let Some(order_id) = order_id {
                        if !self.seen_order_ids.insert(*order_id_hash) {
                            let detail =
                                format!("order_id {order_id:?} appears earlier in the file");
                            let raw = raw.as_deref();
                            self.reject(line, RejectReason::DuplicateOrderId, detail, raw)?;
                            continue;
                        }
                    }
                    if settings
                        .only_lines
                        .as_ref()
                        .is_some_and(|wanted| !wanted.contains(line))
                    {
                        continue;
                    }
                    if !settings.new_identities && line <= settings.already_imported_through {
                        self.shipment.duplicates += 1;
                        continue;
                    }
                    let identity = match order_id {
                        Some(order_id) => IdentityParts::OrderId {
                            order_id,
                            new_import,
                        },
                        None => IdentityParts::Derived {
                            file_sha256: &settings.file_sha256,
                            new_import,
                        },
                    };
                    let chunk = &mut self.open[usize::from(*partition)];
                    chunk.push_parts(identity, line, tail);
                    // Rows or bytes: the consumer refuses an entry above MAX_ENTRY_BYTES.
                    if chunk.rows >= settings.chunk_size
                        || chunk.rows_json.len() >= oms_shared::order::rules::CHUNK_CLOSE_BYTES
                    {
                        let full =
                            std::mem::replace(chunk, EncodedChunk::for_partition(*partition));
                        self.shipment.chunks.push(full.finish());
                    }
                }
            }
            if (self.shipment.rejects.len() >= REJECTS_PER_SHIPMENT
                || self.shipment.rows_read >= ROWS_PER_SHIPMENT)
                && !self.ship()
            {
                return Err(ScanEnd::Stopped);
            }
        }
        Ok(())
    }

    /// Records a rejected row (and writes it to `--rejects`).
    fn reject(
        &mut self,
        line: u64,
        reason: RejectReason,
        detail: String,
        raw: Option<&str>,
    ) -> Result<(), ScanEnd> {
        if let Some(w) = self.rejects_file.as_mut() {
            let written = super::rejects_file::write_reject(
                w,
                line,
                reason.as_str(),
                &detail,
                raw.unwrap_or_default(),
            );
            if let Err(e) = written {
                return Err(ScanEnd::Failed(format!(
                    "--rejects file: cannot write: {e}"
                )));
            }
        }
        self.shipment.rejects.push(RejectRow {
            line,
            reason: reason.as_str(),
            detail,
        });
        Ok(())
    }
}
