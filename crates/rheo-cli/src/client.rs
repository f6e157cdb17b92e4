//! Client commands against a JobManager's REST API, as Flink's `flink run|list|cancel|savepoint|stop`:
//! `rheo submit JOB [ARGS]...`, `rheo list`, `rheo cancel ID`, `rheo savepoint ID [DIR]`,
//! `rheo stop ID [--savepoint-path DIR]`.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use rheo_rest::{
    AsynchronousOperationResult, Error, JarRunRequest, JobState, QueueStatusId, RestClient, SavepointTriggerRequest,
    StopWithSavepointRequest,
};

/// How long `savepoint` and `stop` wait for the savepoint to complete.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct JobManager {
    /// The JobManager's REST address.
    #[arg(long, short = 'm', env = "RHEO_JOBMANAGER", default_value = "http://localhost:8081", value_name = "URL")]
    jobmanager: String,
}

/// The job of `rheo submit` and its arguments, passed on untouched.
#[derive(Debug, Subcommand)]
pub enum SubmitJob {
    #[command(external_subcommand)]
    Job(Vec<OsString>),
}

#[derive(Debug, Args)]
#[command(
    subcommand_value_name = "JOB",
    override_usage = "rheo submit [OPTIONS] JOB [JOB ARGS]...",
    after_help = "JOB is one of the jobs of the cluster's binary (GET /jars lists them). Everything after JOB is the job's arguments: the options go before it."
)]
pub struct SubmitArgs {
    /// Default parallelism of the job's operators.
    #[arg(short = 'p', long, value_name = "N")]
    parallelism: Option<u32>,
    /// The job id (32 hex digits); default: chosen by the cluster.
    #[arg(long, value_name = "ID", value_parser = super::parse_job_id)]
    job_id: Option<String>,
    /// Start from this savepoint or retained checkpoint directory.
    #[arg(short = 's', long, value_name = "PATH")]
    from_savepoint: Option<String>,
    /// Drop savepoint state that belongs to no operator of this job instead of failing.
    #[arg(short = 'n', long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// Configuration of this job over the cluster's, e.g. `-D execution.checkpointing.interval=5s`.
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    dynamic: Vec<(String, String)>,
    /// Return once the cluster accepted the job, without waiting until it runs.
    #[arg(short = 'd', long, conflicts_with = "wait")]
    detached: bool,
    /// Wait until the job ends; fail if it fails.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    jm: JobManager,
    #[command(subcommand)]
    job: SubmitJob,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit a job to a session cluster and print its id.
    Submit(SubmitArgs),
    /// List the running and scheduled jobs of a JobManager (`-a`: ended jobs too).
    List {
        /// Show every job, ended ones too.
        #[arg(short = 'a', long, conflicts_with_all = ["running", "scheduled"])]
        all: bool,
        /// Show only running and restarting jobs.
        #[arg(short = 'r', long)]
        running: bool,
        /// Show only scheduled jobs.
        #[arg(short = 's', long)]
        scheduled: bool,
        #[command(flatten)]
        jm: JobManager,
    },
    /// Cancel a job (without a savepoint).
    Cancel {
        /// The job id.
        id: String,
        #[command(flatten)]
        jm: JobManager,
    },
    /// Take a savepoint of a running job and print its path.
    Savepoint {
        /// The job id.
        id: String,
        /// The directory under which the savepoint is written (default: state.savepoints.dir).
        dir: Option<String>,
        #[command(flatten)]
        jm: JobManager,
    },
    /// Stop a job with a savepoint and print its path.
    Stop {
        /// The job id.
        id: String,
        /// The directory under which the savepoint is written (default: state.savepoints.dir).
        #[arg(long, short = 'p', value_name = "DIR")]
        savepoint_path: Option<String>,
        #[command(flatten)]
        jm: JobManager,
    },
}

/// Runs a client command; the error is one line for the user.
pub fn run(command: ClientCommand) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        match command {
            ClientCommand::Submit(args) => submit(args).await,
            ClientCommand::List { all, running, scheduled, jm } => {
                let show = if all {
                    Show { running: true, scheduled: true, ended: true }
                } else if running || scheduled {
                    Show { running, scheduled, ended: false }
                } else {
                    Show { running: true, scheduled: true, ended: false }
                };
                list(&client(&jm)?, show).await
            }
            ClientCommand::Cancel { id, jm } => cancel(&client(&jm)?, &id).await,
            ClientCommand::Savepoint { id, dir, jm } => savepoint(&client(&jm)?, &id, dir).await,
            ClientCommand::Stop { id, savepoint_path, jm } => stop(&client(&jm)?, &id, savepoint_path).await,
        }
    })
}

pub(crate) fn client(jm: &JobManager) -> Result<RestClient, String> {
    let url = jm.jobmanager.trim();
    let url = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
    url::Url::parse(&url).map_err(|e| format!("--jobmanager '{}': {e}", jm.jobmanager))?;
    Ok(RestClient::new(url))
}

/// One line naming what went wrong and where.
fn describe(client: &RestClient, e: Error) -> String {
    match e {
        Error::Unreachable(e) => {
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let reason = if e.is_timeout() { "timed out".to_string() } else { cause.to_string() };
            format!("cannot reach the JobManager at {}: {reason}", client.base_url())
        }
        other => other.to_string(),
    }
}

async fn submit(args: SubmitArgs) -> Result<(), String> {
    let client = client(&args.jm)?;
    let SubmitJob::Job(mut job_args) = args.job;
    let job = job_args.remove(0).to_string_lossy().into_owned();
    let job_args: Vec<String> = job_args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let job_args =
        resolve_paths(job_args, &std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?)?;
    let request = JarRunRequest {
        entry_class: Some(job),
        program_args_list: Some(job_args),
        flink_configuration: (!args.dynamic.is_empty()).then(|| args.dynamic.into_iter().collect()),
        parallelism: args.parallelism,
        job_id: args.job_id,
        savepoint_path: args.from_savepoint,
        allow_non_restored_state: Some(args.allow_non_restored_state),
        ..Default::default()
    };
    let submitted = client.run_jar(rheo_cluster::rest::JAR_ID, &request).await.map_err(|e| describe(&client, e))?;
    let id = submitted.jobid.to_string();
    println!("Job has been submitted with JobID {id}");
    if args.wait {
        await_job(&client, &id).await?;
    } else if !args.detached {
        await_running(&client, &id).await?;
    }
    Ok(())
}

/// `KEY=VALUE` of `-D`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// The job options that name files: the TaskManagers read and write them, so a relative path
/// would be taken relative to their working directory, not the user's.
const PATH_OPTIONS: [&str; 2] = ["--input", "--output"];

/// Makes the paths of `--input`/`--output` absolute against `cwd` (the client's directory);
/// URLs (`s3://…`) pass unchanged. A relative `--input` that does not exist here is refused.
fn resolve_paths(args: Vec<String>, cwd: &std::path::Path) -> Result<Vec<String>, String> {
    let resolve = |option: &str, value: &str| -> Result<String, String> {
        let path = std::path::Path::new(value);
        if value.contains("://") || path.is_absolute() || value.is_empty() {
            return Ok(value.to_string());
        }
        let absolute = cwd.join(path);
        if option == "--input" && !absolute.exists() {
            return Err(format!(
                "{option} {value}: no such file in {}; the TaskManagers read this path, so give one that exists here or an absolute path or URL they can read",
                cwd.display()
            ));
        }
        eprintln!("{option} {value} resolved to {} (the TaskManagers use this path)", absolute.display());
        Ok(absolute.display().to_string())
    };
    let mut out = Vec::with_capacity(args.len());
    let mut pending: Option<String> = None;
    for arg in args {
        if let Some(option) = pending.take() {
            out.push(resolve(&option, &arg)?);
            continue;
        }
        if let Some((option, value)) = arg.split_once('=')
            && PATH_OPTIONS.contains(&option)
        {
            out.push(format!("{option}={}", resolve(option, value)?));
            continue;
        }
        if PATH_OPTIONS.contains(&arg.as_str()) {
            pending = Some(arg.clone());
        }
        out.push(arg);
    }
    Ok(out)
}

/// Polls the job until it runs; an error with its cause when it fails first.
async fn await_running(client: &RestClient, id: &str) -> Result<(), String> {
    let mut pause = Duration::from_millis(50);
    loop {
        let job = client.job(id).await.map_err(|e| describe(client, e))?;
        match job.state {
            JobState::Running | JobState::Finished => return Ok(()),
            JobState::Failed | JobState::Canceled => return await_job(client, id).await,
            _ => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Polls the job until it ends: an error when it failed (with its cause).
async fn await_job(client: &RestClient, id: &str) -> Result<(), String> {
    let mut pause = Duration::from_millis(50);
    let state = loop {
        let job = client.job(id).await.map_err(|e| describe(client, e))?;
        if job.state.is_terminal() {
            break job.state;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    match state {
        JobState::Failed => {
            let exceptions = client.job_exceptions(id).await.map_err(|e| describe(client, e))?;
            let cause = exceptions.exception_history.entries.first().map(|e| e.stacktrace.clone());
            let cause = cause.as_deref().and_then(|c| c.lines().next()).unwrap_or("no cause reported").to_string();
            Err(format!("job {id} failed: {cause}"))
        }
        JobState::Canceled => {
            println!("Job with JobID {id} was cancelled.");
            Ok(())
        }
        _ => {
            println!("Job with JobID {id} has finished.");
            Ok(())
        }
    }
}

/// Which jobs `rheo list` shows.
struct Show {
    running: bool,
    scheduled: bool,
    ended: bool,
}

async fn list(client: &RestClient, show: Show) -> Result<(), String> {
    let overview = client.jobs_overview().await.map_err(|e| describe(client, e))?;
    let mut jobs = overview.jobs;
    jobs.sort_by_key(|j| j.start_time);
    let running: Vec<_> = jobs.iter().filter(|j| matches!(j.state, JobState::Running | JobState::Restarting)).collect();
    let scheduled: Vec<_> = jobs.iter().filter(|j| matches!(j.state, JobState::Created)).collect();
    let line =
        |j: &rheo_rest::JobOverview| format!("{} : {} : {} ({})", date_time(j.start_time), j.jid, j.name, j.state);
    let ended: Vec<_> = jobs.iter().filter(|j| j.state.is_terminal()).collect();
    let section = |title: &str, none: &str, jobs: &[&rheo_rest::JobOverview]| {
        if jobs.is_empty() {
            println!("{none}");
        } else {
            println!("{title}");
            jobs.iter().for_each(|j| println!("{}", line(j)));
            println!("--------------------------------------------------------------");
        }
    };
    if show.running {
        section("------------------ Running/Restarting Jobs -------------------", "No running jobs.", &running);
    }
    if show.scheduled {
        section("----------------------- Scheduled Jobs -----------------------", "No scheduled jobs.", &scheduled);
    }
    if show.ended {
        section("---------------------- Terminated Jobs -----------------------", "No terminated jobs.", &ended);
    }
    Ok(())
}

async fn cancel(client: &RestClient, id: &str) -> Result<(), String> {
    println!("Cancelling job {id}.");
    client.cancel_job(id).await.map_err(|e| describe(client, e))?;
    println!("Cancelled job {id}.");
    Ok(())
}

async fn savepoint(client: &RestClient, id: &str, dir: Option<String>) -> Result<(), String> {
    println!("Triggering savepoint for job {id}.");
    let request = SavepointTriggerRequest { target_directory: dir, cancel_job: false };
    let trigger = client.trigger_savepoint(id, &request).await.map_err(|e| describe(client, e))?;
    println!("Waiting for response...");
    let location = await_savepoint(client, id, &trigger.request_id).await?;
    println!("Savepoint completed. Path: {location}");
    println!("You can resume your program from this savepoint with the run command (--from-savepoint).");
    Ok(())
}

async fn stop(client: &RestClient, id: &str, dir: Option<String>) -> Result<(), String> {
    println!("Suspending job \"{id}\" with a CANONICAL savepoint.");
    let request = StopWithSavepointRequest { target_directory: dir, drain: false };
    let trigger = client.stop_with_savepoint(id, &request).await.map_err(|e| describe(client, e))?;
    let location = await_savepoint(client, id, &trigger.request_id).await?;
    println!("Savepoint completed. Path: {location}");
    Ok(())
}

/// Polls the savepoint operation until it completes; its location, or why it failed.
async fn await_savepoint(client: &RestClient, id: &str, trigger: &str) -> Result<String, String> {
    let deadline = Instant::now() + SAVEPOINT_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let AsynchronousOperationResult { status, operation } =
            client.savepoint_status(id, trigger).await.map_err(|e| describe(client, e))?;
        if status.id == QueueStatusId::Completed {
            let operation = operation.unwrap_or_default();
            if let Some(message) = operation.failure_message() {
                return Err(format!("savepoint of job {id} failed: {message}"));
            }
            return operation.location.ok_or_else(|| format!("savepoint of job {id} completed without a location"));
        }
        if Instant::now() >= deadline {
            return Err(format!("savepoint of job {id} did not complete in {}s", SAVEPOINT_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Epoch millis as Flink's CLI prints them, `dd.MM.yyyy HH:mm:ss` (UTC).
fn date_time(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{day:02}.{month:02}.{year} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_flink_does() {
        assert_eq!(date_time(0), "01.01.1970 00:00:00");
        // The start time of the captured Flink job, listed as 23.11.2026 20:07:24 (+0.1 s).
        assert_eq!(date_time(1_795_464_444_106), "23.11.2026 20:07:24");
        assert_eq!(date_time(951_782_400_000), "29.02.2000 00:00:00");
    }

    #[test]
    fn relative_paths_of_path_options_become_absolute() {
        let dir = std::env::temp_dir();
        let here = dir.join("rheo-client-test-input.txt");
        std::fs::write(&here, "x").unwrap();
        let args: Vec<String> =
            ["--input", "rheo-client-test-input.txt", "--output=out", "--n", "x.txt"].map(String::from).to_vec();
        let resolved = resolve_paths(args, &dir).unwrap();
        assert_eq!(resolved[1], here.display().to_string());
        assert_eq!(resolved[2], format!("--output={}", dir.join("out").display()));
        assert_eq!(resolved[4], "x.txt", "other arguments are left alone");
        let urls = resolve_paths(vec!["--input".into(), "s3://b/k".into()], &dir).unwrap();
        assert_eq!(urls[1], "s3://b/k");
        let missing = resolve_paths(vec!["--input".into(), "no-such-file.txt".into()], &dir).unwrap_err();
        assert!(missing.contains("--input no-such-file.txt: no such file"), "{missing}");
    }
}
