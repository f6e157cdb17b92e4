//! The reconciler: one `FlinkJob` at a time, spec + status + what the JobManager says → actions.
//!
//! Each pass reads the operator's *deployment record* (`status.reconciliation`), decides one
//! step, writes what it is about to do into status, then does it:
//!
//! 1. invalid spec → status error, Stalled condition, Warning Event; nothing deployed.
//! 2. no record yet → record the first deployment (job id of epoch 0, `initialSavepointPath`).
//! 3. an upgrade is recorded → carry it on: take state out of the old job by its `upgradeMode`
//!    (stateless: cancel; last-state: newest checkpoint, then cancel; savepoint:
//!    stop-with-savepoint). When state is out, record the new deployment (next epoch, so a new
//!    job id, restoring from that state) and clear the upgrade. There is never a silent fall back
//!    to stateless: without a JobManager to ask, a stateful upgrade waits and says why.
//! 4. the spec differs from the record (or `restartNonce`, or `job.state`) → record an upgrade.
//! 5. otherwise → server-side apply the children built from the record (so a deleted Deployment
//!    comes back and TaskManager replicas follow the scale subresource), read the job and its
//!    checkpoints from the JobManager, handle `savepointTriggerNonce`.
//!
//! Every pass ends with a status write (conditions in kstatus style) and an Event for every
//! transition. Deletion runs through a finalizer applying `deletionPolicy`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use rheo_rest::{JobState, QueueStatusId, SavepointTriggerRequest, StopWithSavepointRequest};
use serde_json::json;
use tracing::{info, warn};

use crate::build::{self, MANAGER, Plan};
use crate::crd::*;
use crate::jobmanager::{JmError, JobManagerApi};
use crate::validate::validate;

/// The finalizer that lets the operator stop the job before the resource goes away.
pub const FINALIZER: &str = "rheo.io/finalizer";

/// Requeue while something is in flight (a savepoint, an upgrade, a starting job).
pub const REQUEUE_BUSY: Duration = Duration::from_secs(5);
/// Requeue while the JobManager cannot be reached.
pub const REQUEUE_UNREACHABLE: Duration = Duration::from_secs(10);
/// Requeue of a healthy job, to refresh its state and checkpoints.
pub const REQUEUE_STEADY: Duration = Duration::from_secs(30);
/// Requeue of an invalid spec (a spec change triggers a pass at once anyway).
pub const REQUEUE_INVALID: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("cannot build child objects: {0}")]
    Build(#[from] build::BuildError),
    /// Deletion is waiting for the job to stop; the finalizer stays until it does.
    #[error("deletion waits: {0}")]
    DeletionPending(String),
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.kind(),
                _ => "finalizer",
            },
            Error::Build(_) => "build",
            Error::DeletionPending(_) => "deletion_pending",
        }
    }
}

/// What every reconcile pass needs.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub jobmanagers: Arc<dyn JobManagerApi>,
    /// The clock, replaceable in tests.
    pub now: fn() -> Timestamp,
}

/// Entry point for kube's `Controller`.
pub async fn reconcile(fj: Arc<FlinkJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<FlinkJob> = Api::namespaced(ctx.client.clone(), fj.namespace());
    finalizer(&api, FINALIZER, fj, |event| async {
        match event {
            finalizer::Event::Apply(fj) => Pass::new(&fj, &ctx).apply().await,
            finalizer::Event::Cleanup(fj) => Pass::new(&fj, &ctx).cleanup().await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A problem that keeps the job from its desired state.
#[derive(Clone, Debug, PartialEq)]
struct Problem {
    /// Stalled: needs the user; otherwise Degraded: the operator keeps trying.
    stalled: bool,
    reason: &'static str,
    message: String,
}

/// How taking state out of the old job went.
enum Stop {
    /// The old job is stopped; the new one restores from this path (if any).
    Done(Option<String>),
    /// Not yet: try again after the given time.
    Wait(Duration),
}

/// One reconcile pass over one `FlinkJob`: a working copy of its status, the status last
/// written, and the Events still to publish.
struct Pass<'a> {
    fj: &'a FlinkJob,
    ctx: &'a Context,
    now: Timestamp,
    status: FlinkJobStatus,
    written: FlinkJobStatus,
    problem: Option<Problem>,
    events: Vec<Event>,
}

impl<'a> Pass<'a> {
    fn new(fj: &'a FlinkJob, ctx: &'a Context) -> Self {
        let written = fj.status.clone().unwrap_or_default();
        let mut status = written.clone();
        status.observed_generation = fj.metadata.generation;
        Pass { fj, ctx, now: (ctx.now)(), status, written, problem: None, events: Vec::new() }
    }

    fn name(&self) -> &str {
        self.fj.name()
    }

    fn rest_url(&self) -> String {
        build::rest_url(self.fj)
    }

    fn job_id(&self) -> String {
        self.status.job_status.job_id.clone().unwrap_or_default()
    }

    // ---- the state machine -------------------------------------------------------------------

    async fn apply(mut self) -> Result<Action, Error> {
        if let Err(errors) = validate(self.fj) {
            self.problem = Some(Problem { stalled: true, reason: "InvalidSpec", message: errors.join("; ") });
            self.write_status().await?;
            return Ok(Action::requeue(REQUEUE_INVALID));
        }

        let Some(deployed) = self.deployed_spec() else {
            return self.first_deployment().await;
        };
        if let Some(upgrade) = self.status.reconciliation.upgrade.clone() {
            return self.continue_upgrade(deployed, upgrade).await;
        }
        if let Some(reason) = upgrade_reason(&deployed, &self.fj.spec) {
            let upgrade = UpgradeProgress {
                mode: self.fj.spec.job.upgrade_mode,
                reason: reason.to_string(),
                since: self.now.to_string(),
            };
            info!(job = self.name(), reason, mode = upgrade.mode.as_str(), "upgrade starts");
            self.status.reconciliation.upgrade = Some(upgrade.clone());
            self.status.lifecycle_state = Some(LifecycleState::Upgrading);
            self.write_status().await?;
            return self.continue_upgrade(deployed, upgrade).await;
        }
        self.steady(deployed).await
    }

    /// The spec recorded as deployed, if any.
    fn deployed_spec(&self) -> Option<FlinkJobSpec> {
        let json = self.status.reconciliation.last_reconciled_spec.as_deref()?;
        serde_json::from_str(json).ok()
    }

    async fn first_deployment(mut self) -> Result<Action, Error> {
        let uid = self.fj.uid().unwrap_or_default();
        let job_id = build::job_id(&uid, 0)?;
        let spec = self.fj.spec.clone();
        self.status.reconciliation = ReconciliationStatus {
            last_reconciled_spec: Some(spec_json(&spec)),
            job_epoch: 0,
            restore_path: spec.job.initial_savepoint_path.clone(),
            last_savepoint_trigger_nonce: spec.job.savepoint_trigger_nonce,
            upgrade: None,
        };
        self.status.job_status.job_id = Some(job_id);
        self.status.lifecycle_state = Some(lifecycle_after_deploy(&spec));
        self.write_status().await?;
        self.steady(spec).await
    }

    async fn continue_upgrade(mut self, deployed: FlinkJobSpec, upgrade: UpgradeProgress) -> Result<Action, Error> {
        let stop = if deployed.job.state == DesiredJobState::Suspended {
            // Nothing runs: the state is where the suspension left it.
            Stop::Done(self.status.reconciliation.restore_path.clone())
        } else {
            match upgrade.mode {
                UpgradeMode::Stateless => self.stop_stateless().await,
                UpgradeMode::LastState => self.stop_last_state().await,
                UpgradeMode::Savepoint => self.stop_with_savepoint(&deployed, SavepointPurpose::Upgrade).await?,
            }
        };
        match stop {
            Stop::Wait(after) => {
                self.write_status().await?;
                Ok(Action::requeue(after))
            }
            Stop::Done(path) => {
                let restore = if upgrade.mode == UpgradeMode::Stateless { None } else { path };
                let spec = self.fj.spec.clone();
                let epoch = self.status.reconciliation.job_epoch + 1;
                let job_id = build::job_id(&self.fj.uid().unwrap_or_default(), epoch)?;
                info!(job = self.name(), %job_id, restore = restore.as_deref().unwrap_or("-"), "upgrade: deploying");
                let rec = &mut self.status.reconciliation;
                rec.last_reconciled_spec = Some(spec_json(&spec));
                rec.job_epoch = epoch;
                rec.restore_path = restore.clone();
                rec.upgrade = None;
                self.status.job_status.job_id = Some(job_id);
                self.status.job_status.state = None;
                self.status.job_status.parallelism = None;
                self.status.lifecycle_state = Some(lifecycle_after_deploy(&spec));
                let (reason, action) =
                    upgrade_event(deployed.job.state, spec.job.state, &upgrade.reason, upgrade.mode, restore.is_some());
                let outcome = match (&restore, spec.job.state) {
                    (Some(p), DesiredJobState::Running) => format!("restoring from {p}"),
                    (None, DesiredJobState::Running) => "starting with empty state".to_string(),
                    (Some(p), DesiredJobState::Suspended) => format!("a resume restores from {p}"),
                    (None, DesiredJobState::Suspended) => "a resume starts with empty state".to_string(),
                };
                let note = format!("{} done ({} upgrade), {outcome}", upgrade.reason, upgrade.mode.as_str());
                self.event(EventType::Normal, reason, action, note);
                self.write_status().await?;
                self.steady(spec).await
            }
        }
    }

    /// Stateless: cancel whatever runs; the new job starts empty whatever the answer.
    async fn stop_stateless(&mut self) -> Stop {
        let job_id = self.job_id();
        if let Err(e) = self.ctx.jobmanagers.cancel(&self.rest_url(), &job_id).await {
            info!(job = self.name(), error = %e, "cancel before stateless upgrade failed; the new JobManager replaces it");
        }
        Stop::Done(None)
    }

    /// Last-state: the newest completed checkpoint (or what the job restored from), then cancel.
    async fn stop_last_state(&mut self) -> Stop {
        let (url, job_id) = (self.rest_url(), self.job_id());
        match self.ctx.jobmanagers.checkpoints(&url, &job_id).await {
            Ok(stats) => {
                let newest = [stats.latest.completed.as_ref(), stats.latest.savepoint.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter(|c| c.external_path.is_some())
                    .max_by_key(|c| c.latest_ack_timestamp)
                    .and_then(|c| c.external_path.clone());
                let path = newest
                    .or_else(|| stats.latest.restored.and_then(|r| r.external_path))
                    .or_else(|| self.status.reconciliation.restore_path.clone());
                if let Err(e) = self.ctx.jobmanagers.cancel(&url, &job_id).await {
                    info!(job = self.name(), error = %e, "cancel after reading the last checkpoint failed");
                }
                Stop::Done(path)
            }
            Err(e) => {
                self.problem = Some(Problem {
                    stalled: false,
                    reason: "JobManagerUnreachable",
                    message: format!(
                        "last-state upgrade waits for the JobManager to report the newest checkpoint \
                         (no fall back to stateless): {e}"
                    ),
                });
                Stop::Wait(REQUEUE_UNREACHABLE)
            }
        }
    }

    /// Savepoint: stop-with-savepoint, recorded before it is triggered and polled until done.
    async fn stop_with_savepoint(&mut self, deployed: &FlinkJobSpec, purpose: SavepointPurpose) -> Result<Stop, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let pending = self.status.job_status.pending_savepoint.clone().filter(|p| p.purpose == purpose);
        if let Some(trigger) = pending.as_ref().and_then(|p| p.trigger_id.clone()) {
            return Ok(match self.ctx.jobmanagers.savepoint_status(&url, &job_id, &trigger).await {
                Ok(r) if r.status.id == QueueStatusId::InProgress => Stop::Wait(REQUEUE_BUSY),
                Ok(r) => {
                    let op = r.operation.unwrap_or_default();
                    self.status.job_status.pending_savepoint = None;
                    match op.location {
                        Some(location) => {
                            self.savepoint_completed(location.clone(), purpose);
                            Stop::Done(Some(location))
                        }
                        None => {
                            let cause = op.failure_message().unwrap_or_else(|| "no location".into());
                            self.problem = Some(Problem {
                                stalled: false,
                                reason: "SavepointFailed",
                                message: format!("stop-with-savepoint failed, will retry: {cause}"),
                            });
                            Stop::Wait(REQUEUE_STEADY)
                        }
                    }
                }
                Err(JmError::NotFound(_)) => {
                    // The JobManager forgot the trigger (it restarted): trigger again.
                    self.status.job_status.pending_savepoint = None;
                    Stop::Wait(REQUEUE_BUSY)
                }
                Err(e) => self.unreachable_wait("savepoint", e),
            });
        }

        let details = match self.ctx.jobmanagers.job(&url, &job_id).await {
            Ok(d) => d,
            Err(e) => return Ok(self.unreachable_wait("savepoint", e)),
        };
        if details.state != JobState::Running {
            // A stop recorded before an operator restart may have completed: find its savepoint.
            if let Some(p) = &pending
                && let Ok(stats) = self.ctx.jobmanagers.checkpoints(&url, &job_id).await
                && let Some(sp) = stats.latest.savepoint
                && let (Some(path), Ok(since)) = (sp.external_path, p.since.parse::<Timestamp>())
                && sp.trigger_timestamp >= since.as_millisecond()
            {
                self.status.job_status.pending_savepoint = None;
                self.savepoint_completed(path.clone(), purpose);
                return Ok(Stop::Done(Some(path)));
            }
            self.problem = Some(Problem {
                stalled: true,
                reason: "SavepointImpossible",
                message: format!(
                    "a savepoint needs a RUNNING job but job {job_id} is {}; set job.upgradeMode to \
                     last-state to continue from its last checkpoint",
                    details.state
                ),
            });
            return Ok(Stop::Wait(REQUEUE_STEADY));
        }

        self.status.job_status.pending_savepoint =
            Some(PendingSavepoint { purpose, trigger_id: None, nonce: None, since: self.now.to_string() });
        self.write_status().await?;
        let request =
            StopWithSavepointRequest { target_directory: Some(savepoint_dir(self.fj, deployed)), drain: false };
        match self.ctx.jobmanagers.stop_with_savepoint(&url, &job_id, request).await {
            Ok(t) => {
                self.savepoint_triggered(t.request_id, purpose, format!("stopping job {job_id} with a savepoint"));
                Ok(Stop::Wait(REQUEUE_BUSY))
            }
            Err(e) => {
                self.status.job_status.pending_savepoint = None;
                Ok(self.unreachable_wait("stop-with-savepoint", e))
            }
        }
    }

    fn unreachable_wait(&mut self, what: &str, e: JmError) -> Stop {
        self.problem = Some(Problem {
            stalled: false,
            reason: "JobManagerUnreachable",
            message: format!("{what} waits for the JobManager (no fall back to stateless): {e}"),
        });
        Stop::Wait(REQUEUE_UNREACHABLE)
    }

    /// Records the trigger id on the pending savepoint (recorded before the trigger) and its Event.
    fn savepoint_triggered(&mut self, request_id: String, purpose: SavepointPurpose, note: String) {
        if let Some(p) = self.status.job_status.pending_savepoint.as_mut() {
            p.trigger_id = Some(request_id);
        }
        let reason = match purpose {
            SavepointPurpose::Manual => "SavepointTriggered",
            SavepointPurpose::Upgrade | SavepointPurpose::Deletion => "StopWithSavepointTriggered",
        };
        let action = self.savepoint_action(purpose);
        self.event(EventType::Normal, reason, action, note);
    }

    /// The Event action of a savepoint: what it is taken for.
    fn savepoint_action(&self, purpose: SavepointPurpose) -> &'static str {
        match purpose {
            SavepointPurpose::Manual => "Savepoint",
            SavepointPurpose::Deletion => "Delete",
            SavepointPurpose::Upgrade if self.fj.spec.job.state == DesiredJobState::Suspended => "Suspend",
            SavepointPurpose::Upgrade => {
                let restart = self.status.reconciliation.upgrade.as_ref().is_some_and(|u| u.reason == "Restart");
                if restart { "Restart" } else { "Upgrade" }
            }
        }
    }

    fn savepoint_completed(&mut self, path: String, purpose: SavepointPurpose) {
        let reason = match purpose {
            SavepointPurpose::Manual => "SavepointCompleted",
            SavepointPurpose::Upgrade | SavepointPurpose::Deletion => "StopWithSavepointCompleted",
        };
        let action = self.savepoint_action(purpose);
        self.event(EventType::Normal, reason, action, format!("savepoint at {path}"));
        self.status.job_status.last_savepoint = Some(SavepointRef { path, timestamp: self.now.to_string(), purpose });
    }

    /// The deployed spec is current: apply the children and observe the job.
    async fn steady(mut self, deployed: FlinkJobSpec) -> Result<Action, Error> {
        let plan = Plan::new(self.fj, deployed.clone(), self.job_id(), self.status.reconciliation.restore_path.clone());
        let children = build::build(self.fj, &plan)?;
        let desired_tms = plan.task_manager_replicas;
        let tm = self.apply_children(children).await?;
        let tm_status = tm.status.unwrap_or_default();
        let previous = self.written.task_manager.desired_replicas;
        self.status.task_manager = TaskManagerStatus {
            replicas: tm_status.replicas.unwrap_or(0),
            ready_replicas: tm_status.ready_replicas.unwrap_or(0),
            desired_replicas: Some(desired_tms),
            selector: build::task_manager_selector(self.name()),
        };
        if let Some(previous) = previous
            && previous != desired_tms
        {
            let reason = match (previous, desired_tms) {
                (_, 0) => "ScaledToZero",
                (0, _) => "ScaledFromZero",
                (p, d) if d > p => "ScaledUp",
                _ => "ScaledDown",
            };
            self.event(EventType::Normal, reason, "Scale", format!("TaskManagers {previous} → {desired_tms}"));
        }

        if deployed.job.state == DesiredJobState::Suspended {
            self.status.job_status.state = Some("SUSPENDED".into());
            self.status.lifecycle_state = Some(LifecycleState::Suspended);
            self.write_status().await?;
            return Ok(Action::requeue(REQUEUE_STEADY));
        }

        let requeue = self.observe_job(&deployed).await?;
        self.write_status().await?;
        Ok(Action::requeue(requeue))
    }

    /// Server-side applies the children; returns the TaskManager Deployment as stored.
    async fn apply_children(&self, c: build::Children) -> Result<Deployment, Error> {
        let ns = self.fj.namespace();
        let pp = PatchParams::apply(MANAGER).force();
        let client = &self.ctx.client;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
        let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
        cms.patch(&c.config_map.name_any(), &pp, &Patch::Apply(&c.config_map)).await?;
        svcs.patch(&c.rpc_service.name_any(), &pp, &Patch::Apply(&c.rpc_service)).await?;
        svcs.patch(&c.rest_service.name_any(), &pp, &Patch::Apply(&c.rest_service)).await?;
        deps.patch(&c.job_manager.name_any(), &pp, &Patch::Apply(&c.job_manager)).await?;
        Ok(deps.patch(&c.task_manager.name_any(), &pp, &Patch::Apply(&c.task_manager)).await?)
    }

    /// Reads the job and its checkpoints, and handles `savepointTriggerNonce`.
    async fn observe_job(&mut self, deployed: &FlinkJobSpec) -> Result<Duration, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let details = match self.ctx.jobmanagers.job(&url, &job_id).await {
            Ok(d) => d,
            Err(JmError::NotFound(_)) => {
                // The JobManager is up but has not submitted the job yet.
                self.status.job_status.state = Some(JobState::Initializing.to_string());
                self.status.lifecycle_state = Some(LifecycleState::Deployed);
                return Ok(REQUEUE_BUSY);
            }
            Err(e) => {
                self.problem = Some(Problem {
                    stalled: false,
                    reason: "JobManagerUnreachable",
                    message: format!("cannot read job {job_id}: {e}"),
                });
                return Ok(REQUEUE_UNREACHABLE);
            }
        };
        self.status.job_status.state = Some(details.state.to_string());
        self.status.job_status.parallelism = details.parallelism().map(|p| p as i32);
        self.status.lifecycle_state = Some(match details.state {
            JobState::Running => LifecycleState::Stable,
            JobState::Failed => LifecycleState::Failed,
            _ => LifecycleState::Deployed,
        });
        if let Ok(stats) = self.ctx.jobmanagers.checkpoints(&url, &job_id).await
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

        let busy = self.manual_savepoint(deployed, details.state).await?;
        Ok(if busy || details.state != JobState::Running { REQUEUE_BUSY } else { REQUEUE_STEADY })
    }

    /// `savepointTriggerNonce`: a new value takes one savepoint. Returns whether one is in flight.
    async fn manual_savepoint(&mut self, deployed: &FlinkJobSpec, state: JobState) -> Result<bool, Error> {
        let nonce = self.fj.spec.job.savepoint_trigger_nonce;
        if nonce.is_none() || nonce == self.status.reconciliation.last_savepoint_trigger_nonce {
            return Ok(false);
        }
        let (url, job_id) = (self.rest_url(), self.job_id());
        let pending =
            self.status.job_status.pending_savepoint.clone().filter(|p| p.purpose == SavepointPurpose::Manual);
        match pending.and_then(|p| p.trigger_id) {
            Some(trigger) => match self.ctx.jobmanagers.savepoint_status(&url, &job_id, &trigger).await {
                Ok(r) if r.status.id == QueueStatusId::InProgress => Ok(true),
                Ok(r) => {
                    let op = r.operation.unwrap_or_default();
                    self.status.job_status.pending_savepoint = None;
                    self.status.reconciliation.last_savepoint_trigger_nonce = nonce;
                    match op.location {
                        Some(location) => self.savepoint_completed(location, SavepointPurpose::Manual),
                        None => {
                            let cause = op.failure_message().unwrap_or_else(|| "no location".into());
                            self.event(EventType::Warning, "SavepointFailed", "Savepoint", cause.clone());
                            self.problem = Some(Problem {
                                stalled: false,
                                reason: "SavepointFailed",
                                message: format!("savepoint for nonce {} failed: {cause}", nonce.unwrap_or_default()),
                            });
                        }
                    }
                    Ok(false)
                }
                Err(JmError::NotFound(_)) => {
                    self.status.job_status.pending_savepoint = None;
                    Ok(true)
                }
                Err(_) => Ok(true),
            },
            None if state == JobState::Running => {
                self.status.job_status.pending_savepoint = Some(PendingSavepoint {
                    purpose: SavepointPurpose::Manual,
                    trigger_id: None,
                    nonce,
                    since: self.now.to_string(),
                });
                self.write_status().await?;
                let request = SavepointTriggerRequest {
                    target_directory: Some(savepoint_dir(self.fj, deployed)),
                    cancel_job: false,
                };
                match self.ctx.jobmanagers.trigger_savepoint(&url, &job_id, request).await {
                    Ok(t) => self.savepoint_triggered(
                        t.request_id,
                        SavepointPurpose::Manual,
                        format!("savepoint of job {job_id}"),
                    ),
                    Err(e) => {
                        self.status.job_status.pending_savepoint = None;
                        warn!(job = self.name(), error = %e, "savepoint trigger failed");
                    }
                }
                Ok(true)
            }
            // Wait for the job to run before taking its savepoint.
            None => Ok(true),
        }
    }

    // ---- deletion ----------------------------------------------------------------------------

    async fn cleanup(mut self) -> Result<Action, Error> {
        self.status.lifecycle_state = Some(LifecycleState::Deleting);
        let deployed = self.deployed_spec();
        let running = deployed.as_ref().is_some_and(|d| d.job.state == DesiredJobState::Running);
        if !running {
            self.write_status().await?;
            return Ok(Action::await_change());
        }
        let deployed = deployed.expect("checked above");
        let (url, job_id) = (self.rest_url(), self.job_id());

        let deadline = self
            .fj
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0 + jiff::SignedDuration::from_secs(self.fj.spec.deletion_timeout_seconds));
        if deadline.is_some_and(|d| self.now >= d) {
            self.event(
                EventType::Warning,
                "DeletionTimeout",
                "Delete",
                format!("no savepoint within {}s; cancelling job {job_id}", self.fj.spec.deletion_timeout_seconds),
            );
            let _ = self.ctx.jobmanagers.cancel(&url, &job_id).await;
            self.write_status().await?;
            return Ok(Action::await_change());
        }

        match self.fj.spec.deletion_policy {
            DeletionPolicy::Cancel => {
                match self.ctx.jobmanagers.cancel(&url, &job_id).await {
                    Ok(()) => {
                        self.event(EventType::Normal, "JobCancelled", "Delete", format!("cancelled job {job_id}"))
                    }
                    Err(e) => {
                        info!(job = self.name(), error = %e, "cancel on deletion failed; the pods go away anyway")
                    }
                }
                self.write_status().await?;
                Ok(Action::await_change())
            }
            DeletionPolicy::Savepoint => match self.stop_with_savepoint(&deployed, SavepointPurpose::Deletion).await? {
                Stop::Done(_) => {
                    self.write_status().await?;
                    Ok(Action::await_change())
                }
                Stop::Wait(_) if self.problem.as_ref().is_some_and(|p| p.stalled) => {
                    // No running job to take a savepoint of: nothing to keep.
                    let message = self.problem.take().map(|p| p.message).unwrap_or_default();
                    self.event(EventType::Warning, "NoDeletionSavepoint", "Delete", message);
                    self.write_status().await?;
                    Ok(Action::await_change())
                }
                Stop::Wait(_) => {
                    self.write_status().await?;
                    Err(Error::DeletionPending(
                        self.problem
                            .as_ref()
                            .map(|p| p.message.clone())
                            .unwrap_or_else(|| "savepoint in progress".into()),
                    ))
                }
            },
        }
    }

    // ---- status and events -------------------------------------------------------------------

    fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        self.events.push(Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        });
    }

    /// Writes status (server-side apply on the status subresource), then publishes an Event for
    /// every transition since the last write.
    async fn write_status(&mut self) -> Result<(), Error> {
        self.status.error = self.problem.as_ref().map(|p| p.message.clone());
        self.status.conditions = conditions(&self.status, self.problem.as_ref(), &self.written.conditions, self.now);
        let mut transitions = transition_events(&self.written, &self.status, self.problem.as_ref());
        transitions.append(&mut self.events);

        let api: Api<FlinkJob> = Api::namespaced(self.ctx.client.clone(), self.fj.namespace());
        let patch = json!({
            "apiVersion": FlinkJob::api_version(&()),
            "kind": FlinkJob::kind(&()),
            "status": self.status,
        });
        api.patch_status(self.name(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        self.written = self.status.clone();

        let reference = self.fj.object_ref(&());
        for event in transitions {
            if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
                warn!(job = self.name(), reason = event.reason, error = %e, "cannot publish event");
            }
        }
        Ok(())
    }
}

/// The Event (reason, action) of a finished upgrade. kube's Recorder folds Events with the same
/// (type, reason, action, object) into one series that keeps the first note, so every kind of
/// transition gets its own pair: a stateless resume must not show as an earlier savepoint upgrade.
pub fn upgrade_event(
    from: DesiredJobState,
    to: DesiredJobState,
    trigger: &str,
    mode: UpgradeMode,
    restored: bool,
) -> (&'static str, &'static str) {
    use DesiredJobState::{Running, Suspended};
    let state = match (restored, mode) {
        (false, _) | (true, UpgradeMode::Stateless) => 0,
        (true, UpgradeMode::LastState) => 1,
        (true, UpgradeMode::Savepoint) => 2,
    };
    match (from, to, state) {
        (Suspended, Suspended, _) => ("UpdatedWhileSuspended", "Update"),
        (Running, Suspended, 0) => ("SuspendedStateless", "Suspend"),
        (Running, Suspended, 1) => ("SuspendedLastState", "Suspend"),
        (Running, Suspended, _) => ("SuspendedWithSavepoint", "Suspend"),
        (Suspended, Running, 0) => ("ResumedStateless", "Resume"),
        (Suspended, Running, 1) => ("ResumedLastState", "Resume"),
        (Suspended, Running, _) => ("ResumedFromSavepoint", "Resume"),
        (Running, Running, 0) if trigger == "Restart" => ("RestartedStateless", "Restart"),
        (Running, Running, 1) if trigger == "Restart" => ("RestartedLastState", "Restart"),
        (Running, Running, _) if trigger == "Restart" => ("RestartedFromSavepoint", "Restart"),
        (Running, Running, 0) => ("UpgradedStateless", "Upgrade"),
        (Running, Running, 1) => ("UpgradedLastState", "Upgrade"),
        (Running, Running, _) => ("UpgradedFromSavepoint", "Upgrade"),
    }
}

/// Why the deployed spec must be upgraded to `desired`, if it must.
pub fn upgrade_reason(deployed: &FlinkJobSpec, desired: &FlinkJobSpec) -> Option<&'static str> {
    let (d, w) = (upgrade_relevant(deployed), upgrade_relevant(desired));
    if d == w {
        return None;
    }
    Some(match (d.job.state, w.job.state) {
        (DesiredJobState::Running, DesiredJobState::Suspended) => "Suspend",
        (DesiredJobState::Suspended, DesiredJobState::Running) => "Resume",
        _ if d.restart_nonce != w.restart_nonce && {
            let mut d2 = d.clone();
            d2.restart_nonce = w.restart_nonce;
            d2 == w
        } =>
        {
            "Restart"
        }
        _ => "SpecChanged",
    })
}

/// The spec without the fields that never need a new job: TaskManager replicas and autoscaler
/// bounds (the scale subresource), the savepoint nonce, the first-deployment savepoint path and
/// the deletion settings.
fn upgrade_relevant(spec: &FlinkJobSpec) -> FlinkJobSpec {
    let mut s = spec.clone();
    s.task_manager.replicas = 0;
    if let Some(a) = s.task_manager.autoscaler.as_mut() {
        a.min_replicas = 0;
        a.max_replicas = 0;
    }
    s.job.savepoint_trigger_nonce = None;
    s.job.initial_savepoint_path = None;
    s.deletion_policy = DeletionPolicy::default();
    s.deletion_timeout_seconds = 0;
    s
}

fn spec_json(spec: &FlinkJobSpec) -> String {
    serde_json::to_string(spec).expect("a spec serializes")
}

fn lifecycle_after_deploy(spec: &FlinkJobSpec) -> LifecycleState {
    match spec.job.state {
        DesiredJobState::Running => LifecycleState::Deployed,
        DesiredJobState::Suspended => LifecycleState::Suspended,
    }
}

/// Where savepoints go: the deployed configuration's `state.savepoints.dir`.
fn savepoint_dir(fj: &FlinkJob, deployed: &FlinkJobSpec) -> String {
    let plan = Plan::new(fj, deployed.clone(), String::new(), None);
    build::config(fj, &plan).remove("state.savepoints.dir").unwrap_or_default()
}

/// kstatus conditions. `lastTransitionTime` moves only when a condition's status changes.
fn conditions(status: &FlinkJobStatus, problem: Option<&Problem>, old: &[Condition], now: Timestamp) -> Vec<Condition> {
    let lifecycle = status.lifecycle_state;
    let job_state = status.job_status.state.as_deref();
    let job_unhealthy = matches!(job_state, Some("FAILED" | "FAILING" | "RESTARTING"));
    let stalled = problem.filter(|p| p.stalled);
    let progressing = stalled.is_none()
        && (matches!(lifecycle, Some(LifecycleState::Created | LifecycleState::Deployed | LifecycleState::Upgrading))
            || status.job_status.pending_savepoint.is_some());
    let degraded = problem.is_some() || job_unhealthy;
    let ready =
        !progressing && !degraded && matches!(lifecycle, Some(LifecycleState::Stable | LifecycleState::Suspended));
    let lifecycle_name = lifecycle.map(|l| l.as_str()).unwrap_or("CREATED");

    let (ready_reason, ready_msg) = if ready {
        ("Reconciled", format!("lifecycle {lifecycle_name}"))
    } else if let Some(p) = problem {
        (p.reason, p.message.clone())
    } else {
        ("NotReady", format!("lifecycle {lifecycle_name}, job {}", job_state.unwrap_or("unknown")))
    };
    let (deg_reason, deg_msg) = match problem {
        Some(p) => (p.reason, p.message.clone()),
        None if job_unhealthy => ("JobUnhealthy", format!("job is {}", job_state.unwrap_or_default())),
        None => ("Healthy", String::new()),
    };
    let (prog_reason, prog_msg) =
        if progressing { ("Reconciling", format!("lifecycle {lifecycle_name}")) } else { ("Idle", String::new()) };
    let (stall_reason, stall_msg) = match stalled {
        Some(p) => (p.reason, p.message.clone()),
        None => ("NotStalled", String::new()),
    };
    [
        ("Ready", ready, ready_reason, ready_msg),
        ("Progressing", progressing, prog_reason, prog_msg),
        ("Degraded", degraded, deg_reason, deg_msg),
        ("Stalled", stalled.is_some(), stall_reason, stall_msg),
    ]
    .into_iter()
    .map(|(type_, on, reason, message)| {
        let status_str = if on { "True" } else { "False" };
        let last = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status_str)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status: status_str.into(),
            reason: reason.into(),
            message,
            observed_generation: status.observed_generation,
            last_transition_time: last,
        }
    })
    .collect()
}

/// One Event per transition between two statuses.
fn transition_events(old: &FlinkJobStatus, new: &FlinkJobStatus, problem: Option<&Problem>) -> Vec<Event> {
    let mut events = Vec::new();
    if old.lifecycle_state != new.lifecycle_state
        && let Some(l) = new.lifecycle_state
    {
        let (type_, reason) = match l {
            LifecycleState::Created => (EventType::Normal, "Created"),
            LifecycleState::Deployed => (EventType::Normal, "Deployed"),
            LifecycleState::Stable => (EventType::Normal, "Stable"),
            LifecycleState::Upgrading => (EventType::Normal, "Upgrading"),
            LifecycleState::Suspended => (EventType::Normal, "Suspended"),
            LifecycleState::Failed => (EventType::Warning, "Failed"),
            LifecycleState::Deleting => (EventType::Normal, "Deleting"),
        };
        // One series per (from, to): the Recorder keeps a series' first note.
        let from = old.lifecycle_state.map(|l| l.as_str()).unwrap_or("none");
        events.push(Event {
            type_,
            reason: reason.into(),
            note: Some(format!("lifecycle {from} → {}", l.as_str())),
            action: format!("ReconcileFrom{}", camel(from)),
            secondary: None,
        });
    }
    if old.job_status.state != new.job_status.state
        && let Some(s) = &new.job_status.state
    {
        let type_ = if matches!(s.as_str(), "FAILED" | "FAILING" | "RESTARTING") {
            EventType::Warning
        } else {
            EventType::Normal
        };
        events.push(Event {
            type_,
            reason: format!("Job{}", camel(s)),
            note: Some(format!("job {} → {s}", old.job_status.state.as_deref().unwrap_or("none"))),
            action: format!("ObserveFrom{}", camel(old.job_status.state.as_deref().unwrap_or("none"))),
            secondary: None,
        });
    }
    if let Some(p) = problem
        && old.error.as_deref() != Some(p.message.as_str())
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: p.reason.into(),
            note: Some(p.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// `RUNNING`, `last-state` or `none` as `Running`, `LastState`, `None`: for Event reasons and actions.
fn camel(s: &str) -> String {
    s.split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_ascii_lowercase();
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
