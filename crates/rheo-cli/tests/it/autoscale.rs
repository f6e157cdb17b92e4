//! The autoscaler's local mode end to end: `rheo autoscale` watches a job on a multi-process
//! cluster whose input rate steps from low to ten times that (wobbling ±10 %) and back. It must
//! add TaskManagers and raise the parallelism until the job keeps up, hold it through the
//! wobble, drop back after the scale-down delay, and the committed output must hold every
//! arrived record exactly once.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rheo_cli::jobs::arriving_numbers::{SCHEDULE_REFRESH, Schedule, arrived_by};
use rheo_rest::StopWithSavepointRequest;
use rheo_testkit::{Cluster, JobState, Poll, Process, Rest};

/// Records per second before and after the step.
const LOW: f64 = 100.0;
const HIGH: f64 = 1_000.0;
/// What each record costs the map: one subtask keeps up with ~450/s, so the high rate needs
/// three subtasks at least (four with the backlog of the step to catch up).
const COST_US: u64 = 2_000;
/// The fewest subtasks that keep up with the high rate plus 10 %.
const KEEPS_UP: u32 = 3;
/// `job.autoscaler.scale-down.interval`: no scale-down before the lower parallelism has been
/// wanted this long.
const SCALE_DOWN_DELAY: Duration = Duration::from_secs(6);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Rewrites the schedule atomically: the sources never read half a file.
fn write_schedule(path: &Path, schedule: &Schedule) {
    let text: String = schedule.iter().map(|(at, rate)| format!("{at} {rate}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Changes the rate from a moment far enough ahead that every source has re-read the file by
/// then (so arrivals before it never move); `rates` repeat every `every` from there.
fn step(path: &Path, schedule: &mut Schedule, rates: &[f64], every: Duration) -> u64 {
    let from = now_ms() + 3 * SCHEDULE_REFRESH.as_millis() as u64;
    schedule.retain(|&(at, _)| at < from);
    // Two minutes of the pattern: longer than the test runs.
    let steps = (120_000 / every.as_millis() as u64).max(1);
    for k in 0..steps {
        schedule.push((from + k * every.as_millis() as u64, rates[k as usize % rates.len()]));
    }
    write_schedule(path, schedule);
    from
}

/// Every committed number under `dir`, sorted.
fn committed(dir: &Path) -> Vec<u64> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.starts_with("part-") {
            continue;
        }
        numbers.extend(std::fs::read_to_string(&path).unwrap().lines().map(|l| l.parse::<u64>().unwrap()));
    }
    numbers.sort_unstable();
    numbers
}

/// The source's backlog (`pendingRecords` over its subtasks).
fn backlog(rest: &Rest, job: &str, source: &str) -> Option<f64> {
    let metrics = rest.call(|c| c.subtasks_metrics(job, source, &["pendingRecords"])).ok()?;
    metrics.first()?.sum
}

#[test]
fn autoscaler_follows_a_load_step_and_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let schedule_path = dir.path().join("schedule");
    let output = dir.path().join("out");
    let mut schedule: Schedule = vec![(now_ms(), LOW)];
    write_schedule(&schedule_path, &schedule);

    let mut cluster = Cluster::new(env!("CARGO_BIN_EXE_rheo"), &dir.path().join("cluster"))
        .unwrap()
        .with_config(&[
            "execution.checkpointing.interval=500ms",
            &format!("state.checkpoints.dir=file://{}/chk", dir.path().display()),
            &format!("state.savepoints.dir=file://{}/savepoints", dir.path().display()),
            "heartbeat.interval=200ms",
            "heartbeat.timeout=5s",
            "taskmanager.numberOfTaskSlots=1",
        ])
        .with_timeout(Duration::from_secs(60));
    cluster
        .start_jobmanager(&[
            "--job",
            "arriving-numbers",
            "-p",
            "1",
            "--",
            "--schedule",
            schedule_path.to_str().unwrap(),
            "--cost-us",
            &COST_US.to_string(),
            "--output",
            &format!("file://{}", output.display()),
        ])
        .unwrap();
    cluster.start_taskmanager().unwrap();
    let job_id = cluster.await_job().unwrap();
    let job = cluster.await_state(&job_id, JobState::Running).unwrap();
    let source = job.vertices[0].id.clone();

    let mut argv: Vec<String> = vec![
        "autoscale".into(),
        "-m".into(),
        cluster.rest_url().into(),
        "--job-id".into(),
        job_id.clone(),
        "--interval".into(),
        "500ms".into(),
        "--dir".into(),
        dir.path().join("autoscaler").display().to_string(),
    ];
    let autoscaler_config = &[
        "job.autoscaler.metrics.window=4s",
        "job.autoscaler.metrics.window.min-samples=3",
        "job.autoscaler.stabilization.interval=2s",
        &format!("job.autoscaler.scale-down.interval={}ms", SCALE_DOWN_DELAY.as_millis()),
        "job.autoscaler.catch-up.duration=30s",
        "job.autoscaler.vertex.max-parallelism=6",
        "job.autoscaler.taskmanager.max-replicas=6",
    ];
    for entry in cluster.config().iter().map(String::as_str).chain(autoscaler_config.iter().copied()) {
        argv.extend(["-D".to_string(), entry.to_string()]);
    }
    let mut autoscaler = Process::spawn(
        "autoscaler",
        Path::new(env!("CARGO_BIN_EXE_rheo")),
        cluster.dir(),
        &argv,
        &[("RHEO_LOG", "info")],
    )
    .unwrap();

    // Low load: longer than the autoscaler's stabilisation and window, it stays at 1.
    let low_records = (LOW * 8.0) as u64;
    cluster
        .await_job_details("the job to read 8 s of the low rate", &job_id, |j| {
            j.vertices[0].metrics.write_records >= low_records
        })
        .unwrap();
    let job = cluster.rest().job(&job_id).unwrap();
    assert_eq!(job.parallelism(), Some(1), "no scale-up at the low rate\n{}", autoscaler.log_tail(20));

    // Ten times the rate, wobbling by ±10 %.
    let stepped_up = step(&schedule_path, &mut schedule, &[HIGH * 1.1, HIGH * 0.9], Duration::from_millis(700));
    let started = Instant::now();
    let scaled = cluster
        .await_job_details("the autoscaler to reach a parallelism that keeps up", &job_id, |j| {
            j.state == JobState::Running && j.parallelism() >= Some(KEEPS_UP)
        })
        .unwrap();
    let reached = Duration::from_millis(now_ms().saturating_sub(stepped_up));
    let parallelism = scaled.parallelism().unwrap();
    // It keeps up: the backlog of the step is worked off at that parallelism, and stays small.
    let small = HIGH / 2.0;
    cluster
        .await_until("the backlog of the step to be worked off", |rest| match backlog(rest, &job_id, &source) {
            Some(b) if b < small => Poll::Ready(()),
            observed => Poll::Pending(format!("backlog {observed:?}")),
        })
        .unwrap();
    let caught_up = started.elapsed();
    eprintln!(
        "autoscale: parallelism {parallelism} reached {reached:?} after the step, backlog gone after {caught_up:?}"
    );

    // It holds that parallelism through the wobble, for as many records as 8 s of it bring.
    let held_from = cluster.rest().job(&job_id).unwrap();
    let (hold_p, from_records) = (held_from.parallelism(), held_from.vertices[0].metrics.write_records);
    let hold_records = from_records + (HIGH * 8.0) as u64;
    cluster
        .await_until("the parallelism to hold through the wobble", |rest| match rest.job(&job_id) {
            Ok(j) if j.parallelism() != hold_p || j.state != JobState::Running => {
                Poll::Failed(format!("{} at parallelism {:?}, not {hold_p:?}", j.state, j.parallelism()))
            }
            Ok(j) if j.vertices[0].metrics.write_records >= hold_records => Poll::Ready(()),
            Ok(j) => Poll::Pending(format!("{} records", j.vertices[0].metrics.write_records)),
            Err(e) => Poll::Pending(e.to_string()),
        })
        .unwrap();

    // Back to the low rate: after the scale-down delay, one subtask on one TaskManager. The
    // autoscaler's first act of a scale-down is `PUT /jobs/:id/resource-requirements` with the
    // lower parallelism: the last time the requirements still said `hold_p` (as the request
    // was sent) bounds it from below.
    let stepped_down = step(&schedule_path, &mut schedule, &[LOW], Duration::from_secs(1));
    let started = Instant::now();
    let mut unchanged_at = 0;
    let lowered = cluster
        .await_until("the autoscaler to lower the parallelism", |rest| {
            let sent = now_ms();
            match rest.call(|c| c.resource_requirements(&job_id)) {
                Ok(r) => match r.values().map(|v| v.parallelism.upper_bound).max() {
                    Some(p) if Some(p) == hold_p => {
                        unchanged_at = sent;
                        Poll::Pending(format!("parallelism {p} wanted"))
                    }
                    Some(p) => Poll::Ready(p),
                    None => Poll::Pending("no requirements".into()),
                },
                Err(e) => Poll::Pending(e.to_string()),
            }
        })
        .unwrap();
    let delay = Duration::from_millis(unchanged_at.saturating_sub(stepped_down));
    eprintln!("autoscale: parallelism {hold_p:?} still wanted {delay:?} after the step down, then {lowered}");
    assert!(
        delay >= SCALE_DOWN_DELAY,
        "scaled down to {lowered} within {delay:?} of the step down, before the delay of {SCALE_DOWN_DELAY:?}"
    );
    cluster.await_parallelism(&job_id, 1).unwrap();
    cluster.await_taskmanagers(1).unwrap();
    let scaled_down = started.elapsed();
    eprintln!("autoscale: back to parallelism 1 on one TaskManager {scaled_down:?} after the step down");
    autoscaler.terminate().unwrap();
    autoscaler.await_exit(Duration::from_secs(30)).unwrap();

    // No more arrivals: once the sources have emitted all, stop with a savepoint; the committed
    // output is every arrived number exactly once.
    let frozen_at = step(&schedule_path, &mut schedule, &[0.0], Duration::from_secs(1));
    let total = arrived_by(&schedule, u64::MAX);
    cluster
        .await_until("the sources to emit every arrived record", |rest| {
            match (now_ms() > frozen_at + SCHEDULE_REFRESH.as_millis() as u64, backlog(rest, &job_id, &source)) {
                (true, Some(0.0)) => Poll::Ready(()),
                (_, observed) => Poll::Pending(format!("backlog {observed:?}")),
            }
        })
        .unwrap();
    let request = StopWithSavepointRequest { target_directory: None, drain: false };
    cluster.rest().call(|c| c.stop_with_savepoint(&job_id, &request)).unwrap();
    cluster.await_state(&job_id, JobState::Finished).unwrap();
    let numbers = committed(&output);
    let expected: Vec<u64> = (0..total).collect();
    if numbers != expected {
        let duplicates = numbers.windows(2).filter(|w| w[0] == w[1]).count();
        panic!(
            "committed {} numbers ({duplicates} duplicates), expected 0..{total}; first differences: {:?}",
            numbers.len(),
            numbers.iter().zip(&expected).filter(|(a, b)| a != b).take(5).collect::<Vec<_>>()
        );
    }
}
