//! The file cut into byte ranges ("blocks") that scan workers read in parallel, and the
//! rule that keeps the result exactly that of one reader going from start to end.
//!
//! Block `b` nominally covers `[data_start + b·BLOCK_BYTES, data_start + (b+1)·BLOCK_BYTES)`.
//! Its records start at its *boundary*: the first offset at or after the nominal start
//! that follows a `\n` ([`Layout::boundary`]; block 0 starts right after the header). A
//! worker reads block `b` from its boundary and stops at the next block's boundary when
//! it gets there between two records ([`super::reader::RecordReader::reached`]): the
//! next block's worker then started in the same place, so the two agree.
//!
//! A `\n` inside a quoted field can make a boundary fall inside a record: the record that
//! began before it ends after it. The worker of the earlier block then *absorbs* the next
//! block (reads on to the boundary after it), and the sequencer discards what the next
//! block's worker made of it. Only a worker whose block is known to be part of the file's
//! chain of blocks ([`Chain`]) may read past its block, so a worker that started inside a
//! quoted field stops at its block's end: each byte is parsed at most twice.
//!
//! Lines: a block's worker counts lines from 1; the sequencer adds the lines of the
//! blocks before (`BlockEnd::newlines`), so every line number is the file's.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Nominal size of a block.
pub const BLOCK_BYTES: u64 = 1 << 20;

/// Reads `[pos, end)` of a file with positioned reads (any number of readers share the
/// file).
pub struct RangeSource<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl<'f> RangeSource<'f> {
    pub fn new(file: &'f File, start: u64, end: u64) -> Self {
        RangeSource {
            file,
            pos: start,
            end,
        }
    }
}

impl Read for RangeSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where the blocks of a file are.
#[derive(Debug)]
pub struct Layout {
    /// First byte after the header.
    pub data_start: u64,
    /// Bytes of the file read (its size when the import started).
    pub size: u64,
    pub block_bytes: u64,
    /// Boundaries found so far, `boundary + 1` (0: not yet known); one scan of a long
    /// line serves every block it covers.
    known: Vec<AtomicU64>,
}

impl Layout {
    pub fn new(data_start: u64, size: u64, block_bytes: u64) -> Self {
        let data_start = data_start.min(size);
        let blocks = (size - data_start).div_ceil(block_bytes.max(1)).max(1);
        Layout {
            data_start,
            size,
            block_bytes: block_bytes.max(1),
            known: (0..blocks).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of blocks (at least 1).
    pub fn blocks(&self) -> u64 {
        self.known.len() as u64
    }

    fn nominal(&self, block: u64) -> u64 {
        self.data_start
            .saturating_add(block.saturating_mul(self.block_bytes))
            .min(self.size)
    }

    /// Where block `block`'s records start: the first offset at or after its nominal
    /// start that follows a `\n`; the end of the data when there is none or `block` is
    /// past the last block.
    pub fn boundary(&self, file: &File, block: u64) -> io::Result<u64> {
        if block == 0 {
            return Ok(self.data_start);
        }
        let Some(slot) = self.known.get(block as usize) else {
            return Ok(self.size);
        };
        if let Some(known) = slot.load(Ordering::Relaxed).checked_sub(1) {
            return Ok(known);
        }
        let found = self.next_line_start(file, self.nominal(block))?;
        // Every block whose nominal start is at or before `found` has the same boundary.
        for later in block..self.blocks() {
            if self.nominal(later) > found {
                break;
            }
            self.known[later as usize].store(found + 1, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// The first offset at or after `from` (> data_start) that follows a `\n`.
    fn next_line_start(&self, file: &File, from: u64) -> io::Result<u64> {
        let mut buf = vec![0u8; 8 * 1024];
        let mut pos = from - 1;
        while pos < self.size {
            let want = buf.len().min((self.size - pos) as usize);
            let n = file.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
                return Ok(pos + i as u64 + 1);
            }
            pos += n as u64;
        }
        Ok(self.size)
    }
}

/// The block the sequencer is taking rows from: blocks before it are done or discarded.
/// A worker whose record runs past its block's end waits here to learn whether its block
/// is part of the chain before it reads on.
#[derive(Debug, Default)]
pub struct Chain {
    at: Mutex<u64>,
    moved: Condvar,
}

/// What a worker that crossed its block's end learns from the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// The sequencer takes this block: read on.
    InChain,
    /// The sequencer went past this block: what it read is discarded.
    Discarded,
    /// The scan is stopping.
    Stopped,
}

impl Chain {
    /// The sequencer is now taking block `block`.
    pub fn move_to(&self, block: u64) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        *at = block;
        self.moved.notify_all();
    }

    /// Waits until the sequencer reaches or passes `block` (or `stop`).
    pub fn standing(&self, block: u64, stop: &AtomicBool) -> Standing {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if stop.load(Ordering::Relaxed) {
                return Standing::Stopped;
            }
            match (*at).cmp(&block) {
                std::cmp::Ordering::Equal => return Standing::InChain,
                std::cmp::Ordering::Greater => return Standing::Discarded,
                std::cmp::Ordering::Less => {}
            }
            // Woken by the sequencer; the timeout only rechecks `stop`.
            at = self
                .moved
                .wait_timeout(at, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn boundaries_follow_newlines() {
        let content = b"h\naaaa\nbb\n\ncccccccccc\nd";
        let f = file(content);
        let layout = Layout::new(2, content.len() as u64, 4);
        assert_eq!(layout.blocks(), 6);
        let got: Vec<u64> = (0..8).map(|b| layout.boundary(&f, b).unwrap()).collect();
        // Nominal starts 2, 6, 10, 14, 18, 22.
        assert_eq!(got, vec![2, 7, 10, 22, 22, 22, 23, 23]);
    }

    #[test]
    fn range_source_reads_its_range() {
        let f = file(b"0123456789");
        let mut s = String::new();
        RangeSource::new(&f, 3, 7).read_to_string(&mut s).unwrap();
        assert_eq!(s, "3456");
    }

    #[test]
    fn chain_standing() {
        let chain = Chain::default();
        let go = AtomicBool::new(false);
        chain.move_to(3);
        assert_eq!(chain.standing(3, &go), Standing::InChain);
        assert_eq!(chain.standing(2, &go), Standing::Discarded);
        assert_eq!(chain.standing(4, &AtomicBool::new(true)), Standing::Stopped);
    }
}
