//! The `rheo` command line: `rheo run JOB [ARGS]` runs a job on the embedded mini-cluster,
//! `rheo jobs` lists the jobs. A user's worker binary calls [`main`] with its own
//! [`JobRegistry`] and gets the same CLI.
//!
//! Global run flags (`-p`, `-D key=value`, `--conf-dir`, `--progress`) may come before or after
//! the job name; the job's own arguments are parsed by the job's clap parser. Errors are one
//! line on stderr (`error: ...`); exit status 2 for usage errors, 1 when the job fails.
//! Logs go to stderr, filtered by `RHEO_LOG` or `RUST_LOG` (default `info`).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, FromArgMatches, Parser, Subcommand};

mod autoscale;
mod client;
pub mod jobs;
mod processes;
mod progress;

use progress::Progress;

use crate::jobs::JobRegistry;
use rheo::api::StreamEnv;
use rheo_config::{Configuration, options};
use rheo_runtime::driver::minicluster::MiniCluster;

#[derive(Debug, Parser)]
#[command(name = "rheo", version, about = "Rheo: Apache Flink's streaming core in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job on an embedded mini-cluster in this process.
    Run(RunArgs),
    /// List the jobs this binary carries.
    Jobs,
    /// Start a JobManager (REST 8081, RPC 6123); with --job, run that job (application mode).
    Jobmanager(processes::JobManagerArgs),
    /// Start a TaskManager that offers its slots to the JobManager at jobmanager.rpc.address.
    Taskmanager(processes::TaskManagerArgs),
    /// Start or stop a JobManager and TaskManagers on this machine.
    #[command(subcommand)]
    Cluster(processes::ClusterCommand),
    /// Scale a running job's TaskManagers on this machine from its metrics (job.autoscaler.*).
    Autoscale(autoscale::AutoscaleArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Debug, Args)]
#[command(
    subcommand_value_name = "JOB",
    override_usage = "rheo run [OPTIONS] JOB [JOB ARGS]...",
    after_help = "JOB is one of 'rheo jobs'; 'rheo run JOB --help' shows its arguments. The options may also follow the job's arguments."
)]
struct RunArgs {
    #[command(flatten)]
    options: RunOptions,
    #[command(subcommand)]
    job: JobCommand,
}

/// The job and its arguments, passed on untouched (so `rheo run JOB --help` is the job's help).
#[derive(Debug, Subcommand)]
enum JobCommand {
    #[command(external_subcommand)]
    Job(Vec<OsString>),
}

/// Flags of `rheo run` that are not the job's: accepted before and after the job name.
#[derive(Debug, Clone, Default, Args)]
struct RunOptions {
    /// Default parallelism of the job's operators (parallelism.default).
    #[arg(short = 'p', long, value_name = "N")]
    parallelism: Option<usize>,
    /// A configuration value, overriding rheo.yaml and RHEO_* variables (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic: Vec<String>,
    /// The directory of rheo.yaml.
    #[arg(long, env = "RHEO_CONF_DIR", value_name = "DIR")]
    conf_dir: Option<PathBuf>,
    /// Show records in/out per second on stderr (default: when stderr is a terminal).
    #[arg(long, conflicts_with = "no_progress")]
    progress: bool,
    /// Never show progress.
    #[arg(long)]
    no_progress: bool,
    /// The job id (32 hex digits) under which checkpoints are kept; default: derived from the
    /// job and its arguments, so running the same command again resumes it.
    #[arg(long, value_name = "ID", value_parser = parse_job_id)]
    job_id: Option<String>,
    /// Start from this savepoint or retained checkpoint directory (one holding `_metadata`),
    /// unless the job has checkpoints of its own.
    #[arg(short = 's', long, value_name = "PATH")]
    from_savepoint: Option<String>,
    /// Drop savepoint state that belongs to no operator of this job instead of failing.
    #[arg(short = 'n', long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// Start from the beginning even though the job has checkpoints: they are deleted and its
    /// exactly-once file outputs roll back what they committed (execution.fresh-start).
    #[arg(long)]
    fresh_start: bool,
}

/// A Flink job id: 32 hexadecimal digits.
pub(crate) fn parse_job_id(text: &str) -> Result<String, String> {
    text.parse::<rheo_types::JobId>().map(|id| id.to_string()).map_err(|e| e.to_string())
}

/// How often `rheo run` checkpoints unless `execution.checkpointing.interval` says otherwise
/// (`0` turns checkpoints off).
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL: &str = "10 s";

impl RunOptions {
    /// Flags given after the job name win; `-D` flags add up.
    fn merge(mut self, later: RunOptions) -> RunOptions {
        self.parallelism = later.parallelism.or(self.parallelism);
        self.dynamic.extend(later.dynamic);
        self.conf_dir = later.conf_dir.or(self.conf_dir);
        if later.progress || later.no_progress {
            (self.progress, self.no_progress) = (later.progress, later.no_progress);
        }
        self.job_id = later.job_id.or(self.job_id);
        self.from_savepoint = later.from_savepoint.or(self.from_savepoint);
        self.allow_non_restored_state |= later.allow_non_restored_state;
        self.fresh_start |= later.fresh_start;
        self
    }
}

/// How the CLI ends.
#[derive(Debug)]
enum Failure {
    /// Bad command line: exit status 2.
    Usage(String),
    /// The job could not be built or failed: exit status 1.
    Job(String),
}

/// Other errors of the process commands: the process could not do its job (exit status 1).
impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Job(message)
    }
}

/// Runs the CLI on the process arguments.
pub fn main(registry: JobRegistry) -> ExitCode {
    run_cli(registry, std::env::args_os())
}

/// Runs the CLI on `args` (the first is the binary name).
pub fn run_cli(registry: JobRegistry, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e, "rheo --help"),
    };
    init_logging();
    let result = match cli.command {
        Command::Jobs => {
            list_jobs(&registry);
            Ok(())
        }
        Command::Run(args) => run_job(&registry, args),
        Command::Jobmanager(args) => processes::jobmanager(registry, args),
        Command::Taskmanager(args) => processes::taskmanager(registry, args),
        Command::Cluster(command) => processes::cluster(command),
        Command::Autoscale(args) => autoscale::run(args),
        Command::Client(command) => client::run(command).map_err(Failure::Job),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Job(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout with success; errors become one line naming the problem.
fn clap_failure(e: clap::Error, help: &str) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{} (see '{help}')", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The first paragraph of a clap error (without usage and tips) on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = first.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    if line.starts_with("error:") { line } else { format!("error: {line}") }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RHEO_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn list_jobs(registry: &JobRegistry) {
    let width = registry.iter().map(|j| j.name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for job in registry.iter() {
        // A closed pipe (`rheo jobs | head -1`) has read all it wanted.
        if writeln!(out, "{:width$}  {}", job.name, job.description).is_err() {
            break;
        }
    }
}

fn run_job(registry: &JobRegistry, args: RunArgs) -> Result<(), Failure> {
    let JobCommand::Job(mut job_args) = args.job;
    let job = job_args.remove(0).to_string_lossy().into_owned();
    let Some(entry) = registry.get(&job) else {
        return Err(Failure::Usage(format!("unknown job '{job}' (see 'rheo jobs')")));
    };
    let bin_name = format!("rheo run {}", entry.name);
    let command = RunOptions::augment_args(entry.command())
        .about(entry.description)
        .no_binary_name(true)
        .bin_name(bin_name.clone());
    let matches = match command.try_get_matches_from(job_args) {
        Ok(matches) => matches,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return Ok(());
            }
            let message = one_line(&e);
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            return Err(Failure::Usage(format!("{}: {message} (see '{bin_name} --help')", entry.name)));
        }
    };
    let later = RunOptions::from_arg_matches(&matches).map_err(|e| Failure::Usage(one_line(&e)))?;
    let run = args.options.merge(later);

    let mut config =
        Configuration::load(run.conf_dir.as_deref(), &run.dynamic).map_err(|e| Failure::Usage(e.to_string()))?;
    if !config.is_set(&options::CHECKPOINT_INTERVAL) {
        config.set(options::CHECKPOINT_INTERVAL.key, DEFAULT_CHECKPOINT_INTERVAL);
    }
    if run.fresh_start {
        config.set(options::FRESH_START.key, "true");
    }
    if let Some(path) = &run.from_savepoint {
        config.set(options::SAVEPOINT_PATH.key, path.as_str());
        config.set(options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key, run.allow_non_restored_state.to_string());
    }
    let job_id = run.job_id.clone().unwrap_or_else(|| entry.job_id(&matches));
    let mut env = StreamEnv::new(config);
    if let Some(p) = run.parallelism {
        if p == 0 {
            return Err(Failure::Usage("-p/--parallelism must be at least 1".to_string()));
        }
        env.set_parallelism(p);
    }
    entry.build(&env, &matches).map_err(|e| Failure::Usage(format!("{}: {e:#}", entry.name)))?;

    let show_progress = run.progress || (!run.no_progress && std::io::stderr().is_terminal());
    let cluster = MiniCluster::new(env.config().clone()).with_job_id(job_id);
    let rest = rheo_cluster::rest::serve_for_run(cluster.handle(), env.config(), entry.name);
    let progress = show_progress.then(|| Progress::start(cluster.shared()));
    let terminated = cancel_on_sigterm(cluster.handle());
    let outcome = env.execute_on(&cluster, entry.name);
    terminated.abort();
    if let Some(progress) = progress {
        progress.finish();
    }
    if let Some(rest) = rest {
        rest.shutdown();
    }
    match outcome {
        Ok(result) => {
            tracing::info!(
                "job '{}' ({}) finished in {:.3?}: {} records in, {} records out, {} subtasks, {} checkpoints{}",
                result.job_name,
                result.job_id,
                result.duration,
                result.records_in,
                result.records_out,
                result.subtasks,
                result.checkpoints.completed,
                result.restored_from.map(|id| format!(", resumed from checkpoint {id}")).unwrap_or_default(),
            );
            Ok(())
        }
        Err(rheo_runtime::driver::JobError::Cancelled) => {
            Err(Failure::Job(format!("job '{}' was cancelled (SIGTERM); its checkpoints are kept", entry.name)))
        }
        Err(e) => Err(Failure::Job(format!("job '{}' failed: {e}", entry.name))),
    }
}

/// Cancels the job on SIGTERM (what `kill` and Kubernetes send), so that `rheo run` stops
/// within moments instead of waiting for a SIGKILL.
fn cancel_on_sigterm(handle: rheo_runtime::driver::handle::JobHandle) -> tokio::task::JoinHandle<()> {
    rheo_runtime::checkpoint::io_runtime().spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                if terminate.recv().await.is_some() {
                    tracing::info!("SIGTERM: cancelling the job");
                    handle.cancel();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGTERM"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for job in crate::jobs::builtin().iter() {
            RunOptions::augment_args(job.command()).debug_assert();
        }
    }
}
