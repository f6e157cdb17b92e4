//! A job as it travels between processes: its name, its arguments and its configuration. Every
//! process carries the same binary, so each builds the same graph from these (a job is named,
//! not shipped).

use crate::registry::JobRegistry;
use rheo::api::StreamEnv;
use rheo_config::Configuration;
use rheo_runtime::graph::JobGraph;
use rheo_runtime::graph::plan::PlanSettings;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// A job of the binary's registry (`rheo jobs`).
    pub name: String,
    /// The job's own arguments.
    pub args: Vec<String>,
    /// The job's configuration: the cluster's, with the submission's values on top.
    pub config: Vec<(String, String)>,
    /// `-p`: the default parallelism, unless the scheduler decides it (reactive mode).
    pub parallelism: Option<usize>,
}

/// A job that cannot be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum JobSpecError {
    #[error("unknown job '{0}' (see 'rheo jobs')")]
    UnknownJob(String),
    #[error("{job}: {message}")]
    Build { job: String, message: String },
}

/// A built job: the graph, how to plan it, and its configuration.
pub struct BuiltJob {
    pub graph: JobGraph,
    pub settings: PlanSettings,
    pub config: Configuration,
}

impl JobSpec {
    pub fn configuration(&self) -> Configuration {
        let mut config = Configuration::new();
        for (key, value) in &self.config {
            config.set(key.as_str(), value.as_str());
        }
        config
    }

    /// Builds the job's graph; `parallelism` overrides the spec's (the scheduler's choice).
    pub fn build(&self, registry: &JobRegistry, parallelism: Option<usize>) -> Result<BuiltJob, JobSpecError> {
        let entry = registry.get(&self.name).ok_or_else(|| JobSpecError::UnknownJob(self.name.clone()))?;
        let config = self.configuration();
        let mut env = StreamEnv::new(config.clone());
        if let Some(p) = parallelism.or(self.parallelism) {
            env.set_parallelism(p);
        }
        let error = |message: String| JobSpecError::Build { job: self.name.clone(), message };
        entry.build_from(&env, &self.args).map_err(|e| error(format!("{e:#}")))?;
        let settings = env.plan_settings().map_err(|e| error(e.to_string()))?;
        let graph = std::mem::take(&mut *env.graph());
        Ok(BuiltJob { graph, settings, config })
    }
}
