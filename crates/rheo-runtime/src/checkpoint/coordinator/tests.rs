//! The checkpoint coordinator: expired and declined checkpoints, stop-with-savepoint.

use std::time::Duration;

use crate::checkpoint::io_runtime;
use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE};
use crate::checkpoint::storage::CheckpointStorage;
use crate::driver::handle::SavepointStatus;
use crate::output::TaskSnapshot;
use crate::state::restore::encode;
use crate::task::{Control, SourceError, SourceFunction, SourceOutput, SourceStatus, SourceTask, Task, TaskOutcome};
use crate::testing::{CoordinatorHarness, HarnessSetup, StreamElement, TaskSpec, collecting_output, task_info};

/// A bound for waits that a working coordinator meets in milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// A source and a downstream task, both parallelism 1.
const SOURCE_AND_SINK: [TaskSpec; 2] =
    [TaskSpec { is_source: true, parallelism: 1 }, TaskSpec { is_source: false, parallelism: 1 }];

fn state(bytes: &[u8]) -> TaskSnapshot {
    let mut snapshot = TaskSnapshot::default();
    snapshot.put(0, bytes.to_vec());
    snapshot
}

/// The barrier a source was told to inject.
fn expect_trigger(control: Control) -> (u64, bool) {
    match control {
        Control::Trigger { barrier, stop } => (barrier.id, stop),
        other => panic!("expected a trigger, got {other:?}"),
    }
}

fn read_metadata(dir: &CheckpointStorage, checkpoint: &str) -> Option<CheckpointMetadata> {
    let bytes = io_runtime().block_on(dir.child(checkpoint).get_if_exists(METADATA_FILE)).expect("storage readable")?;
    Some(serde_json::from_slice(&bytes).expect("metadata parses"))
}

fn storage() -> (tempfile::TempDir, CheckpointStorage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = CheckpointStorage::from_url(dir.path().to_str().expect("utf-8 path")).expect("local storage");
    (dir, storage)
}

#[test]
fn a_checkpoint_that_times_out_is_failed_and_the_next_one_completes() {
    let (_dir, storage) = storage();
    let settings = CoordinatorHarness::settings(Duration::from_millis(20), Duration::from_millis(500));
    let h = CoordinatorHarness::start(settings, storage.clone(), &SOURCE_AND_SINK);

    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (1, false));
    // Only the source answers: checkpoint 1 never completes and expires.
    h.acknowledge(0, 1, 0, state(b"source@1"));
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (2, false));
    let status = h.handle.status();
    assert_eq!((status.checkpoints.failed, status.checkpoints.completed), (1, 0));

    // The sink's answer for the expired checkpoint comes too late to count.
    h.acknowledge(1, 1, 0, state(b"sink@1"));
    h.acknowledge(0, 2, 0, state(b"source@2"));
    h.acknowledge(1, 2, 0, state(b"sink@2"));
    let status = h.wait_for_status(PATIENCE, |s| s.checkpoints.completed == 1);
    assert_eq!(status.checkpoints.failed, 1);
    assert_eq!(status.last_checkpoint.as_ref().map(|c| c.id), Some(2));
    assert!(matches!(h.next_control(1, PATIENCE), Control::Complete(2)), "the sink hears only of checkpoint 2");

    assert_eq!(read_metadata(&storage, "chk-1"), None, "an expired checkpoint has no _metadata");
    let metadata = read_metadata(&storage, "chk-2").expect("checkpoint 2 is complete");
    assert_eq!(metadata.checkpoint_id, 2);
    assert_eq!(metadata.states.len(), 2, "one state file per task");
    let stats = h.stop();
    assert_eq!((stats.completed, stats.last_id), (1, Some(2)));
}

#[test]
fn a_declined_checkpoint_fails_at_once_and_the_next_one_completes() {
    let (_dir, storage) = storage();
    // A timeout no test run reaches: the decline alone must fail the checkpoint.
    let settings = CoordinatorHarness::settings(Duration::from_millis(20), Duration::from_secs(3600));
    let h = CoordinatorHarness::start(settings, storage.clone(), &SOURCE_AND_SINK);

    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (1, false));
    h.decline(1, 1, "disk full");
    h.wait_for_status(PATIENCE, |s| s.checkpoints.failed == 1);
    h.acknowledge(0, 1, 0, state(b"source@1"));

    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (2, false));
    h.acknowledge(0, 2, 0, state(b"source@2"));
    h.acknowledge(1, 2, 0, state(b"sink@2"));
    let status = h.wait_for_status(PATIENCE, |s| s.checkpoints.completed == 1);
    assert_eq!(status.checkpoints.failed, 1);
    assert_eq!(read_metadata(&storage, "chk-1"), None);
    assert!(read_metadata(&storage, "chk-2").is_some());
    h.stop();
}

#[test]
fn a_declined_savepoint_reports_its_cause_and_the_next_one_completes() {
    let (_dir, storage) = storage();
    let target = tempfile::tempdir().expect("temp dir");
    let target_url = target.path().to_str().expect("utf-8 path").to_string();
    // No periodic checkpoint within the test: every trigger is a savepoint.
    let settings = CoordinatorHarness::settings(Duration::from_secs(3600), Duration::from_secs(3600));
    let h = CoordinatorHarness::start(settings, storage, &SOURCE_AND_SINK);

    let first = h.handle.trigger_savepoint(Some(target_url.clone()), false).expect("savepoint accepted");
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (1, false));
    h.acknowledge(0, 1, 0, state(b"source@1"));
    h.decline(1, 1, "disk full");
    assert_eq!(h.wait_for_savepoint(&first, PATIENCE), SavepointStatus::Failed { cause: "disk full".into() });

    let second = h.handle.trigger_savepoint(Some(target_url.clone()), false).expect("savepoint accepted");
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (2, false));
    h.acknowledge(0, 2, 0, state(b"source@2"));
    h.acknowledge(1, 2, 0, state(b"sink@2"));
    let SavepointStatus::Completed { location } = h.wait_for_savepoint(&second, PATIENCE) else {
        panic!("savepoint 2 did not complete")
    };
    let target_dir = std::fs::canonicalize(target.path()).expect("target exists");
    assert!(
        location.starts_with(&format!("file://{}/savepoint-012345-", target_dir.display())),
        "savepoint at {location}"
    );
    let status = h.handle.status();
    assert_eq!((status.checkpoints.failed, status.checkpoints.completed), (1, 1));
    assert_eq!(status.last_savepoint.map(|s| s.external_path), Some(location));
    assert!(status.last_checkpoint.is_none(), "a savepoint is not a checkpoint");
    h.stop();
}

/// Counts up from 0, one record per poll; its position is the next number.
struct CountingSource {
    next: u64,
}

impl SourceFunction<u64> for CountingSource {
    fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourceStatus, SourceError> {
        out.collect_with_timestamp(self.next, self.next as i64);
        self.next += 1;
        // An unbounded source that is not flooding the test: a short wait, as for I/O.
        std::thread::sleep(Duration::from_millis(1));
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        Some(encode(&self.next))
    }
}

#[test]
fn stop_with_savepoint_completes_and_ends_the_sources() {
    let (_dir, storage) = storage();
    let target = tempfile::tempdir().expect("temp dir");
    let settings = CoordinatorHarness::settings(Duration::from_secs(3600), Duration::from_secs(3600));
    let mut h = CoordinatorHarness::start(settings, storage, &[TaskSpec { is_source: true, parallelism: 1 }]);

    let (chain, output) = collecting_output::<u64>();
    let task = SourceTask {
        info: task_info(&HarnessSetup::default(), None),
        node: 0,
        source: Box::new(CountingSource { next: 0 }),
        chain,
        link: Some(h.link(0)),
    };
    let running = std::thread::spawn(move || Box::new(task).run());
    while output.records().len() < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }

    let trigger =
        h.handle.trigger_savepoint(Some(target.path().to_str().expect("utf-8").into()), true).expect("accepted");
    let SavepointStatus::Completed { location } = h.wait_for_savepoint(&trigger, PATIENCE) else {
        panic!("the savepoint did not complete")
    };
    let outcome = running.join().expect("the source task returns");
    assert!(matches!(outcome, TaskOutcome::Finished), "the source ends: {outcome:?}");

    // Nothing after the barrier but the completion and the close; no end of data either,
    // since stopping without drain leaves windows and timers to the savepoint.
    let elements = output.elements();
    let barrier = elements.iter().position(|e| *e == StreamElement::Barrier(1)).expect("the barrier passed");
    assert_eq!(elements[barrier + 1..], [StreamElement::CheckpointComplete(1), StreamElement::Closed]);
    let emitted = elements[..barrier].iter().filter(|e| matches!(e, StreamElement::Record(..))).count() as u64;

    // The savepoint holds the source's position at the barrier: right after what it emitted.
    let savepoint = CheckpointStorage::from_url(&location).expect("savepoint location");
    let metadata: CheckpointMetadata =
        serde_json::from_slice(&io_runtime().block_on(savepoint.get(METADATA_FILE)).expect("savepoint _metadata"))
            .expect("metadata parses");
    assert_eq!(metadata.states.len(), 1);
    let position: u64 = postcard::from_bytes(
        &io_runtime().block_on(savepoint.get(&metadata.states[0].file)).expect("source state file"),
    )
    .expect("source state decodes");
    assert_eq!(position, emitted);

    let stats = h.stop();
    assert_eq!((stats.completed, stats.failed), (1, 0));
}
