//! A CSV record reader with bounded memory, whatever the file holds.
//!
//! Built on `csv_core` (the state machine under the `csv` crate): RFC 4180 quoting, LF,
//! CR or CRLF line ends, a UTF-8 BOM skipped. Unlike `csv::Reader`, it never grows a buffer
//! to fit a record: a record longer than [`Limits::max_record_bytes`] or with more than
//! [`Limits::max_fields`] fields is still read to its end (so the next record starts in
//! the right place) but its fields are discarded and it comes back marked
//! [`Oversize`]. A 1 GB line or a million columns cost no more memory than a normal row.
//!
//! Each record carries the line where it starts (the header is line 1; quoted newlines
//! make a record span lines) and its raw bytes (up to [`Limits::max_raw_bytes`]), for the
//! rejects file. Blank lines between records are skipped.
//!
//! A reader can also start in the middle of a file ([`RecordReader::at_record_boundary`]:
//! no BOM check, lines counted from 1) and stop at a byte offset between records
//! ([`RecordReader::reached`]): the parallel scan reads a file as byte ranges this way.

use std::io::{self, Read};

/// Size limits of one record.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of field data (quotes removed) in one record.
    pub max_record_bytes: usize,
    /// Fields in one record.
    pub max_fields: usize,
    /// Raw bytes kept for the rejects file.
    pub max_raw_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 * 1024,
            max_fields: 1024,
            max_raw_bytes: 64 * 1024,
        }
    }
}

/// Why a record's fields were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// The record's data passed `max_record_bytes` while reading field `column` (0-based).
    TooLong { column: usize },
    /// The record has more than `max_fields` fields.
    TooManyFields,
}

/// One record, borrowed from the reader until the next call.
#[derive(Debug)]
pub struct Record<'r> {
    /// Line where the record starts (1-based).
    pub line: u64,
    data: &'r [u8],
    ends: &'r [usize],
    /// The record's bytes as they were in the file (without the line end), possibly cut.
    pub raw: &'r [u8],
    pub raw_truncated: bool,
    /// Set when the fields were discarded; `len` and `field` then see no field.
    pub oversize: Option<Oversize>,
}

impl<'r> Record<'r> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` (quotes removed), if the record has it.
    pub fn field(&self, i: usize) -> Option<&'r [u8]> {
        self.data.get(self.field_range(i)?)
    }

    /// Where field `i` is in [`Record::data`].
    pub fn field_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(start..end)
    }

    /// Every field's data, one after the other (quotes removed).
    pub fn data(&self) -> &'r [u8] {
        self.data
    }
}

/// Reads records from any `Read` (a file, a pipe) through one fixed buffer.
pub struct RecordReader<R> {
    source: R,
    core: csv_core::Reader,
    input: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    first_fill: bool,
    output: Box<[u8]>,
    ends: Box<[usize]>,
    raw: Vec<u8>,
    limits: Limits,
    bytes_consumed: u64,
}

/// Input buffer size: reads from the source are this large.
const INPUT_BUFFER: usize = 256 * 1024;

impl<R: Read> RecordReader<R> {
    pub fn new(source: R, limits: Limits) -> Self {
        RecordReader {
            source,
            core: csv_core::Reader::new(),
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            first_fill: true,
            output: vec![0; limits.max_record_bytes.max(1)].into_boxed_slice(),
            ends: vec![0; limits.max_fields.max(1)].into_boxed_slice(),
            raw: Vec::new(),
            limits,
            bytes_consumed: 0,
        }
    }

    /// A reader of a source that starts at a record boundary in the middle of a file: no
    /// BOM is looked for, and lines are counted from 1 (the caller adds the range's first
    /// line).
    pub fn at_record_boundary(source: R, limits: Limits) -> Self {
        let mut reader = RecordReader::new(source, limits);
        reader.first_fill = false;
        reader
    }

    /// Starts over on `source`, as [`RecordReader::at_record_boundary`] would, keeping the
    /// buffers.
    pub fn restart_at_record_boundary(&mut self, source: R) {
        self.source = source;
        self.core = csv_core::Reader::new();
        (self.start, self.end, self.eof, self.first_fill) = (0, 0, false, false);
        self.raw.clear();
        self.bytes_consumed = 0;
    }

    /// Line the reader is at: 1 + the newlines consumed so far.
    pub fn line(&self) -> u64 {
        self.core.line()
    }

    /// Skips blank lines, but not beyond `limit` bytes consumed: true when the reader then
    /// is at `limit` (or further, or at the end of the source), between two records; false
    /// when a record starts before `limit`.
    pub fn reached(&mut self, limit: u64) -> io::Result<bool> {
        if !self.skip_blank_lines(limit)? {
            return Ok(true);
        }
        Ok(self.bytes_consumed >= limit)
    }

    /// Changes the field limit (after the header, to the header's width + 1).
    pub fn set_max_fields(&mut self, max_fields: usize) {
        self.limits.max_fields = max_fields.max(1);
        self.ends = vec![0; self.limits.max_fields].into_boxed_slice();
    }

    /// Bytes of the source consumed so far.
    pub fn bytes_consumed(&self) -> u64 {
        self.bytes_consumed
    }

    /// Refills the input buffer when it is empty; false at the end of the source.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.start = 0;
        self.end = 0;
        let n = loop {
            match self.source.read(&mut self.input) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end = n;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        if self.first_fill {
            self.first_fill = false;
            // A UTF-8 BOM at the very start is not data. (A 1- or 2-byte first read that
            // splits a BOM is not handled: sources return far more than 3 bytes.)
            if self.input[..n].starts_with(b"\xEF\xBB\xBF") {
                self.start = 3;
                self.bytes_consumed += 3;
                return self.fill();
            }
        }
        Ok(true)
    }

    /// Skips line ends between records, counting lines, up to `limit` bytes consumed;
    /// false at the end of the source.
    fn skip_blank_lines(&mut self, limit: u64) -> io::Result<bool> {
        loop {
            if !self.fill()? {
                return Ok(false);
            }
            let room = limit.saturating_sub(self.bytes_consumed);
            let rest = &self.input[self.start..self.end];
            let rest = &rest[..rest.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
            let skip = rest
                .iter()
                .position(|b| *b != b'\n' && *b != b'\r')
                .unwrap_or(rest.len());
            let newlines = rest[..skip].iter().filter(|b| **b == b'\n').count() as u64;
            self.core.set_line(self.core.line() + newlines);
            self.start += skip;
            self.bytes_consumed += skip as u64;
            if self.start < self.end || self.bytes_consumed >= limit {
                return Ok(true);
            }
        }
    }

    /// Copies the part of the current record still in the input buffer, from `from`, to
    /// the raw copy (bounded), before the buffer is refilled.
    fn spill_raw(&mut self, from: usize, truncated: &mut bool) {
        let consumed = &self.input[from..self.start];
        let room = self.limits.max_raw_bytes.saturating_sub(self.raw.len());
        *truncated |= consumed.len() > room;
        self.raw
            .extend_from_slice(&consumed[..consumed.len().min(room)]);
    }

    /// The next record, or `None` at the end of the source. I/O errors are returned as is
    /// (the caller names the file).
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        use csv_core::ReadRecordResult as R;
        self.raw.clear();
        if !self.skip_blank_lines(u64::MAX)? {
            return Ok(None);
        }
        let line = self.core.line();
        let mut raw_truncated = false;
        // The raw bytes are usually a slice of the input buffer; they are copied only when
        // the record straddles a refill.
        let mut raw_from = self.start;
        let mut spilled = false;
        let mut oversize: Option<Oversize> = None;
        let (mut nout, mut nend) = (0usize, 0usize);
        loop {
            let input = &self.input[self.start..self.end];
            let input_was_empty = input.is_empty();
            let (result, nin, out, ends) =
                self.core
                    .read_record(input, &mut self.output[nout..], &mut self.ends[nend..]);
            self.start += nin;
            self.bytes_consumed += nin as u64;
            nout += out;
            nend += ends;
            match result {
                R::InputEmpty => {
                    self.spill_raw(raw_from, &mut raw_truncated);
                    spilled = true;
                    raw_from = 0;
                    if !self.fill()? && input_was_empty {
                        // The source ended and csv_core wants more: nothing more will come.
                        break;
                    }
                }
                R::OutputFull => {
                    oversize.get_or_insert(Oversize::TooLong { column: nend });
                    nout = 0;
                }
                R::OutputEndsFull => {
                    oversize = Some(Oversize::TooManyFields);
                    nend = 0;
                }
                R::Record => break,
                R::End => return Ok(None),
            }
        }
        let mut raw: &[u8] = if spilled {
            if raw_from < self.start {
                self.spill_raw(raw_from, &mut raw_truncated);
            }
            &self.raw
        } else {
            let whole = &self.input[raw_from..self.start];
            raw_truncated = whole.len() > self.limits.max_raw_bytes;
            &whole[..whole.len().min(self.limits.max_raw_bytes)]
        };
        // Without the line end that csv_core consumed with the record.
        while let [rest @ .., b'\n' | b'\r'] = raw {
            raw = rest;
        }
        let (data, ends): (&[u8], &[usize]) = match oversize {
            Some(_) => (&[], &[]),
            None => (&self.output[..nout], &self.ends[..nend]),
        };
        Ok(Some(Record {
            line,
            data,
            ends,
            raw,
            raw_truncated,
            oversize,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, fields) of every record, with small limits.
    fn records(input: &[u8], limits: Limits) -> Vec<(u64, Result<Vec<String>, Oversize>)> {
        let mut reader = RecordReader::new(input, limits);
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            let fields = match r.oversize {
                Some(o) => Err(o),
                None => Ok((0..r.len())
                    .map(|i| String::from_utf8_lossy(r.field(i).unwrap()).into_owned())
                    .collect()),
            };
            out.push((r.line, fields));
        }
        out
    }

    fn ok(fields: &[&str]) -> Result<Vec<String>, Oversize> {
        Ok(fields.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn lines_count_quoted_newlines_crlf_and_blank_lines() {
        let input = b"\xEF\xBB\xBFa,b\r\n\"x\ny\",2\r\n\r\n3,\"q \"\"z\"\", w\"\n";
        assert_eq!(
            records(input, Limits::default()),
            vec![
                (1, ok(&["a", "b"])),
                (2, ok(&["x\ny", "2"])),
                (5, ok(&["3", "q \"z\", w"])),
            ]
        );
    }

    #[test]
    fn last_record_without_line_end_is_read() {
        assert_eq!(
            records(b"a\n1", Limits::default()),
            vec![(1, ok(&["a"])), (2, ok(&["1"]))]
        );
        assert!(records(b"", Limits::default()).is_empty());
        assert!(records(b"\n\r\n", Limits::default()).is_empty());
    }

    #[test]
    fn oversize_records_are_skipped_whole_and_the_next_one_is_intact() {
        let limits = Limits {
            max_record_bytes: 8,
            max_fields: 3,
            max_raw_bytes: 5,
        };
        let long = format!("a,{}\n1,2\n", "x".repeat(100_000));
        assert_eq!(
            records(long.as_bytes(), limits),
            vec![
                (1, Err(Oversize::TooLong { column: 1 })),
                (2, ok(&["1", "2"]))
            ]
        );
        let wide = format!("{}\n1,2\n", vec!["c"; 10_000].join(","));
        assert_eq!(
            records(wide.as_bytes(), limits),
            vec![(1, Err(Oversize::TooManyFields)), (2, ok(&["1", "2"]))]
        );
    }

    #[test]
    fn raw_bytes_are_kept_up_to_the_limit() {
        let limits = Limits {
            max_raw_bytes: 6,
            ..Limits::default()
        };
        let mut reader = RecordReader::new(&b"\"a,b\",c\r\nlonger,row\n"[..], limits);
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!((r.raw, r.raw_truncated), (&b"\"a,b\",c"[..6], true));
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!(r.raw, b"longer");
        assert_eq!(reader.bytes_consumed(), 20);
    }

    #[test]
    fn small_reads_give_the_same_records() {
        /// A source that returns one byte per read.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let input = b"a,b\n\"1\n2\",\"3\"\"\"\n\n4,5";
        let mut reader = RecordReader::new(Trickle(input), Limits::default());
        let mut got = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            got.push((
                r.line,
                r.field(0).unwrap().to_vec(),
                r.field(1).unwrap().to_vec(),
            ));
        }
        assert_eq!(
            got,
            vec![
                (1, b"a".to_vec(), b"b".to_vec()),
                (2, b"1\n2".to_vec(), b"3\"".to_vec()),
                (5, b"4".to_vec(), b"5".to_vec()),
            ]
        );
    }
}
