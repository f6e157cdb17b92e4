//! The reconciler: one `FlinkJob` at a time, as a pipeline of small steps.
//!
//! Each pass runs, in order:
//!
//! 1. **validate** ([`crate::validate`]): an invalid spec ends the pass in a status error, a
//!    Stalled condition and a Warning Event; nothing is deployed.
//! 2. **decide** ([`decide`], pure): compare the spec with the operator's deployment record
//!    (`status.reconciliation`): first deployment, an upgrade to start, carry on or withdraw
//!    (a newer spec supersedes the one in flight, a new `upgradeMode` takes effect), a redeploy
//!    from `job.initialSavepointPath` by `job.savepointRedeployNonce`, a FAILED job to restart
//!    by `job.restartPolicy`, a spec that was rolled back (not tried again until it changes), or
//!    nothing to change.
//! 3. **upgrade** ([`upgrade`]): take state out of the old job by its mode (stateless: cancel;
//!    last-state: cancel, then the newest complete checkpoint in storage; savepoint:
//!    stop-with-savepoint), then record the new deployment (next epoch, so a new job id).
//! 4. **build** ([`crate::build`], pure) and **apply** ([`apply`]): server-side apply of the
//!    children built from the record; API errors go to the status and an Event.
//! 5. **observe** ([`observe`]): the job, its checkpoints and newest exception from the
//!    JobManager; the pods when the JobManager cannot say (crash loops, image pulls, OOM kills);
//!    savepoints asked for by nonce or period, checkpoints by nonce; the removal of earlier job
//!    epochs' checkpoint directories; the rollback of an upgrade that does not become healthy
//!    within `rollback.readinessTimeoutSeconds`.
//!    With `taskManager.autoscaler.mode: Rheo`, **autoscale** ([`autoscale`]) samples the
//!    job's metrics, decides with Rheo's autoscaler, and rescales through the scale subresource.
//! 6. **status** ([`status`]): kstatus conditions, one server-side apply of the status, and an
//!    Event for every transition.
//!
//! Deletion runs through a finalizer applying `deletionPolicy` ([`cleanup`]).

mod apply;
pub mod autoscale;
mod cleanup;
pub mod decide;
pub mod observe;
pub mod status;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use rheo_rest::JobDetails;
use tracing::info;

use crate::build;
use crate::crd::*;
use crate::jobmanager::JobManagerApi;
use crate::validate::validate;

pub use decide::{upgrade_event, upgrade_reason};

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
/// Requeue after the API server refused a child object (a spec change triggers a pass anyway).
pub const REQUEUE_API_ERROR: Duration = Duration::from_secs(60);

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
    pub now: Clock,
    /// The metric windows of the jobs Rheo's autoscaler scales.
    pub autoscaler: autoscale::Windows,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Entry point for kube's `Controller`.
pub async fn reconcile(fj: Arc<FlinkJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<FlinkJob> = Api::namespaced(ctx.client.clone(), fj.namespace());
    finalizer(&api, FINALIZER, fj, |event| async {
        match event {
            // Boxed: a pass's future is large (an upgrade ends in the steady step), too large
            // for the stack of a debug build.
            finalizer::Event::Apply(fj) => Box::pin(Pass::new(&fj, &ctx).apply()).await,
            finalizer::Event::Cleanup(fj) => Box::pin(Pass::new(&fj, &ctx).cleanup()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A problem that keeps the job from its desired state.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Stalled: needs the user; otherwise Degraded: the operator keeps trying.
    pub stalled: bool,
    pub reason: &'static str,
    pub message: String,
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
    /// A reactive job restarting for new TaskManagers (not a failure).
    rescaling: bool,
    /// The job as the JobManager showed it in this pass's observe step.
    job_details: Option<JobDetails>,
    events: Vec<Event>,
}

impl<'a> Pass<'a> {
    fn new(fj: &'a FlinkJob, ctx: &'a Context) -> Self {
        let written = fj.status.clone().unwrap_or_default();
        let mut status = written.clone();
        status.observed_generation = fj.metadata.generation;
        Pass {
            fj,
            ctx,
            now: (ctx.now)(),
            status,
            written,
            problem: None,
            rescaling: false,
            job_details: None,
            events: Vec::new(),
        }
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

    /// The pipeline: validate → decide → (upgrade) → build + apply → observe → status.
    async fn apply(mut self) -> Result<Action, Error> {
        if let Err(errors) = validate(self.fj) {
            self.problem = Some(Problem { stalled: true, reason: "InvalidSpec", message: errors.join("; ") });
            self.write_status().await?;
            return Ok(Action::requeue(REQUEUE_INVALID));
        }
        let Some(deployed) = self.deployed_spec() else {
            return self.first_deployment().await;
        };
        if let Some(rolled_back) = self.rolled_back_spec() {
            if decide::upgrade_reason(&rolled_back, &self.fj.spec).is_none() {
                // The spec that was rolled back is not tried again until the spec changes.
                return self.steady(deployed).await;
            }
            info!(job = self.name(), "the spec changed since the rollback: it is deployed");
            self.status.reconciliation.rolled_back_spec = None;
        }
        let in_flight = self.status.reconciliation.upgrade.clone();
        let stop_triggered = self
            .status
            .job_status
            .pending_savepoint
            .as_ref()
            .is_some_and(|p| p.purpose == SavepointPurpose::Upgrade && p.trigger_id.is_some());
        match decide::upgrade_step(&deployed, &self.fj.spec, in_flight.as_ref(), stop_triggered, self.now) {
            decide::UpgradeStep::None => self.steady(deployed).await,
            decide::UpgradeStep::Withdraw => {
                info!(job = self.name(), "the spec is back to the deployed one: upgrade withdrawn");
                self.status.reconciliation.upgrade = None;
                self.status.job_status.pending_savepoint = None;
                self.status.lifecycle_state = Some(decide::lifecycle_after_deploy(&deployed));
                self.event(
                    kube::runtime::events::EventType::Normal,
                    "UpgradeWithdrawn",
                    "Upgrade",
                    "the spec is back to the deployed one; the running job stays".into(),
                );
                self.write_status().await?;
                self.steady(deployed).await
            }
            decide::UpgradeStep::Start(upgrade) | decide::UpgradeStep::Continue(upgrade) => {
                if in_flight.as_ref() != Some(&upgrade) {
                    if in_flight.as_ref().is_some_and(|u| u.mode != upgrade.mode) {
                        // A new mode takes effect: a savepoint not triggered yet is not needed.
                        if upgrade.mode != UpgradeMode::Savepoint {
                            self.status.job_status.pending_savepoint = None;
                        }
                    }
                    info!(
                        job = self.name(),
                        reason = upgrade.reason.as_str(),
                        mode = upgrade.mode.as_str(),
                        "upgrade recorded"
                    );
                    self.status.reconciliation.upgrade = Some(upgrade.clone());
                    self.status.lifecycle_state = Some(LifecycleState::Upgrading);
                    self.write_status().await?;
                }
                Box::pin(self.continue_upgrade(deployed, upgrade)).await
            }
        }
    }

    /// The spec recorded as deployed, if any.
    fn deployed_spec(&self) -> Option<FlinkJobSpec> {
        let json = self.status.reconciliation.last_reconciled_spec.as_deref()?;
        serde_json::from_str(json).ok()
    }

    /// The spec a rollback replaced, while the resource still asks for it.
    fn rolled_back_spec(&self) -> Option<FlinkJobSpec> {
        let json = self.status.reconciliation.rolled_back_spec.as_deref()?;
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
            last_checkpoint_trigger_nonce: spec.job.checkpoint_trigger_nonce,
            deployed_at: Some(self.now.to_string()),
            ..Default::default()
        };
        self.status.job_status.job_id = Some(job_id);
        self.status.lifecycle_state = Some(decide::lifecycle_after_deploy(&spec));
        self.write_status().await?;
        self.steady(spec).await
    }
}

fn spec_json(spec: &FlinkJobSpec) -> String {
    serde_json::to_string(spec).expect("a spec serializes")
}

/// Where savepoints go: the deployed configuration's `state.savepoints.dir`, if set.
fn savepoint_dir(fj: &FlinkJob, deployed: &FlinkJobSpec) -> Option<String> {
    let plan = build::Plan::new(fj, deployed.clone(), String::new(), None);
    build::config(fj, &plan).remove(rheo_config::options::SAVEPOINTS_DIR.key)
}

/// The checkpoint directory of one job (`<state.checkpoints.dir>/<job-id>`, DESIGN.md's
/// layout). A JobManager given it as the path to restore from starts from the newest complete
/// checkpoint in it (the one whose `_metadata` exists), so the operator never has to read
/// storage, nor ask a JobManager that is down.
fn job_checkpoint_dir(fj: &FlinkJob, deployed: &FlinkJobSpec, job_id: &str) -> Option<String> {
    let plan = build::Plan::new(fj, deployed.clone(), String::new(), None);
    let base = build::config(fj, &plan).remove(rheo_config::options::CHECKPOINTS_DIR.key)?;
    Some(format!("{}/{job_id}", base.trim_end_matches('/')))
}
