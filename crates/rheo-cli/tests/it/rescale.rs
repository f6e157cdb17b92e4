//! Rescaling a running job on TaskManager processes reprocesses nothing. The job's numbers go to
//! a sink that is neither transactional nor buffered (`arriving-numbers --print`: each number
//! written to its TaskManager's stdout the moment the map emits it), so a rescale that resumed
//! from anything but the moment it stopped would print numbers twice: a periodic checkpoint
//! every second leaves up to a second of records to replay. (With SIGKILL instead of SIGTERM,
//! the restart from the newest periodic checkpoint prints some twice, and this test fails.)
//! The job is rescaled four ways, each a stop with a synchronous checkpoint and a redeploy from
//! it: a TaskManager joining in reactive mode, `PUT /jobs/:id/resource-requirements` down and up
//! (what `rheo autoscale` sends), and a TaskManager leaving by SIGTERM.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rheo_cli::jobs::arriving_numbers::{SCHEDULE_REFRESH, Schedule, arrived_by};
use rheo_rest::StopWithSavepointRequest;
use rheo_testkit::{Cluster, JobState, Poll};

/// Records per second arriving, and what each costs the map: far below what one subtask does.
const RATE: f64 = 400.0;
const COST_US: &str = "200";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn write_schedule(path: &Path, schedule: &Schedule) {
    let text: String = schedule.iter().map(|(at, rate)| format!("{at} {rate}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// How often each number was printed, over every TaskManager's stdout (`number epoch-ms`, after
/// `N> ` when the sink ran at parallelism N > 1).
fn printed(dir: &Path) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("taskmanager-") && name.ends_with(".out")) {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            // `number epoch-ms`; a line still being written (no time yet) is read next time.
            let mut fields = line.rsplit("> ").next().unwrap().split(' ');
            let (Some(number), Some(_at)) = (fields.next(), fields.next()) else { continue };
            let number: u64 = number.parse().unwrap_or_else(|_| panic!("'{line}' in {name} is not a number"));
            *counts.entry(number).or_insert(0) += 1;
        }
    }
    counts
}

/// The newest completed checkpoint's id (0 before the first).
fn newest_completed(cluster: &Cluster, job: &str) -> u64 {
    let stats = cluster.rest().checkpoints(job).unwrap();
    stats.latest.completed.map_or(0, |c| c.id)
}

/// Waits for the job to run at `parallelism` after a rescale started when checkpoint `before`
/// was the newest: it restored a checkpoint newer than that (the rescale's own), and it runs
/// on, completing two more. Returns `counts.restored`.
fn await_rescaled(cluster: &mut Cluster, job: &str, parallelism: u32, before: u64, restores: u64) -> u64 {
    cluster.await_parallelism(job, parallelism).unwrap();
    let stats = cluster.rest().checkpoints(job).unwrap();
    assert!(stats.counts.restored > restores, "the rescale restored a checkpoint: {:?}", stats.counts);
    let restored = stats.latest.restored.expect("the rescaled job restored a checkpoint");
    assert!(
        restored.id > before,
        "restored checkpoint {} at parallelism {parallelism}, not the rescale's (newer than {before})",
        restored.id
    );
    cluster.await_checkpoints(job, stats.counts.completed + 2).unwrap();
    stats.counts.restored
}

#[test]
fn rescales_on_processes_reprocess_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let schedule_path = dir.path().join("schedule");
    let mut schedule: Schedule = vec![(now_ms(), RATE)];
    write_schedule(&schedule_path, &schedule);

    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), &dir.path().join("cluster"))
        .unwrap()
        .with_config(&[
            "execution.checkpointing.interval=1s",
            &format!("state.checkpoints.dir=file://{}/chk", dir.path().display()),
            &format!("state.savepoints.dir=file://{}/savepoints", dir.path().display()),
            "heartbeat.interval=200ms",
            "heartbeat.timeout=5s",
            "taskmanager.numberOfTaskSlots=1",
            "scheduler-mode=reactive",
        ])
        .with_timeout(Duration::from_secs(60));
    let schedule_arg = schedule_path.to_str().unwrap();
    let job_args = ["--job", "arriving-numbers", "--", "--schedule", schedule_arg, "--cost-us", COST_US, "--print"];
    cluster.start_jobmanager(&job_args).unwrap();
    cluster.start_taskmanager().unwrap();
    let job_id = cluster.await_job().unwrap();
    cluster.await_parallelism(&job_id, 1).unwrap();
    cluster.await_checkpoints(&job_id, 2).unwrap();
    let mut restores = 0;
    let mut rescales = 0;

    // A TaskManager joins: reactive mode runs the job on both slots.
    let before = newest_completed(&cluster, &job_id);
    cluster.start_taskmanager().unwrap();
    restores = await_rescaled(&mut cluster, &job_id, 2, before, restores);
    rescales += 1;

    // Down and up through the REST call `rheo autoscale` makes.
    for parallelism in [1, 2] {
        let job = cluster.rest().job(&job_id).unwrap();
        let requirements = rheo_autoscaler::rest::requirements(&job, parallelism);
        let before = newest_completed(&cluster, &job_id);
        cluster.rest().call(|c| c.set_resource_requirements(&job_id, &requirements)).unwrap();
        restores = await_rescaled(&mut cluster, &job_id, parallelism, before, restores);
        rescales += 1;
    }

    // A TaskManager running a subtask leaves by SIGTERM: the same stop and redeploy, without it.
    let before = newest_completed(&cluster, &job_id);
    cluster.taskmanager(1).terminate().unwrap();
    cluster.taskmanager(1).await_exit(Duration::from_secs(30)).unwrap();
    cluster.await_taskmanagers(1).unwrap();
    await_rescaled(&mut cluster, &job_id, 1, before, restores);
    rescales += 1;

    // No more arrivals: once every arrived number is printed (a lost one fails this wait), stop
    // the job.
    let frozen_at = now_ms() + 3 * SCHEDULE_REFRESH.as_millis() as u64;
    schedule.push((frozen_at, 0.0));
    write_schedule(&schedule_path, &schedule);
    let total = arrived_by(&schedule, u64::MAX);
    let dir = cluster.dir().to_path_buf();
    cluster
        .await_until("every arrived number to be printed", |_| match printed(&dir).range(..total).count() as u64 {
            n if n == total => Poll::Ready(()),
            n => Poll::Pending(format!("{n} of {total} printed")),
        })
        .unwrap();
    let request = StopWithSavepointRequest { target_directory: None, drain: false };
    cluster.rest().call(|c| c.stop_with_savepoint(&job_id, &request)).unwrap();
    cluster.await_state(&job_id, JobState::Finished).unwrap();

    let exceptions = cluster.rest().exceptions(&job_id).unwrap();
    assert!(exceptions.exception_history.entries.is_empty(), "no rescale went through a failure: {exceptions:?}");
    let counts = printed(cluster.dir());
    let reprocessed: u64 = counts.values().map(|&n| u64::from(n) - 1).sum();
    let missing = (0..total).filter(|n| !counts.contains_key(n)).count();
    let beyond = counts.range(total..).count();
    eprintln!("rescale: {total} numbers over {rescales} rescales, {reprocessed} reprocessed, {missing} missing");
    assert!(total as f64 > RATE * 5.0, "only {total} numbers arrived");
    assert_eq!((reprocessed, missing, beyond), (0, 0, 0), "numbers printed more than once, never, beyond {total}");
}
