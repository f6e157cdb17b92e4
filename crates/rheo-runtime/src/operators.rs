//! Stateless operators and the timestamp/watermark assigner.

use std::sync::Arc;
use std::time::Duration;

use crate::output::{Collector, MAX_WATERMARK, NO_TIMESTAMP, Operator, Output, Timestamp};

pub struct MapOperator<F>(pub Arc<F>);

impl<I, O, F: Fn(I) -> O + Send + Sync + 'static> Operator<I, O> for MapOperator<F> {
    #[inline]
    fn process(&mut self, value: I, timestamp: Timestamp, out: &mut dyn Output<O>) {
        out.collect((self.0)(value), timestamp);
    }
}

pub struct FilterOperator<F>(pub Arc<F>);

impl<T, F: Fn(&T) -> bool + Send + Sync + 'static> Operator<T, T> for FilterOperator<F> {
    #[inline]
    fn process(&mut self, value: T, timestamp: Timestamp, out: &mut dyn Output<T>) {
        if (self.0)(&value) {
            out.collect(value, timestamp);
        }
    }
}

pub struct FlatMapOperator<F>(pub Arc<F>);

impl<I, O, F: Fn(I, &mut Collector<'_, O>) + Send + Sync + 'static> Operator<I, O> for FlatMapOperator<F> {
    #[inline]
    fn process(&mut self, value: I, timestamp: Timestamp, out: &mut dyn Output<O>) {
        (self.0)(value, &mut Collector::new(out, timestamp));
    }
}

/// Passes records through unchanged (the consumer side of a union).
pub struct IdentityOperator;

impl<T> Operator<T, T> for IdentityOperator {
    #[inline]
    fn process(&mut self, value: T, timestamp: Timestamp, out: &mut dyn Output<T>) {
        out.collect(value, timestamp);
    }
}

/// When the watermark generator emits watermarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkEmission {
    /// Every `pipeline.auto-watermark-interval` of processing time (Flink's default, 200 ms).
    Periodic(Duration),
    /// After every record that advances it: exact, but each watermark ends a network batch.
    PerRecord,
}

/// Extracts an event timestamp from a record (and its current timestamp).
pub type TimestampAssigner<T> = Arc<dyn Fn(&T, Timestamp) -> Timestamp + Send + Sync>;

/// How records get event timestamps and how watermarks follow them (Flink's
/// `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    pub(crate) timestamp_of: Option<TimestampAssigner<T>>,
    pub(crate) out_of_orderness: Duration,
    pub(crate) idleness: Option<Duration>,
    pub(crate) emission: Option<WatermarkEmission>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            timestamp_of: self.timestamp_of.clone(),
            out_of_orderness: self.out_of_orderness,
            idleness: self.idleness,
            emission: self.emission,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Watermarks trail the largest timestamp seen by `max_out_of_orderness`.
    pub fn for_bounded_out_of_orderness(max_out_of_orderness: Duration) -> Self {
        Self { timestamp_of: None, out_of_orderness: max_out_of_orderness, idleness: None, emission: None }
    }

    /// Timestamps never decrease: the watermark is the largest timestamp seen.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Takes each record's timestamp from the record (otherwise the source's timestamp is kept).
    pub fn with_timestamp_assigner(mut self, f: impl Fn(&T, Timestamp) -> Timestamp + Send + Sync + 'static) -> Self {
        self.timestamp_of = Some(Arc::new(f));
        self
    }

    /// After `timeout` without records the input is marked idle, so it does not hold back the
    /// watermark of downstream tasks with several inputs.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// Overrides when watermarks are emitted (default: periodic, from the configuration).
    pub fn with_emission(mut self, emission: WatermarkEmission) -> Self {
        self.emission = Some(emission);
        self
    }
}

/// Assigns timestamps and generates watermarks from them.
pub struct TimestampsAndWatermarks<T> {
    strategy: WatermarkStrategy<T>,
    emission: WatermarkEmission,
    max_timestamp: Timestamp,
    emitted: Timestamp,
    next_emit: Timestamp,
    last_record_at: Timestamp,
    idle: bool,
    now: Timestamp,
}

impl<T> TimestampsAndWatermarks<T> {
    pub fn new(strategy: WatermarkStrategy<T>, default_emission: WatermarkEmission) -> Self {
        let emission = strategy.emission.unwrap_or(default_emission);
        let now = crate::task::now_ms();
        Self {
            strategy,
            emission,
            max_timestamp: Timestamp::MIN,
            emitted: Timestamp::MIN,
            next_emit: now,
            last_record_at: now,
            idle: false,
            now,
        }
    }

    fn current_watermark(&self) -> Timestamp {
        if self.max_timestamp == Timestamp::MIN {
            return Timestamp::MIN;
        }
        self.max_timestamp.saturating_sub(self.strategy.out_of_orderness.as_millis() as i64).saturating_sub(1)
    }

    fn emit_if_advanced(&mut self, out: &mut dyn Output<T>) {
        let watermark = self.current_watermark();
        if watermark > self.emitted {
            self.emitted = watermark;
            out.watermark(watermark);
        }
    }
}

impl<T: Send + 'static> Operator<T, T> for TimestampsAndWatermarks<T> {
    #[inline]
    fn process(&mut self, value: T, timestamp: Timestamp, out: &mut dyn Output<T>) {
        let timestamp = match &self.strategy.timestamp_of {
            Some(f) => f(&value, timestamp),
            None => timestamp,
        };
        if timestamp != NO_TIMESTAMP && timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        if self.idle {
            self.idle = false;
            out.idle(false);
        }
        self.last_record_at = self.now;
        out.collect(value, timestamp);
        if self.emission == WatermarkEmission::PerRecord {
            self.emit_if_advanced(out);
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut dyn Output<T>) {
        // Upstream watermarks are replaced by ours, except the final one of a bounded input.
        if watermark == MAX_WATERMARK {
            out.watermark(watermark);
        }
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut dyn Output<T>) -> Option<Timestamp> {
        self.now = now;
        let mut next = None;
        if let WatermarkEmission::Periodic(interval) = self.emission {
            if now >= self.next_emit {
                self.emit_if_advanced(out);
                self.next_emit = now + interval.as_millis().max(1) as i64;
            }
            next = Some(self.next_emit);
        }
        if let Some(timeout) = self.strategy.idleness {
            let idle_at = self.last_record_at + timeout.as_millis() as i64;
            if !self.idle && now >= idle_at {
                self.idle = true;
                out.idle(true);
            } else if !self.idle {
                next = crate::output::earliest(next, Some(idle_at));
            }
        }
        next
    }

    fn finish(&mut self, out: &mut dyn Output<T>) {
        self.emit_if_advanced(out);
    }
}
