//! The autoscale step (`taskManager.autoscaler.mode: Rheo`): the operator as the realiser of
//! Rheo's autoscaler, as `rheo autoscale` is on one machine.
//!
//! On every pass over a running job it samples each vertex's subtask metrics from the
//! JobManager (`/jobs/:id/vertices/:vid/subtasks/metrics`), adds them to the job's metric window
//! (kept in memory, bounded to `metrics.window + scale-down.interval`), and hands the window to
//! the decision core ([`rheo_autoscaler::decide`]). The status shows each vertex's rate, busy
//! time and wanted parallelism and the decision in words; a decision to rescale is an Event
//! (`ScaledUp`, `ScaledDown`) and a [`RescaleProgress`] recorded before anything is touched.
//!
//! A rescale takes the same path as the local mode, with the TaskManager Deployment in place
//! of processes and the FlinkJob's scale subresource as the one place replicas are set (so an
//! HPA-style tool reading it sees the operator's number):
//! - **up**: hold the job at its parallelism (`PUT /jobs/:id/resource-requirements`, so the
//!   reactive JobManager does not rescale once per joining pod), set the replicas, wait until
//!   the new TaskManagers have registered their slots, then set the new parallelism: the job
//!   stops with a synchronous checkpoint and restarts from it, once, and nothing is replayed;
//! - **down**: set the new parallelism first (the job moves onto the first slots), then the
//!   replicas; the TaskManagers that go are idle (and one that is not leaves gracefully, through
//!   the same stop with a checkpoint).
//!
//! The window lives in the operator's memory: an operator restart collects a new one (as after a
//! rescale), which delays decisions but never makes a wrong one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use rheo_autoscaler::rest::{METRICS, is_running, requirements, sample, topology};
use rheo_autoscaler::{
    AutoscalerConfig, AutoscalerInput, Decision, MetricHistory, NoChangeReason, Outcome, VertexEvaluation, VertexReason,
};
use rheo_rest::JobDetails;
use serde_json::json;
use tracing::{info, warn};

use super::{Error, Pass, REQUEUE_BUSY};
use crate::build::{self, MANAGER};
use crate::crd::*;

/// How long a rescale may take (pods scheduled and started, TaskManagers registered, the job
/// stopped with a checkpoint and redeployed) before the operator gives up on it.
pub const RESCALE_TIMEOUT: Duration = Duration::from_secs(300);

/// The metric windows of every autoscaled job this operator watches, by `namespace/name`.
#[derive(Default)]
pub struct Windows(Mutex<HashMap<String, JobWindow>>);

/// One job's samples, for one job id (a new job, after an upgrade, starts a new window).
struct JobWindow {
    job_id: String,
    history: MetricHistory,
    /// The job's parallelism in the newest sample, and since when (ms) it has run at it: a
    /// rescale the operator did not ask for (a pod deleted, a TaskManager lost) restarts the
    /// stabilisation period too.
    parallelism: Option<u32>,
    parallelism_since_ms: u64,
}

impl Windows {
    fn forget(&self, key: &str) {
        self.0.lock().expect("the windows' lock is never poisoned").remove(key);
    }
}

/// The decision core's options: Flink's `job.autoscaler.*` keys from `flinkConfiguration`, the
/// TaskManager bounds from `taskManager.autoscaler`.
pub fn autoscaler_config(spec: &FlinkJobSpec) -> Result<AutoscalerConfig, rheo_autoscaler::AutoscalerError> {
    let bounds = spec.task_manager.autoscaler.as_ref().map(|a| {
        [
            (rheo_autoscaler::TM_MIN_REPLICAS, a.min_replicas.max(0).to_string()),
            (rheo_autoscaler::TM_MAX_REPLICAS, a.max_replicas.max(0).to_string()),
        ]
    });
    let keys = spec
        .flink_configuration
        .iter()
        .filter(|(k, _)| {
            k.starts_with("job.autoscaler.")
                && *k != rheo_autoscaler::TM_MIN_REPLICAS
                && *k != rheo_autoscaler::TM_MAX_REPLICAS
        })
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let bounds: Vec<(&str, &str)> = bounds.iter().flatten().map(|(k, v)| (*k, v.as_str())).collect();
    AutoscalerConfig::from_flink_config(keys.chain(bounds))
}

/// The autoscaler spec of a FlinkJob the operator scales itself.
pub fn rheo_autoscaler(spec: &FlinkJobSpec) -> Option<&AutoscalerSpec> {
    spec.task_manager.autoscaler.as_ref().filter(|a| a.mode == AutoscalerMode::Rheo)
}

/// What a rescale in progress does next.
#[derive(Clone, Debug, PartialEq)]
pub enum RescaleStep {
    /// Nothing yet: pods are starting, or the job is redeploying.
    Wait,
    /// The TaskManagers have registered: set the new parallelism.
    SetParallelism,
    /// The job runs at the new parallelism: remove the TaskManagers it no longer uses.
    RemoveTaskManagers,
    /// Done.
    Done,
    /// It took longer than [`RESCALE_TIMEOUT`].
    TimedOut,
}

/// Pure: the next step of `rescale`, from the slots registered with the JobManager, the
/// parallelism the job runs at with every subtask running (none while it redeploys), and the
/// time since the rescale started.
pub fn rescale_step(
    rescale: &RescaleProgress,
    registered_slots: Option<u32>,
    running_at: Option<u32>,
    elapsed: Duration,
) -> RescaleStep {
    let target = rescale.parallelism.max(1) as u32;
    match rescale.phase {
        RescalePhase::AddingTaskManagers if registered_slots.is_some_and(|s| s >= target) => {
            if rescale.parallelism == rescale.from_parallelism {
                RescaleStep::Done
            } else {
                RescaleStep::SetParallelism
            }
        }
        RescalePhase::Redeploying if running_at == Some(target) => {
            if rescale.task_managers < rescale.from_task_managers {
                RescaleStep::RemoveTaskManagers
            } else {
                RescaleStep::Done
            }
        }
        _ if elapsed > RESCALE_TIMEOUT => RescaleStep::TimedOut,
        _ => RescaleStep::Wait,
    }
}

/// Pure: how a rescale from (`from_parallelism`, `from_tms`) to (`parallelism`, `tms`) starts.
/// More TaskManagers come first; otherwise the parallelism changes first.
pub fn rescale_start(from_parallelism: u32, parallelism: u32, from_tms: i32, tms: i32) -> RescalePhase {
    if tms > from_tms || parallelism == from_parallelism {
        RescalePhase::AddingTaskManagers
    } else {
        RescalePhase::Redeploying
    }
}

fn rate(r: f64) -> String {
    if r >= 100.0 { format!("{r:.0}/s") } else { format!("{r:.1}/s") }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `in 40s` from `now_ms` to `until_ms`.
fn within(now_ms: u64, until_ms: u64) -> String {
    format!("in {}s", until_ms.saturating_sub(now_ms).div_ceil(1000))
}

fn vertex_name<'a>(job: &'a JobDetails, id: &'a str) -> &'a str {
    job.vertices.iter().find(|v| v.id == id).map_or(id, |v| v.name.as_str())
}

/// Pure: why nothing changes, in words, with times relative to `now_ms`.
pub fn no_change_text(reason: &NoChangeReason, job: &JobDetails, now_ms: u64) -> String {
    match reason {
        NoChangeReason::MissingMetrics { vertex } => format!("no metrics of {} yet", vertex_name(job, &vertex.0)),
        NoChangeReason::Stabilizing { until_ms } => {
            format!("stabilising after the last rescale: metrics count {}", within(now_ms, *until_ms))
        }
        NoChangeReason::CollectingMetrics { vertex, until_ms } => format!(
            "collecting metrics: the window of {} is full {}",
            vertex_name(job, &vertex.0),
            within(now_ms, *until_ms)
        ),
        NoChangeReason::TooFewSamples { vertex, samples, needed } => {
            format!("too few samples of {} in the window ({samples} of {needed})", vertex_name(job, &vertex.0))
        }
        NoChangeReason::NothingToChange => "every vertex keeps its parallelism".into(),
        NoChangeReason::ScaleDownDelayed { until_ms } => {
            format!(
                "fewer subtasks would do; scale-down.interval allows it {} if that holds",
                within(now_ms, *until_ms)
            )
        }
    }
}

/// Pure: one vertex's evaluation in words, e.g. `Map 1000/s, 98% busy: wants 3 (ScaleUp)`.
fn vertex_text(job: &JobDetails, e: &VertexEvaluation) -> String {
    let mut s = format!("{} {}, {:.0}% busy", vertex_name(job, &e.vertex.0), rate(e.input_rate), e.busy_ratio * 100.0);
    if let Some(backlog) = e.backlog.filter(|b| *b > 0.0) {
        s.push_str(&format!(", {backlog:.0} pending"));
    }
    s.push_str(&format!(": wants {} ({})", e.wanted_parallelism, reason_name(&e.reason)));
    s
}

fn reason_name(reason: &VertexReason) -> &'static str {
    match reason {
        VertexReason::WithinBand => "WithinBand",
        VertexReason::ScaleUp => "ScaleUp",
        VertexReason::ScaleDown => "ScaleDown",
        VertexReason::ScaleDownDelayed { .. } => "ScaleDownDelayed",
        VertexReason::Idle => "Idle",
        VertexReason::AtMaxParallelism => "AtMaxParallelism",
        VertexReason::AtMinParallelism => "AtMinParallelism",
        VertexReason::OutOfBounds => "OutOfBounds",
    }
}

/// Pure: a rescale decision in words: the change, then the vertices that asked for it.
pub fn rescale_text(job: &JobDetails, outcome: &Outcome, from: (u32, i32), to: (u32, i32)) -> String {
    let asking: Vec<String> = outcome
        .vertices
        .iter()
        .filter(|e| e.wanted_parallelism != e.parallelism)
        .map(|e| vertex_text(job, e))
        .collect();
    format!("parallelism {} → {}, TaskManagers {} → {}: {}", from.0, to.0, from.1, to.1, asking.join("; "))
}

/// Pure: the status of each vertex: its evaluation if there is one, else its newest sample.
pub fn vertex_status(job: &JobDetails, outcome: &Outcome, history: &MetricHistory) -> Vec<AutoscalerVertexStatus> {
    job.vertices
        .iter()
        .map(|v| {
            let mut s = AutoscalerVertexStatus {
                id: v.id.clone(),
                name: v.name.clone(),
                parallelism: v.parallelism as i32,
                ..Default::default()
            };
            if let Some(e) = outcome.vertex(&v.id) {
                s.records_in_per_second = round(e.input_rate, 1);
                s.busy_time_ms_per_second = round(e.busy_ratio * 1000.0, 0);
                s.back_pressured_time_ms_per_second = round(e.back_pressured_ratio * 1000.0, 0);
                s.pending_records = e.backlog.map(|b| round(b, 0));
                s.target_rate = Some(round(e.target_rate, 1));
                s.true_processing_rate = e.true_rate.map(|r| round(r, 1));
                s.wanted_parallelism = Some(e.wanted_parallelism as i32);
                s.reason = Some(reason_name(&e.reason).into());
            } else if let Some(latest) = history.latest(&v.id.clone().into()) {
                s.records_in_per_second = round(latest.num_records_in_per_second, 1);
                s.busy_time_ms_per_second = round(latest.busy_time_ms_per_second, 0);
                s.back_pressured_time_ms_per_second = round(latest.back_pressured_time_ms_per_second, 0);
                s.pending_records = latest.pending_records.map(|b| round(b, 0));
            }
            s
        })
        .collect()
}

fn ms(t: Timestamp) -> u64 {
    t.as_millisecond().max(0) as u64
}

fn parse_ms(t: Option<&str>) -> Option<u64> {
    t.and_then(|t| t.parse::<Timestamp>().ok()).map(ms)
}

impl Pass<'_> {
    fn window_key(&self) -> String {
        format!("{}/{}", self.fj.namespace(), self.name())
    }

    /// Drops the job's metric window (the FlinkJob is being deleted).
    pub(super) fn forget_metrics(&self) {
        self.ctx.autoscaler.forget(&self.window_key());
    }

    /// The autoscale step over the job as `observe` read it. Returns how soon the next pass is
    /// wanted, or `None` when the operator does not scale this job.
    pub(super) async fn autoscale(&mut self, deployed: &FlinkJobSpec) -> Result<Option<Duration>, Error> {
        let spec = rheo_autoscaler(&self.fj.spec).cloned();
        let Some(spec) = spec.filter(|_| deployed.task_manager.autoscaler.is_some()) else {
            // Not (or no longer) the operator's to scale.
            if self.status.autoscaler.take().is_some() {
                self.ctx.autoscaler.forget(&self.window_key());
            }
            return Ok(None);
        };
        let interval = Duration::from_secs(spec.metrics_interval_seconds.max(1) as u64);
        let config = match autoscaler_config(&self.fj.spec) {
            Ok(c) => c,
            // Validation refuses such a spec before this step; nothing to do if one slips by.
            Err(e) => {
                warn!(job = self.name(), error = %e, "invalid autoscaler options");
                return Ok(Some(interval));
            }
        };
        let Some(job) = self.job_details.clone() else { return Ok(Some(interval)) };
        let mut state = self.status.autoscaler.take().unwrap_or_default();
        let next = if let Some(rescale) = state.rescale.clone() {
            self.continue_rescale(&mut state, rescale, &job).await?;
            if state.rescale.is_some() { REQUEUE_BUSY.min(interval) } else { interval }
        } else {
            self.evaluate(&mut state, &job, &config).await?;
            if state.rescale.is_some() { REQUEUE_BUSY.min(interval) } else { interval }
        };
        self.status.autoscaler = Some(state);
        Ok(Some(next))
    }

    /// Samples the metrics, decides, and starts a rescale if the decision asks for one.
    async fn evaluate(
        &mut self,
        state: &mut AutoscalerStatus,
        job: &JobDetails,
        config: &AutoscalerConfig,
    ) -> Result<(), Error> {
        if !is_running(job) {
            return Ok(());
        }
        let (url, job_id) = (self.rest_url(), self.job_id());
        let now_ms = ms(self.now);
        let mut samples = Vec::with_capacity(job.vertices.len());
        for vertex in &job.vertices {
            match self.ctx.jobmanagers.subtasks_metrics(&url, &job_id, &vertex.id, &METRICS).await {
                Ok(metrics) => samples.push(sample(vertex, &metrics, now_ms, config.busy_time_aggregator)),
                Err(e) => {
                    warn!(job = self.name(), vertex = vertex.id, error = %e, "cannot read the metrics; next pass");
                    return Ok(());
                }
            }
        }
        let task_managers = build::desired_task_managers(&self.fj.spec);
        let slots = self.fj.spec.task_manager.slots.max(1) as u32;
        let started_ms = [
            parse_ms(state.last_rescale_time.as_deref()),
            parse_ms(self.status.reconciliation.running_since.as_deref()),
        ];
        let (outcome, vertices) = {
            let mut windows = self.ctx.autoscaler.0.lock().expect("the windows' lock is never poisoned");
            let window = windows.entry(self.window_key()).or_insert_with(|| JobWindow {
                job_id: job_id.clone(),
                history: MetricHistory::new(),
                parallelism: None,
                parallelism_since_ms: now_ms,
            });
            if window.job_id != job_id {
                *window = JobWindow {
                    job_id: job_id.clone(),
                    history: MetricHistory::new(),
                    parallelism: None,
                    parallelism_since_ms: now_ms,
                };
            }
            if window.parallelism != job.parallelism() {
                window.parallelism = job.parallelism();
                window.parallelism_since_ms = now_ms;
            }
            for s in samples {
                window.history.push(s);
            }
            let keep = config.metrics_window_ms + config.scale_down_interval_ms + 2 * state_interval_ms(self.fj);
            window.history.trim_before(now_ms.saturating_sub(keep));
            let topology = topology(job);
            let input = AutoscalerInput {
                now_ms,
                topology: &topology,
                history: &window.history,
                last_rescale_ms: started_ms
                    .into_iter()
                    .flatten()
                    .chain([window.parallelism_since_ms])
                    .max()
                    .unwrap_or(0),
                task_managers: task_managers.max(0) as u32,
                slots_per_task_manager: slots,
            };
            match rheo_autoscaler::decide(&input, config) {
                Ok(outcome) => {
                    let vertices = vertex_status(job, &outcome, &window.history);
                    (outcome, vertices)
                }
                Err(e) => {
                    warn!(job = self.name(), error = %e, "the autoscaler cannot decide");
                    return Ok(());
                }
            }
        };
        state.last_evaluation_time = Some(self.now.to_string());
        state.vertices = vertices;
        let from = (job.parallelism().unwrap_or(1), task_managers);
        let (to_parallelism, to_tms) = match &outcome.decision {
            Decision::NoChange { reason } => {
                state.decision = Some("NoChange".into());
                state.reason = Some(no_change_text(reason, job, now_ms));
                return Ok(());
            }
            Decision::Rescale { parallelism, task_managers, .. } => {
                (parallelism.iter().map(|c| c.to).max().unwrap_or(1), *task_managers as i32)
            }
        };
        if (to_parallelism, to_tms) == from {
            // Rheo's vertices share slots and run at one job parallelism (the largest a vertex
            // wants): a vertex wanting less than that changes nothing.
            state.decision = Some("NoChange".into());
            state.reason = Some(format!(
                "the job runs at parallelism {to_parallelism}, the most a vertex wants: {}",
                outcome.vertices.iter().map(|e| vertex_text(job, e)).collect::<Vec<_>>().join("; ")
            ));
            return Ok(());
        }
        let up = to_parallelism > from.0 || (to_parallelism == from.0 && to_tms > from.1);
        let text = rescale_text(job, &outcome, from, (to_parallelism, to_tms));
        info!(job = self.name(), decision = %text, "autoscaler: rescaling");
        state.decision = Some(if up { "ScaleUp" } else { "ScaleDown" }.into());
        state.reason = Some(text.clone());
        let rescale = RescaleProgress {
            from_parallelism: from.0 as i32,
            parallelism: to_parallelism as i32,
            from_task_managers: from.1,
            task_managers: to_tms,
            phase: rescale_start(from.0, to_parallelism, from.1, to_tms),
            since: self.now.to_string(),
        };
        state.rescale = Some(rescale.clone());
        // Kube's Recorder folds Events of the same (type, reason, action) into a series that
        // keeps the first note: the target in the action keeps different decisions apart.
        let reason = if up { "ScaledUp" } else { "ScaledDown" };
        self.event(EventType::Normal, reason, &format!("AutoscaleTo{to_parallelism}"), text);
        // Recorded before anything is touched: a pass that fails halfway carries on from here.
        self.status.autoscaler = Some(state.clone());
        self.write_status().await?;

        match rescale.phase {
            RescalePhase::AddingTaskManagers => {
                if to_parallelism != from.0 {
                    // Hold the job where it is while the pods join (reactive mode would
                    // otherwise rescale once per TaskManager that registers).
                    self.set_parallelism(job, from.0).await;
                }
                self.scale_task_managers(to_tms).await?;
            }
            RescalePhase::Redeploying => self.set_parallelism(job, to_parallelism).await,
        }
        Ok(())
    }

    /// Carries on the rescale in progress.
    async fn continue_rescale(
        &mut self,
        state: &mut AutoscalerStatus,
        mut rescale: RescaleProgress,
        job: &JobDetails,
    ) -> Result<(), Error> {
        let elapsed = rescale
            .since
            .parse::<Timestamp>()
            .map(|t| Duration::try_from(self.now.duration_since(t)).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        let registered_slots = match rescale.phase {
            RescalePhase::AddingTaskManagers => match self.ctx.jobmanagers.taskmanagers(&self.rest_url()).await {
                Ok(info) => Some(info.taskmanagers.iter().map(|tm| tm.slots_number).sum::<u32>()),
                Err(e) => {
                    warn!(job = self.name(), error = %e, "cannot read the TaskManagers");
                    None
                }
            },
            RescalePhase::Redeploying => None,
        };
        let running_at = if is_running(job) { job.parallelism() } else { None };
        match rescale_step(&rescale, registered_slots, running_at, elapsed) {
            RescaleStep::Wait => {
                state.rescale = Some(rescale);
            }
            RescaleStep::SetParallelism => {
                rescale.phase = RescalePhase::Redeploying;
                state.rescale = Some(rescale.clone());
                self.status.autoscaler = Some(state.clone());
                self.write_status().await?;
                self.set_parallelism(job, rescale.parallelism as u32).await;
            }
            RescaleStep::RemoveTaskManagers => {
                self.scale_task_managers(rescale.task_managers).await?;
                self.rescale_done(state, &rescale, elapsed);
            }
            RescaleStep::Done => self.rescale_done(state, &rescale, elapsed),
            RescaleStep::TimedOut => {
                let message = format!(
                    "the rescale to parallelism {} on {} TaskManagers did not complete within {}s ({:?}); the \
                     autoscaler decides again after its stabilisation period",
                    rescale.parallelism,
                    rescale.task_managers,
                    RESCALE_TIMEOUT.as_secs(),
                    rescale.phase
                );
                warn!(job = self.name(), %message, "autoscaler");
                self.event(EventType::Warning, "RescaleTimedOut", "Autoscale", message);
                state.rescale = None;
                state.last_rescale_time = Some(self.now.to_string());
            }
        }
        Ok(())
    }

    fn rescale_done(&mut self, state: &mut AutoscalerStatus, rescale: &RescaleProgress, elapsed: Duration) {
        info!(
            job = self.name(),
            parallelism = rescale.parallelism,
            task_managers = rescale.task_managers,
            seconds = elapsed.as_secs_f64(),
            "autoscaler: rescaled"
        );
        self.event(
            EventType::Normal,
            "Rescaled",
            &format!("AutoscaleTo{}", rescale.parallelism),
            format!(
                "the job runs at parallelism {} on {} TaskManagers, {}s after the decision",
                rescale.parallelism,
                rescale.task_managers,
                elapsed.as_secs()
            ),
        );
        state.rescale = None;
        state.last_rescale_time = Some(self.now.to_string());
    }

    /// `PUT /jobs/:id/resource-requirements`: the job stops with a synchronous checkpoint and
    /// restarts from it at `parallelism` (once the slots are there). A failure is retried by
    /// the rescale's timeout, not here: the next decision sees the job as it is.
    async fn set_parallelism(&mut self, job: &JobDetails, parallelism: u32) {
        let (url, job_id) = (self.rest_url(), self.job_id());
        if let Err(e) =
            self.ctx.jobmanagers.set_resource_requirements(&url, &job_id, requirements(job, parallelism)).await
        {
            warn!(job = self.name(), parallelism, error = %e, "cannot set the job's resource requirements");
        }
    }

    /// Sets the FlinkJob's replicas through its scale subresource, as `kubectl scale` or an HPA
    /// does: the change triggers the next pass, which scales the TaskManager Deployment.
    async fn scale_task_managers(&mut self, replicas: i32) -> Result<(), Error> {
        let api: Api<FlinkJob> = Api::namespaced(self.ctx.client.clone(), self.fj.namespace());
        let patch = json!({"spec": {"replicas": replicas}});
        api.patch_scale(self.name(), &PatchParams::apply(MANAGER), &Patch::Merge(&patch)).await?;
        Ok(())
    }
}

/// The sampling interval in ms, for how much history to keep beyond the windows.
fn state_interval_ms(fj: &FlinkJob) -> u64 {
    rheo_autoscaler(&fj.spec).map_or(0, |a| a.metrics_interval_seconds.max(1) as u64 * 1000)
}

/// The grace of a rescale: a job RESTARTING while the operator rescales it is not failing.
pub fn rescale_in_progress(status: &FlinkJobStatus) -> bool {
    status.autoscaler.as_ref().is_some_and(|a| a.rescale.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(phase: RescalePhase, from: (i32, i32), to: (i32, i32)) -> RescaleProgress {
        RescaleProgress {
            from_parallelism: from.0,
            parallelism: to.0,
            from_task_managers: from.1,
            task_managers: to.1,
            phase,
            since: "2026-11-23T12:00:00Z".into(),
        }
    }

    #[test]
    fn a_scale_up_waits_for_the_slots_then_sets_the_parallelism_once() {
        let up = progress(RescalePhase::AddingTaskManagers, (1, 1), (3, 3));
        assert_eq!(rescale_start(1, 3, 1, 3), RescalePhase::AddingTaskManagers);
        let s = Duration::from_secs;
        assert_eq!(rescale_step(&up, Some(2), Some(1), s(20)), RescaleStep::Wait);
        assert_eq!(rescale_step(&up, None, Some(1), s(20)), RescaleStep::Wait, "the JobManager cannot say");
        assert_eq!(rescale_step(&up, Some(3), Some(1), s(25)), RescaleStep::SetParallelism);
        let redeploying = RescaleProgress { phase: RescalePhase::Redeploying, ..up.clone() };
        assert_eq!(rescale_step(&redeploying, None, None, s(30)), RescaleStep::Wait);
        assert_eq!(rescale_step(&redeploying, None, Some(1), s(30)), RescaleStep::Wait);
        assert_eq!(rescale_step(&redeploying, None, Some(3), s(35)), RescaleStep::Done);
        assert_eq!(rescale_step(&up, Some(2), Some(1), s(301)), RescaleStep::TimedOut);
    }

    #[test]
    fn a_scale_down_redeploys_first_then_removes_taskmanagers() {
        assert_eq!(rescale_start(3, 1, 3, 1), RescalePhase::Redeploying);
        let down = progress(RescalePhase::Redeploying, (3, 3), (1, 1));
        let s = Duration::from_secs;
        assert_eq!(rescale_step(&down, None, Some(3), s(5)), RescaleStep::Wait);
        assert_eq!(rescale_step(&down, None, Some(1), s(9)), RescaleStep::RemoveTaskManagers);
        // Only the TaskManager count changes (slots to spare): added, and done once registered.
        assert_eq!(rescale_start(2, 2, 1, 2), RescalePhase::AddingTaskManagers);
        let more = progress(RescalePhase::AddingTaskManagers, (2, 1), (2, 2));
        assert_eq!(rescale_step(&more, Some(4), Some(2), s(9)), RescaleStep::Done);
    }

    #[test]
    fn options_come_from_flink_keys_and_the_replica_bounds() {
        let mut spec: FlinkJobSpec = serde_yaml::from_str(
            "image: rheo:1\nflinkConfiguration: {state.checkpoints.dir: 's3://b/c', job.autoscaler.metrics.window: 1min, \
             job.autoscaler.taskmanager.max-replicas: '99'}\n\
             taskManager: {replicas: 2, autoscaler: {minReplicas: 2, maxReplicas: 5, mode: Rheo}}\njob: {entry: e}",
        )
        .unwrap();
        let c = autoscaler_config(&spec).unwrap();
        assert_eq!((c.metrics_window_ms, c.tm_min_replicas, c.tm_max_replicas), (60_000, 2, 5));
        assert_eq!(rheo_autoscaler(&spec).unwrap().metrics_interval_seconds, 10);
        assert_eq!(c.busy_time_aggregator, rheo_autoscaler::BusyTimeAggregator::Max);
        spec.flink_configuration.insert(rheo_autoscaler::BUSY_TIME_AGGREGATOR.into(), "AVG".into());
        let c = autoscaler_config(&spec).unwrap();
        assert_eq!(c.busy_time_aggregator, rheo_autoscaler::BusyTimeAggregator::Avg);
        spec.flink_configuration.insert(rheo_autoscaler::BUSY_TIME_AGGREGATOR.into(), "P99".into());
        assert!(autoscaler_config(&spec).unwrap_err().to_string().contains("busy-time.aggregator"));
        spec.flink_configuration.remove(rheo_autoscaler::BUSY_TIME_AGGREGATOR);
        spec.flink_configuration.insert("job.autoscaler.target.utilization".into(), "2".into());
        assert!(autoscaler_config(&spec).unwrap_err().to_string().contains("job.autoscaler.target.utilization"));
        spec.task_manager.autoscaler.as_mut().unwrap().mode = AutoscalerMode::External;
        assert!(rheo_autoscaler(&spec).is_none());
    }

    #[test]
    fn reasons_read_as_sentences() {
        let vertex = rheo_rest::JobVertexSummary {
            id: "v1".into(),
            slot_sharing_group_id: None,
            name: "Source: numbers".into(),
            max_parallelism: 128,
            parallelism: 1,
            status: "RUNNING".into(),
            start_time: 0,
            end_time: -1,
            duration: 1,
            tasks: [("RUNNING".to_string(), 1)].into(),
            metrics: Default::default(),
        };
        let job = JobDetails {
            jid: rheo_rest::JobId::derived_from("j"),
            application_id: None,
            name: "n".into(),
            is_stoppable: false,
            state: rheo_rest::JobState::Running,
            job_type: None,
            scheduler_type: None,
            start_time: 0,
            end_time: -1,
            duration: 1,
            max_parallelism: -1,
            now: 1,
            timestamps: Default::default(),
            vertices: vec![vertex],
            status_counts: Default::default(),
            plan: None,
            pending_operators: None,
        };
        let collecting = NoChangeReason::CollectingMetrics { vertex: "v1".into(), until_ms: 31_500 };
        assert_eq!(
            no_change_text(&collecting, &job, 10_000),
            "collecting metrics: the window of Source: numbers is full in 22s"
        );
        let delayed = NoChangeReason::ScaleDownDelayed { until_ms: 70_000 };
        assert!(no_change_text(&delayed, &job, 10_000).contains("in 60s"));
    }
}
