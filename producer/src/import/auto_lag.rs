//! `--max-lag` when the operator gives none: the limit follows the consumers' measured
//! throughput, a quarter second of their work ([`AutoLag::WORK`]), so that a whole-file
//! import keeps its rows' wait in the stream near a quarter second instead of queueing the
//! whole file (a fixed 1,000,000 rows is about a minute of work at 20,000 orders/s).
//!
//! Like a fixed `--max-lag`, the limit bounds the rows *unread* (not yet delivered): the
//! rows consumers hold (read ahead, in their batches) are theirs to size with
//! `--batch-size` and `--concurrency`, and bounding them too would starve the consumers
//! into a lower measured throughput, hence a lower limit, and so on down.
//!
//! Each time the enqueuer reads the group ([`AutoLag::observe`]) it passes the rows it has
//! sent and the rows not yet acknowledged (undelivered or pending, × chunk size): the
//! rows finished over the last few seconds give the throughput. The limit is a quarter
//! second of it (a quarter, not a half: p99 enqueue→terminal 0.90–0.92 s against 1.20–1.37
//! s, at 7 % of the throughput; see `docs/performance.md`), within [`AutoLag::FLOOR`] (a consumer's first batches) and
//! [`AutoLag::CEILING`] (the documented default of `--max-lag`: the import never holds
//! more than a fixed limit would). Until a throughput is known the limit is the floor; a
//! stream the consumers keep empty is refilled at once, whatever the limit.
//!
//! Pure: the enqueuer owns the I/O; unit-tested below.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The automatic limit and the readings it is measured from.
#[derive(Debug, Clone)]
pub struct AutoLag {
    limit: u64,
    /// (when, rows finished so far), oldest first, spanning at most [`AutoLag::WINDOW`].
    readings: VecDeque<(Instant, u64)>,
}

impl AutoLag {
    /// The work allowed to wait: a quarter second of the measured throughput.
    pub const WORK: Duration = Duration::from_millis(250);
    /// Throughput is measured over the readings of the last few seconds.
    pub const WINDOW: Duration = Duration::from_secs(3);
    /// Readings spanning less than this give no throughput yet.
    pub const MIN_SPAN: Duration = Duration::from_millis(500);
    /// The least limit: enough for consumers' first batches.
    pub const FLOOR: u64 = 2_000;
    /// The most: `--max-lag`'s documented default.
    pub const CEILING: u64 = 1_000_000;

    pub fn new() -> Self {
        AutoLag {
            limit: Self::FLOOR,
            readings: VecDeque::new(),
        }
    }

    /// The current limit, in rows unfinished.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Notes a reading at `now`: `sent` rows this import put on the stream so far, and
    /// `unfinished` rows of the stream not acknowledged yet. Returns the new limit.
    pub fn observe(&mut self, now: Instant, sent: u64, unfinished: u64) -> u64 {
        let finished = sent.saturating_sub(unfinished);
        // Other imports' rows can make `finished` go back: keep it monotonic.
        let last = self.readings.back().map(|&(_, last)| last);
        let finished = last.map_or(finished, |last| finished.max(last));
        self.readings.push_back((now, finished));
        while self.readings.len() > 2 && now.duration_since(self.readings[0].0) > Self::WINDOW {
            self.readings.pop_front();
        }
        let (first_at, first) = self.readings[0];
        let span = now.duration_since(first_at);
        if span >= Self::MIN_SPAN {
            let per_sec = (finished - first) as f64 / span.as_secs_f64();
            let by_rate = (per_sec * Self::WORK.as_secs_f64()) as u64;
            self.limit = by_rate.clamp(Self::FLOOR, Self::CEILING);
        }
        self.limit
    }
}

impl Default for AutoLag {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings every 200 ms of consumers finishing `rate` rows/s while the stream holds
    /// `unfinished` rows; returns the limit after `secs` seconds.
    fn steady(lag: &mut AutoLag, start: Instant, rate: u64, unfinished: u64, secs: u64) -> u64 {
        let mut limit = lag.limit();
        for tick in 0..=(secs * 5) {
            let at = start + Duration::from_millis(200 * tick);
            let finished = rate * 200 * tick / 1_000;
            limit = lag.observe(at, finished + unfinished, unfinished);
        }
        limit
    }

    #[test]
    fn the_limit_is_a_quarter_second_of_the_measured_throughput() {
        let mut lag = AutoLag::new();
        let limit = steady(&mut lag, Instant::now(), 40_000, 10_000, 5);
        assert_eq!(limit, 10_000);
        // It follows the consumers down when they slow (12,000 rows/s from second 5 on).
        let start = Instant::now();
        let mut lag = AutoLag::new();
        let mut limit = 0;
        for tick in 0..=50u64 {
            let ms = 200 * tick;
            let finished = if ms <= 5_000 {
                40 * ms
            } else {
                200_000 + 12 * (ms - 5_000)
            };
            limit = lag.observe(start + Duration::from_millis(ms), finished + 10_000, 10_000);
        }
        assert_eq!(limit, 3_000);
        let mut lag = AutoLag::new();
        let limit = steady(&mut lag, Instant::now(), 16_000, 10_000, 5);
        assert_eq!(limit, 4_000);
    }

    #[test]
    fn slow_consumers_get_the_floor_and_stopped_ones_too() {
        let mut lag = AutoLag::new();
        assert_eq!(
            steady(&mut lag, Instant::now(), 100, 10_000, 5),
            AutoLag::FLOOR
        );
        let mut lag = AutoLag::new();
        assert_eq!(
            steady(&mut lag, Instant::now(), 0, 10_000, 5),
            AutoLag::FLOOR
        );
    }

    #[test]
    fn until_a_throughput_is_known_the_limit_is_the_floor() {
        let mut lag = AutoLag::new();
        let start = Instant::now();
        assert_eq!(lag.observe(start, 0, 0), AutoLag::FLOOR);
        let soon = start + Duration::from_millis(100);
        assert_eq!(lag.observe(soon, 5_000, 0), AutoLag::FLOOR);
        let later = start + AutoLag::MIN_SPAN;
        assert_eq!(lag.observe(later, 20_000, 0), 10_000, "40,000 rows/s");
    }

    #[test]
    fn the_limit_never_passes_the_documented_default() {
        let mut lag = AutoLag::new();
        let limit = steady(&mut lag, Instant::now(), 10_000_000, 5_000_000, 5);
        assert_eq!(limit, AutoLag::CEILING);
    }

    #[test]
    fn other_imports_finishing_rows_do_not_make_the_throughput_negative() {
        let mut lag = AutoLag::new();
        let start = Instant::now();
        lag.observe(start, 50_000, 10_000);
        // Another import's rows arrive: more unfinished than this import sent since.
        let limit = lag.observe(start + Duration::from_secs(1), 51_000, 30_000);
        assert_eq!(limit, AutoLag::FLOOR);
    }
}
