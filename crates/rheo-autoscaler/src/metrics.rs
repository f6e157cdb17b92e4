//! What the autoscaler reads: the job's topology, per-vertex metric samples over time, and
//! their aggregation over a window.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::AutoscalerError;

/// A job vertex's id, as the REST API shows it (`/jobs/:id/vertices/:vid`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VertexId(pub String);

impl From<&str> for VertexId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<String> for VertexId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One vertex of the job graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyVertex {
    /// The vertex.
    pub id: VertexId,
    /// The vertices whose output it reads (none for a source).
    pub upstream: Vec<VertexId>,
    /// Whether it is a source: its target rate comes from its own input and backlog, not from
    /// upstream vertices.
    pub source: bool,
}

/// The job graph, vertices in topological order (every vertex after its upstream vertices).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// The vertices, sources first.
    pub vertices: Vec<TopologyVertex>,
}

impl Topology {
    /// An empty graph, to be built with [`Topology::source`] and [`Topology::vertex`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source vertex.
    pub fn source(mut self, id: impl Into<VertexId>) -> Self {
        self.vertices.push(TopologyVertex { id: id.into(), upstream: Vec::new(), source: true });
        self
    }

    /// Adds a vertex reading the given upstream vertices.
    pub fn vertex(mut self, id: impl Into<VertexId>, upstream: &[&str]) -> Self {
        let upstream = upstream.iter().map(|&u| VertexId::from(u)).collect();
        self.vertices.push(TopologyVertex { id: id.into(), upstream, source: false });
        self
    }

    /// Checks that ids are unique, the order is topological, sources have no upstream and every
    /// other vertex has one.
    pub fn validate(&self) -> Result<(), AutoscalerError> {
        let bad = |reason: String| Err(AutoscalerError::Topology(reason));
        if self.vertices.is_empty() {
            return bad("the job has no vertices".into());
        }
        let mut seen = HashSet::new();
        for v in &self.vertices {
            if v.source && !v.upstream.is_empty() {
                return bad(format!("source {} has upstream vertices", v.id));
            }
            if !v.source && v.upstream.is_empty() {
                return bad(format!("vertex {} is not a source and has no upstream vertex", v.id));
            }
            if let Some(u) = v.upstream.iter().find(|u| !seen.contains(u)) {
                return bad(format!("vertex {} reads {u}, which is not listed before it", v.id));
            }
            if !seen.insert(&v.id) {
                return bad(format!("vertex {} is listed twice", v.id));
            }
        }
        Ok(())
    }
}

/// One observation of one vertex, under Flink's metric names (in JSON too).
///
/// Rates are the vertex's totals (summed over its subtasks); the three times are milliseconds
/// per second of one subtask (0 to 1000), averaged over the subtasks, and add up to about 1000.
/// Busy time excludes back-pressured and idle time, as Flink's does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSample {
    /// When it was observed (ms since the epoch, or any clock the caller uses consistently).
    pub timestamp_ms: u64,
    /// The vertex.
    pub vertex: VertexId,
    /// The vertex's parallelism when observed.
    pub parallelism: u32,
    /// The vertex's max parallelism (its key groups).
    pub max_parallelism: u32,
    /// `numRecordsInPerSecond`. A source that reports none (as Flink's sources do) is measured
    /// by `numRecordsOutPerSecond` instead.
    pub num_records_in_per_second: f64,
    /// `numRecordsOutPerSecond`.
    pub num_records_out_per_second: f64,
    /// `busyTimeMsPerSecond`, aggregated over the subtasks by
    /// `job.autoscaler.metrics.busy-time.aggregator` (the busiest subtask's by default).
    pub busy_time_ms_per_second: f64,
    /// `backPressuredTimeMsPerSecond`.
    pub back_pressured_time_ms_per_second: f64,
    /// `idleTimeMsPerSecond`.
    pub idle_time_ms_per_second: f64,
    /// `pendingRecords`: a source's backlog (unread records, lines or bytes; Kafka's consumer
    /// lag), if it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_records: Option<f64>,
}

impl MetricSample {
    fn is_usable(&self) -> bool {
        [
            self.num_records_in_per_second,
            self.num_records_out_per_second,
            self.busy_time_ms_per_second,
            self.back_pressured_time_ms_per_second,
            self.idle_time_ms_per_second,
        ]
        .iter()
        .all(|x| x.is_finite() && *x >= 0.0)
            && self.pending_records.is_none_or(|p| p.is_finite() && p >= 0.0)
    }
}

/// The samples of every vertex, each vertex's in time order. The caller keeps at least
/// `metrics.window + scale-down.interval` of it (see [`MetricHistory::trim_before`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricHistory {
    by_vertex: BTreeMap<VertexId, Vec<MetricSample>>,
}

impl MetricHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample, keeping time order; a second sample of a vertex at the same time replaces
    /// the first. Samples with a non-finite or negative value are dropped (a metric that could
    /// not be measured).
    pub fn push(&mut self, sample: MetricSample) {
        if !sample.is_usable() {
            return;
        }
        let samples = self.by_vertex.entry(sample.vertex.clone()).or_default();
        let at = samples.partition_point(|s| s.timestamp_ms < sample.timestamp_ms);
        match samples.get_mut(at) {
            Some(s) if s.timestamp_ms == sample.timestamp_ms => *s = sample,
            _ => samples.insert(at, sample),
        }
    }

    /// Forgets samples older than `timestamp_ms`.
    pub fn trim_before(&mut self, timestamp_ms: u64) {
        for samples in self.by_vertex.values_mut() {
            samples.retain(|s| s.timestamp_ms >= timestamp_ms);
        }
        self.by_vertex.retain(|_, s| !s.is_empty());
    }

    /// A vertex's samples, oldest first.
    pub fn samples(&self, vertex: &VertexId) -> &[MetricSample] {
        self.by_vertex.get(vertex).map_or(&[], Vec::as_slice)
    }

    /// A vertex's newest sample.
    pub fn latest(&self, vertex: &VertexId) -> Option<&MetricSample> {
        self.samples(vertex).last()
    }

    /// Every sample time of any vertex within `[from_ms, to_ms]`, ascending, without repeats.
    pub fn timestamps(&self, from_ms: u64, to_ms: u64) -> Vec<u64> {
        let mut times: Vec<u64> = self
            .by_vertex
            .values()
            .flat_map(|s| s.iter().map(|s| s.timestamp_ms))
            .filter(|t| (from_ms..=to_ms).contains(t))
            .collect();
        times.sort_unstable();
        times.dedup();
        times
    }

    /// The time of a vertex's first sample at `parallelism` taken at or after `since_ms`.
    pub fn first_since(&self, vertex: &VertexId, parallelism: u32, since_ms: u64) -> Option<u64> {
        let samples = self.samples(vertex);
        let start = samples.partition_point(|s| s.timestamp_ms < since_ms);
        samples[start..].iter().find(|s| s.parallelism == parallelism).map(|s| s.timestamp_ms)
    }

    /// Aggregates a vertex's samples at `parallelism` within `[from_ms, to_ms]`.
    pub fn window(&self, vertex: &VertexId, parallelism: u32, from_ms: u64, to_ms: u64) -> WindowStats {
        let samples = self.samples(vertex);
        let start = samples.partition_point(|s| s.timestamp_ms < from_ms);
        let end = samples.partition_point(|s| s.timestamp_ms <= to_ms);
        WindowStats::of(samples[start..end].iter().filter(|s| s.parallelism == parallelism))
    }
}

/// A vertex's metrics averaged over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowStats {
    /// How many samples the window holds.
    pub samples: usize,
    /// Mean `numRecordsInPerSecond`.
    pub records_in_per_second: f64,
    /// Mean `numRecordsOutPerSecond`.
    pub records_out_per_second: f64,
    /// Mean busy time as a fraction of time (0 to 1).
    pub busy_ratio: f64,
    /// Mean back-pressured time as a fraction of time (0 to 1).
    pub back_pressured_ratio: f64,
    /// Mean idle time as a fraction of time (0 to 1).
    pub idle_ratio: f64,
    /// The newest `pendingRecords` in the window.
    pub backlog: Option<f64>,
    /// How fast `pendingRecords` grew across the window, per second (negative while a backlog
    /// shrinks); known when two samples at different times carry it.
    pub backlog_growth_per_second: Option<f64>,
}

impl WindowStats {
    fn of<'a>(samples: impl Iterator<Item = &'a MetricSample>) -> Self {
        let mut w = Self::default();
        let mut first_backlog: Option<(u64, f64)> = None;
        let mut last_backlog: Option<(u64, f64)> = None;
        for s in samples {
            w.samples += 1;
            w.records_in_per_second += s.num_records_in_per_second;
            w.records_out_per_second += s.num_records_out_per_second;
            w.busy_ratio += s.busy_time_ms_per_second.min(1000.0) / 1000.0;
            w.back_pressured_ratio += s.back_pressured_time_ms_per_second.min(1000.0) / 1000.0;
            w.idle_ratio += s.idle_time_ms_per_second.min(1000.0) / 1000.0;
            if let Some(p) = s.pending_records {
                first_backlog.get_or_insert((s.timestamp_ms, p));
                last_backlog = Some((s.timestamp_ms, p));
            }
        }
        if w.samples > 0 {
            let n = w.samples as f64;
            w.records_in_per_second /= n;
            w.records_out_per_second /= n;
            w.busy_ratio /= n;
            w.back_pressured_ratio /= n;
            w.idle_ratio /= n;
        }
        w.backlog = last_backlog.map(|(_, p)| p);
        if let (Some((t0, p0)), Some((t1, p1))) = (first_backlog, last_backlog)
            && t1 > t0
        {
            w.backlog_growth_per_second = Some((p1 - p0) / ((t1 - t0) as f64 / 1000.0));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64, p: u32, rate: f64, busy: f64, pending: Option<f64>) -> MetricSample {
        MetricSample {
            timestamp_ms: t,
            vertex: "v".into(),
            parallelism: p,
            max_parallelism: 128,
            num_records_in_per_second: rate,
            num_records_out_per_second: rate / 2.0,
            busy_time_ms_per_second: busy,
            back_pressured_time_ms_per_second: 0.0,
            idle_time_ms_per_second: 1000.0 - busy,
            pending_records: pending,
        }
    }

    #[test]
    fn window_averages_only_its_range_and_parallelism() {
        let mut h = MetricHistory::new();
        h.push(sample(3_000, 2, 300.0, 300.0, Some(50.0)));
        h.push(sample(1_000, 2, 100.0, 100.0, Some(10.0)));
        h.push(sample(2_000, 3, 999.0, 900.0, None));
        h.push(sample(4_000, 2, 500.0, 500.0, None));
        h.push(sample(5_000, 2, f64::NAN, 500.0, None));
        assert_eq!(
            h.samples(&"v".into()).iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            [1_000, 2_000, 3_000, 4_000]
        );
        let w = h.window(&"v".into(), 2, 1_000, 3_500);
        assert_eq!(w.samples, 2);
        assert_eq!(w.records_in_per_second, 200.0);
        assert_eq!(w.records_out_per_second, 100.0);
        assert!((w.busy_ratio - 0.2).abs() < 1e-12);
        assert_eq!(w.backlog, Some(50.0));
        assert_eq!(w.backlog_growth_per_second, Some(20.0));
        assert_eq!(h.first_since(&"v".into(), 2, 1_500), Some(3_000));
        assert_eq!(h.timestamps(1_500, 4_000), [2_000, 3_000, 4_000]);
        h.trim_before(3_000);
        assert_eq!(h.samples(&"v".into()).len(), 2);
    }

    #[test]
    fn topology_must_be_in_order() {
        assert!(Topology::new().source("s").vertex("m", &["s"]).vertex("k", &["m", "s"]).validate().is_ok());
        let e = Topology::new().vertex("m", &["s"]).source("s").validate().unwrap_err();
        assert!(e.to_string().contains("not listed before"), "{e}");
        assert!(Topology::new().source("s").source("s").validate().is_err());
        assert!(Topology::new().source("s").vertex("m", &[]).validate().is_err());
        assert!(Topology::new().validate().is_err());
    }
}
