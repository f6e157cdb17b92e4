//! The cluster's processes: `rheo jobmanager`, `rheo taskmanager`, and `rheo cluster
//! start|stop`, which runs a JobManager and TaskManagers on this machine as Flink's
//! start-cluster.sh does (logs and pid files under a directory).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::jobs::JobRegistry;
use rheo_cluster::jobmanager::JobManager;
use rheo_cluster::jobspec::JobSpec;
use rheo_cluster::taskmanager::{self, TaskManagerSettings};
use rheo_config::{Configuration, options};

use super::Failure;

/// Configuration flags shared by the process commands.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// A configuration value, overriding rheo.yaml and RHEO_* variables (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    pub dynamic: Vec<String>,
    /// The directory of rheo.yaml.
    #[arg(long, env = "RHEO_CONF_DIR", value_name = "DIR")]
    pub conf_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// A configuration error is a usage error (exit status 2).
    pub(crate) fn load(&self) -> Result<Configuration, Failure> {
        Configuration::load(self.conf_dir.as_deref(), &self.dynamic).map_err(|e| Failure::Usage(e.to_string()))
    }
}

#[derive(Debug, Args)]
pub struct JobManagerArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Application mode: run this job as soon as the TaskManagers offer enough slots.
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// The job's id (32 hex digits); default: derived from the job and its arguments.
    #[arg(long, value_name = "ID", requires = "job")]
    job_id: Option<String>,
    /// Start the job from this savepoint unless it has checkpoints of its own.
    #[arg(short = 's', long, value_name = "PATH", requires = "job")]
    from_savepoint: Option<String>,
    /// Drop savepoint state that belongs to no operator of the job.
    #[arg(short = 'n', long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// Default parallelism of the job.
    #[arg(short = 'p', long, value_name = "N", requires = "job")]
    parallelism: Option<usize>,
    /// The job's own arguments (after `--`).
    #[arg(last = true, value_name = "JOB ARGS")]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskManagerArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a JobManager and TaskManagers on this machine, in the background.
    Start {
        /// Number of TaskManagers.
        #[arg(short = 'n', long, default_value_t = 1, value_name = "TMS")]
        taskmanagers: usize,
        /// Where logs and pid files go.
        #[arg(long, default_value = "rheo-data/cluster", value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Stop the processes `rheo cluster start` started.
    Stop {
        #[arg(long, default_value = "rheo-data/cluster", value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Runs a JobManager until the process is stopped.
pub fn jobmanager(registry: JobRegistry, args: JobManagerArgs) -> Result<(), Failure> {
    let mut config = args.config.load()?;
    if !config.is_set(&options::CHECKPOINT_INTERVAL) {
        config.set(options::CHECKPOINT_INTERVAL.key, super::DEFAULT_CHECKPOINT_INTERVAL);
    }
    // The job's id, from its arguments as `rheo run` derives it: checked (and the arguments
    // parsed) before anything starts.
    let job_id = match &args.job {
        None => None,
        Some(job) => {
            let Some(entry) = registry.get(job) else {
                return Err(Failure::Usage(format!("unknown job '{job}' (see 'rheo jobs')")));
            };
            Some(match &args.job_id {
                Some(id) => super::parse_job_id(id).map_err(Failure::Usage)?,
                None => JobManager::default_job_id(entry, &args.args).map_err(|e| {
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                    Failure::Usage(format!("{job}: {first} (see 'rheo run {job} --help')"))
                })?,
            })
        }
    };
    let jm = JobManager::start(config.clone(), registry).map_err(|e| format!("{e:#}"))?;
    let rest = rheo_cluster::rest::serve_for_cluster(std::sync::Arc::new(jm.clone()), &config)
        .map_err(|e| format!("cannot serve the REST API: {e}"))?;
    tracing::info!("REST API at {}", rest.url());
    if let Some((job, job_id)) = args.job.zip(job_id) {
        let mut job_config = config.clone();
        if let Some(path) = &args.from_savepoint {
            job_config.set(options::SAVEPOINT_PATH.key, path.as_str());
            job_config.set(options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key, args.allow_non_restored_state.to_string());
        }
        if args.parallelism == Some(0) {
            return Err(Failure::Usage("-p/--parallelism must be at least 1".into()));
        }
        let spec = JobSpec {
            name: job,
            args: args.args,
            config: job_config.entries().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            parallelism: args.parallelism,
        };
        let handle = jm.submit_spec(spec, job_id).map_err(|e| e.to_string())?;
        tracing::info!(job_id = %handle.job_id(), "submitted the job");
    }
    wait_for_sigterm();
    // Stop serving first: the tasks are about to be cancelled, and a client (the operator) that
    // read CANCELED here would take this JobManager's shutdown for the user's cancel and stop
    // the job for good (Flink reports such a job SUSPENDED: over here, not globally). Unread
    // savepoint results are still served for a few seconds.
    rest.shutdown();
    // Stop the tasks (their checkpoints stay: a JobManager started again resumes the job),
    // then exit, well within a pod's termination grace period.
    tracing::info!("SIGTERM: stopping the running job's tasks");
    let running: Vec<_> = rheo_cluster::view::ClusterView::jobs(&jm)
        .into_iter()
        .filter(|job| !job.status().state.is_terminal())
        .collect();
    running.iter().for_each(|job| job.cancel());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running.iter().any(|job| !job.status().state.is_terminal()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Blocks until the process gets SIGTERM (forever when it cannot be watched).
fn wait_for_sigterm() {
    rheo_runtime::checkpoint::io_runtime().block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    });
}

/// Runs a TaskManager until the process is stopped.
///
/// SIGTERM (a pod deleted, a scale-down; the kernel ignores an unhandled one for a container's
/// PID 1) is handled by the TaskManager itself: it tells the JobManager it is leaving, the job
/// moves away with a synchronous checkpoint, and the process exits once nothing runs here (at
/// most 20 s later).
pub fn taskmanager(registry: JobRegistry, args: TaskManagerArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let settings = TaskManagerSettings::from_config(&config).map_err(|e| Failure::Usage(e.to_string()))?;
    taskmanager::run(settings, registry).map_err(|e| Failure::Job(e.to_string()))
}

pub fn cluster(command: ClusterCommand) -> Result<(), Failure> {
    match command {
        ClusterCommand::Start { taskmanagers, dir, config } => {
            let loaded = config.load()?;
            start(taskmanagers, &dir, &config, &loaded).map_err(Failure::Job)
        }
        ClusterCommand::Stop { dir } => stop(&dir).map_err(Failure::Job),
    }
}

fn start(taskmanagers: usize, dir: &Path, config: &ConfigArgs, loaded: &Configuration) -> Result<(), String> {
    let pid_file = dir.join("pids");
    if let Some(alive) = read_pids(&pid_file).into_iter().find(|&pid| is_alive(pid)) {
        return Err(format!(
            "a cluster runs already (process {alive}, {}); 'rheo cluster stop' first",
            pid_file.display()
        ));
    }
    let logs = dir.join("log");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the rheo binary: {e}"))?;
    let mut flags: Vec<OsString> = Vec::new();
    for d in &config.dynamic {
        flags.push("-D".into());
        flags.push(d.into());
    }
    if let Some(conf) = &config.conf_dir {
        flags.push("--conf-dir".into());
        flags.push(conf.into());
    }
    let mut pids = Vec::new();
    let mut spawn = |role: &str, log: String, extra: &[&str]| -> Result<u32, String> {
        let path = logs.join(&log);
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new(&exe);
        command.arg(role).args(&flags).args(extra).stdin(Stdio::null()).stdout(file).stderr(err);
        // Own process group: a Ctrl-C in this terminal does not stop the cluster.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| format!("cannot start the {role}: {e}"))?;
        println!("Starting {role} (pid {}), logging to {}", child.id(), path.display());
        pids.push(child.id());
        Ok(child.id())
    };
    spawn("jobmanager", "jobmanager.log".into(), &[])?;
    for i in 0..taskmanagers {
        // Each TaskManager of one machine needs its own data port.
        spawn("taskmanager", format!("taskmanager-{i}.log"), &["-D", &format!("{}=0", options::DATA_PORT.key)])?;
    }
    std::fs::write(&pid_file, pids.iter().map(|p| format!("{p}\n")).collect::<String>())
        .map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let port = loaded.get(&options::REST_PORT).map_err(|e| e.to_string())?.first;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, taskmanagers, &pids, Duration::from_secs(30))?;
    println!("Cluster ready: {taskmanagers} TaskManager(s), web and REST at {url}");
    Ok(())
}

/// Waits until the JobManager's REST API reports every TaskManager registered.
fn wait_ready(url: &str, taskmanagers: usize, pids: &[u32], within: Duration) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let client = rheo_rest::RestClient::new(url);
    let deadline = Instant::now() + within;
    loop {
        if let Some(dead) = pids.iter().find(|&&pid| !is_alive(pid)) {
            return Err(format!("process {dead} exited during start-up; see its log"));
        }
        if let Ok(overview) = runtime.block_on(client.overview())
            && overview.taskmanagers as usize >= taskmanagers
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the cluster was not ready within {within:?}; see the logs"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(dir: &Path) -> Result<(), String> {
    let pid_file = dir.join("pids");
    let pids = read_pids(&pid_file);
    if pids.is_empty() {
        return Err(format!("no cluster to stop ({} not found)", pid_file.display()));
    }
    // TaskManagers first, the JobManager (first line) last, as stop-cluster.sh does.
    for &pid in pids.iter().rev() {
        if is_alive(pid) {
            signal(pid, "TERM");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| is_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &pids {
        if is_alive(pid) {
            signal(pid, "KILL");
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    println!("Stopped {} process(es)", pids.len());
    Ok(())
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn is_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}
