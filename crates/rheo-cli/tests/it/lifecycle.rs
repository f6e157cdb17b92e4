//! Lifecycles as a cluster manager drives them: a TaskManager sent SIGTERM (a pod deleted, a
//! scale-down) leaves gracefully and the job is redeployed without counting a failure; a
//! JobManager sent SIGTERM stops the job's tasks and exits, and one started again resumes; a
//! JobManager started again after its job FINISHED keeps it finished and rewrites nothing.
//! Every check compares the committed output with counts computed here from the input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rheo_testkit::JobState;

// The cluster, the input and the exact-output check of the SIGKILL tests.
use super::cluster::{assert_exact as assert_finishes_exact, cluster, committed, job_args, write_input};

#[test]
fn a_taskmanager_sent_sigterm_leaves_and_the_job_moves_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    // With restart-strategy none, a leave counted as a failure would end the job FAILED.
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=1", "restart-strategy.type=none"]);
    cluster.start_jobmanager(&job_args(&input, &output, Some(2))).unwrap();
    // Two TaskManagers of one slot each: both run a subtask of the job.
    for _ in 0..2 {
        cluster.start_taskmanager().unwrap();
    }
    let job = cluster.await_job().unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.taskmanager(0).terminate().unwrap();
    let status = cluster.taskmanager(0).await_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "a leaving TaskManager exits cleanly: {status}");
    cluster.start_taskmanager().unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
    let exceptions = cluster.rest().exceptions(&job).unwrap();
    assert!(exceptions.exception_history.entries.is_empty(), "the leave counted as a failure: {exceptions:?}");
}

#[test]
fn a_jobmanager_sent_sigterm_stops_and_one_started_again_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job = cluster.await_job().unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();
    cluster.jobmanager().terminate().unwrap();
    // What a client (the operator) reads while the JobManager shuts down: never a terminal
    // state, which it would take for the end of the job (the shutdown is not a cancel).
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while cluster.jobmanager().exit_status().is_none() && std::time::Instant::now() < deadline {
        if let Ok(details) = cluster.rest().job(&job) {
            seen.push(details.state);
        }
    }
    assert!(!seen.iter().any(|s| s.is_terminal()), "read during the JobManager's shutdown: {seen:?}");
    let status = cluster.jobmanager().await_exit(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "a JobManager stopped by SIGTERM exits cleanly: {status}");
    assert!(committed(&output) != expected, "the job had finished before SIGTERM: nothing was tested");
    // Its checkpoints are kept: the JobManager started again resumes the job.
    cluster.start_jobmanager(&args).unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
}

#[test]
fn a_jobmanager_started_again_after_its_job_finished_keeps_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let mut cluster = cluster(dir.path(), &["taskmanager.numberOfTaskSlots=2"]);
    let args = job_args(&input, &output, Some(2));
    cluster.start_jobmanager(&args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job = cluster.await_job().unwrap();
    assert_finishes_exact(&mut cluster, &job, &output, &expected);
    let parts = |dir: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut parts: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        parts.sort();
        parts
    };
    let before = parts(&output);
    cluster.kill_jobmanager().unwrap();
    cluster.start_jobmanager(&args).unwrap();
    // Were the job run again, it would be FINISHED only after rewriting its parts.
    let again = cluster.await_job().unwrap();
    assert_eq!(again, job);
    cluster.await_state(&job, JobState::Finished).unwrap();
    assert_eq!(parts(&output), before, "committed part files were rewritten\n{}", cluster.logs());
    assert_eq!(committed(&output), expected);
}

/// A JobManager started again for the same job finds its checkpoints whatever way the job's
/// arguments are spelled: `./in.tsv` (relative to the JobManager's directory), the absolute
/// path and `--input=PATH` are one job id, as for `rheo run`. Another input is another job.
#[test]
fn a_jobmanager_s_job_id_does_not_depend_on_how_the_arguments_are_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    std::fs::write(&input, "0\tto be\n").unwrap();
    std::fs::write(dir.path().join("other.tsv"), "0\tto be\n").unwrap();
    // No TaskManager: the job is listed (waiting for slots) and nothing runs.
    let mut cluster = cluster(dir.path(), &[]);
    let absolute = input.display().to_string();
    let mut job_id = |args: &[&str]| -> String {
        let mut argv = vec!["--job", "word-count", "--", "--event-time"];
        argv.extend(args);
        cluster.start_jobmanager(&argv).unwrap();
        let id = cluster.await_job().unwrap();
        cluster.kill_jobmanager().unwrap();
        id
    };
    let relative = job_id(&["--input", "./in.tsv"]);
    assert_eq!(job_id(&["--input", &absolute]), relative, "the absolute path");
    assert_eq!(job_id(&[&format!("--input={absolute}")]), relative, "--input=PATH");
    assert_eq!(job_id(&["--input", &format!("{}/./in.tsv", dir.path().display())]), relative, "a dotted path");
    assert_ne!(job_id(&["--input", "./other.tsv"]), relative, "another input is another job");
}
