//! A blocking face of the `rheo-rest` client, for tests and the benchmark (which are threads,
//! not async tasks).

use std::future::Future;

use rheo_rest::{CheckpointingStatistics, JobDetails, JobExceptions, JobIdsWithStatus, RestClient, TaskManagersInfo};

use crate::HarnessError;

/// A JobManager's REST API, called synchronously.
pub struct Rest {
    client: RestClient,
    runtime: tokio::runtime::Runtime,
}

impl Rest {
    /// A client of `base_url`, e.g. `http://127.0.0.1:8081`.
    pub fn new(base_url: impl Into<String>) -> Result<Rest, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| HarnessError::Io { context: "cannot start a tokio runtime".into(), source })?;
        Ok(Rest { client: RestClient::new(base_url), runtime })
    }

    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    pub fn client(&self) -> &RestClient {
        &self.client
    }

    /// Runs one call of the async client to completion, e.g.
    /// `rest.call(|c| c.job_checkpoint_config(id))`.
    pub fn call<'a, T, F>(&'a self, call: impl FnOnce(&'a RestClient) -> F) -> Result<T, HarnessError>
    where
        F: Future<Output = Result<T, rheo_rest::Error>> + 'a,
    {
        Ok(self.runtime.block_on(call(&self.client))?)
    }

    pub fn jobs(&self) -> Result<JobIdsWithStatus, HarnessError> {
        self.call(|c| c.jobs())
    }

    pub fn job(&self, job_id: &str) -> Result<JobDetails, HarnessError> {
        self.call(|c| c.job(job_id))
    }

    pub fn checkpoints(&self, job_id: &str) -> Result<CheckpointingStatistics, HarnessError> {
        self.call(|c| c.job_checkpoints(job_id))
    }

    pub fn exceptions(&self, job_id: &str) -> Result<JobExceptions, HarnessError> {
        self.call(|c| c.job_exceptions(job_id))
    }

    pub fn taskmanagers(&self) -> Result<TaskManagersInfo, HarnessError> {
        self.call(|c| c.taskmanagers())
    }
}
