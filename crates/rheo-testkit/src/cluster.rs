//! A JobManager (or a `rheo run`) and its TaskManagers as `rheo` processes on 127.0.0.1, and
//! waits on their REST API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rheo_rest::{CheckpointingStatistics, JobDetails, JobState, TaskManagersInfo};

use crate::{DEFAULT_TIMEOUT, HarnessError, Poll, Process, Rest, free_port, wait_for};

/// `rheo` processes sharing one configuration (`-D key=value` on every command line) and one
/// working directory, where each process logs to `<name>.log`. The JobManager's RPC and REST
/// ports are free ports chosen here; TaskManagers' data ports are chosen by the OS. Every
/// process is killed when the cluster is dropped.
///
/// The "JobManager" is either `rheo jobmanager` ([`Cluster::start_jobmanager`]) or a
/// `rheo run` ([`Cluster::start_run`]): both serve the REST API that the waits observe.
pub struct Cluster {
    rheo: PathBuf,
    dir: PathBuf,
    config: Vec<String>,
    log_level: String,
    rest: Rest,
    timeout: Duration,
    poll: Duration,
    jobmanager: Option<Process>,
    jobmanager_starts: usize,
    taskmanagers: Vec<Process>,
}

impl Cluster {
    /// A cluster of the `rheo` binary at `rheo`, working in `dir` (created if missing).
    pub fn new(rheo: impl Into<PathBuf>, dir: &Path) -> Result<Cluster, HarnessError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| HarnessError::Io { context: format!("cannot create {}", dir.display()), source })?;
        let (rpc_port, rest_port) = (free_port()?, free_port()?);
        let config = vec![
            "jobmanager.rpc.address=127.0.0.1".to_string(),
            format!("jobmanager.rpc.port={rpc_port}"),
            format!("rest.port={rest_port}"),
            "taskmanager.data.port=0".to_string(),
        ];
        Ok(Cluster {
            rheo: rheo.into(),
            dir: dir.to_path_buf(),
            config,
            log_level: "info".into(),
            rest: Rest::new(format!("http://127.0.0.1:{rest_port}"))?,
            timeout: DEFAULT_TIMEOUT,
            poll: Duration::from_millis(20),
            jobmanager: None,
            jobmanager_starts: 0,
            taskmanagers: Vec::new(),
        })
    }

    /// More `key=value` configuration for every process started from now on.
    pub fn with_config(mut self, entries: &[&str]) -> Cluster {
        self.config.extend(entries.iter().map(|e| e.to_string()));
        self
    }

    /// How long each wait lasts before it fails (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Cluster {
        self.timeout = timeout;
        self
    }

    /// How often the waits ask the REST API (default 20 ms; the benchmark asks more often to
    /// time events more precisely).
    pub fn with_poll_interval(mut self, poll: Duration) -> Cluster {
        self.poll = poll;
        self
    }

    /// Changes the timeout of the waits from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Changes the poll interval of the waits from now on.
    pub fn set_poll_interval(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// `RHEO_LOG` of the processes (default `info`).
    pub fn with_log_level(mut self, level: &str) -> Cluster {
        self.log_level = level.to_string();
        self
    }

    /// The `key=value` configuration every process gets (for another process, such as
    /// `rheo autoscale`, to start TaskManagers of this cluster).
    pub fn config(&self) -> &[String] {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    pub fn rest_url(&self) -> &str {
        self.rest.url()
    }

    /// Starts `rheo jobmanager ARGS` (replacing a JobManager that was killed before).
    pub fn start_jobmanager<S: AsRef<str>>(&mut self, args: &[S]) -> Result<&mut Process, HarnessError> {
        self.start_main("jobmanager", args)
    }

    /// Starts `rheo run ARGS`: a job on the embedded mini-cluster, serving the REST API.
    pub fn start_run<S: AsRef<str>>(&mut self, args: &[S]) -> Result<&mut Process, HarnessError> {
        self.start_main("run", args)
    }

    fn start_main<S: AsRef<str>>(&mut self, command: &str, args: &[S]) -> Result<&mut Process, HarnessError> {
        if let Some(previous) = self.jobmanager.as_mut()
            && previous.exit_status().is_none()
        {
            return Err(HarnessError::Failed {
                what: format!("a new {command}"),
                reason: format!("{} is still running", previous.name()),
                logs: String::new(),
            });
        }
        self.jobmanager_starts += 1;
        let name = format!("{command}-{}", self.jobmanager_starts);
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let process = self.spawn(&name, command, &args)?;
        Ok(self.jobmanager.insert(process))
    }

    /// Starts `rheo taskmanager`; its index among the TaskManagers.
    pub fn start_taskmanager(&mut self) -> Result<usize, HarnessError> {
        self.start_taskmanager_with(&[])
    }

    /// Starts `rheo taskmanager -D ENTRY...` with configuration of its own.
    pub fn start_taskmanager_with(&mut self, entries: &[&str]) -> Result<usize, HarnessError> {
        let index = self.taskmanagers.len();
        let mut args = Vec::new();
        for entry in entries {
            args.extend(["-D", entry]);
        }
        let process = self.spawn(&format!("taskmanager-{index}"), "taskmanager", &args)?;
        self.taskmanagers.push(process);
        Ok(index)
    }

    fn spawn(&self, name: &str, command: &str, args: &[&str]) -> Result<Process, HarnessError> {
        let mut argv = vec![command.to_string()];
        for entry in &self.config {
            argv.push("-D".into());
            argv.push(entry.clone());
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        Process::spawn(name, &self.rheo, &self.dir, &argv, &[("RHEO_LOG", &self.log_level)])
    }

    /// The JobManager (or `rheo run`) started last.
    pub fn jobmanager(&mut self) -> &mut Process {
        self.jobmanager.as_mut().expect("no JobManager started")
    }

    pub fn taskmanager(&mut self, index: usize) -> &mut Process {
        &mut self.taskmanagers[index]
    }

    pub fn taskmanagers(&mut self) -> &mut [Process] {
        &mut self.taskmanagers
    }

    /// SIGKILL to the JobManager; it is gone when this returns.
    pub fn kill_jobmanager(&mut self) -> Result<(), HarnessError> {
        self.jobmanager().kill().map(drop)
    }

    /// SIGKILL to TaskManager `index`; it is gone when this returns.
    pub fn kill_taskmanager(&mut self, index: usize) -> Result<(), HarnessError> {
        self.taskmanagers[index].kill().map(drop)
    }

    /// The last lines of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        self.jobmanager.iter().chain(&self.taskmanagers).map(|p| p.log_tail(40)).collect()
    }

    /// Polls `probe` on the REST API until it is ready. Fails at once when the JobManager has
    /// exited, and with the processes' logs when the timeout passes.
    pub fn await_until<T>(&mut self, what: &str, mut probe: impl FnMut(&Rest) -> Poll<T>) -> Result<T, HarnessError> {
        let (timeout, poll) = (self.timeout, self.poll);
        let (rest, jobmanager) = (&self.rest, &mut self.jobmanager);
        let result = wait_for(
            what,
            timeout,
            poll,
            || {
                if let Some(jm) = jobmanager.as_mut()
                    && let Some(status) = jm.exit_status()
                {
                    return Poll::Failed(format!("{} exited ({status})", jm.name()));
                }
                probe(rest)
            },
            String::new,
        );
        result.map_err(|e| self.with_logs(e))
    }

    fn with_logs(&self, error: HarnessError) -> HarnessError {
        match error {
            HarnessError::Timeout { what, waited, last, .. } => {
                HarnessError::Timeout { what, waited, last, logs: self.logs() }
            }
            HarnessError::Failed { what, reason, .. } => HarnessError::Failed { what, reason, logs: self.logs() },
            other => other,
        }
    }

    /// The id of the first job the JobManager lists.
    pub fn await_job(&mut self) -> Result<String, HarnessError> {
        self.await_until("a job to be listed", |rest| match rest.jobs() {
            Ok(jobs) => match jobs.jobs.first() {
                Some(job) => Poll::Ready(job.id.to_string()),
                None => Poll::Pending("no jobs".into()),
            },
            Err(e) => Poll::Pending(e.to_string()),
        })
    }

    /// Waits for job `job_id` to be in `state`; fails early when it ends in another state.
    pub fn await_state(&mut self, job_id: &str, state: JobState) -> Result<JobDetails, HarnessError> {
        self.await_job_details(&format!("job {job_id} to be {state}"), job_id, |job| job.state == state)
    }

    /// Waits until job `job_id` runs with `parallelism` (its largest vertex's).
    pub fn await_parallelism(&mut self, job_id: &str, parallelism: u32) -> Result<JobDetails, HarnessError> {
        self.await_job_details(&format!("job {job_id} to run at parallelism {parallelism}"), job_id, |job| {
            job.state == JobState::Running && job.parallelism() == Some(parallelism)
        })
    }

    /// Waits until `done` holds for `GET /jobs/:id`; fails early when the job ends otherwise.
    pub fn await_job_details(
        &mut self,
        what: &str,
        job_id: &str,
        done: impl Fn(&JobDetails) -> bool,
    ) -> Result<JobDetails, HarnessError> {
        self.await_until(what, |rest| match rest.job(job_id) {
            Ok(job) if done(&job) => Poll::Ready(job),
            Ok(job) if job.state.is_terminal() => Poll::Failed(format!("the job ended {}", job.state)),
            Ok(job) => Poll::Pending(format!("{} at parallelism {:?}", job.state, job.parallelism())),
            Err(e) => Poll::Pending(e.to_string()),
        })
    }

    /// Waits until job `job_id` has completed at least `count` checkpoints (as counted by this
    /// JobManager process); fails early when the job ends first.
    pub fn await_checkpoints(&mut self, job_id: &str, count: u64) -> Result<CheckpointingStatistics, HarnessError> {
        self.await_until(&format!("{count} completed checkpoints of job {job_id}"), |rest| {
            match rest.checkpoints(job_id) {
                Ok(stats) if stats.counts.completed >= count => Poll::Ready(stats),
                Ok(stats) => match rest.job(job_id) {
                    Ok(job) if job.state.is_terminal() => Poll::Failed(format!(
                        "the job ended {} after {} completed checkpoints",
                        job.state, stats.counts.completed
                    )),
                    _ => Poll::Pending(format!("{} completed", stats.counts.completed)),
                },
                Err(e) => Poll::Pending(e.to_string()),
            }
        })
    }

    /// Waits until exactly `count` TaskManagers are registered.
    pub fn await_taskmanagers(&mut self, count: usize) -> Result<TaskManagersInfo, HarnessError> {
        self.await_until(&format!("{count} registered TaskManagers"), |rest| match rest.taskmanagers() {
            Ok(info) if info.taskmanagers.len() == count => Poll::Ready(info),
            Ok(info) => Poll::Pending(format!("{} registered", info.taskmanagers.len())),
            Err(e) => Poll::Pending(e.to_string()),
        })
    }
}
