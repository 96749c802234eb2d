//! A latency histogram kept in atomics, for a path a component times
//! itself (the recorder's commits, a function's dispatch to record):
//! observed from any thread, read as a snapshot for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds; one more bucket counts what is beyond.
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// The count in each bucket (not cumulative; the last is beyond every
    /// bound), and the sum of what was observed in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        (counts, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&[0.001, 0.01]);
        for micros in [500, 1000, 5000, 50_000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let (counts, sum) = histogram.snapshot();
        assert_eq!(counts, [2, 1, 1]);
        assert!((sum - 0.0565).abs() < 1e-9, "{sum}");
    }
}
