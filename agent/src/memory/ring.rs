//! A fixed-size ring of samples (the newest overwrite the oldest) and the statistics the
//! history reports. The ring's memory is bounded by its capacity, so the agent stays small
//! however long it runs.

/// Keeps the last `capacity` values pushed, oldest first when iterated.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    buf: Vec<T>,
    capacity: usize,
    /// Index of the oldest element once the ring is full (the next slot to overwrite).
    head: usize,
}

impl<T> Ring<T> {
    /// A ring of at least one slot. Storage grows with use up to `capacity`, so a fresh agent
    /// does not hold a day's worth of memory it has not filled yet.
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::new(),
            capacity: capacity.max(1),
            head: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// True once the oldest values have started to be overwritten.
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.capacity
    }

    pub fn push(&mut self, value: T) {
        if self.buf.len() < self.capacity {
            if self.buf.capacity() == self.buf.len() {
                // Grow in steps, but never past the fixed capacity.
                let step = self.buf.len().clamp(16, 1024);
                self.buf
                    .reserve_exact(step.min(self.capacity - self.buf.len()));
            }
            self.buf.push(value);
        } else {
            self.buf[self.head] = value;
            self.head = (self.head + 1) % self.capacity;
        }
    }

    /// Oldest to newest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        let (newer, older) = self.buf.split_at(self.head);
        older.iter().chain(newer.iter())
    }

    pub fn oldest(&self) -> Option<&T> {
        self.iter().next()
    }

    pub fn newest(&self) -> Option<&T> {
        self.iter().next_back()
    }
}

/// min / avg / max / p95 of a series of byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub min: u64,
    pub avg: u64,
    pub max: u64,
    /// Nearest-rank 95th percentile.
    pub p95: u64,
    pub count: usize,
}

/// Summarises the values; `None` when there are none.
pub fn summarize(values: impl Iterator<Item = u64>) -> Option<Summary> {
    let mut sorted: Vec<u64> = values.collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable();
    let n = sorted.len();
    let sum: u128 = sorted.iter().map(|&v| v as u128).sum();
    // Nearest rank: the smallest value with at least 95% of the values at or below it.
    let rank = (n * 95).div_ceil(100).max(1);
    Some(Summary {
        min: sorted[0],
        avg: (sum / n as u128) as u64,
        max: sorted[n - 1],
        p95: sorted[rank - 1],
        count: n,
    })
}

/// Splits `len` items into at most `max` consecutive, nearly equal buckets and returns their
/// index ranges (all of them when `max` is 0 or at least `len`).
pub fn buckets(len: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    if max == 0 || len <= max {
        return (0..len).map(|i| i..i + 1).collect();
    }
    (0..max)
        .map(|b| (b * len / max)..((b + 1) * len / max))
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_then_wraps_keeping_order() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        r.push(1);
        r.push(2);
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [1, 2]);
        assert!(!r.is_full());
        r.push(3);
        assert!(r.is_full());
        r.push(4);
        r.push(5);
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((r.oldest(), r.newest()), (Some(&3), Some(&5)));
        for v in 6..=10 {
            r.push(v);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [8, 9, 10]);
        assert_eq!(r.len(), 3);
        assert_eq!(r.iter().rev().copied().collect::<Vec<_>>(), [10, 9, 8]);
    }

    #[test]
    fn storage_never_exceeds_capacity() {
        let mut r = Ring::new(100);
        for v in 0..1000 {
            r.push(v);
        }
        assert_eq!(r.buf.capacity(), 100);
        assert_eq!(r.oldest(), Some(&900));
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut r = Ring::new(0);
        r.push('a');
        r.push('b');
        assert_eq!(r.iter().copied().collect::<String>(), "b");
    }

    #[test]
    fn summary_statistics() {
        let s = summarize(1..=100u64).unwrap();
        assert_eq!((s.min, s.max, s.avg, s.p95, s.count), (1, 100, 50, 95, 100));
        let s = summarize([7u64].into_iter()).unwrap();
        assert_eq!((s.min, s.avg, s.max, s.p95), (7, 7, 7, 7));
        let s = summarize([10u64, 0, 20, 30].into_iter()).unwrap();
        assert_eq!((s.min, s.avg, s.max, s.p95), (0, 15, 30, 30));
        assert!(summarize(std::iter::empty()).is_none());
    }

    #[test]
    fn bucketing() {
        assert_eq!(buckets(3, 0).len(), 3);
        assert_eq!(buckets(3, 10).len(), 3);
        let b = buckets(10, 4);
        assert_eq!(b, vec![0..2, 2..5, 5..7, 7..10]);
        assert!(buckets(0, 4).is_empty());
    }
}
