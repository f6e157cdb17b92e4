//! The upgrade step: take state out of the old job by the upgrade's mode, then record the new
//! deployment. Nothing here waits for ever: a JobManager that is down is not asked (last-state
//! hands the new JobManager the old job's checkpoint directory), a job that never ran has no
//! state of its own, and a savepoint that cannot be taken says so with the way on.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use rheo_rest::{JobState, QueueStatusId, StopWithSavepointRequest};
use tracing::info;

use super::{Error, Pass, Problem, REQUEUE_BUSY, REQUEUE_STEADY, REQUEUE_UNREACHABLE, decide, spec_json};
use crate::build;
use crate::crd::*;
use crate::jobmanager::JmError;

/// How taking state out of the old job went.
pub(super) enum Stop {
    /// The old job is stopped; the new one restores from this path (if any).
    Done(Option<String>),
    /// Not yet: try again after the given time.
    Wait(Duration),
}

impl Pass<'_> {
    pub(super) async fn continue_upgrade(
        mut self,
        deployed: FlinkJobSpec,
        upgrade: UpgradeProgress,
    ) -> Result<Action, Error> {
        let stop = if deployed.job.state == DesiredJobState::Suspended {
            // Nothing runs: the state is where the suspension left it.
            Stop::Done(self.status.reconciliation.restore_path.clone())
        } else if self.status.lifecycle_state == Some(LifecycleState::Finished) {
            // The job is over and its pods are gone: nothing to stop.
            self.stop_finished()
        } else if let Some(refused) = self.refuse_unrestorable_redeploy(&upgrade).await {
            refused
        } else {
            match upgrade.mode {
                UpgradeMode::Stateless => self.stop_stateless().await,
                UpgradeMode::LastState => self.stop_last_state(&deployed).await,
                UpgradeMode::Savepoint => self.stop_savepoint_upgrade(&deployed).await?,
            }
        };
        match stop {
            Stop::Wait(after) => {
                self.write_status().await?;
                Ok(Action::requeue(after))
            }
            Stop::Done(path) => {
                let restore = match (upgrade.reason, upgrade.mode) {
                    (UpgradeReason::SavepointRedeploy, _) => self.fj.spec.job.initial_savepoint_path.clone(),
                    (_, UpgradeMode::Stateless) => None,
                    _ => path,
                };
                let spec = self.fj.spec.clone();
                self.record_deployment(&deployed, spec, &upgrade, restore)?;
                self.write_status().await?;
                let spec = self.fj.spec.clone();
                Box::pin(self.steady(spec)).await
            }
        }
    }

    /// Records `spec` as deployed under the next epoch (a new job id).
    fn record_deployment(
        &mut self,
        deployed: &FlinkJobSpec,
        spec: FlinkJobSpec,
        upgrade: &UpgradeProgress,
        restore: Option<String>,
    ) -> Result<(), Error> {
        let epoch = self.status.reconciliation.job_epoch + 1;
        let job_id = build::job_id(&self.fj.uid().unwrap_or_default(), epoch)?;
        info!(job = self.name(), %job_id, restore = restore.as_deref().unwrap_or("-"), "upgrade: deploying");
        // The old job's checkpoints are removed once the new job has a checkpoint of its own.
        let old_dir = (deployed.job.state == DesiredJobState::Running
            && self.status.job_status.last_checkpoint.is_some())
        .then(|| super::job_checkpoint_dir(self.fj, deployed, &self.job_id()))
        .flatten();
        let now = self.now.to_string();
        let rec = &mut self.status.reconciliation;
        if let Some(dir) = old_dir
            && !rec.retired_checkpoint_dirs.contains(&dir)
        {
            rec.retired_checkpoint_dirs.push(dir);
        }
        rec.deployed_at = Some(now);
        if upgrade.reason == UpgradeReason::SavepointRedeploy {
            // As in Flink: no rollback across a redeploy from a chosen savepoint.
            rec.last_stable_spec = None;
        }
        rec.last_reconciled_spec = Some(spec_json(&spec));
        rec.job_epoch = epoch;
        rec.restore_path = restore.clone();
        rec.upgrade = None;
        rec.running_since = None;
        rec.failed_since = None;
        if upgrade.reason != UpgradeReason::FailureRestart {
            rec.failure_restarts = 0;
        }
        let js = &mut self.status.job_status;
        js.job_id = Some(job_id);
        js.state = None;
        js.parallelism = None;
        js.failure = None;
        js.last_checkpoint = None;
        self.status.lifecycle_state = Some(decide::lifecycle_after_deploy(&spec));
        let (reason, action) =
            decide::upgrade_event(deployed.job.state, spec.job.state, upgrade.reason, upgrade.mode, restore.is_some());
        let outcome = match (&restore, spec.job.state) {
            (Some(p), DesiredJobState::Running) => format!("restoring from {p}"),
            (None, DesiredJobState::Running) => "starting with empty state".to_string(),
            (Some(p), DesiredJobState::Suspended) => format!("a resume restores from {p}"),
            (None, DesiredJobState::Suspended) => "a resume starts with empty state".to_string(),
        };
        let note = format!("{} done ({} upgrade), {outcome}", upgrade.reason.as_str(), upgrade.mode.as_str());
        let type_ = if upgrade.reason == UpgradeReason::Rollback { EventType::Warning } else { EventType::Normal };
        self.event(type_, reason, action, note);
        Ok(())
    }

    /// Rolls the deployed spec, whose job did not become healthy in time, back to the last
    /// stable spec. The failed job never ran, so it has no state of its own: the stable spec
    /// restores the snapshot the failed deployment was started from, the newest there is.
    pub(super) async fn rollback(mut self, deployed: FlinkJobSpec) -> Result<Action, Error> {
        let rec = &self.status.reconciliation;
        let Some(stable) = rec.last_stable_spec.as_deref().and_then(|s| serde_json::from_str::<FlinkJobSpec>(s).ok())
        else {
            return Ok(Action::requeue(REQUEUE_STEADY));
        };
        let failed = rec.last_reconciled_spec.clone();
        let restore = rec.restore_path.clone();
        let timeout = self.fj.spec.rollback.readiness_timeout_seconds;
        let seen = self.status.job_status.state.map(JobStateView::as_str).unwrap_or("not reported");
        let why = match &self.problem {
            Some(p) => {
                format!("job {} was not RUNNING within {timeout}s of its deployment ({})", self.job_id(), p.message)
            }
            None => format!("job {} was not RUNNING within {timeout}s of its deployment (it is {seen})", self.job_id()),
        };
        info!(job = self.name(), %why, "rolling back to the last stable spec");
        let (url, job_id) = (self.rest_url(), self.job_id());
        if let Err(e) = self.ctx.jobmanagers.cancel(&url, &job_id).await {
            info!(job = self.name(), error = %e, "cancel before the rollback failed; the new JobManager replaces it");
        }
        self.event(EventType::Warning, "UpgradeUnhealthy", "Rollback", format!("{why}; rolling back"));
        let upgrade = UpgradeProgress {
            mode: UpgradeMode::LastState,
            reason: UpgradeReason::Rollback,
            since: self.now.to_string(),
        };
        self.problem = None;
        self.record_deployment(&deployed, stable.clone(), &upgrade, restore)?;
        self.status.reconciliation.rolled_back_spec = failed;
        self.write_status().await?;
        Box::pin(self.steady(stable)).await
    }

    /// A FINISHED job starts over with empty state; a CANCELED one from its newest checkpoint.
    fn stop_finished(&mut self) -> Stop {
        match self.status.job_status.state {
            Some(JobStateView::Canceled) => Stop::Done(self.own_state_or_restored(None)),
            _ => Stop::Done(None),
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

    /// Where the job's state is without asking its JobManager: its own checkpoint directory
    /// once it has checkpointed, else what it was deployed from (a job that never ran, e.g. a
    /// bad image tag, has no state of its own). `restored`: what the JobManager says it restored.
    fn own_state_or_restored(&self, restored: Option<String>) -> Option<String> {
        let deployed = self.deployed_spec().unwrap_or_else(|| self.fj.spec.clone());
        if self.status.job_status.last_checkpoint.is_some() {
            super::job_checkpoint_dir(self.fj, &deployed, &self.job_id())
        } else {
            restored.or_else(|| self.status.reconciliation.restore_path.clone())
        }
    }

    /// Last-state: cancel first, then restore from the newest complete checkpoint the job left
    /// in storage. The new JobManager gets the old job's checkpoint directory and picks that
    /// checkpoint itself when it starts, so one completed between the operator's look and the
    /// cancel is not skipped, and a JobManager that is down is not waited for.
    async fn stop_last_state(&mut self, deployed: &FlinkJobSpec) -> Stop {
        let (url, job_id) = (self.rest_url(), self.job_id());
        match self.ctx.jobmanagers.checkpoints(&url, &job_id).await {
            Ok(stats) => {
                let own = stats.latest.completed.is_some() || stats.latest.savepoint.is_some();
                let restored = stats.latest.restored.and_then(|r| r.external_path);
                let from = if own {
                    super::job_checkpoint_dir(self.fj, deployed, &job_id)
                } else {
                    self.own_state_or_restored(restored)
                };
                if let Some(path) = &from
                    && let Some(refused) = self
                        .refuse_unrestorable(
                            path,
                            "set spec.job.upgradeMode: savepoint to take a fresh savepoint from the running job, \
                             or stateless to start with empty state",
                        )
                        .await
                {
                    return refused;
                }
                if let Err(e) = self.ctx.jobmanagers.cancel(&url, &job_id).await {
                    info!(job = self.name(), error = %e, "cancel before the last-state upgrade failed");
                }
                Stop::Done(from)
            }
            Err(e) => {
                info!(job = self.name(), error = %e, "last-state upgrade without the JobManager: state from storage");
                Stop::Done(self.own_state_or_restored(None))
            }
        }
    }

    /// A redeploy from a chosen savepoint (`savepointRedeployNonce`): checked before the
    /// running job is cancelled for it.
    async fn refuse_unrestorable_redeploy(&mut self, upgrade: &UpgradeProgress) -> Option<Stop> {
        if upgrade.reason != UpgradeReason::SavepointRedeploy {
            return None;
        }
        let path = self.fj.spec.job.initial_savepoint_path.clone()?;
        self.refuse_unrestorable(
            &path,
            "set spec.job.initialSavepointPath to a savepoint that can be restored (with a new savepointRedeployNonce)",
        )
        .await
    }

    /// Before the old job is stopped: can the new one restore `path`? The running JobManager
    /// resolves and reads it as a starting one would, so a damaged or mistyped snapshot is
    /// found while the old job still runs, not by the new job failing after it was stopped.
    /// `Some`: it cannot be restored; the old job is left running and the status says why and
    /// what to change. A JobManager that cannot answer (down, busy, or an image from before
    /// `/snapshots/validation`) is not waited for: the upgrade goes on unchecked.
    async fn refuse_unrestorable(&mut self, path: &str, way_on: &str) -> Option<Stop> {
        match self.ctx.jobmanagers.validate_snapshot(&self.rest_url(), path).await {
            Ok(v) if !v.restorable => {
                let problem = v.problem.unwrap_or_else(|| "no reason given".into());
                self.problem = Some(Problem {
                    stalled: true,
                    reason: "SnapshotUnrestorable",
                    message: format!(
                        "the upgrade would start the new job from {path}, which cannot be restored: {problem}. \
                         The running job is left running; {way_on}"
                    ),
                });
                Some(Stop::Wait(REQUEUE_STEADY))
            }
            Ok(_) => None,
            Err(e) => {
                info!(job = self.name(), %path, error = %e, "cannot validate the snapshot to restore; upgrading unchecked");
                None
            }
        }
    }

    /// Savepoint upgrade: stop-with-savepoint; when no savepoint can be taken, the documented
    /// way on (`allowLastStateFallback`, or another `upgradeMode`).
    async fn stop_savepoint_upgrade(&mut self, deployed: &FlinkJobSpec) -> Result<Stop, Error> {
        if self.status.reconciliation.running_since.is_none() && self.status.job_status.pending_savepoint.is_none() {
            // Never seen running (a bad image, a crash loop): it has no state of its own.
            let restore = self.status.reconciliation.restore_path.clone();
            let (url, job_id) = (self.rest_url(), self.job_id());
            if let Ok(stats) = self.ctx.jobmanagers.checkpoints(&url, &job_id).await
                && (stats.latest.completed.is_some() || stats.latest.savepoint.is_some())
            {
                // It did run and checkpoint between two looks: take its savepoint after all.
            } else {
                let _ = self.ctx.jobmanagers.cancel(&url, &job_id).await;
                return Ok(Stop::Done(restore));
            }
        }
        let stop = self.stop_with_savepoint(deployed, SavepointPurpose::Upgrade).await?;
        let impossible = self.problem.as_ref().is_some_and(|p| p.reason == "SavepointImpossible");
        if impossible && self.fj.spec.job.allow_last_state_fallback {
            let why = self.problem.take().map(|p| p.message).unwrap_or_default();
            self.event(
                EventType::Warning,
                "LastStateFallback",
                "Upgrade",
                format!("{why}; continuing from the newest checkpoint (allowLastStateFallback)"),
            );
            return Ok(self.stop_last_state(deployed).await);
        }
        Ok(stop)
    }

    /// Stop-with-savepoint, recorded before it is triggered and polled until done.
    pub(super) async fn stop_with_savepoint(
        &mut self,
        deployed: &FlinkJobSpec,
        purpose: SavepointPurpose,
    ) -> Result<Stop, Error> {
        let (url, job_id) = (self.rest_url(), self.job_id());
        let pending = self.status.job_status.pending_savepoint.clone().filter(|p| p.purpose == purpose);
        if let Some(trigger) = pending.as_ref().and_then(|p| p.trigger_id.clone()) {
            let polled = match self.ctx.jobmanagers.savepoint_status(&url, &job_id, &trigger).await {
                Ok(r) if r.status.id == QueueStatusId::InProgress => Some(Stop::Wait(REQUEUE_BUSY)),
                Ok(r) => {
                    let op = r.operation.unwrap_or_default();
                    self.status.job_status.pending_savepoint = None;
                    Some(match op.location {
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
                    })
                }
                // The JobManager does not know the trigger (it restarted, or the result is gone):
                // if the job is no longer RUNNING the stop may have completed, and its savepoint
                // is looked for below by the time the stop was recorded; else it is triggered again.
                Err(JmError::NotFound(_)) => None,
                Err(e) => Some(self.jobmanager_down("savepoint", e).await),
            };
            if let Some(stop) = polled {
                return Ok(stop);
            }
        }

        let details = match self.ctx.jobmanagers.job(&url, &job_id).await {
            Ok(d) => d,
            Err(e) => return Ok(self.jobmanager_down("savepoint", e).await),
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
            if pending.is_none() && matches!(details.state, JobState::Finished | JobState::Canceled) {
                // It ended on its own (its bounded input ran out, or a user cancelled it) after
                // the upgrade began and before it could be stopped: nothing is left to stop, and
                // the upgrade goes on as any upgrade of a job that is over. (Once a stop was sent,
                // a job that is over without its savepoint found is never taken for that: its
                // state would be dropped.)
                info!(job = self.name(), state = %details.state, "the job ended before its stop-with-savepoint");
                self.status.job_status.state = Some(JobStateView::from(details.state));
                self.status.lifecycle_state = Some(LifecycleState::Finished);
                return Ok(self.stop_finished());
            }
            self.savepoint_impossible(format!("job {job_id} is {}", details.state));
            return Ok(Stop::Wait(REQUEUE_STEADY));
        }

        self.status.job_status.pending_savepoint =
            Some(PendingSavepoint { purpose, trigger_id: None, nonce: None, since: self.now.to_string() });
        self.write_status().await?;
        let request =
            StopWithSavepointRequest { target_directory: super::savepoint_dir(self.fj, deployed), drain: false };
        match self.ctx.jobmanagers.stop_with_savepoint(&url, &job_id, request).await {
            Ok(t) => {
                self.savepoint_triggered(t.request_id, purpose, format!("stopping job {job_id} with a savepoint"));
                Ok(Stop::Wait(REQUEUE_BUSY))
            }
            Err(e) => {
                self.status.job_status.pending_savepoint = None;
                Ok(self.jobmanager_down("stop-with-savepoint", e).await)
            }
        }
    }

    fn savepoint_impossible(&mut self, why: String) {
        self.problem = Some(Problem {
            stalled: true,
            reason: "SavepointImpossible",
            message: format!(
                "a savepoint needs a RUNNING job but {why}. To continue from its newest complete checkpoint \
                 set spec.job.allowLastStateFallback: true (or spec.job.upgradeMode: last-state); to start \
                 with empty state set spec.job.upgradeMode: stateless"
            ),
        });
    }

    /// The JobManager cannot be asked for a savepoint. When its pods say it is not coming up
    /// (a crash loop, an image that cannot be pulled), no savepoint can be taken; otherwise it
    /// may be restarting: wait.
    async fn jobmanager_down(&mut self, what: &str, e: JmError) -> Stop {
        let pods = self.pod_problems().await;
        if let Some(p) = pods.first() {
            self.savepoint_impossible(format!("its JobManager does not come up ({p})"));
            return Stop::Wait(REQUEUE_STEADY);
        }
        self.problem = Some(Problem {
            stalled: false,
            reason: "JobManagerUnreachable",
            message: format!("{what} waits for the JobManager (no fall back to stateless): {e}"),
        });
        Stop::Wait(REQUEUE_UNREACHABLE)
    }
}
