//! Deletion through the finalizer: `deletionPolicy` cancel, or stop-with-savepoint within
//! `deletionTimeoutSeconds`.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use super::upgrade::Stop;
use super::{Error, Pass};
use crate::crd::*;

impl Pass<'_> {
    pub(super) async fn cleanup(mut self) -> Result<Action, Error> {
        self.status.lifecycle_state = Some(LifecycleState::Deleting);
        self.forget_metrics();
        let deployed = self.deployed_spec();
        let running = deployed.as_ref().is_some_and(|d| d.job.state == DesiredJobState::Running);
        // A FINISHED or CANCELED job has no JobManager any more (its pods are scaled to zero):
        // there is nothing to take a savepoint of or to cancel, and waiting for one would hold
        // the finalizer until the deletion timeout.
        let over = self.status.job_status.state.is_some_and(JobStateView::is_terminal);
        if !running || over {
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
}
