//! The autoscaler's options, under Flink's `job.autoscaler.*` keys and with Flink's defaults.

use serde::{Deserialize, Serialize};

use crate::AutoscalerError;

/// `job.autoscaler.target.utilization`
pub const TARGET_UTILIZATION: &str = "job.autoscaler.target.utilization";
/// `job.autoscaler.target.utilization.boundary`
pub const TARGET_UTILIZATION_BOUNDARY: &str = "job.autoscaler.target.utilization.boundary";
/// `job.autoscaler.metrics.window`
pub const METRICS_WINDOW: &str = "job.autoscaler.metrics.window";
/// `job.autoscaler.metrics.busy-time.aggregator`
pub const BUSY_TIME_AGGREGATOR: &str = "job.autoscaler.metrics.busy-time.aggregator";
/// `job.autoscaler.metrics.window.min-samples` (Rheo's own key)
pub const METRICS_WINDOW_MIN_SAMPLES: &str = "job.autoscaler.metrics.window.min-samples";
/// `job.autoscaler.stabilization.interval`
pub const STABILIZATION_INTERVAL: &str = "job.autoscaler.stabilization.interval";
/// `job.autoscaler.scale-down.interval`
pub const SCALE_DOWN_INTERVAL: &str = "job.autoscaler.scale-down.interval";
/// `job.autoscaler.catch-up.duration`
pub const CATCH_UP_DURATION: &str = "job.autoscaler.catch-up.duration";
/// `job.autoscaler.vertex.min-parallelism`
pub const VERTEX_MIN_PARALLELISM: &str = "job.autoscaler.vertex.min-parallelism";
/// `job.autoscaler.vertex.max-parallelism`
pub const VERTEX_MAX_PARALLELISM: &str = "job.autoscaler.vertex.max-parallelism";
/// `job.autoscaler.taskmanager.min-replicas` (Rheo's own key; the operator takes it from
/// `spec.taskManager.autoscaler.minReplicas`)
pub const TM_MIN_REPLICAS: &str = "job.autoscaler.taskmanager.min-replicas";
/// `job.autoscaler.taskmanager.max-replicas` (Rheo's own key; the operator takes it from
/// `spec.taskManager.autoscaler.maxReplicas`)
pub const TM_MAX_REPLICAS: &str = "job.autoscaler.taskmanager.max-replicas";

/// Every key [`AutoscalerConfig::from_flink_config`] reads.
pub const KEYS: [&str; 12] = [
    TARGET_UTILIZATION,
    TARGET_UTILIZATION_BOUNDARY,
    METRICS_WINDOW,
    BUSY_TIME_AGGREGATOR,
    METRICS_WINDOW_MIN_SAMPLES,
    STABILIZATION_INTERVAL,
    SCALE_DOWN_INTERVAL,
    CATCH_UP_DURATION,
    VERTEX_MIN_PARALLELISM,
    VERTEX_MAX_PARALLELISM,
    TM_MIN_REPLICAS,
    TM_MAX_REPLICAS,
];

/// How the autoscaler decides. Durations are in milliseconds.
///
/// The defaults are those of Flink's autoscaler (flink-kubernetes-operator 1.10+), except the
/// two TaskManager bounds and the minimum sample count, which Flink does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AutoscalerConfig {
    /// `job.autoscaler.target.utilization` (default 0.7): the share of its busy-time capacity a
    /// vertex should use after a rescale, leaving headroom for load changes.
    pub target_utilization: f64,
    /// `job.autoscaler.target.utilization.boundary` (default 0.3): no rescale while each
    /// vertex's expected utilisation stays within `target ± boundary` (here 0.4 to 1.0).
    pub target_utilization_boundary: f64,
    /// `job.autoscaler.metrics.window` (default 15 min): the metrics are averaged over this
    /// window, and no decision is taken until one full window has been collected since the
    /// stabilisation period ended.
    pub metrics_window_ms: u64,
    /// `job.autoscaler.metrics.busy-time.aggregator` (default `MAX`): how a vertex's busy time
    /// is taken from its subtasks'. With `MAX` the busiest subtask speaks for the vertex, so one
    /// subtask saturated by a hot key is not hidden by idle ones.
    pub busy_time_aggregator: BusyTimeAggregator,
    /// `job.autoscaler.metrics.window.min-samples` (Rheo's own, default 3): fewer samples of a
    /// vertex in the window (missed scrapes) means no decision.
    pub min_samples: usize,
    /// `job.autoscaler.stabilization.interval` (default 5 min): after the job (re)starts, its
    /// metrics are ignored for this long and nothing is decided.
    pub stabilization_interval_ms: u64,
    /// `job.autoscaler.scale-down.interval` (default 1 h): a vertex is scaled down only when a
    /// lower parallelism has been wanted for this long, and then to the highest parallelism
    /// wanted during that time. 0 scales down at once.
    pub scale_down_interval_ms: u64,
    /// `job.autoscaler.catch-up.duration` (default 30 min): a source's backlog is to be worked
    /// off within this time, on top of its incoming rate. 0 ignores backlogs.
    pub catch_up_duration_ms: u64,
    /// `job.autoscaler.vertex.min-parallelism` (default 1).
    pub vertex_min_parallelism: u32,
    /// `job.autoscaler.vertex.max-parallelism` (default 200). A vertex's own max parallelism
    /// (its key groups, `pipeline.max-parallelism`) bounds it too.
    pub vertex_max_parallelism: u32,
    /// Fewest TaskManagers (default 1).
    pub tm_min_replicas: u32,
    /// Most TaskManagers (default 200, so that with one slot it never binds before
    /// `vertex.max-parallelism`). No vertex gets more parallelism than these TaskManagers have
    /// slots.
    pub tm_max_replicas: u32,
}

const MINUTE_MS: u64 = 60_000;

/// How a vertex's `busyTimeMsPerSecond` is aggregated over its subtasks (Flink's
/// `MetricAggregator`). The rates and the backlog are always summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BusyTimeAggregator {
    /// The busiest subtask's (Flink's default): under key skew the vertex is as busy as its
    /// hottest subtask, which is what limits it.
    #[default]
    Max,
    /// The subtasks' average: right when the load is spread evenly, blind to a hot subtask.
    Avg,
    /// The least busy subtask's.
    Min,
}

impl BusyTimeAggregator {
    /// `MAX`, `AVG` or `MIN`, in any case, as Flink reads enum options.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "MAX" => Some(Self::Max),
            "AVG" => Some(Self::Avg),
            "MIN" => Some(Self::Min),
            _ => None,
        }
    }

    /// The aggregate of the subtasks' values, from their minimum, average and maximum; none
    /// when the one it takes is missing.
    pub fn pick(self, min: Option<f64>, avg: Option<f64>, max: Option<f64>) -> Option<f64> {
        match self {
            Self::Max => max,
            Self::Avg => avg,
            Self::Min => min,
        }
    }

    /// The aggregate of the subtasks' own values; none without subtasks.
    pub fn of(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        self.pick(Some(min), Some(avg), Some(max))
    }
}

impl std::fmt::Display for BusyTimeAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Max => "MAX",
            Self::Avg => "AVG",
            Self::Min => "MIN",
        })
    }
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            target_utilization: 0.7,
            target_utilization_boundary: 0.3,
            metrics_window_ms: 15 * MINUTE_MS,
            busy_time_aggregator: BusyTimeAggregator::Max,
            min_samples: 3,
            stabilization_interval_ms: 5 * MINUTE_MS,
            scale_down_interval_ms: 60 * MINUTE_MS,
            catch_up_duration_ms: 30 * MINUTE_MS,
            vertex_min_parallelism: 1,
            vertex_max_parallelism: 200,
            tm_min_replicas: 1,
            tm_max_replicas: 200,
        }
    }
}

impl AutoscalerConfig {
    /// The defaults overridden by whichever of [`KEYS`] the pairs hold (e.g. a FlinkJob's
    /// `flinkConfiguration`); other keys are ignored. Durations take Flink's forms: `90s`,
    /// `5 min`, `1h`, `300000` (milliseconds).
    pub fn from_flink_config<'a, I>(pairs: I) -> Result<Self, AutoscalerError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut c = Self::default();
        for (key, value) in pairs {
            let value = value.trim();
            let bad = |reason: &str| AutoscalerError::Config {
                key: key.to_string(),
                value: value.to_string(),
                reason: reason.to_string(),
            };
            let float = || value.parse::<f64>().map_err(|_| bad("not a number"));
            let int = || value.parse::<u32>().map_err(|_| bad("not a non-negative integer"));
            let duration = || parse_duration_ms(value).ok_or_else(|| bad("not a duration such as 30s, 5 min or 1h"));
            match key {
                TARGET_UTILIZATION => c.target_utilization = float()?,
                TARGET_UTILIZATION_BOUNDARY => c.target_utilization_boundary = float()?,
                METRICS_WINDOW => c.metrics_window_ms = duration()?,
                BUSY_TIME_AGGREGATOR => {
                    c.busy_time_aggregator =
                        BusyTimeAggregator::parse(value).ok_or_else(|| bad("not MAX, AVG or MIN"))?
                }
                METRICS_WINDOW_MIN_SAMPLES => c.min_samples = int()? as usize,
                STABILIZATION_INTERVAL => c.stabilization_interval_ms = duration()?,
                SCALE_DOWN_INTERVAL => c.scale_down_interval_ms = duration()?,
                CATCH_UP_DURATION => c.catch_up_duration_ms = duration()?,
                VERTEX_MIN_PARALLELISM => c.vertex_min_parallelism = int()?,
                VERTEX_MAX_PARALLELISM => c.vertex_max_parallelism = int()?,
                TM_MIN_REPLICAS => c.tm_min_replicas = int()?,
                TM_MAX_REPLICAS => c.tm_max_replicas = int()?,
                _ => {}
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks that the options make sense together.
    pub fn validate(&self) -> Result<(), AutoscalerError> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(AutoscalerError::Config { key: key.to_string(), value, reason: reason.to_string() })
        };
        let t = self.target_utilization;
        if !(t > 0.0 && t <= 1.0) {
            return bad(TARGET_UTILIZATION, t.to_string(), "must be in (0, 1]");
        }
        let b = self.target_utilization_boundary;
        if !(b >= 0.0 && b.is_finite()) {
            return bad(TARGET_UTILIZATION_BOUNDARY, b.to_string(), "must be a non-negative number");
        }
        if self.metrics_window_ms == 0 {
            return bad(METRICS_WINDOW, "0".into(), "must be positive");
        }
        if self.min_samples == 0 {
            return bad(METRICS_WINDOW_MIN_SAMPLES, "0".into(), "must be at least 1");
        }
        if self.vertex_min_parallelism == 0 {
            return bad(VERTEX_MIN_PARALLELISM, "0".into(), "must be at least 1");
        }
        if self.vertex_max_parallelism < self.vertex_min_parallelism {
            return bad(
                VERTEX_MAX_PARALLELISM,
                self.vertex_max_parallelism.to_string(),
                "must not be below min-parallelism",
            );
        }
        if self.tm_min_replicas == 0 {
            return bad(TM_MIN_REPLICAS, "0".into(), "must be at least 1");
        }
        if self.tm_max_replicas < self.tm_min_replicas {
            return bad(TM_MAX_REPLICAS, self.tm_max_replicas.to_string(), "must not be below min-replicas");
        }
        Ok(())
    }
}

/// Parses a duration as Flink's `TimeUtils.parseDuration` does: a number and an optional unit
/// (`ms`, `s`, `min`/`m`, `h`, `d` and their long forms); no unit means milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => MINUTE_MS,
        "h" | "hour" | "hours" => 60 * MINUTE_MS,
        "d" | "day" | "days" => 24 * 60 * MINUTE_MS,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_flink() {
        assert_eq!(parse_duration_ms("300000"), Some(300_000));
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("5 min"), Some(300_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("2 days"), Some(172_800_000));
        assert_eq!(parse_duration_ms("5 weeks"), None);
        assert_eq!(parse_duration_ms("m"), None);
    }

    #[test]
    fn flink_keys_override_defaults() {
        let c = AutoscalerConfig::from_flink_config([
            ("job.autoscaler.target.utilization", "0.6"),
            ("job.autoscaler.metrics.window", "5m"),
            ("job.autoscaler.scale-down.interval", "0"),
            ("job.autoscaler.taskmanager.max-replicas", "8"),
            ("parallelism.default", "4"),
        ])
        .unwrap();
        assert_eq!(c.target_utilization, 0.6);
        assert_eq!(c.metrics_window_ms, 300_000);
        assert_eq!(c.scale_down_interval_ms, 0);
        assert_eq!(c.tm_max_replicas, 8);
        assert_eq!(c.stabilization_interval_ms, 300_000);
        assert_eq!(c.catch_up_duration_ms, 1_800_000);
        assert_eq!(c.busy_time_aggregator, BusyTimeAggregator::Max);
    }

    #[test]
    fn busy_time_aggregator_reads_flink_names() {
        let read =
            |v: &str| AutoscalerConfig::from_flink_config([(BUSY_TIME_AGGREGATOR, v)]).map(|c| c.busy_time_aggregator);
        assert_eq!(AutoscalerConfig::default().busy_time_aggregator, BusyTimeAggregator::Max);
        assert_eq!(read("MAX"), Ok(BusyTimeAggregator::Max));
        assert_eq!(read("avg"), Ok(BusyTimeAggregator::Avg));
        assert_eq!(read(" Min "), Ok(BusyTimeAggregator::Min));
        let e = read("MEDIAN").unwrap_err();
        assert!(e.to_string().contains(BUSY_TIME_AGGREGATOR) && e.to_string().contains("MEDIAN"), "{e}");
        assert!(KEYS.contains(&BUSY_TIME_AGGREGATOR));
    }

    #[test]
    fn busy_time_aggregator_picks_from_the_subtasks() {
        let subtasks = [1000.0, 100.0, 100.0, 0.0];
        assert_eq!(BusyTimeAggregator::Max.of(&subtasks), Some(1000.0));
        assert_eq!(BusyTimeAggregator::Avg.of(&subtasks), Some(300.0));
        assert_eq!(BusyTimeAggregator::Min.of(&subtasks), Some(0.0));
        assert_eq!(BusyTimeAggregator::Max.of(&[]), None);
        assert_eq!(BusyTimeAggregator::Avg.pick(Some(0.0), None, Some(1.0)), None);
        let json = serde_json::to_string(&BusyTimeAggregator::Avg).unwrap();
        assert_eq!(json, "\"AVG\"");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = AutoscalerConfig::from_flink_config([("job.autoscaler.target.utilization", "1.5")]).unwrap_err();
        assert!(e.to_string().contains("job.autoscaler.target.utilization"), "{e}");
        let e = AutoscalerConfig::from_flink_config([("job.autoscaler.metrics.window", "soon")]).unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
        let e = AutoscalerConfig::from_flink_config([("job.autoscaler.taskmanager.min-replicas", "300")]).unwrap_err();
        assert!(e.to_string().contains("max-replicas"), "{e}");
    }
}
