//! A scan worker: reads its blocks of the file (see [`super::blocks`]), validates each
//! record and writes the tail of each valid row's JSON ([`oms_shared::order::json`]),
//! sending [`Batch`]es to the sequencer in file order. Everything that needs the whole
//! file (line numbers from its start, duplicate `order_id`s, identities, chunks) is left
//! to the sequencer.
//!
//! Worker `w` of `W` takes blocks `w`, `w + W`, `w + 2W`, …; its channel to the sequencer
//! is bounded, so a worker ahead of the sequencer waits (memory stays flat).

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use oms_shared::order::json::write_row_tail;
use oms_shared::redis::partition::{partition_of, PartitionCount};

use super::blocks::{Chain, Layout, RangeSource, Standing};
use super::reader::{Limits, Record, RecordReader};
use super::validate::{validate_row, Columns, RejectReason};

/// What the workers share.
pub struct WorkerContext<'a> {
    pub file: &'a File,
    pub layout: &'a Layout,
    pub chain: &'a Chain,
    pub columns: &'a Columns,
    pub partitions: PartitionCount,
    /// Hashes `order_id`s for the sequencer's duplicate check (the same keys in every
    /// worker).
    pub order_id_hasher: RandomState,
    /// Keep each reject's raw record (for `--rejects`).
    pub keep_raw: bool,
    /// Set by the sequencer when it stops taking batches.
    pub quit: &'a AtomicBool,
}

/// One record as a worker saw it; `line` counts from 1 at the block's start.
#[derive(Debug)]
pub struct Scanned {
    pub line: u64,
    pub verdict: Verdict,
}

#[derive(Debug)]
pub enum Verdict {
    Valid {
        /// End of its tail in [`Batch::tails`] (it starts where the previous one ended).
        tail_end: usize,
        /// End of its `order_id` in [`Batch::order_ids`], if it has one.
        order_id_end: Option<usize>,
        order_id_hash: u64,
        partition: u16,
        /// The record as written, when `keep_raw` and it has an `order_id` (a later
        /// duplicate check may reject it).
        raw: Option<String>,
    },
    Rejected {
        reason: RejectReason,
        detail: String,
        /// The record as written (with `…` when cut), when `keep_raw`.
        raw: Option<String>,
    },
}

/// How a block ended (sent with its last batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEnd {
    /// The block whose records come next (more than `block + 1` when this one absorbed
    /// the next ones).
    pub next_block: u64,
    /// Newlines from the block's boundary to `next_block`'s.
    pub newlines: u64,
    /// Offset in the file where `next_block` starts.
    pub offset: u64,
}

/// Records of one block, in file order.
#[derive(Debug)]
pub struct Batch {
    pub block: u64,
    pub records: Vec<Scanned>,
    pub tails: Vec<u8>,
    pub order_ids: String,
    /// Set on the block's last batch.
    pub end: Option<BlockEnd>,
    /// The file could not be read: the block ends here.
    pub error: Option<String>,
}

/// A batch is sent once it holds this many records, or this many bytes of details and raw
/// records.
const RECORDS_PER_BATCH: usize = 2_048;
const REJECT_BYTES_PER_BATCH: usize = 1 << 20;

impl Batch {
    fn new(block: u64) -> Self {
        Batch {
            block,
            records: Vec::with_capacity(RECORDS_PER_BATCH),
            tails: Vec::with_capacity(RECORDS_PER_BATCH * 160),
            order_ids: String::new(),
            end: None,
            error: None,
        }
    }
}

/// The sequencer went away: stop.
struct Gone;

/// Scans worker `worker`'s blocks (of `workers`) until the last one or `quit`.
pub fn work(worker: u64, workers: u64, ctx: &WorkerContext<'_>, tx: SyncSender<Batch>) {
    let mut block = worker;
    let mut reader =
        RecordReader::at_record_boundary(RangeSource::new(ctx.file, 0, 0), Limits::default());
    reader.set_max_fields(ctx.columns.names.len() + 1);
    while block < ctx.layout.blocks() && !ctx.quit.load(Ordering::Relaxed) {
        if scan_block(block, ctx, &mut reader, &tx).is_err() {
            return;
        }
        block += workers;
    }
}

/// Reads block `block` from its boundary to the next block's, or further when a record
/// runs past it and the block is in the chain.
fn scan_block<'f>(
    block: u64,
    ctx: &WorkerContext<'f>,
    reader: &mut RecordReader<RangeSource<'f>>,
    tx: &SyncSender<Batch>,
) -> Result<(), Gone> {
    let mut batch = Batch::new(block);
    let fail = |mut batch: Batch, e: std::io::Error| {
        batch.error = Some(e.to_string());
        tx.send(batch).map_err(|_| Gone)
    };
    let (start, mut limit) = match ctx
        .layout
        .boundary(ctx.file, block)
        .and_then(|s| Ok((s, ctx.layout.boundary(ctx.file, block + 1)?.max(s))))
    {
        Ok(range) => range,
        Err(e) => return fail(batch, e),
    };
    let mut next = block + 1;
    reader.restart_at_record_boundary(RangeSource::new(ctx.file, start, ctx.layout.size));
    let mut reject_bytes = 0usize;
    loop {
        if ctx.quit.load(Ordering::Relaxed) {
            return Err(Gone);
        }
        match reader.reached(limit.saturating_sub(start)) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return fail(batch, e),
        }
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => return fail(batch, e),
        };
        reject_bytes += scan_record(&record, ctx, &mut batch);
        if start + reader.bytes_consumed() > limit {
            // The record ran past the next block's boundary, which therefore fell inside
            // it: read on only if this block's records are the ones the sequencer takes.
            match ctx.chain.standing(block, ctx.quit) {
                Standing::InChain => {}
                Standing::Discarded | Standing::Stopped => return Ok(()),
            }
            while start + reader.bytes_consumed() > limit && next < ctx.layout.blocks() {
                next += 1;
                limit = match ctx.layout.boundary(ctx.file, next) {
                    Ok(l) => l,
                    Err(e) => return fail(batch, e),
                };
            }
        }
        if batch.records.len() >= RECORDS_PER_BATCH || reject_bytes >= REJECT_BYTES_PER_BATCH {
            let full = std::mem::replace(&mut batch, Batch::new(block));
            tx.send(full).map_err(|_| Gone)?;
            reject_bytes = 0;
        }
    }
    let at_end = start + reader.bytes_consumed() >= ctx.layout.size;
    batch.end = Some(BlockEnd {
        next_block: if at_end { ctx.layout.blocks() } else { next },
        newlines: reader.line() - 1,
        offset: if at_end { ctx.layout.size } else { limit },
    });
    tx.send(batch).map_err(|_| Gone)
}

/// Validates one record into `batch` (its tail, its order id, or its reject); the bytes
/// of details and raw records it kept.
fn scan_record(record: &Record<'_>, ctx: &WorkerContext<'_>, batch: &mut Batch) -> usize {
    let mut kept = 0;
    let raw = || {
        let mut raw = String::from_utf8_lossy(record.raw).into_owned();
        if record.raw_truncated {
            raw.push('…');
        }
        raw
    };
    let verdict = match validate_row(record, ctx.columns) {
        Ok(row) => {
            write_row_tail(
                &mut batch.tails,
                row.customer_name,
                &row.customer_email,
                &row.items,
                row.order_date,
            );
            let order_id_end = row.order_id.map(|id| {
                batch.order_ids.push_str(id);
                batch.order_ids.len()
            });
            let raw = (ctx.keep_raw && row.order_id.is_some()).then(raw);
            kept += raw.as_ref().map_or(0, String::len);
            Verdict::Valid {
                raw,
                tail_end: batch.tails.len(),
                order_id_end,
                order_id_hash: row
                    .order_id
                    .map(|id| ctx.order_id_hasher.hash_one(id))
                    .unwrap_or(0),
                partition: partition_of(&row.customer_email, ctx.partitions),
            }
        }
        Err(reject) => {
            let raw = ctx.keep_raw.then(raw);
            kept += reject.detail.len() + raw.as_ref().map_or(0, String::len);
            Verdict::Rejected {
                reason: reject.reason,
                detail: reject.detail,
                raw,
            }
        }
    };
    batch.records.push(Scanned {
        line: record.line,
        verdict,
    });
    kept
}
