//! An async client for the JobManager's REST API, one method per endpoint.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::types::*;
use crate::ui::AggregatedMetric;

/// What can go wrong talking to a JobManager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The JobManager answered 404: no such job or trigger.
    #[error("not found: {0}")]
    NotFound(String),
    /// No answer: connection refused, DNS failure, timeout.
    #[error("JobManager unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The JobManager answered with an error status.
    #[error("JobManager answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The answer was not the JSON we expected.
    #[error("cannot decode JobManager answer from {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A client for one JobManager, e.g. `RestClient::new("http://my-job-rest.ns.svc:8081")`.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
}

impl RestClient {
    /// A client with a 10 s request timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        Self::with_http_client(http, base_url)
    }

    /// A client that reuses a configured `reqwest::Client`.
    pub fn with_http_client(http: reqwest::Client, base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_string();
        Self { http, base }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /config`
    pub async fn config(&self) -> Result<DashboardConfiguration, Error> {
        self.get("/config").await
    }

    /// `GET /overview`
    pub async fn overview(&self) -> Result<ClusterOverview, Error> {
        self.get("/overview").await
    }

    /// `GET /jobs`
    pub async fn jobs(&self) -> Result<JobIdsWithStatus, Error> {
        self.get("/jobs").await
    }

    /// `GET /jobs/overview`
    pub async fn jobs_overview(&self) -> Result<JobsOverview, Error> {
        self.get("/jobs/overview").await
    }

    /// `GET /jobs/:id`
    pub async fn job(&self, job_id: &str) -> Result<JobDetails, Error> {
        self.get(&format!("/jobs/{job_id}")).await
    }

    /// `GET /jobs/:id/checkpoints`
    pub async fn job_checkpoints(&self, job_id: &str) -> Result<CheckpointingStatistics, Error> {
        self.get(&format!("/jobs/{job_id}/checkpoints")).await
    }

    /// `GET /jobs/:id/checkpoints/config`
    pub async fn job_checkpoint_config(&self, job_id: &str) -> Result<CheckpointConfigInfo, Error> {
        self.get(&format!("/jobs/{job_id}/checkpoints/config")).await
    }

    /// `GET /jobs/:id/exceptions`
    pub async fn job_exceptions(&self, job_id: &str) -> Result<JobExceptions, Error> {
        self.get(&format!("/jobs/{job_id}/exceptions")).await
    }

    /// `POST /jobs/:id/savepoints`: trigger a savepoint (optionally cancelling the job).
    pub async fn trigger_savepoint(
        &self,
        job_id: &str,
        request: &SavepointTriggerRequest,
    ) -> Result<TriggerResponse, Error> {
        let path = format!("/jobs/{job_id}/savepoints");
        self.send(Method::POST, &path, Some(request)).await
    }

    /// `GET /jobs/:id/savepoints/:trigger`: the state of a savepoint (or stop) operation.
    pub async fn savepoint_status(&self, job_id: &str, trigger_id: &str) -> Result<AsynchronousOperationResult, Error> {
        self.get(&format!("/jobs/{job_id}/savepoints/{trigger_id}")).await
    }

    /// `POST /jobs/:id/checkpoints`: take a checkpoint now (Flink 1.19+).
    pub async fn trigger_checkpoint(
        &self,
        job_id: &str,
        request: &CheckpointTriggerRequest,
    ) -> Result<TriggerResponse, Error> {
        let path = format!("/jobs/{job_id}/checkpoints");
        self.send(Method::POST, &path, Some(request)).await
    }

    /// `GET /jobs/:id/checkpoints/:trigger`: the state of a checkpoint asked for.
    pub async fn checkpoint_status(&self, job_id: &str, trigger_id: &str) -> Result<CheckpointTriggerResult, Error> {
        self.get(&format!("/jobs/{job_id}/checkpoints/{trigger_id}")).await
    }

    /// `POST /savepoint-disposal`: delete a savepoint (Rheo: or a job's retained checkpoints).
    pub async fn dispose_savepoint(&self, request: &SavepointDisposalRequest) -> Result<TriggerResponse, Error> {
        self.send(Method::POST, "/savepoint-disposal", Some(request)).await
    }

    /// `POST /snapshots/validation` (Rheo's): whether a job started from `path` could restore it.
    pub async fn validate_snapshot(&self, path: &str) -> Result<SnapshotValidation, Error> {
        let request = SnapshotValidationRequest { path: path.to_string() };
        self.send(Method::POST, "/snapshots/validation", Some(&request)).await
    }

    /// `GET /savepoint-disposal/:trigger`: the state of a disposal.
    pub async fn disposal_status(&self, trigger_id: &str) -> Result<AsynchronousOperationResult, Error> {
        self.get(&format!("/savepoint-disposal/{trigger_id}")).await
    }

    /// `POST /jobs/:id/stop`: stop the job with a savepoint. Poll with [`Self::savepoint_status`].
    pub async fn stop_with_savepoint(
        &self,
        job_id: &str,
        request: &StopWithSavepointRequest,
    ) -> Result<TriggerResponse, Error> {
        let path = format!("/jobs/{job_id}/stop");
        self.send(Method::POST, &path, Some(request)).await
    }

    /// `PATCH /jobs/:id?mode=cancel`: cancel the job without a savepoint.
    pub async fn cancel_job(&self, job_id: &str) -> Result<(), Error> {
        let path = format!("/jobs/{job_id}?mode=cancel");
        let _: serde_json::Value = self.send(Method::PATCH, &path, None::<&()>).await?;
        Ok(())
    }

    /// `GET /taskmanagers`
    pub async fn taskmanagers(&self) -> Result<TaskManagersInfo, Error> {
        self.get("/taskmanagers").await
    }

    /// `GET /jobmanager/config`
    pub async fn jobmanager_config(&self) -> Result<Vec<ConfigurationEntry>, Error> {
        self.get("/jobmanager/config").await
    }

    /// `GET /jobs/:id/vertices/:vid/backpressure`
    pub async fn vertex_backpressure(&self, job_id: &str, vertex_id: &str) -> Result<JobVertexBackPressureInfo, Error> {
        self.get(&format!("/jobs/{job_id}/vertices/{vertex_id}/backpressure")).await
    }

    /// `GET /jobs/:id/vertices/:vid/metrics?get=a,b`: the values of the named metrics (those
    /// the vertex has); with no names, the ids of all its metrics.
    pub async fn vertex_metrics(
        &self,
        job_id: &str,
        vertex_id: &str,
        names: &[&str],
    ) -> Result<Vec<MetricValue>, Error> {
        let query = if names.is_empty() { String::new() } else { format!("?get={}", names.join(",")) };
        self.get(&format!("/jobs/{job_id}/vertices/{vertex_id}/metrics{query}")).await
    }

    /// `GET /jobs/:id/vertices/:vid/subtasks/metrics?get=a,b`: the named metrics aggregated
    /// over the vertex's subtasks (min, max, avg, sum, skew).
    pub async fn subtasks_metrics(
        &self,
        job_id: &str,
        vertex_id: &str,
        names: &[&str],
    ) -> Result<Vec<AggregatedMetric>, Error> {
        self.get(&format!("/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics?get={}", names.join(","))).await
    }

    /// `GET /jobs/:id/resource-requirements`: each vertex's parallelism bounds.
    pub async fn resource_requirements(&self, job_id: &str) -> Result<JobResourceRequirements, Error> {
        self.get(&format!("/jobs/{job_id}/resource-requirements")).await
    }

    /// `PUT /jobs/:id/resource-requirements`: rescale the job (Rheo: to the largest upper bound).
    pub async fn set_resource_requirements(
        &self,
        job_id: &str,
        requirements: &JobResourceRequirements,
    ) -> Result<(), Error> {
        let path = format!("/jobs/{job_id}/resource-requirements");
        let _: serde_json::Value = self.send(Method::PUT, &path, Some(requirements)).await?;
        Ok(())
    }

    /// `GET /jars`: the jobs the cluster can start (Rheo: one pseudo-jar, the binary).
    pub async fn jars(&self) -> Result<JarListInfo, Error> {
        self.get("/jars").await
    }

    /// `POST /jars/:jarid/run`: starts a job; its id.
    pub async fn run_jar(&self, jar_id: &str, request: &JarRunRequest) -> Result<JarRunResponse, Error> {
        self.send(Method::POST, &format!("/jars/{jar_id}/run"), Some(request)).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(Method::GET, path, None::<&()>).await
    }

    async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(Error::Unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(Error::Unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|e| e.summary())
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(if status == StatusCode::NOT_FOUND {
                Error::NotFound(message)
            } else {
                Error::Http { status: status.as_u16(), message }
            });
        }
        // Flink answers some commands (cancel) with an empty body.
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).map_err(|source| Error::Decode { path: path.to_string(), source })
    }
}
