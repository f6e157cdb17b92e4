//! The checkpoint coordinator: expired and declined checkpoints, stop-with-savepoint.

use std::time::Duration;

use crate::checkpoint::discover;
use crate::checkpoint::io_runtime;
use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE};
use crate::checkpoint::storage::{CheckpointStorage, PART_SIZE};
use crate::driver::handle::{CheckpointTriggerStatus, SavepointStatus};
use crate::output::{StateBytes, TaskSnapshot};
use crate::state::restore::{StateBlob, encode};
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

/// Bytes in which no two parts are alike, so a part lost, doubled or out of order shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i >> 16) as u8).collect()
}

/// The sink task's state, of its own node (1).
fn sink_state(bytes: &[u8]) -> TaskSnapshot {
    let mut snapshot = TaskSnapshot::default();
    snapshot.put(1, bytes.to_vec());
    snapshot
}

/// A task's state of node 0 written as it uploads, as keyed state is: `data` in uneven pieces,
/// then the writer fails with `fail` if given.
fn streamed(data: Vec<u8>, fail: Option<&'static str>) -> TaskSnapshot {
    let mut snapshot = TaskSnapshot::default();
    snapshot.put_state(
        0,
        StateBytes::Deferred(Box::new(move |out| {
            data.chunks(4093).try_for_each(|piece| out.write_all(piece))?;
            fail.map_or(Ok(()), |cause| Err(std::io::Error::other(cause)))
        })),
    );
    snapshot
}

#[test]
fn a_state_larger_than_a_part_streams_to_its_file_and_restores_identical_and_checked() {
    let (dir, storage) = storage();
    let settings = CoordinatorHarness::settings(Duration::from_secs(3600), Duration::from_secs(3600));
    let h = CoordinatorHarness::start(settings, storage.clone(), &SOURCE_AND_SINK);
    let trigger = h.handle.trigger_checkpoint(None, false).expect("checkpoint accepted");
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (1, false));
    let data = pattern(2 * PART_SIZE + 4321);
    h.acknowledge(0, 1, 0, streamed(data.clone(), None));
    h.acknowledge(1, 1, 0, sink_state(b"sink@1"));
    h.wait_for_status(PATIENCE, |s| s.checkpoints.completed == 1);
    assert!(matches!(h.handle.checkpoint_trigger_status(&trigger), Some(CheckpointTriggerStatus::Completed { .. })));
    h.stop();

    let metadata = read_metadata(&storage, "chk-1").expect("checkpoint 1 is complete");
    let handle = metadata.states.iter().find(|s| s.node == 0).expect("the large state");
    assert_eq!((handle.size, handle.crc32), (data.len() as u64, crc32fast::hash(&data)), "size and CRC32 in _metadata");
    let found = io_runtime().block_on(discover::load(&storage.child("chk-1"))).expect("valid").expect("has _metadata");
    let restored = &found.state.nodes[&0];
    let large = &restored[0];
    assert!(matches!(large.bytes, StateBlob::Mapped(_)), "a large file is mapped, not read into memory");
    assert!(*large.bytes == *data, "restored byte for byte");

    // One flipped byte in the middle of the file: the checkpoint is not restored.
    let path = dir.path().join("chk-1").join(&handle.file);
    let mut bytes = std::fs::read(&path).expect("state file");
    bytes[PART_SIZE + 7] ^= 0x10;
    std::fs::write(&path, bytes).expect("state file rewritten");
    let problem = io_runtime().block_on(discover::load(&storage.child("chk-1"))).err().expect("corrupt");
    assert!(problem.contains(&handle.file) && problem.contains("CRC32"), "{problem}");
}

#[test]
fn a_state_whose_writer_fails_mid_stream_fails_the_checkpoint_not_the_job_and_leaves_no_file() {
    let (dir, storage) = storage();
    let settings = CoordinatorHarness::settings(Duration::from_secs(3600), Duration::from_secs(3600));
    let h = CoordinatorHarness::start(settings, storage.clone(), &SOURCE_AND_SINK);
    let trigger = h.handle.trigger_checkpoint(None, false).expect("checkpoint accepted");
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (1, false));
    // Fails after three parts went up.
    h.acknowledge(0, 1, 0, streamed(pattern(3 * PART_SIZE + 5), Some("the view broke")));
    h.acknowledge(1, 1, 0, sink_state(b"sink@1"));
    h.wait_for_status(PATIENCE, |s| s.checkpoints.failed == 1);
    let Some(CheckpointTriggerStatus::Failed { cause }) = h.handle.checkpoint_trigger_status(&trigger) else {
        panic!("checkpoint 1 did not fail")
    };
    assert!(cause.contains("writing the state of operator 0") && cause.contains("the view broke"), "{cause}");
    assert_eq!(read_metadata(&storage, "chk-1"), None);

    // The next checkpoint completes.
    let second = h.handle.trigger_checkpoint(None, false).expect("checkpoint accepted");
    assert_eq!(expect_trigger(h.next_control(0, PATIENCE)), (2, false));
    h.acknowledge(0, 2, 0, streamed(pattern(PART_SIZE + 1), None));
    h.acknowledge(1, 2, 0, sink_state(b"sink@2"));
    h.wait_for_status(PATIENCE, |s| s.checkpoints.completed == 1);
    assert!(matches!(h.handle.checkpoint_trigger_status(&second), Some(CheckpointTriggerStatus::Completed { .. })));
    h.stop();
    // Nothing of the failed checkpoint is left, not even a part.
    let left: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains("chk-1")).collect();
    assert_eq!(left, Vec::<String>::new());
}

/// Every file under `dir`, as paths relative to it.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).expect("under dir").display().to_string());
            }
        }
    }
    found
}
