//! The observe step: the job as its JobManager reports it (state, checkpoints, newest
//! exception), the pods when the JobManager cannot say what is wrong, and the savepoints the
//! spec asks for (by nonce or period).

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use rheo_rest::{CheckpointTriggerRequest, CheckpointType, JobExceptions, QueueStatusId, SavepointTriggerRequest};
use tracing::{info, warn};

use super::apply::ApplyError;
use super::decide::{self, FailureStep};
use super::{Error, Pass, Problem, REQUEUE_API_ERROR, REQUEUE_BUSY, REQUEUE_STEADY, REQUEUE_UNREACHABLE};
use crate::build::{self, Plan};
use crate::crd::*;
use crate::jobmanager::JmError;

/// A pod or container that keeps the job from running, as its status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    pub container: String,
    /// The Kubernetes reason: `CrashLoopBackOff`, `ImagePullBackOff`, `OOMKilled`, ...
    pub reason: String,
    pub message: String,
}

impl fmt::Display for PodProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pod {} container {}: {}", self.pod, self.container, self.reason)?;
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        Ok(())
    }
}

/// Reasons a container waits that do not go away by themselves.
const WAITING_PROBLEMS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Pure: the problems the pods' statuses show, JobManager pods first. A container's last
/// termination counts when it was OOMKilled or errored (it is restarting because of it).
pub fn pod_problems(pods: &[Pod]) -> Vec<PodProblem> {
    let mut out = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(status) = &pod.status else { continue };
        if let Some(cond) =
            status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")
        {
            out.push(PodProblem {
                pod: name.clone(),
                container: "-".into(),
                reason: cond.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                message: cond.message.clone().unwrap_or_default(),
            });
        }
        for c in status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()) {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let problem = match (waiting, last) {
                (Some(w), last) if WAITING_PROBLEMS.contains(&w.reason.as_deref().unwrap_or_default()) => {
                    // A crash loop says why it crashed in the last termination.
                    let why = last.and_then(|t| t.reason.clone()).map(|r| format!("last exit: {r}"));
                    let message = w.message.clone().filter(|m| !m.is_empty()).or(why);
                    Some((w.reason.clone().unwrap_or_default(), message.unwrap_or_default()))
                }
                (_, Some(t)) if t.reason.as_deref() == Some("OOMKilled") => Some((
                    "OOMKilled".to_string(),
                    format!("restarted {} times; raise its memory limit", c.restart_count),
                )),
                _ => None,
            };
            if let Some((reason, message)) = problem {
                out.push(PodProblem { pod: name.clone(), container: c.name.clone(), reason, message });
            }
        }
    }
    out.sort_by_key(|p| !p.pod.contains("-jobmanager"));
    out
}

/// The newest failure in one line: the exception's first line, and the task it happened in.
pub fn newest_failure(exceptions: &JobExceptions) -> Option<String> {
    let e = exceptions.exception_history.entries.iter().max_by_key(|e| e.timestamp)?;
    let first_line = e.stacktrace.lines().next().unwrap_or(&e.exception_name).trim();
    let headline = if first_line.is_empty() { e.exception_name.as_str() } else { first_line };
    Some(match &e.task_name {
        Some(task) => format!("{headline} (in {task})"),
        None => headline.to_string(),
    })
}

/// What the observation leads to.
enum Next {
    Requeue(Duration),
    /// The job is over: nothing to poll.
    Terminal,
    /// The job FAILED and its restart policy restarts it now.
    Restart,
}

/// Within this long of a rescale, a reactive job's restart is the rescale, not a failure.
const RESCALE_GRACE: Duration = Duration::from_secs(120);

impl Pass<'_> {
    /// The deployed spec is current: build and apply the children, observe the job.
    pub(super) async fn steady(mut self, deployed: FlinkJobSpec) -> Result<Action, Error> {
        let finished = self.status.lifecycle_state == Some(LifecycleState::Finished);
        if let Err(action) = self.apply_and_scale(&deployed, finished).await? {
            return Ok(action);
        }
        if deployed.job.state == DesiredJobState::Suspended {
            self.status.job_status.state = Some(JobStateView::Suspended);
            self.status.lifecycle_state = Some(LifecycleState::Suspended);
            self.write_status().await?;
            return Ok(Action::requeue(REQUEUE_STEADY));
        }
        if finished {
            self.write_status().await?;
            return Ok(Action::await_change());
        }
        let mut next = self.observe_job(&deployed).await?;
        if let Next::Requeue(after) = next
            && let Some(wanted) = self.autoscale(&deployed).await?
        {
            next = Next::Requeue(after.min(wanted));
        }
        if !matches!(next, Next::Terminal) && self.rollback_due() {
            return Box::pin(self.rollback(deployed)).await;
        }
        if self.status.reconciliation.rolled_back_spec.is_some()
            && self.status.lifecycle_state == Some(LifecycleState::Stable)
        {
            self.status.lifecycle_state = Some(LifecycleState::RolledBack);
            self.problem.get_or_insert_with(|| Problem {
                stalled: true,
                reason: "RolledBack",
                message: format!(
                    "the upgrade was not RUNNING within {}s and was rolled back: the last stable spec runs; the \
                     rolled-back spec is not deployed again until the spec changes",
                    self.fj.spec.rollback.readiness_timeout_seconds
                ),
            });
        }
        match next {
            Next::Requeue(after) => {
                self.write_status().await?;
                Ok(Action::requeue(after))
            }
            Next::Terminal => {
                // Stop the pods: a JobManager started again would run the job again.
                if let Err(action) = self.apply_and_scale(&deployed, true).await? {
                    return Ok(action);
                }
                self.write_status().await?;
                Ok(Action::await_change())
            }
            Next::Restart => {
                let restarts = self.status.reconciliation.failure_restarts + 1;
                self.status.reconciliation.failure_restarts = restarts;
                let upgrade = UpgradeProgress {
                    mode: UpgradeMode::LastState,
                    reason: UpgradeReason::FailureRestart,
                    since: self.now.to_string(),
                };
                info!(job = self.name(), restarts, "restarting the failed job (job.restartPolicy)");
                self.status.reconciliation.upgrade = Some(upgrade.clone());
                self.status.lifecycle_state = Some(LifecycleState::Upgrading);
                self.write_status().await?;
                // Boxed: the upgrade ends in `steady` again, for the new job.
                Box::pin(self.continue_upgrade(deployed, upgrade)).await
            }
        }
    }

    /// Builds and applies the children; `stopped`: no pods (a finished job). `Err(action)`:
    /// the API server refused an object, recorded in status.
    async fn apply_and_scale(&mut self, deployed: &FlinkJobSpec, stopped: bool) -> Result<Result<(), Action>, Error> {
        let mut plan =
            Plan::new(self.fj, deployed.clone(), self.job_id(), self.status.reconciliation.restore_path.clone());
        if stopped {
            plan = plan.stopped();
        }
        let children = build::build(self.fj, &plan)?;
        let desired_tms = plan.task_manager_replicas;
        let tm = match self.apply_children(children).await {
            Ok(tm) => tm,
            Err(ApplyError::Refused { object, source }) => {
                let message = format!("the API server refused {object}: {}", source.message);
                warn!(job = self.name(), %message, "apply failed");
                // A refusal the next identical request gets too needs the user.
                let stalled = !matches!(source.code, 409 | 429) && source.code < 500;
                self.problem = Some(Problem { stalled, reason: "ApplyFailed", message });
                self.write_status().await?;
                return Ok(Err(Action::requeue(REQUEUE_API_ERROR)));
            }
            Err(ApplyError::Other(e)) => return Err(e.into()),
        };
        let tm_status = tm.status.unwrap_or_default();
        let previous = self.written.task_manager.desired_replicas;
        let mut last_scale_time = self.status.task_manager.last_scale_time.clone();
        if let Some(previous) = previous
            && previous != desired_tms
            && !stopped
        {
            let reason = match (previous, desired_tms) {
                (_, 0) => "ScaledToZero",
                (0, _) => "ScaledFromZero",
                (p, d) if d > p => "ScaledUp",
                _ => "ScaledDown",
            };
            self.event(EventType::Normal, reason, "Scale", format!("TaskManagers {previous} → {desired_tms}"));
            last_scale_time = Some(self.now.to_string());
        }
        self.status.task_manager = TaskManagerStatus {
            replicas: tm_status.replicas.unwrap_or(0),
            ready_replicas: tm_status.ready_replicas.unwrap_or(0),
            desired_replicas: Some(desired_tms),
            selector: build::task_manager_selector(self.name()),
            last_scale_time,
        };
        Ok(Ok(()))
    }

    /// The pods' problems; none when they cannot be listed (that is no reason to fail a pass).
    pub(super) async fn pod_problems(&self) -> Vec<PodProblem> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.fj.namespace());
        let selector = format!("app.kubernetes.io/name=rheo,app.kubernetes.io/instance={}", self.name());
        match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => pod_problems(&list.items),
            Err(e) => {
                warn!(job = self.name(), error = %e, "cannot list pods");
                Vec::new()
            }
        }
    }

    /// Pod problems as the pass's problem, if any: returns whether there were some.
    async fn problem_from_pods(&mut self, context: &str) -> bool {
        let pods = self.pod_problems().await;
        let Some(first) = pods.first() else { return false };
        let reason = match first.reason.as_str() {
            "CrashLoopBackOff" => "CrashLoopBackOff",
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => "ImagePullBackOff",
            "OOMKilled" => "OOMKilled",
            "Unschedulable" => "Unschedulable",
            _ => "PodFailing",
        };
        let details = pods.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        self.problem = Some(Problem { stalled: false, reason, message: format!("{context}: {details}") });
        true
    }

    /// Reads the job, its checkpoints and newest exception; handles savepoints and failures.
    async fn observe_job(&mut self, deployed: &FlinkJobSpec) -> Result<Next, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let details = match self.ctx.jobmanagers.job(&url, &job_id).await {
            Ok(d) => d,
            Err(JmError::NotFound(_)) => {
                // The JobManager is up but has not submitted the job yet.
                self.status.job_status.state = Some(JobStateView::Initializing);
                self.status.lifecycle_state = Some(LifecycleState::Deployed);
                self.problem_from_pods(&format!("job {job_id} is not running yet")).await;
                return Ok(Next::Requeue(REQUEUE_BUSY));
            }
            Err(e) => {
                // Whatever it was before, nobody can say now.
                self.status.job_status.state = Some(JobStateView::Unknown);
                if !self.problem_from_pods(&format!("cannot read job {job_id} ({e})")).await {
                    self.problem = Some(Problem {
                        stalled: false,
                        reason: "JobManagerUnreachable",
                        message: format!("cannot read job {job_id}: {e}"),
                    });
                }
                return Ok(Next::Requeue(REQUEUE_UNREACHABLE));
            }
        };
        let state = JobStateView::from(details.state);
        self.status.job_status.state = Some(state);
        self.status.job_status.parallelism = details.parallelism().map(|p| p as i32);
        self.job_details = Some(details);
        self.observe_checkpoints(&url, &job_id).await;

        let rec = &mut self.status.reconciliation;
        match state {
            JobStateView::Running => {
                let since = rec.running_since.get_or_insert_with(|| self.now.to_string()).clone();
                rec.failed_since = None;
                let stable = since.parse::<Timestamp>().is_ok_and(|t| {
                    self.now.duration_since(t)
                        >= jiff::SignedDuration::try_from(decide::STABLE_AFTER).unwrap_or_default()
                });
                if stable {
                    rec.failure_restarts = 0;
                }
                // The deployed spec ran: a later upgrade that does not become healthy returns here.
                rec.last_stable_spec = rec.last_reconciled_spec.clone();
                self.status.job_status.failure = None;
                self.status.lifecycle_state = Some(LifecycleState::Stable);
                let busy = self.savepoints(deployed).await?;
                let checkpoint_busy = self.checkpoint_nonce().await?;
                self.remove_retired_checkpoints().await;
                self.dispose_dropped_savepoints().await;
                Ok(Next::Requeue(if busy || checkpoint_busy { REQUEUE_BUSY } else { REQUEUE_STEADY }))
            }
            JobStateView::Finished | JobStateView::Canceled => {
                self.status.lifecycle_state = Some(LifecycleState::Finished);
                self.status.job_status.pending_savepoint = None;
                // A job that ended before it was seen RUNNING with a checkpoint of its own (a short
                // job after an upgrade) still ends with one: the earlier epochs' directories go now,
                // while its JobManager, which deletes them, is still there.
                self.remove_retired_checkpoints().await;
                Ok(Next::Terminal)
            }
            JobStateView::Failed => {
                let failed_since = rec.failed_since.get_or_insert_with(|| self.now.to_string()).parse().ok();
                let restarts = rec.failure_restarts;
                self.status.lifecycle_state = Some(LifecycleState::Failed);
                let cause = self.observe_failure(&url, &job_id).await;
                match decide::failure_step(self.fj.spec.job.restart_policy.as_ref(), restarts, failed_since, self.now) {
                    FailureStep::Restart => Ok(Next::Restart),
                    FailureStep::Wait(after) => {
                        self.problem = Some(Problem {
                            stalled: false,
                            reason: "JobFailed",
                            message: format!(
                                "job {job_id} FAILED{cause}; restart {} of {} in {}s (job.restartPolicy)",
                                restarts + 1,
                                self.fj.spec.job.restart_policy.as_ref().map(|p| p.max_restarts).unwrap_or_default(),
                                after.as_secs()
                            ),
                        });
                        Ok(Next::Requeue(after.max(Duration::from_secs(1))))
                    }
                    FailureStep::LeaveFailed(why) => {
                        self.problem = Some(Problem {
                            stalled: true,
                            reason: "JobFailed",
                            message: format!("job {job_id} FAILED{cause}: {why}"),
                        });
                        Ok(Next::Requeue(REQUEUE_STEADY))
                    }
                }
            }
            JobStateView::Failing | JobStateView::Restarting if self.rescaling(deployed) => {
                // A reactive job restarts to use the TaskManagers it just got: not a failure.
                self.rescaling = true;
                self.status.lifecycle_state = Some(LifecycleState::Deployed);
                Ok(Next::Requeue(REQUEUE_BUSY))
            }
            JobStateView::Failing | JobStateView::Restarting => {
                self.status.lifecycle_state = Some(LifecycleState::Deployed);
                let cause = self.observe_failure(&url, &job_id).await;
                if !self.problem_from_pods(&format!("job {job_id} is {}{cause}", state.as_str())).await
                    && !cause.is_empty()
                {
                    self.problem = Some(Problem {
                        stalled: false,
                        reason: "JobRestarting",
                        message: format!("job {job_id} is {}{cause}", state.as_str()),
                    });
                }
                Ok(Next::Requeue(REQUEUE_BUSY))
            }
            _ => {
                self.status.lifecycle_state = Some(LifecycleState::Deployed);
                Ok(Next::Requeue(REQUEUE_BUSY))
            }
        }
    }

    /// Whether the deployed spec is to be rolled back ([`decide::rollback_due`]).
    fn rollback_due(&self) -> bool {
        let rec = &self.status.reconciliation;
        let has_other_stable_spec = rec.last_stable_spec.is_some() && rec.last_stable_spec != rec.last_reconciled_spec;
        decide::rollback_due(
            &self.fj.spec.rollback,
            rec.deployed_at.as_deref().and_then(|t| t.parse().ok()),
            rec.running_since.is_some(),
            has_other_stable_spec,
            self.now,
        )
    }

    /// A reactive job within [`RESCALE_GRACE`] of a TaskManager count change, or being
    /// rescaled by Rheo's autoscaler.
    fn rescaling(&self, deployed: &FlinkJobSpec) -> bool {
        deployed.task_manager.autoscaler.is_some() && super::autoscale::rescale_in_progress(&self.status)
            || deployed.task_manager.autoscaler.is_some()
                && self
                    .status
                    .task_manager
                    .last_scale_time
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .is_some_and(|t| {
                        self.now.duration_since(t) <= jiff::SignedDuration::try_from(RESCALE_GRACE).unwrap_or_default()
                    })
    }

    /// The newest exception into `jobStatus.failure`; returns it as `: cause` for messages.
    async fn observe_failure(&mut self, url: &str, job_id: &str) -> String {
        if let Ok(exceptions) = self.ctx.jobmanagers.exceptions(url, job_id).await
            && let Some(cause) = newest_failure(&exceptions)
        {
            self.status.job_status.failure = Some(cause);
        }
        self.status.job_status.failure.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
    }

    async fn observe_checkpoints(&mut self, url: &str, job_id: &str) {
        if let Ok(stats) = self.ctx.jobmanagers.checkpoints(url, job_id).await
            && let Some(c) = stats.latest.completed
        {
            self.status.job_status.last_checkpoint = Some(CheckpointRef {
                id: c.id as i64,
                path: c.external_path,
                timestamp: Timestamp::from_millisecond(c.latest_ack_timestamp)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            });
        }
    }

    /// Savepoints of a running job: `savepointTriggerNonce` (manual) and
    /// `periodicSavepointIntervalSeconds` (periodic). Returns whether one is in flight.
    async fn savepoints(&mut self, deployed: &FlinkJobSpec) -> Result<bool, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let pending = self
            .status
            .job_status
            .pending_savepoint
            .clone()
            .filter(|p| matches!(p.purpose, SavepointPurpose::Manual | SavepointPurpose::Periodic));
        if let Some(p) = pending {
            let Some(trigger) = p.trigger_id.clone() else {
                // Recorded but never triggered (the operator stopped in between): trigger again.
                self.status.job_status.pending_savepoint = None;
                return Ok(true);
            };
            return Ok(match self.ctx.jobmanagers.savepoint_status(&url, &job_id, &trigger).await {
                Ok(r) if r.status.id == QueueStatusId::InProgress => true,
                Ok(r) => {
                    let op = r.operation.unwrap_or_default();
                    self.status.job_status.pending_savepoint = None;
                    if p.purpose == SavepointPurpose::Manual {
                        self.status.reconciliation.last_savepoint_trigger_nonce = p.nonce;
                    }
                    match op.location {
                        Some(location) => self.savepoint_completed(location, p.purpose),
                        None => {
                            let cause = op.failure_message().unwrap_or_else(|| "no location".into());
                            let action = self.savepoint_action(p.purpose);
                            self.event(EventType::Warning, "SavepointFailed", action, cause.clone());
                            self.problem = Some(Problem {
                                stalled: false,
                                reason: "SavepointFailed",
                                message: match p.nonce {
                                    Some(n) => format!("savepoint for nonce {n} failed: {cause}"),
                                    None => format!("periodic savepoint failed: {cause}"),
                                },
                            });
                        }
                    }
                    false
                }
                Err(JmError::NotFound(_)) => {
                    self.status.job_status.pending_savepoint = None;
                    true
                }
                Err(_) => true,
            });
        }
        let nonce = self.fj.spec.job.savepoint_trigger_nonce;
        let purpose = if nonce.is_some() && nonce != self.status.reconciliation.last_savepoint_trigger_nonce {
            SavepointPurpose::Manual
        } else if decide::periodic_savepoint_due(
            self.fj.spec.job.periodic_savepoint_interval_seconds,
            self.newest_savepoint_time(),
            self.status.reconciliation.running_since.as_deref().and_then(|t| t.parse().ok()),
            self.now,
        ) {
            SavepointPurpose::Periodic
        } else {
            return Ok(false);
        };
        self.status.job_status.pending_savepoint = Some(PendingSavepoint {
            purpose,
            trigger_id: None,
            nonce: (purpose == SavepointPurpose::Manual).then_some(nonce).flatten(),
            since: self.now.to_string(),
        });
        self.write_status().await?;
        let request =
            SavepointTriggerRequest { target_directory: super::savepoint_dir(self.fj, deployed), cancel_job: false };
        match self.ctx.jobmanagers.trigger_savepoint(&url, &job_id, request).await {
            Ok(t) => self.savepoint_triggered(t.request_id, purpose, format!("savepoint of job {job_id}")),
            Err(e) => {
                self.status.job_status.pending_savepoint = None;
                warn!(job = self.name(), error = %e, "savepoint trigger failed");
            }
        }
        Ok(true)
    }

    /// A checkpoint asked for by `job.checkpointTriggerNonce` (Flink's `POST /jobs/:id/checkpoints`).
    /// The trigger id is the operator's, recorded before the trigger, so a trigger sent again
    /// after an operator restart takes no second checkpoint. Returns whether one is in flight.
    async fn checkpoint_nonce(&mut self) -> Result<bool, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        if let Some(p) = self.status.job_status.pending_checkpoint.clone() {
            if !p.triggered {
                return self.send_checkpoint_trigger(p).await;
            }
            match self.ctx.jobmanagers.checkpoint_status(&url, &job_id, &p.trigger_id).await {
                Ok(r) if r.status.id == QueueStatusId::InProgress => return Ok(true),
                Ok(r) => {
                    let op = r.operation.unwrap_or_default();
                    self.status.job_status.pending_checkpoint = None;
                    self.status.reconciliation.last_checkpoint_trigger_nonce = Some(p.nonce);
                    match (op.checkpoint_id, op.failure_message()) {
                        (Some(id), None) => self.event(
                            EventType::Normal,
                            "CheckpointCompleted",
                            "Checkpoint",
                            format!("checkpoint {id} of job {job_id} (nonce {})", p.nonce),
                        ),
                        (_, cause) => {
                            let cause = cause.unwrap_or_else(|| "no checkpoint id".into());
                            let message = format!("checkpoint for nonce {} failed: {cause}", p.nonce);
                            self.event(EventType::Warning, "CheckpointFailed", "Checkpoint", message.clone());
                            self.problem = Some(Problem { stalled: false, reason: "CheckpointFailed", message });
                        }
                    }
                    return Ok(false);
                }
                // The JobManager forgot the trigger (it restarted): trigger again.
                Err(JmError::NotFound(_)) => return self.send_checkpoint_trigger(p).await,
                Err(_) => return Ok(true),
            }
        }
        let Some(nonce) = self.fj.spec.job.checkpoint_trigger_nonce else { return Ok(false) };
        if Some(nonce) == self.status.reconciliation.last_checkpoint_trigger_nonce {
            return Ok(false);
        }
        let pending = PendingCheckpoint {
            trigger_id: trigger_id(&job_id, nonce, self.now),
            nonce,
            triggered: false,
            since: self.now.to_string(),
        };
        self.status.job_status.pending_checkpoint = Some(pending.clone());
        self.write_status().await?;
        self.send_checkpoint_trigger(pending).await
    }

    async fn send_checkpoint_trigger(&mut self, mut pending: PendingCheckpoint) -> Result<bool, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let request = CheckpointTriggerRequest {
            checkpoint_type: Some(CheckpointType::Full),
            trigger_id: Some(pending.trigger_id.clone()),
        };
        match self.ctx.jobmanagers.trigger_checkpoint(&url, &job_id, request).await {
            Ok(_) => {
                pending.triggered = true;
                self.event(
                    EventType::Normal,
                    "CheckpointTriggered",
                    "Checkpoint",
                    format!("checkpoint of job {job_id} (nonce {})", pending.nonce),
                );
            }
            Err(e) => warn!(job = self.name(), error = %e, "checkpoint trigger failed; retrying"),
        }
        self.status.job_status.pending_checkpoint = Some(pending);
        Ok(true)
    }

    /// Removes the checkpoint directories of earlier job epochs once the running job has
    /// completed a checkpoint of its own: Rheo's checkpoints are self-contained, so nothing
    /// restores from the old directories any more. The JobManager deletes them
    /// (`/savepoint-disposal`): it has the storage credentials and mounts, the operator has not.
    async fn remove_retired_checkpoints(&mut self) {
        let job_id = self.job_id();
        let own_checkpoint = self
            .status
            .job_status
            .last_checkpoint
            .as_ref()
            .and_then(|c| c.path.as_deref())
            .is_some_and(|p| p.contains(&format!("/{job_id}/")));
        if !own_checkpoint {
            return;
        }
        let url = self.rest_url();
        for dir in self.status.reconciliation.retired_checkpoint_dirs.clone() {
            // A directory the user chose to start from is theirs.
            let chosen = self.fj.spec.job.initial_savepoint_path.as_deref().is_some_and(|p| p.starts_with(&dir));
            let outcome = if chosen {
                Err("it holds job.initialSavepointPath".to_string())
            } else {
                match self.dispose(&url, &dir).await {
                    Some(outcome) => outcome,
                    None => continue,
                }
            };
            match outcome {
                Ok(()) => self.event(
                    EventType::Normal,
                    "CheckpointsRemoved",
                    "Cleanup",
                    format!("removed {dir}: job {job_id} no longer needs it"),
                ),
                Err(cause) => self.event(
                    EventType::Warning,
                    "CheckpointsKept",
                    "Cleanup",
                    format!("{dir} is not removed ({cause}); delete it by hand when it is not needed"),
                ),
            }
            self.status.reconciliation.retired_checkpoint_dirs.retain(|d| d != &dir);
        }
    }

    /// Deletes the files of savepoints trimmed from the history (as Flink's operator does with
    /// `savepoint.history.max.count/age`), through the JobManager, which has the storage
    /// credentials. The savepoint a redeploy is to start from is never deleted.
    async fn dispose_dropped_savepoints(&mut self) {
        let url = self.rest_url();
        for path in self.status.job_status.savepoints_to_dispose.clone() {
            let chosen = self.fj.spec.job.initial_savepoint_path.as_deref() == Some(path.as_str());
            let outcome = if chosen {
                Err("it is job.initialSavepointPath".to_string())
            } else {
                match self.dispose(&url, &path).await {
                    Some(outcome) => outcome,
                    None => continue,
                }
            };
            match outcome {
                Ok(()) => self.event(
                    EventType::Normal,
                    "SavepointDisposed",
                    "Cleanup",
                    format!("deleted {path}: trimmed from the savepoint history"),
                ),
                Err(cause) => self.event(
                    EventType::Warning,
                    "SavepointKept",
                    "Cleanup",
                    format!("{path} is not deleted ({cause}); delete it by hand when it is not needed"),
                ),
            }
            self.status.job_status.savepoints_to_dispose.retain(|p| p != &path);
        }
    }

    /// Asks the JobManager to delete `path` (`/savepoint-disposal`) and reads the outcome;
    /// `None` when it cannot say yet (the next pass asks again).
    async fn dispose(&self, url: &str, path: &str) -> Option<Result<(), String>> {
        let trigger = match self.ctx.jobmanagers.dispose(url, path).await {
            Ok(t) => t.request_id,
            Err(e) => {
                warn!(job = self.name(), %path, error = %e, "cannot delete yet");
                return None;
            }
        };
        match self.ctx.jobmanagers.disposal_status(url, &trigger).await {
            Ok(r) if r.status.id == QueueStatusId::InProgress => None,
            Ok(r) => Some(r.operation.and_then(|op| op.failure_message()).map_or(Ok(()), Err)),
            Err(e) => {
                warn!(job = self.name(), %path, error = %e, "cannot read the outcome of a deletion");
                None
            }
        }
    }

    fn newest_savepoint_time(&self) -> Option<Timestamp> {
        let js = &self.status.job_status;
        js.savepoint_history
            .iter()
            .chain(js.last_savepoint.iter())
            .filter_map(|s| s.timestamp.parse::<Timestamp>().ok())
            .max()
    }

    /// Records the trigger id on the pending savepoint (recorded before the trigger) and its Event.
    pub(super) fn savepoint_triggered(&mut self, request_id: String, purpose: SavepointPurpose, note: String) {
        if let Some(p) = self.status.job_status.pending_savepoint.as_mut() {
            p.trigger_id = Some(request_id);
        }
        let reason = match purpose {
            SavepointPurpose::Manual | SavepointPurpose::Periodic => "SavepointTriggered",
            SavepointPurpose::Upgrade | SavepointPurpose::Deletion => "StopWithSavepointTriggered",
        };
        let action = self.savepoint_action(purpose);
        self.event(EventType::Normal, reason, action, note);
    }

    /// The Event action of a savepoint: what it is taken for.
    pub(super) fn savepoint_action(&self, purpose: SavepointPurpose) -> &'static str {
        match purpose {
            SavepointPurpose::Manual => "Savepoint",
            SavepointPurpose::Periodic => "PeriodicSavepoint",
            SavepointPurpose::Deletion => "Delete",
            SavepointPurpose::Upgrade if self.fj.spec.job.state == DesiredJobState::Suspended => "Suspend",
            SavepointPurpose::Upgrade => {
                let reason = self.status.reconciliation.upgrade.as_ref().map(|u| u.reason);
                match reason {
                    Some(UpgradeReason::Restart) => "Restart",
                    Some(UpgradeReason::Scale) => "Rescale",
                    _ => "Upgrade",
                }
            }
        }
    }

    /// A completed savepoint: the newest one, and one more in the history (trimmed by policy).
    pub(super) fn savepoint_completed(&mut self, path: String, purpose: SavepointPurpose) {
        let reason = match purpose {
            SavepointPurpose::Manual | SavepointPurpose::Periodic => "SavepointCompleted",
            SavepointPurpose::Upgrade | SavepointPurpose::Deletion => "StopWithSavepointCompleted",
        };
        let action = self.savepoint_action(purpose);
        self.event(EventType::Normal, reason, action, format!("savepoint at {path}"));
        let savepoint = SavepointRef { path, timestamp: self.now.to_string(), purpose };
        let js = &mut self.status.job_status;
        js.last_savepoint = Some(savepoint.clone());
        js.savepoint_history.push(savepoint);
        let dropped = decide::trim_history(&mut js.savepoint_history, &self.fj.spec.job.savepoint_history, self.now);
        if !dropped.is_empty() {
            js.savepoints_to_dispose.extend(dropped.iter().map(|s| s.path.clone()));
            let paths = dropped.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ");
            info!(job = self.name(), %paths, "savepoints dropped from the history; their files go next");
        }
    }
}

/// A checkpoint trigger id (32 hex digits, as Flink's) unique to the job, nonce and moment.
fn trigger_id(job_id: &str, nonce: i64, now: Timestamp) -> String {
    use std::hash::{Hash, Hasher};
    let hash = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, job_id, nonce, now.as_nanosecond()).hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", hash(0), hash(1))
}
