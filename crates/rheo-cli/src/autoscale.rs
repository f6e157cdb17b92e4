//! `rheo autoscale`: the autoscaler's local mode. It samples a job's metrics over the REST API,
//! feeds them to the `rheo-autoscaler` core, and realises its decisions on this machine: a
//! scale-up starts TaskManager processes first and then sets the job's resource requirements;
//! a scale-down sets them first and then sends SIGTERM to the TaskManagers it left idle.
//!
//! The TaskManagers it starts are its own: they get every `-D` it was given, log under `--dir`,
//! and end with it (SIGTERM when it exits, by the parent-death signal). It never stops a
//! TaskManager it did not start, so those count towards `taskmanager.min-replicas`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use rheo_autoscaler::rest::{METRICS, is_running, requirements, sample, topology};
use rheo_autoscaler::{AutoscalerConfig, AutoscalerInput, Decision, MetricHistory};
use rheo_config::options;
use rheo_rest::{JobDetails, JobState, RestClient};

use crate::Failure;
use crate::client::{JobManager, client};
use crate::jobs::parse_duration_arg;
use crate::processes::ConfigArgs;

/// How long a rescale may take (TaskManagers registering, the job redeployed) before the
/// autoscaler gives up on it and goes on sampling.
const RESCALE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    #[command(flatten)]
    jm: JobManager,
    /// The job to scale (default: the first running job).
    #[arg(long, value_name = "ID")]
    job_id: Option<String>,
    /// How often the job's metrics are sampled and a decision taken.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    interval: Duration,
    /// Where the TaskManagers this starts write their logs.
    #[arg(long, default_value = "rheo-data/autoscaler", value_name = "DIR")]
    dir: PathBuf,
    /// Configuration: job.autoscaler.* for the decisions, taskmanager.numberOfTaskSlots, and
    /// everything the TaskManagers it starts need (they get every -D).
    #[command(flatten)]
    config: ConfigArgs,
}

/// A TaskManager process this autoscaler started.
struct OwnTaskManager {
    child: Child,
    data_port: u16,
}

struct Autoscaler {
    rest: RestClient,
    config: AutoscalerConfig,
    slots: u32,
    args: AutoscaleArgs,
    history: MetricHistory,
    last_rescale_ms: Option<u64>,
    own: Vec<OwnTaskManager>,
    started: usize,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs the loop until the job ends (success) or SIGTERM/SIGINT; the TaskManagers it started
/// are sent SIGTERM on the way out.
pub fn run(args: AutoscaleArgs) -> Result<(), Failure> {
    let loaded = args.config.load()?;
    let config =
        AutoscalerConfig::from_flink_config(loaded.entries().filter(|(k, _)| k.starts_with("job.autoscaler.")))
            .map_err(|e| Failure::Usage(e.to_string()))?;
    let slots = loaded.get(&options::TASK_SLOTS).map_err(|e| e.to_string())?.max(1) as u32;
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("--dir {}: {e}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let rest = client(&args.jm)?;
    let mut autoscaler = Autoscaler {
        rest,
        config,
        slots,
        args,
        history: MetricHistory::new(),
        last_rescale_ms: None,
        own: Vec::new(),
        started: 0,
    };
    let result = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            result = autoscaler.run() => result,
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); Ok(()) }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); Ok(()) }
        }
    });
    autoscaler.stop_own();
    Ok(result?)
}

impl Autoscaler {
    async fn run(&mut self) -> Result<(), String> {
        let job_id = match self.args.job_id.clone() {
            Some(id) => id,
            None => self.await_running_job().await?,
        };
        tracing::info!(job_id, interval = ?self.args.interval, config = ?self.config, "autoscaling");
        let mut timer = tokio::time::interval(self.args.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            match self.step(&job_id).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => tracing::warn!(job_id, error = %e, "autoscaler step failed; trying again"),
            }
        }
    }

    async fn await_running_job(&self) -> Result<String, String> {
        loop {
            if let Ok(jobs) = self.rest.jobs().await
                && let Some(job) = jobs.jobs.iter().find(|j| j.status == JobState::Running)
            {
                return Ok(job.id.to_string());
            }
            tokio::time::sleep(self.args.interval.min(Duration::from_secs(1))).await;
        }
    }

    /// One sample and decision; false once the job has ended.
    async fn step(&mut self, job_id: &str) -> Result<bool, String> {
        let job = self.rest.job(job_id).await.map_err(|e| e.to_string())?;
        if job.state.is_terminal() {
            tracing::info!(job_id, state = %job.state, "the job ended; the autoscaler stops");
            return Ok(false);
        }
        if !is_running(&job) {
            return Ok(true);
        }
        let last_rescale_ms = *self.last_rescale_ms.get_or_insert(job.start_time.max(0) as u64);
        let now = now_ms();
        for vertex in &job.vertices {
            let metrics = self.rest.subtasks_metrics(job_id, &vertex.id, &METRICS).await.map_err(|e| e.to_string())?;
            self.history.push(sample(vertex, &metrics, now, self.config.busy_time_aggregator));
        }
        let keep =
            self.config.metrics_window_ms + self.config.scale_down_interval_ms + self.args.interval.as_millis() as u64;
        self.history.trim_before(now.saturating_sub(keep));
        let task_managers = self.rest.taskmanagers().await.map_err(|e| e.to_string())?.taskmanagers.len() as u32;
        let topology = topology(&job);
        let input = AutoscalerInput {
            now_ms: now,
            topology: &topology,
            history: &self.history,
            last_rescale_ms,
            task_managers,
            slots_per_task_manager: self.slots,
        };
        let outcome = rheo_autoscaler::decide(&input, &self.config).map_err(|e| e.to_string())?;
        let summary: Vec<String> = outcome
            .vertices
            .iter()
            .map(|v| format!("{}: {}", v.vertex, serde_json::to_string(v).unwrap_or_default()))
            .collect();
        tracing::debug!(job_id, vertices = ?summary, "evaluated");
        match &outcome.decision {
            Decision::NoChange { reason } => tracing::info!(job_id, ?reason, "no change"),
            Decision::Rescale { parallelism, task_managers: wanted, .. } => {
                let to = parallelism.iter().map(|c| c.to).max().unwrap_or(1);
                // Rheo's vertices share slots and run at one job parallelism (the largest a
                // vertex wants): a vertex wanting less than that changes nothing.
                if job.parallelism() == Some(to) && *wanted == task_managers {
                    tracing::info!(job_id, parallelism = to, vertices = ?summary, "no change: the job runs at the largest parallelism a vertex wants");
                    return Ok(true);
                }
                tracing::info!(job_id, parallelism = to, task_managers = wanted, from = task_managers, vertices = ?summary, "rescaling");
                self.rescale(job_id, &job, to, task_managers, *wanted).await?;
                self.last_rescale_ms = Some(now_ms());
            }
        }
        Ok(true)
    }

    async fn rescale(
        &mut self,
        job_id: &str,
        job: &JobDetails,
        parallelism: u32,
        from: u32,
        to: u32,
    ) -> Result<(), String> {
        if to > from {
            for _ in from..to {
                self.start_taskmanager()?;
            }
            self.await_until("the new TaskManagers to register", || async {
                Ok(self.rest.taskmanagers().await.map_err(|e| e.to_string())?.taskmanagers.len() as u32 >= to)
            })
            .await?;
        }
        if job.parallelism() == Some(parallelism) {
            // Only the TaskManager count changes: no redeploy.
            if to < from {
                self.stop_idle(from - to).await?;
            }
            return Ok(());
        }
        let requirements = requirements(job, parallelism);
        self.rest.set_resource_requirements(job_id, &requirements).await.map_err(|e| e.to_string())?;
        self.await_until(&format!("the job to run at parallelism {parallelism}"), || async {
            let job = self.rest.job(job_id).await.map_err(|e| e.to_string())?;
            if job.state.is_terminal() {
                return Err(format!("the job ended {} while rescaling", job.state));
            }
            Ok(is_running(&job) && job.parallelism() == Some(parallelism))
        })
        .await?;
        if to < from {
            self.stop_idle(from - to).await?;
        }
        Ok(())
    }

    /// Polls `done` until it holds, for at most [`RESCALE_TIMEOUT`].
    async fn await_until<F, Fut>(&self, what: &str, mut done: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, String>>,
    {
        let started = Instant::now();
        loop {
            match done().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.contains("while rescaling") => return Err(e),
                Err(_) => {}
            }
            if started.elapsed() > RESCALE_TIMEOUT {
                return Err(format!("timed out after {RESCALE_TIMEOUT:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn start_taskmanager(&mut self) -> Result<(), String> {
        // The data port is chosen here so that the TaskManager can be told apart in
        // `/taskmanagers` (its id and dataPort) when it is to be stopped.
        let data_port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free data port: {e}"))?
            .port();
        self.started += 1;
        let log_path = self.args.dir.join(format!("taskmanager-{}.log", self.started));
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the rheo binary: {e}"))?;
        let mut command = std::process::Command::new(exe);
        command.arg("taskmanager");
        for entry in &self.args.config.dynamic {
            command.args(["-D", entry]);
        }
        if let Some(dir) = &self.args.config.conf_dir {
            command.arg("--conf-dir").arg(dir);
        }
        command.args(["-D", &format!("taskmanager.data.port={data_port}")]);
        command.stdin(Stdio::null()).stdout(log).stderr(err);
        // SAFETY: prctl is async-signal-safe; between fork and exec it only sets the signal the
        // child gets when this process dies, so no TaskManager outlives its autoscaler.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|e| format!("cannot start a TaskManager: {e}"))?;
        tracing::info!(pid = child.id(), data_port, log = %log_path.display(), "started a TaskManager");
        self.own.push(OwnTaskManager { child, data_port });
        Ok(())
    }

    /// Sends SIGTERM to `count` of its own TaskManagers, idle ones first, and waits until they
    /// are gone from the JobManager.
    async fn stop_idle(&mut self, count: u32) -> Result<(), String> {
        let info = self.rest.taskmanagers().await.map_err(|e| e.to_string())?;
        let idle: BTreeMap<u16, bool> =
            info.taskmanagers.iter().map(|tm| (tm.data_port as u16, tm.free_slots == tm.slots_number)).collect();
        // Idle ones first, then the newest.
        let mut order: Vec<usize> = (0..self.own.len()).collect();
        order.sort_by_key(|&i| (!idle.get(&self.own[i].data_port).copied().unwrap_or(true), std::cmp::Reverse(i)));
        let chosen: Vec<usize> = order.into_iter().take(count as usize).collect();
        let before = info.taskmanagers.len();
        let mut stopped = Vec::new();
        for &i in &chosen {
            let tm = &self.own[i];
            tracing::info!(pid = tm.child.id(), data_port = tm.data_port, idle = ?idle.get(&tm.data_port), "stopping a TaskManager");
            terminate(&tm.child);
            stopped.push(i);
        }
        stopped.sort_unstable();
        let mut children: Vec<OwnTaskManager> = Vec::new();
        for i in stopped.into_iter().rev() {
            children.push(self.own.remove(i));
        }
        let expected = before.saturating_sub(children.len());
        self.await_until("the stopped TaskManagers to leave", || async {
            Ok(self.rest.taskmanagers().await.map_err(|e| e.to_string())?.taskmanagers.len() <= expected)
        })
        .await?;
        for mut child in children {
            let _ = child.child.wait();
        }
        Ok(())
    }

    fn stop_own(&mut self) {
        for tm in &self.own {
            terminate(&tm.child);
        }
        for mut tm in self.own.drain(..) {
            let _ = tm.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!(pid = child.id(), error = %e, "cannot send SIGTERM to a TaskManager");
    }
}
