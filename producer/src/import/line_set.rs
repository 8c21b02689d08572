//! A set of file lines in a range, one bit each: which lines `producer recover` still
//! wants to enqueue (2.5 MB for 20 million lines, whatever the rows' size).

/// Lines `from + 1 ..= through`, each wanted or not.
#[derive(Debug, Clone)]
pub struct LineSet {
    from: u64,
    through: u64,
    bits: Vec<u64>,
}

impl LineSet {
    /// Every line after `from` up to `through`, all wanted.
    pub fn all_between(from: u64, through: u64) -> LineSet {
        let len = through.saturating_sub(from);
        let mut bits = vec![u64::MAX; len.div_ceil(64) as usize];
        if !len.is_multiple_of(64) {
            if let Some(last) = bits.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        LineSet {
            from,
            through,
            bits,
        }
    }

    fn slot(&self, line: u64) -> Option<(usize, u64)> {
        (line > self.from && line <= self.through).then(|| {
            let i = line - self.from - 1;
            ((i / 64) as usize, 1u64 << (i % 64))
        })
    }

    /// Takes `line` out (lines outside the range are ignored).
    pub fn remove(&mut self, line: u64) {
        if let Some((word, bit)) = self.slot(line) {
            self.bits[word] &= !bit;
        }
    }

    pub fn contains(&self, line: u64) -> bool {
        self.slot(line)
            .is_some_and(|(word, bit)| self.bits[word] & bit != 0)
    }

    /// Lines still wanted.
    pub fn len(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_the_range_minus_what_was_removed() {
        let mut s = LineSet::all_between(10, 140);
        assert_eq!(s.len(), 130);
        assert!(!s.contains(10) && s.contains(11) && s.contains(140) && !s.contains(141));
        for l in [11, 75, 140, 5, 500] {
            s.remove(l);
        }
        assert_eq!(s.len(), 127);
        assert!(!s.contains(75) && s.contains(74) && s.contains(76));
        let empty = LineSet::all_between(7, 7);
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        let mut exact = LineSet::all_between(0, 64);
        assert_eq!(exact.len(), 64);
        (1..=64).for_each(|l| exact.remove(l));
        assert!(exact.is_empty());
    }
}
