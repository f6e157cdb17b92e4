//! The policy: stabilisation, the scale-down delay, and job parallelism mapped to TaskManagers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::AutoscalerError;
use crate::config::AutoscalerConfig;
use crate::evaluate::{Context, VertexEvaluation, VertexReason, evaluate_at};
use crate::metrics::{MetricHistory, Topology, VertexId};

/// What the autoscaler looks at.
#[derive(Debug, Clone, Copy)]
pub struct AutoscalerInput<'a> {
    /// The time of the decision, on the samples' clock.
    pub now_ms: u64,
    /// The job graph.
    pub topology: &'a Topology,
    /// The samples of every vertex; the newest sample of a vertex gives its current parallelism.
    pub history: &'a MetricHistory,
    /// When the job last started running at its current parallelism: the last rescale, or the
    /// job's start if it was never rescaled.
    pub last_rescale_ms: u64,
    /// TaskManagers running now.
    pub task_managers: u32,
    /// Slots of each TaskManager (`taskmanager.numberOfTaskSlots`).
    pub slots_per_task_manager: u32,
}

/// Why nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum NoChangeReason {
    /// A vertex has no samples at all.
    MissingMetrics {
        /// The vertex.
        vertex: VertexId,
    },
    /// The job was (re)started less than `stabilization.interval` ago.
    Stabilizing {
        /// When stabilisation ends.
        until_ms: u64,
    },
    /// A full `metrics.window` has not been collected since stabilisation ended.
    CollectingMetrics {
        /// The vertex whose window is not yet full.
        vertex: VertexId,
        /// When it will be full, if samples keep coming.
        until_ms: u64,
    },
    /// The window holds too few samples of a vertex.
    TooFewSamples {
        /// The vertex.
        vertex: VertexId,
        /// Samples in its window.
        samples: usize,
        /// Samples needed (`metrics.window.min-samples`).
        needed: usize,
    },
    /// Every vertex keeps its parallelism.
    NothingToChange,
    /// Some vertex wants fewer subtasks, but has not wanted that for `scale-down.interval`.
    ScaleDownDelayed {
        /// The earliest time a scale-down can happen.
        until_ms: u64,
    },
}

/// One vertex's parallelism before and after a rescale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParallelismChange {
    /// The vertex.
    pub vertex: VertexId,
    /// Its parallelism now.
    pub from: u32,
    /// Its parallelism after the rescale (equal to `from` when it keeps it).
    pub to: u32,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Decision {
    /// Keep the job as it is.
    NoChange {
        /// Why.
        reason: NoChangeReason,
    },
    /// Redeploy the job at new parallelisms on this many TaskManagers.
    Rescale {
        /// Every vertex, in topological order, with its parallelism before and after.
        parallelism: Vec<ParallelismChange>,
        /// TaskManagers now.
        task_managers_from: u32,
        /// TaskManagers wanted: enough slots for the largest parallelism, within the
        /// configured replica bounds.
        task_managers: u32,
    },
}

impl Decision {
    /// The parallelism a vertex gets from a rescale.
    pub fn new_parallelism(&self, vertex: &str) -> Option<u32> {
        match self {
            Decision::Rescale { parallelism, .. } => parallelism.iter().find(|c| c.vertex.0 == vertex).map(|c| c.to),
            Decision::NoChange { .. } => None,
        }
    }

    /// The TaskManager count a rescale asks for.
    pub fn task_managers(&self) -> Option<u32> {
        match self {
            Decision::Rescale { task_managers, .. } => Some(*task_managers),
            Decision::NoChange { .. } => None,
        }
    }
}

/// A decision and the per-vertex evaluation behind it (empty when the metrics did not allow
/// one), for an operator's status and Events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The decision's time.
    pub evaluated_at_ms: u64,
    /// What to do.
    pub decision: Decision,
    /// Each vertex's rates and wanted parallelism, in topological order.
    pub vertices: Vec<VertexEvaluation>,
}

impl Outcome {
    fn no_change(now_ms: u64, reason: NoChangeReason, vertices: Vec<VertexEvaluation>) -> Self {
        Self { evaluated_at_ms: now_ms, decision: Decision::NoChange { reason }, vertices }
    }

    /// The evaluation of one vertex.
    pub fn vertex(&self, vertex: &str) -> Option<&VertexEvaluation> {
        self.vertices.iter().find(|e| e.vertex.0 == vertex)
    }
}

/// Decides, from the metric history, whether and how to rescale the job. A pure function:
/// the same input always gives the same outcome.
pub fn decide(input: &AutoscalerInput<'_>, config: &AutoscalerConfig) -> Result<Outcome, AutoscalerError> {
    config.validate()?;
    input.topology.validate()?;
    if input.slots_per_task_manager == 0 {
        return Err(AutoscalerError::NoSlots);
    }
    let now = input.now_ms;

    let mut current = Vec::with_capacity(input.topology.vertices.len());
    for v in &input.topology.vertices {
        match input.history.latest(&v.id) {
            Some(s) => current.push((s.parallelism, s.max_parallelism)),
            None => {
                return Ok(Outcome::no_change(now, NoChangeReason::MissingMetrics { vertex: v.id.clone() }, vec![]));
            }
        }
    }
    let stable_since_ms = input.last_rescale_ms.saturating_add(config.stabilization_interval_ms);
    if now < stable_since_ms {
        return Ok(Outcome::no_change(now, NoChangeReason::Stabilizing { until_ms: stable_since_ms }, vec![]));
    }
    let cx = Context {
        topology: input.topology,
        history: input.history,
        config,
        stable_since_ms,
        current,
        slots_per_task_manager: input.slots_per_task_manager,
    };
    let mut vertices = match evaluate_at(&cx, now) {
        Ok(v) => v,
        Err(reason) => return Ok(Outcome::no_change(now, reason, vec![])),
    };

    if vertices.iter().any(|e| e.wanted_parallelism < e.parallelism) {
        delay_scale_down(&cx, now, &mut vertices);
    }
    for e in &mut vertices {
        if e.wanted_parallelism > e.parallelism {
            e.new_parallelism = e.wanted_parallelism;
        }
    }

    if vertices.iter().all(|e| e.new_parallelism == e.parallelism) {
        let delayed = vertices
            .iter()
            .filter_map(|e| match e.reason {
                VertexReason::ScaleDownDelayed { until_ms } => Some(until_ms),
                _ => None,
            })
            .min();
        let reason = match delayed {
            Some(until_ms) => NoChangeReason::ScaleDownDelayed { until_ms },
            None => NoChangeReason::NothingToChange,
        };
        return Ok(Outcome::no_change(now, reason, vertices));
    }
    let largest = vertices.iter().map(|e| e.new_parallelism).max().unwrap_or(1);
    let task_managers =
        largest.div_ceil(input.slots_per_task_manager).clamp(config.tm_min_replicas, config.tm_max_replicas);
    let parallelism = vertices
        .iter()
        .map(|e| ParallelismChange { vertex: e.vertex.clone(), from: e.parallelism, to: e.new_parallelism })
        .collect();
    let decision = Decision::Rescale { parallelism, task_managers_from: input.task_managers, task_managers };
    Ok(Outcome { evaluated_at_ms: now, decision, vertices })
}

/// Sets `new_parallelism` of each vertex that wants fewer subtasks: the most it wanted at any
/// time in `[now - scale-down.interval, now]`, if that is still fewer than it has; otherwise it
/// keeps its parallelism and its reason says until when.
fn delay_scale_down(cx: &Context<'_>, now: u64, vertices: &mut [VertexEvaluation]) {
    let delay = cx.config.scale_down_interval_ms;
    let down = |e: &VertexEvaluation| e.wanted_parallelism < e.parallelism;
    if delay == 0 {
        for e in vertices.iter_mut().filter(|e| down(e)) {
            e.new_parallelism = e.wanted_parallelism;
        }
        return;
    }
    let ready_ms = cx.first_full_window_ms().unwrap_or(now).saturating_add(delay);
    if now < ready_ms {
        for e in vertices.iter_mut().filter(|e| down(e)) {
            e.reason = VertexReason::ScaleDownDelayed { until_ms: ready_ms };
        }
        return;
    }

    // The wanted parallelism changes only when a sample enters or leaves the window; evaluating
    // at the period's start and at every sample time within it covers the whole period.
    let start = now - delay;
    let mut times = vec![start];
    times.extend(cx.history.timestamps(start + 1, now));
    if times.last() != Some(&now) {
        times.push(now);
    }
    let past: Vec<Option<Vec<VertexEvaluation>>> =
        times.iter().map(|&t| if t == now { None } else { evaluate_at(cx, t).ok() }).collect();
    for (i, e) in vertices.iter_mut().enumerate().filter(|(_, e)| down(e)) {
        let mut most = e.wanted_parallelism;
        let mut last_high = None;
        for (k, evals) in past.iter().enumerate() {
            let Some(wanted) = evals.as_ref().map(|ev| ev[i].wanted_parallelism) else { continue };
            most = most.max(wanted);
            if wanted >= e.parallelism {
                last_high = Some(k);
            }
        }
        match last_high {
            None => e.new_parallelism = most,
            Some(k) => {
                let until_ms = times.get(k + 1).copied().unwrap_or(now) + delay;
                e.reason = VertexReason::ScaleDownDelayed { until_ms };
            }
        }
    }
}

fn rate(r: f64) -> String {
    if r >= 100.0 { format!("{r:.0}/s") } else { format!("{r:.1}/s") }
}

fn percent(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

impl fmt::Display for NoChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingMetrics { vertex } => write!(f, "no metrics of vertex {vertex}"),
            Self::Stabilizing { until_ms } => write!(f, "stabilising after the last rescale until {until_ms} ms"),
            Self::CollectingMetrics { vertex, until_ms } => {
                write!(f, "collecting metrics: the window of vertex {vertex} is full at {until_ms} ms")
            }
            Self::TooFewSamples { vertex, samples, needed } => {
                write!(f, "too few samples of vertex {vertex} in the window ({samples} of {needed})")
            }
            Self::NothingToChange => write!(f, "every vertex keeps its parallelism"),
            Self::ScaleDownDelayed { until_ms } => write!(f, "scale-down delayed until {until_ms} ms"),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoChange { reason } => write!(f, "no change: {reason}"),
            Self::Rescale { parallelism, task_managers_from, task_managers } => {
                f.write_str("rescale ")?;
                let changed = parallelism.iter().filter(|c| c.from != c.to);
                for (i, c) in changed.enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{} {}→{}", c.vertex, c.from, c.to)?;
                }
                write!(f, "; TaskManagers {task_managers_from}→{task_managers}")
            }
        }
    }
}

impl fmt::Display for VertexReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WithinBand => f.write_str("within the utilisation band"),
            Self::ScaleUp => f.write_str("scale up"),
            Self::ScaleDown => f.write_str("scale down"),
            Self::ScaleDownDelayed { until_ms } => write!(f, "scale down delayed until {until_ms} ms"),
            Self::Idle => f.write_str("idle"),
            Self::AtMaxParallelism => f.write_str("at max parallelism"),
            Self::AtMinParallelism => f.write_str("at min parallelism"),
            Self::OutOfBounds => f.write_str("outside the parallelism bounds"),
        }
    }
}

impl fmt::Display for VertexEvaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: p{} in {} busy {}",
            self.vertex,
            self.parallelism,
            rate(self.input_rate),
            percent(self.busy_ratio)
        )?;
        if self.back_pressured_ratio >= 0.005 {
            write!(f, " back-pressured {}", percent(self.back_pressured_ratio))?;
        }
        if let Some(t) = self.true_rate {
            write!(f, " true {}", rate(t))?;
        }
        if let Some(b) = self.backlog {
            write!(f, " backlog {b:.0}")?;
        }
        write!(f, " target {}", rate(self.target_rate))?;
        if let Some(u) = self.utilization {
            write!(f, " (utilisation {})", percent(u))?;
        }
        write!(f, " → wants {}: {}", self.wanted_parallelism, self.reason)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.decision)?;
        for v in &self.vertices {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}
