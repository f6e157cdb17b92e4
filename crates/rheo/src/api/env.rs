//! The stream execution environment: holds the job graph while a job is defined, then runs it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use rheo_config::{ConfigError, Configuration, options};
use rheo_runtime::driver::minicluster::{JobError, JobResult, MiniCluster};
use rheo_runtime::graph::plan::PlanSettings;
use rheo_runtime::graph::{Data, JobGraph, Node, NodeKind, OperatorContext, TypeOf, unerase};
use rheo_runtime::output::Output;
use rheo_runtime::task::{SourceFunction, SourceTask, Task};

use super::stream::DataStream;

/// Flink's `StreamExecutionEnvironment`.
pub struct StreamEnv {
    pub(crate) graph: Rc<RefCell<JobGraph>>,
    config: Configuration,
    parallelism: Option<usize>,
}

impl StreamEnv {
    pub fn new(config: Configuration) -> Self {
        Self { graph: Rc::new(RefCell::new(JobGraph::default())), config, parallelism: None }
    }

    pub fn config(&self) -> &Configuration {
        &self.config
    }

    /// The default parallelism of operators that do not set their own.
    pub fn set_parallelism(&mut self, parallelism: usize) -> &mut Self {
        self.parallelism = Some(parallelism);
        self
    }

    pub fn parallelism(&self) -> Result<usize, ConfigError> {
        match self.parallelism {
            Some(p) => Ok(p),
            None => self.config.get(&options::PARALLELISM_DEFAULT),
        }
    }

    /// Adds a parallel source: `make` builds the source of each subtask.
    pub fn add_source<T: Data, S: SourceFunction<T>>(
        &self,
        name: &str,
        make: impl Fn(&OperatorContext) -> S + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.source_node(name, false, make)
    }

    /// Adds a source that always runs as one subtask (a socket, a fixed collection).
    pub fn add_non_parallel_source<T: Data, S: SourceFunction<T>>(
        &self,
        name: &str,
        make: impl Fn(&OperatorContext) -> S + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.source_node(name, true, make)
    }

    fn source_node<T: Data, S: SourceFunction<T>>(
        &self,
        name: &str,
        non_parallel: bool,
        make: impl Fn(&OperatorContext) -> S + Send + Sync + 'static,
    ) -> DataStream<T> {
        let factory = Arc::new(move |ctx: &OperatorContext, mut outs: Vec<Box<dyn std::any::Any>>| -> Box<dyn Task> {
            let chain: Box<dyn Output<T>> = unerase::<T>(outs.remove(0));
            Box::new(SourceTask {
                info: ctx.info.clone(),
                node: ctx.node,
                source: Box::new(make(ctx)),
                chain,
                link: None,
            })
        });
        let id = self.graph.borrow_mut().add(Node {
            name: format!("Source: {name}"),
            parallelism: None,
            non_parallel,
            kind: NodeKind::Source(factory),
            inputs: Vec::new(),
            ports: vec![TypeOf::<T>::arc()],
        });
        DataStream::new(self.graph.clone(), id, 0)
    }

    /// The job graph defined so far, e.g. to run it on a cluster of one's choosing.
    pub fn graph(&self) -> std::cell::RefMut<'_, JobGraph> {
        self.graph.borrow_mut()
    }

    /// The plan settings from the configuration and this environment.
    pub fn plan_settings(&self) -> Result<PlanSettings, ConfigError> {
        Ok(PlanSettings {
            default_parallelism: self.parallelism()?,
            max_parallelism: self.config.get(&options::MAX_PARALLELISM)?,
            chaining: self.config.get(&options::OPERATOR_CHAINING)?,
        })
    }

    /// Runs the job defined so far on an embedded mini-cluster and waits for it to end.
    pub fn execute(&self, job_name: &str) -> Result<JobResult, JobError> {
        self.execute_on(&MiniCluster::new(self.config.clone()), job_name)
    }

    /// Runs the job defined so far on the given mini-cluster (with its job id, progress
    /// display, ...) and waits for it to end.
    pub fn execute_on(&self, cluster: &MiniCluster, job_name: &str) -> Result<JobResult, JobError> {
        let settings = self.plan_settings()?;
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        cluster.run(job_name, graph, &settings)
    }
}
