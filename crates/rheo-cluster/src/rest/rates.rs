//! Per-second rates of a vertex's counters, over the interval since an earlier sample.
//!
//! The counters are absolute (since the job started), so a rate needs a previous sample: the
//! server keeps two per vertex and computes rates from the older one, which is at least
//! [`MIN_INTERVAL`] old once the vertex has been sampled twice. The first sample of a vertex
//! measures from the job's start. Every reader (back pressure, metrics, Prometheus) shares the
//! samples, so frequent readers do not shorten each other's interval below [`MIN_INTERVAL`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rheo_runtime::driver::handle::JobSnapshot;
use rheo_runtime::task::{TaskMetrics, now_ms};

/// The shortest interval rates are computed over, once a vertex has been sampled before.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Rates of one vertex. Times are the average over its subtasks, in milliseconds per second
/// (0 to 1000), as Flink's `busyTimeMsPerSecond` and friends; records are per vertex.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct VertexRates {
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    pub busy_ms_per_second: f64,
    pub idle_ms_per_second: f64,
    pub back_pressured_ms_per_second: f64,
    /// When the interval ends (epoch millis).
    pub end_timestamp: i64,
}

impl VertexRates {
    pub fn back_pressured_ratio(&self) -> f64 {
        self.back_pressured_ms_per_second / 1000.0
    }
    pub fn idle_ratio(&self) -> f64 {
        self.idle_ms_per_second / 1000.0
    }
    pub fn busy_ratio(&self) -> f64 {
        self.busy_ms_per_second / 1000.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    metrics: TaskMetrics,
}

#[derive(Debug, Clone, Copy)]
struct Samples {
    previous: Sample,
    last: Sample,
}

/// The samples of every vertex, keyed by (job id, vertex id).
#[derive(Debug, Default)]
pub(crate) struct Rates {
    samples: Mutex<HashMap<(String, String), Samples>>,
}

impl Rates {
    /// Samples a vertex's `metrics` now and returns its rates. `job_start` (epoch millis) is
    /// where the first interval starts.
    pub fn sample(&self, job_id: &str, vertex_id: &str, metrics: TaskMetrics, job_start: i64) -> VertexRates {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let entry = samples.entry((job_id.to_string(), vertex_id.to_string())).or_insert_with(|| {
            let since_start = Duration::from_millis((now_ms() - job_start).max(0) as u64);
            let start = Sample { at: now.checked_sub(since_start).unwrap_or(now), metrics: TaskMetrics::default() };
            Samples { previous: start, last: start }
        });
        if now.saturating_duration_since(entry.last.at) >= MIN_INTERVAL {
            entry.previous = entry.last;
            entry.last = Sample { at: now, metrics };
        }
        rates(&entry.previous, &Sample { at: now, metrics })
    }

    /// The rates of every vertex of a job, indexed like `snapshot.status.tasks`, sampled now.
    pub fn job(&self, snapshot: &JobSnapshot) -> Vec<VertexRates> {
        let status = &snapshot.status;
        status
            .tasks
            .iter()
            .zip(&snapshot.metrics)
            .map(|(task, &metrics)| self.sample(&snapshot.job_id, &task.id, metrics, status.start_time))
            .collect()
    }

    /// Each subtask's metrics and rates of vertex `index`, sampled now (rates per subtask: a
    /// slow or idle subtask shows as itself, not as the vertex's average).
    pub fn subtasks(&self, snapshot: &JobSnapshot, index: usize) -> Vec<(TaskMetrics, VertexRates)> {
        let (Some(task), Some(metrics)) = (snapshot.status.tasks.get(index), snapshot.subtask_metrics.get(index))
        else {
            return Vec::new();
        };
        metrics
            .iter()
            .enumerate()
            .map(|(n, &m)| {
                (m, self.sample(&snapshot.job_id, &format!("{}/{n}", task.id), m, snapshot.status.start_time))
            })
            .collect()
    }

    /// Forgets the samples of jobs not in `jobs`.
    pub fn retain_jobs(&self, jobs: &HashSet<String>) {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).retain(|(job, _), _| jobs.contains(job));
    }
}

fn rates(from: &Sample, to: &Sample) -> VertexRates {
    let seconds = to.at.saturating_duration_since(from.at).as_secs_f64();
    let (a, b) = (&from.metrics, &to.metrics);
    let per_second = |x: u64, y: u64| if seconds > 0.0 { y.saturating_sub(x) as f64 / seconds } else { 0.0 };
    let busy = b.busy_ns.saturating_sub(a.busy_ns);
    let idle = b.idle_ns.saturating_sub(a.idle_ns);
    let back_pressured = b.back_pressured_ns.saturating_sub(a.back_pressured_ns);
    // The subtasks' accounted time: the shares of busy, idle and back-pressured time in it are
    // the average over the subtasks.
    let total = (busy + idle + back_pressured) as f64;
    let ms_per_second = |ns: u64| if total > 0.0 { ns as f64 * 1000.0 / total } else { 0.0 };
    VertexRates {
        records_in_per_second: per_second(a.records_in, b.records_in),
        records_out_per_second: per_second(a.records_out, b.records_out),
        busy_ms_per_second: ms_per_second(busy),
        idle_ms_per_second: ms_per_second(idle),
        back_pressured_ms_per_second: ms_per_second(back_pressured),
        end_timestamp: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(records_in: u64, busy: u64, idle: u64, back_pressured: u64) -> TaskMetrics {
        TaskMetrics {
            records_in,
            busy_ns: busy,
            idle_ns: idle,
            back_pressured_ns: back_pressured,
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_shares_of_accounted_time() {
        let t0 = Instant::now();
        let from = Sample { at: t0, metrics: metrics(100, 1_000, 2_000, 0) };
        let to = Sample { at: t0 + Duration::from_secs(2), metrics: metrics(300, 2_000, 2_000, 3_000) };
        let r = rates(&from, &to);
        assert_eq!(r.records_in_per_second, 100.0);
        assert_eq!((r.busy_ms_per_second, r.idle_ms_per_second, r.back_pressured_ms_per_second), (250.0, 0.0, 750.0));
        // Counters that went back (a restarted TaskManager) give 0, not a wrap-around.
        let back = rates(&to, &from);
        assert_eq!((back.records_in_per_second, back.busy_ms_per_second), (0.0, 0.0));
    }

    #[test]
    fn first_sample_measures_from_the_job_start() {
        let rates = Rates::default();
        let r = rates.sample("job", "v", metrics(1_000, 0, 0, 0), now_ms() - 10_000);
        assert!((90.0..=110.0).contains(&r.records_in_per_second), "{r:?}");
        // A second sample right after still measures from the start (less than MIN_INTERVAL).
        let r = rates.sample("job", "v", metrics(1_100, 0, 0, 0), now_ms() - 10_000);
        assert!((100.0..=120.0).contains(&r.records_in_per_second), "{r:?}");
        rates.retain_jobs(&HashSet::new());
        assert!(rates.samples.lock().unwrap().is_empty());
    }
}
