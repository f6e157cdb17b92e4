//! Per-vertex evaluation at one point in time: rates over the window, the target rate
//! propagated from the sources, and the parallelism each vertex wants.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::AutoscalerConfig;
use crate::decide::NoChangeReason;
use crate::metrics::{MetricHistory, Topology, VertexId};

/// Below this busy share (1 ms per second) a vertex's capacity cannot be measured: it is idle.
const IDLE_BUSY_RATIO: f64 = 0.001;
/// Rates below this are zero.
const NO_RATE: f64 = 1e-9;

/// Why a vertex wants the parallelism it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum VertexReason {
    /// Its expected utilisation is within `target ± boundary`: it keeps its parallelism.
    WithinBand,
    /// It would be over-utilised: it needs more subtasks.
    ScaleUp,
    /// It would be under-utilised: it can do with fewer subtasks.
    ScaleDown,
    /// It wants fewer subtasks, but not yet for `scale-down.interval`; it may scale down at
    /// `until_ms` if it keeps wanting that.
    ScaleDownDelayed {
        /// The earliest time the scale-down can happen.
        until_ms: u64,
    },
    /// It processed nothing or was (almost) never busy, so its capacity cannot be measured: it
    /// never scales up, and goes down to the minimum when it has nothing to do.
    Idle,
    /// It needs more subtasks than its bounds allow (max parallelism, TaskManager slots).
    AtMaxParallelism,
    /// It could do with fewer subtasks, but is at its minimum.
    AtMinParallelism,
    /// Its parallelism lies outside the configured bounds and is brought back within them.
    OutOfBounds,
}

/// What the autoscaler found for one vertex. Rates are records per second of the whole vertex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VertexEvaluation {
    /// The vertex.
    pub vertex: VertexId,
    /// Its parallelism now.
    pub parallelism: u32,
    /// The most parallelism it may get: its max parallelism, `vertex.max-parallelism` and the
    /// slots of the most TaskManagers, whichever is least.
    pub max_parallelism: u32,
    /// Samples in the window.
    pub samples: usize,
    /// Records it processed per second (for a source, records it read).
    pub input_rate: f64,
    /// Records it emitted per second.
    pub output_rate: f64,
    /// Share of time its subtasks were busy (0 to 1), excluding back-pressure.
    pub busy_ratio: f64,
    /// Share of time its subtasks were back-pressured (0 to 1).
    pub back_pressured_ratio: f64,
    /// Records per second it could process at its current parallelism if always busy
    /// (`input_rate / busy_ratio`); none when idle.
    pub true_rate: Option<f64>,
    /// A source's backlog at the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<f64>,
    /// Records per second it has to process: a source's arrival rate plus its backlog over
    /// `catch-up.duration`; for the others, what their upstream vertices' target rates produce.
    pub target_rate: f64,
    /// `target_rate / true_rate`: how busy it would be at its current parallelism.
    pub utilization: Option<f64>,
    /// The parallelism this window asks for.
    pub wanted_parallelism: u32,
    /// The parallelism the decision gives it (its current one unless it is rescaled).
    pub new_parallelism: u32,
    /// Why.
    pub reason: VertexReason,
}

/// Everything the evaluation of one point in time needs.
pub(crate) struct Context<'a> {
    pub topology: &'a Topology,
    pub history: &'a MetricHistory,
    pub config: &'a AutoscalerConfig,
    /// Metrics before this time are not used (the job was rescaled or still stabilising).
    pub stable_since_ms: u64,
    /// Current parallelism and max parallelism of each vertex, in topology order.
    pub current: Vec<(u32, u32)>,
    pub slots_per_task_manager: u32,
}

impl Context<'_> {
    /// The earliest time a full window is available for every vertex, if each has a sample.
    pub fn first_full_window_ms(&self) -> Option<u64> {
        let mut latest_first = 0;
        for (v, &(p, _)) in self.topology.vertices.iter().zip(&self.current) {
            latest_first = latest_first.max(self.history.first_since(&v.id, p, self.stable_since_ms)?);
        }
        Some(latest_first + self.config.metrics_window_ms)
    }
}

/// Evaluates every vertex over the window ending at `at_ms`, or says why it cannot.
pub(crate) fn evaluate_at(cx: &Context<'_>, at_ms: u64) -> Result<Vec<VertexEvaluation>, NoChangeReason> {
    let config = cx.config;
    let window_start = at_ms.checked_sub(config.metrics_window_ms);
    let mut target_rates: HashMap<&VertexId, (f64, f64)> = HashMap::new(); // target rate, output ratio
    let mut out = Vec::with_capacity(cx.topology.vertices.len());
    for (v, &(parallelism, own_max)) in cx.topology.vertices.iter().zip(&cx.current) {
        let first = cx.history.first_since(&v.id, parallelism, cx.stable_since_ms);
        let from_ms = match (first, window_start) {
            (Some(first), Some(start)) if first <= start => start,
            _ => {
                let until_ms = first.unwrap_or(cx.stable_since_ms) + config.metrics_window_ms;
                return Err(NoChangeReason::CollectingMetrics { vertex: v.id.clone(), until_ms });
            }
        };
        let w = cx.history.window(&v.id, parallelism, from_ms, at_ms);
        if w.samples < config.min_samples {
            return Err(NoChangeReason::TooFewSamples {
                vertex: v.id.clone(),
                samples: w.samples,
                needed: config.min_samples,
            });
        }

        let input_rate = if v.source && w.records_in_per_second <= NO_RATE {
            w.records_out_per_second
        } else {
            w.records_in_per_second
        };
        let target_rate = if v.source {
            let arrival = (input_rate + w.backlog_growth_per_second.unwrap_or(0.0)).max(0.0);
            let catch_up = match (w.backlog, config.catch_up_duration_ms) {
                (Some(backlog), ms) if ms > 0 => backlog / (ms as f64 / 1000.0),
                _ => 0.0,
            };
            arrival + catch_up
        } else {
            v.upstream.iter().map(|u| target_rates.get(u).map_or(0.0, |(rate, ratio)| rate * ratio)).sum()
        };
        let output_ratio = if input_rate > NO_RATE { w.records_out_per_second / input_rate } else { 1.0 };
        target_rates.insert(&v.id, (target_rate, output_ratio));

        let max_bound = own_max
            .min(config.vertex_max_parallelism)
            .min(config.tm_max_replicas.saturating_mul(cx.slots_per_task_manager))
            .max(1);
        let min_bound = config.vertex_min_parallelism.clamp(1, max_bound);
        let bounds = Bounds { current: parallelism, min: min_bound, max: max_bound };

        let idle = input_rate <= NO_RATE || w.busy_ratio < IDLE_BUSY_RATIO;
        let true_rate = (!idle).then(|| input_rate / w.busy_ratio);
        let utilization = true_rate.map(|capacity| target_rate / capacity);
        let (wanted_parallelism, reason) = match true_rate {
            None if input_rate <= NO_RATE && target_rate > NO_RATE => bounds.keep(VertexReason::Idle),
            None => (min_bound, VertexReason::Idle),
            Some(capacity) => wanted(config, bounds, target_rate, capacity),
        };
        out.push(VertexEvaluation {
            vertex: v.id.clone(),
            parallelism,
            max_parallelism: max_bound,
            samples: w.samples,
            input_rate,
            output_rate: w.records_out_per_second,
            busy_ratio: w.busy_ratio,
            back_pressured_ratio: w.back_pressured_ratio,
            true_rate,
            backlog: w.backlog,
            target_rate,
            utilization,
            wanted_parallelism,
            new_parallelism: parallelism,
            reason,
        });
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Bounds {
    current: u32,
    min: u32,
    max: u32,
}

impl Bounds {
    /// The current parallelism, brought within bounds.
    fn keep(self, reason: VertexReason) -> (u32, VertexReason) {
        let p = self.current.clamp(self.min, self.max);
        (p, if p == self.current { reason } else { VertexReason::OutOfBounds })
    }
}

/// The parallelism a measured vertex wants.
fn wanted(config: &AutoscalerConfig, b: Bounds, target_rate: f64, capacity: f64) -> (u32, VertexReason) {
    let target = config.target_utilization;
    let boundary = config.target_utilization_boundary;
    let utilization = target_rate / capacity;
    // A hair of tolerance, so that exactly `target + boundary` counts as within.
    if utilization >= target - boundary - 1e-9 && utilization <= target + boundary + 1e-9 {
        return b.keep(VertexReason::WithinBand);
    }
    let per_subtask = capacity / f64::from(b.current);
    let required = (target_rate / (per_subtask * target) - 1e-9).ceil();
    let required = if required >= f64::from(u32::MAX) { u32::MAX } else { (required as u32).max(1) };
    if required > b.max {
        return (b.max, VertexReason::AtMaxParallelism);
    }
    let required = required.max(b.min);
    if required > b.current {
        (required, VertexReason::ScaleUp)
    } else if required < b.current {
        (required, VertexReason::ScaleDown)
    } else if utilization < target && b.current == b.min {
        (b.current, VertexReason::AtMinParallelism)
    } else {
        b.keep(VertexReason::WithinBand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(current: u32) -> Bounds {
        Bounds { current, min: 1, max: 16 }
    }

    #[test]
    fn required_parallelism_is_target_over_true_rate_per_subtask_times_utilisation() {
        let c = AutoscalerConfig::default();
        // 2 subtasks of 500/s each; 2450/s at 70 % needs 2450 / 350 = 7 subtasks exactly.
        assert_eq!(wanted(&c, bounds(2), 2450.0, 1000.0), (7, VertexReason::ScaleUp));
        assert_eq!(wanted(&c, bounds(2), 2451.0, 1000.0), (8, VertexReason::ScaleUp));
        // Within the band 0.4..=1.0 nothing changes, at both edges.
        assert_eq!(wanted(&c, bounds(2), 1000.0, 1000.0), (2, VertexReason::WithinBand));
        assert_eq!(wanted(&c, bounds(2), 400.0, 1000.0), (2, VertexReason::WithinBand));
        // Below it: 390/s needs ceil(390 / 350) = 2 = current, so nothing changes either.
        assert_eq!(wanted(&c, bounds(2), 390.0, 1000.0), (2, VertexReason::WithinBand));
        assert_eq!(wanted(&c, bounds(4), 390.0, 2000.0), (2, VertexReason::ScaleDown));
        assert_eq!(wanted(&c, bounds(1), 10.0, 1000.0), (1, VertexReason::AtMinParallelism));
        assert_eq!(wanted(&c, bounds(2), 1e6, 1000.0), (16, VertexReason::AtMaxParallelism));
        assert_eq!(
            wanted(&c, Bounds { current: 20, min: 1, max: 16 }, 10_000.0, 20_000.0),
            (16, VertexReason::OutOfBounds)
        );
    }
}
