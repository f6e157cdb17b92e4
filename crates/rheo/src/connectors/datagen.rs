//! The data generator source: record `i` is `generate(i)`, a pure function of the index (and of
//! whatever seed the generator closes over), so a run is reproducible.
//!
//! - Parallel: subtask `s` of `p` produces indices `s, s + p, s + 2p, ...`, so the union over all
//!   subtasks is the same at any parallelism.
//! - Bounded (`count`: indices `0..count`) or unbounded.
//! - Optional rate limit in records per second over all subtasks (each subtask takes `rate / p`).
//!
//! [`word_lines`] is the generator of the word-count benchmark: lines of words drawn from a
//! fixed synthetic vocabulary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::api::{DataStream, StreamEnv};
use crate::connectors::emitted::{Layer, Position, emitted_layers};
use rheo_runtime::graph::Data;
use rheo_runtime::task::{SourceError, SourceFunction, SourceOutput, SourceStatus, TaskInfo};

/// Maps a record index to the record.
pub type Generator<T> = Arc<dyn Fn(u64) -> T + Send + Sync>;

/// How many records a datagen source produces and how fast.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DatagenConfig {
    /// Total records over all subtasks; `None` is unbounded.
    pub count: Option<u64>,
    /// Records per second over all subtasks; `None` is as fast as possible.
    pub rate: Option<f64>,
}

/// How many records have arrived so far, over all subtasks: a source given one emits record `i`
/// only once `i` is below it, as if records arrived from outside at a rate that may change
/// (a load step in a test, a schedule read from a file). It depends on the wall clock only, not
/// on the job's attempts, so records that arrive while the job rescales or restarts wait as a
/// backlog.
pub type Arrivals = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Records per `poll`.
const BATCH: u64 = 1024;
/// The longest a throttled `poll` sleeps.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// One subtask of the datagen source.
pub struct DatagenSource<T> {
    generate: Generator<T>,
    config: DatagenConfig,
    next: u64,
    stride: u64,
    emitted: u64,
    /// Records per second for this subtask, and when it started.
    rate: Option<(f64, Instant)>,
    /// What earlier runs emitted, when restored at another parallelism.
    restored: Vec<Layer>,
    arrivals: Option<Arrivals>,
    /// This subtask's backlog metric (`pendingRecords`).
    counters: Option<Arc<rheo_runtime::task::TaskCounters>>,
}

impl<T> DatagenSource<T> {
    pub fn new(config: DatagenConfig, generate: Generator<T>, subtask_index: usize, parallelism: usize) -> Self {
        Self {
            generate,
            config,
            next: subtask_index as u64,
            stride: parallelism.max(1) as u64,
            emitted: 0,
            rate: None,
            restored: Vec::new(),
            arrivals: None,
            counters: None,
        }
    }

    /// Emits records only as they arrive (see [`Arrivals`]).
    pub fn with_arrivals(mut self, arrivals: Option<Arrivals>) -> Self {
        self.arrivals = arrivals;
        self
    }

    /// This subtask's records below `bound` that it has yet to emit (its share of a backlog).
    fn own_below(&self, bound: u64) -> u64 {
        bound.saturating_sub(self.next).div_ceil(self.stride)
    }

    /// Publishes the backlog: records that arrived (or are due at the rate, or are left of a
    /// bounded count) and are not emitted yet.
    fn report_backlog(&self, arrived: Option<u64>) {
        let Some(counters) = &self.counters else { return };
        let pending = match (arrived, self.rate, self.config.count) {
            (Some(arrived), _, count) => self.own_below(count.map_or(arrived, |c| c.min(arrived))),
            (None, Some((rate, started)), _) => {
                ((started.elapsed().as_secs_f64() * rate) as u64).saturating_sub(self.emitted)
            }
            (None, None, Some(count)) => self.own_below(count),
            (None, None, None) => 0,
        };
        counters.pending_records.store(pending, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resumes after a checkpoint taken at any parallelism: every index some earlier subtask
    /// emitted is skipped, so each index is emitted exactly once over all runs.
    fn restore(mut self, positions: &[Position]) -> Self {
        self.restored = emitted_layers(positions);
        if let [only] = self.restored.as_slice()
            && only.stride == self.stride
        {
            // Same parallelism: continue exactly where this subtask stopped.
            self.next = only.next[(self.next % self.stride) as usize];
            self.restored.clear();
        }
        self
    }

    fn already_emitted(&self, index: u64) -> bool {
        self.restored.iter().any(|layer| layer.contains(index))
    }
}

impl<T: Data> SourceFunction<T> for DatagenSource<T> {
    fn open(&mut self, info: &TaskInfo) -> Result<(), SourceError> {
        self.counters = Some(info.counters.clone());
        if let Some(rate) = self.config.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(
                    format!("datagen: the rate must be a positive number of records per second, got {rate}").into()
                );
            }
            self.rate = Some((rate / self.stride as f64, Instant::now()));
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        let mut batch = BATCH;
        let arrived = self.arrivals.as_ref().map(|arrivals| arrivals());
        self.report_backlog(arrived);
        if let Some(arrived) = arrived {
            let available = self.own_below(arrived);
            if available == 0 && self.config.count.is_none_or(|count| self.next < count) {
                std::thread::sleep(Duration::from_millis(5));
                return Ok(SourceStatus::Idle);
            }
            batch = batch.min(available.max(1));
        }
        if let Some((rate, started)) = self.rate {
            let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            let available = allowed.saturating_sub(self.emitted);
            if available == 0 {
                let due = started + Duration::from_secs_f64((self.emitted as f64) / rate);
                std::thread::sleep(due.saturating_duration_since(Instant::now()).min(MAX_WAIT));
                return Ok(SourceStatus::Idle);
            }
            batch = batch.min(available);
        }
        for _ in 0..batch {
            if self.config.count.is_some_and(|count| self.next >= count) {
                return Ok(SourceStatus::Finished);
            }
            let index = self.next;
            self.next += self.stride;
            if !self.restored.is_empty() && self.already_emitted(index) {
                continue;
            }
            out.collect((self.generate)(index));
            self.emitted += 1;
        }
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        // Earlier layers matter only until this subtask has moved past them.
        self.restored.retain(|layer| self.next < layer.end());
        let position = Position {
            first: self.next % self.stride,
            stride: self.stride,
            next: self.next,
            offset: 0,
            earlier: self.restored.clone(),
        };
        Some(rheo_runtime::state::restore::encode(&position))
    }
}

impl StreamEnv {
    /// A parallel stream of generated records: record `i` is `generate(i)`.
    pub fn datagen<T: Data>(&self, config: DatagenConfig, generate: Generator<T>) -> DataStream<T> {
        self.datagen_arriving(config, None, generate)
    }

    /// [`datagen`](Self::datagen) emitting records only as they arrive: record `i` once
    /// `arrivals()` exceeds `i`. The backlog (arrived, not yet emitted) is the source's
    /// `pendingRecords`.
    pub fn datagen_arriving<T: Data>(
        &self,
        config: DatagenConfig,
        arrivals: Option<Arrivals>,
        generate: Generator<T>,
    ) -> DataStream<T> {
        self.add_source("DataGen", move |ctx| {
            let positions: Vec<Position> = ctx.restore_operator_all();
            DatagenSource::new(config, generate.clone(), ctx.info.subtask_index, ctx.info.parallelism)
                .restore(&positions)
                .with_arrivals(arrivals.clone())
        })
    }
}

/// A synthetic vocabulary of `size` distinct lowercase words (2 to 4 syllables), the same for
/// every seed.
pub fn vocabulary(size: usize) -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "bo", "da", "fe", "gi", "ha", "jo", "ku", "le",
        "ma", "ni", "or", "pa", "qui", "st",
    ];
    let base = SYLLABLES.len();
    (0..size)
        .map(|k| {
            // Bijective base-24 numeral with at least two digits: distinct for distinct k.
            let mut n = k + base + 1;
            let mut word = String::new();
            while n > 0 {
                n -= 1;
                word.push_str(SYLLABLES[n % base]);
                n /= base;
            }
            word
        })
        .collect()
}

/// The hash that seeds the generator of one record from the job's seed and the record index.
fn mix(seed: u64, index: u64) -> u64 {
    // SplitMix64 finaliser over both inputs.
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Lines of `words_per_line` words drawn uniformly from a vocabulary of `vocabulary_size` words.
/// Line `i` depends only on `(seed, i)`.
pub fn word_lines(seed: u64, vocabulary_size: usize, words_per_line: usize) -> Generator<String> {
    let words = Arc::new(vocabulary(vocabulary_size.max(1)));
    Arc::new(move |index| {
        let mut rng = Pcg64Mcg::seed_from_u64(mix(seed, index));
        let mut line = String::with_capacity(words_per_line * 8);
        for k in 0..words_per_line {
            if k > 0 {
                line.push(' ');
            }
            line.push_str(&words[rng.random_range(0..words.len())]);
        }
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_words_are_distinct() {
        let words = vocabulary(10_000);
        let distinct: std::collections::HashSet<_> = words.iter().collect();
        assert_eq!(distinct.len(), 10_000);
        assert!(words.iter().all(|w| w.len() <= 12), "short words stay inline in CompactString");
    }

    #[test]
    fn word_lines_depend_on_seed_and_index() {
        let a = word_lines(7, 100, 8);
        let b = word_lines(7, 100, 8);
        assert_eq!(a(12), b(12));
        assert_eq!(a(12).split(' ').count(), 8);
        assert_ne!(
            (0..10).map(|i| a(i)).collect::<Vec<_>>(),
            (0..10).map(|i| word_lines(8, 100, 8)(i)).collect::<Vec<_>>()
        );
    }
}
