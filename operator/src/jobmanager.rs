//! The JobManager's REST API as the reconciler sees it.
//!
//! The reconciler talks to a JobManager only through [`JobManagerApi`]. In the cluster that is
//! [`RestJobManagers`] (the `rheo-rest` client against the job's REST Service); tests substitute a
//! scripted fake and assert the calls made.

use futures::future::BoxFuture;
use rheo_rest::{
    AggregatedMetric, AsynchronousOperationResult, CheckpointTriggerRequest, CheckpointTriggerResult,
    CheckpointingStatistics, JobDetails, JobExceptions, JobResourceRequirements, RestClient, SavepointDisposalRequest,
    SavepointTriggerRequest, SnapshotValidation, StopWithSavepointRequest, TaskManagersInfo, TriggerResponse,
};

/// A JobManager call's failure, reduced to what the reconciler decides on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JmError {
    /// The JobManager does not know the job or trigger (yet).
    #[error("not found: {0}")]
    NotFound(String),
    /// No answer: the pod is starting, gone, or the network is down.
    #[error("JobManager unreachable: {0}")]
    Unreachable(String),
    /// An answer, but an error or an unreadable one.
    #[error("JobManager error: {0}")]
    Failed(String),
}

impl From<rheo_rest::Error> for JmError {
    fn from(e: rheo_rest::Error) -> Self {
        match e {
            rheo_rest::Error::NotFound(m) => JmError::NotFound(m),
            rheo_rest::Error::Unreachable(e) => JmError::Unreachable(e.to_string()),
            other => JmError::Failed(other.to_string()),
        }
    }
}

pub type JmResult<T> = Result<T, JmError>;

/// The calls the operator makes. `base` is the JobManager's REST URL
/// ([`crate::build::rest_url`]).
pub trait JobManagerApi: Send + Sync {
    fn job<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobDetails>>;
    fn checkpoints<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<CheckpointingStatistics>>;
    /// The job's failures, newest first.
    fn exceptions<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobExceptions>>;
    fn trigger_savepoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: SavepointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>>;
    fn stop_with_savepoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: StopWithSavepointRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>>;
    fn savepoint_status<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>>;
    fn cancel<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<()>>;
    fn trigger_checkpoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: CheckpointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>>;
    fn checkpoint_status<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<CheckpointTriggerResult>>;
    /// Deletes a savepoint, or a job's checkpoint directory (`POST /savepoint-disposal`).
    fn dispose<'a>(&'a self, base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<TriggerResponse>>;
    fn disposal_status<'a>(
        &'a self,
        base: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>>;
    /// Whether a job started from `path` could restore it: the JobManager resolves it and
    /// reads every file (`POST /snapshots/validation`, Rheo's).
    fn validate_snapshot<'a>(&'a self, base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<SnapshotValidation>>;
    /// The registered TaskManagers and their slots (`GET /taskmanagers`).
    fn taskmanagers<'a>(&'a self, base: &'a str) -> BoxFuture<'a, JmResult<TaskManagersInfo>>;
    /// A vertex's metrics aggregated over its subtasks
    /// (`GET /jobs/:id/vertices/:vid/subtasks/metrics?get=...`).
    fn subtasks_metrics<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        vertex_id: &'a str,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, JmResult<Vec<AggregatedMetric>>>;
    /// Rescales the job (`PUT /jobs/:id/resource-requirements`): it stops with a synchronous
    /// checkpoint and restarts from it at the new parallelism.
    fn set_resource_requirements<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        requirements: JobResourceRequirements,
    ) -> BoxFuture<'a, JmResult<()>>;
}

/// The real JobManagers, over HTTP with one shared connection pool.
#[derive(Clone)]
pub struct RestJobManagers {
    http: reqwest::Client,
}

impl Default for RestJobManagers {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .connect_timeout(std::time::Duration::from_secs(3))
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        Self { http }
    }
}

impl RestJobManagers {
    fn client(&self, base: &str) -> RestClient {
        RestClient::with_http_client(self.http.clone(), base)
    }
}

impl JobManagerApi for RestJobManagers {
    fn job<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobDetails>> {
        Box::pin(async move { Ok(self.client(base).job(job_id).await?) })
    }
    fn checkpoints<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<CheckpointingStatistics>> {
        Box::pin(async move { Ok(self.client(base).job_checkpoints(job_id).await?) })
    }
    fn exceptions<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<JobExceptions>> {
        Box::pin(async move { Ok(self.client(base).job_exceptions(job_id).await?) })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: SavepointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move { Ok(self.client(base).trigger_savepoint(job_id, &request).await?) })
    }
    fn stop_with_savepoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: StopWithSavepointRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move { Ok(self.client(base).stop_with_savepoint(job_id, &request).await?) })
    }
    fn savepoint_status<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>> {
        Box::pin(async move { Ok(self.client(base).savepoint_status(job_id, trigger_id).await?) })
    }
    fn cancel<'a>(&'a self, base: &'a str, job_id: &'a str) -> BoxFuture<'a, JmResult<()>> {
        Box::pin(async move { Ok(self.client(base).cancel_job(job_id).await?) })
    }
    fn trigger_checkpoint<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        request: CheckpointTriggerRequest,
    ) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move { Ok(self.client(base).trigger_checkpoint(job_id, &request).await?) })
    }
    fn checkpoint_status<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<CheckpointTriggerResult>> {
        Box::pin(async move { Ok(self.client(base).checkpoint_status(job_id, trigger_id).await?) })
    }
    fn dispose<'a>(&'a self, base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<TriggerResponse>> {
        Box::pin(async move {
            let request = SavepointDisposalRequest { savepoint_path: Some(path.to_string()) };
            Ok(self.client(base).dispose_savepoint(&request).await?)
        })
    }
    fn disposal_status<'a>(
        &'a self,
        base: &'a str,
        trigger_id: &'a str,
    ) -> BoxFuture<'a, JmResult<AsynchronousOperationResult>> {
        Box::pin(async move { Ok(self.client(base).disposal_status(trigger_id).await?) })
    }
    fn validate_snapshot<'a>(&'a self, base: &'a str, path: &'a str) -> BoxFuture<'a, JmResult<SnapshotValidation>> {
        Box::pin(async move { Ok(self.client(base).validate_snapshot(path).await?) })
    }
    fn taskmanagers<'a>(&'a self, base: &'a str) -> BoxFuture<'a, JmResult<TaskManagersInfo>> {
        Box::pin(async move { Ok(self.client(base).taskmanagers().await?) })
    }
    fn subtasks_metrics<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        vertex_id: &'a str,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, JmResult<Vec<AggregatedMetric>>> {
        Box::pin(async move { Ok(self.client(base).subtasks_metrics(job_id, vertex_id, names).await?) })
    }
    fn set_resource_requirements<'a>(
        &'a self,
        base: &'a str,
        job_id: &'a str,
        requirements: JobResourceRequirements,
    ) -> BoxFuture<'a, JmResult<()>> {
        Box::pin(async move { Ok(self.client(base).set_resource_requirements(job_id, &requirements).await?) })
    }
}
