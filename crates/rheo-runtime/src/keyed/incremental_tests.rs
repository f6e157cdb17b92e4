//! Incremental checkpoints of one keyed process operator, through the real checkpoint
//! coordinator and a local checkpoint directory: what each checkpoint uploads, what a restore
//! (at any parallelism) gets back, and which shared files retention deletes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::discover;
use crate::checkpoint::io_runtime;
use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE};
use crate::checkpoint::storage::CheckpointStorage;
use crate::keyed::{KeyedContext, KeyedProcessFunction, KeyedProcessOperator};
use crate::output::{TaskSnapshot, Timestamp};
use crate::state::{KeyedStateBackend, ValueState};
use crate::task::Control;
use crate::testing::{CoordinatorHarness, OneInputHarness, TaskSpec};

const PATIENCE: Duration = Duration::from_secs(30);

/// The keyed task (a source for the coordinator: it is told to inject barriers) and a
/// downstream task that only acknowledges or declines.
const TASKS: [TaskSpec; 2] =
    [TaskSpec { is_source: true, parallelism: 1 }, TaskSpec { is_source: false, parallelism: 1 }];

/// Adds to a count per key (a delta of 0 drops the key) and keeps a timer per key that emits
/// `(key, count)` at the end of input.
#[derive(Default)]
struct Counter {
    count: Option<ValueState<u64>>,
}

const EMIT_AT: Timestamp = 1_000;

impl KeyedProcessFunction<String, (String, u64), (String, u64)> for Counter {
    fn open(&mut self, state: &mut KeyedStateBackend<String>) {
        self.count = Some(state.value_state("count"));
    }

    fn process_element(&mut self, (_, delta): (String, u64), ctx: &mut KeyedContext<'_, String, (String, u64)>) {
        let count = self.count.as_ref().expect("opened");
        if delta == 0 {
            ctx.clear(count);
            ctx.delete_event_time_timer(EMIT_AT);
            return;
        }
        let now = ctx.value(count).copied().unwrap_or(0) + delta;
        ctx.update(count, now);
        ctx.register_event_time_timer(EMIT_AT);
    }

    fn on_timer(&mut self, _: Timestamp, ctx: &mut KeyedContext<'_, String, (String, u64)>) {
        let count = ctx.value(self.count.as_ref().expect("opened")).copied().unwrap_or(0);
        let key = ctx.key().clone();
        ctx.collect((key, count));
    }
}

type Harness = OneInputHarness<(String, u64), (String, u64)>;

fn operator() -> Harness {
    OneInputHarness::for_operator(|ctx| {
        KeyedProcessOperator::new(Arc::new(|r: &(String, u64)| r.0.clone()), Counter::default(), ctx)
    })
}

/// A keyed operator checkpointed by a coordinator, with the counts it should hold.
struct Job {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    storage: CheckpointStorage,
    coordinator: Option<CoordinatorHarness>,
    operator: Harness,
    expected: BTreeMap<String, u64>,
}

impl Job {
    fn start(retained: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let storage = CheckpointStorage::from_url(root.to_str().expect("utf-8")).expect("local storage");
        let mut job =
            Self { _dir: dir, root, storage, coordinator: None, operator: operator(), expected: BTreeMap::new() };
        job.start_coordinator(retained, 1);
        job
    }

    /// A coordinator (a new one: a new attempt or process) whose first checkpoint is `next_id`.
    fn start_coordinator(&mut self, retained: usize, next_id: u64) {
        if let Some(old) = self.coordinator.take() {
            old.stop();
        }
        let mut settings = CoordinatorHarness::settings(Duration::from_millis(1), Duration::from_secs(3600));
        settings.retained = retained;
        self.coordinator = Some(CoordinatorHarness::start_at(settings, self.storage.clone(), &TASKS, next_id));
    }

    fn coordinator(&self) -> &CoordinatorHarness {
        self.coordinator.as_ref().expect("running")
    }

    fn add(&mut self, key: &str, delta: u64) {
        self.operator.process((key.to_string(), delta), 0);
        if delta == 0 {
            self.expected.remove(key);
        } else {
            *self.expected.entry(key.to_string()).or_default() += delta;
        }
    }

    /// The next checkpoint's barrier reaches the keyed task, which acknowledges it.
    fn barrier(&mut self) -> u64 {
        let id = match self.coordinator().next_control(0, PATIENCE) {
            Control::Trigger { barrier, .. } => {
                assert!(barrier.incremental, "checkpoints are incremental by default");
                barrier.id
            }
            other => panic!("expected a trigger, got {other:?}"),
        };
        let snapshot = self.operator.incremental_barrier(id);
        self.coordinator().acknowledge(0, id, 0, snapshot);
        id
    }

    /// A whole checkpoint: barrier, both acknowledgements, completion.
    fn checkpoint(&mut self) -> CheckpointMetadata {
        let id = self.barrier();
        self.coordinator().acknowledge(1, id, 0, TaskSnapshot::default());
        loop {
            match self.coordinator().next_control(0, PATIENCE) {
                Control::Complete(done) if done == id => break,
                Control::Complete(_) => {}
                other => panic!("expected checkpoint {id} to complete, got {other:?}"),
            }
        }
        self.operator.notify_checkpoint_complete(id);
        self.metadata(id).expect("a completed checkpoint has _metadata")
    }

    fn metadata(&self, id: u64) -> Option<CheckpointMetadata> {
        let dir = self.storage.child(&format!("chk-{id}"));
        let bytes = io_runtime().block_on(dir.get_if_exists(METADATA_FILE)).expect("readable")?;
        Some(serde_json::from_slice(&bytes).expect("parses"))
    }

    /// What a fresh operator restored from checkpoint `id` as `subtask` of `parallelism` holds.
    fn restored_counts(&self, id: u64, subtask: usize, parallelism: usize) -> BTreeMap<String, u64> {
        let found = io_runtime()
            .block_on(discover::load(&self.storage.child(&format!("chk-{id}"))))
            .expect("checkpoint loads")
            .expect("checkpoint is complete");
        let mut restored = self.operator.restore_from(found.state, subtask, parallelism);
        restored.finish();
        restored.take_records().into_iter().map(|(record, _)| record).collect()
    }

    /// Every checkpoint of the job restores what it should, at any parallelism.
    fn assert_restores(&self, id: u64) {
        assert_eq!(self.restored_counts(id, 0, 1), self.expected, "checkpoint {id} at parallelism 1");
        let mut rescaled = BTreeMap::new();
        for subtask in 0..3 {
            rescaled.extend(self.restored_counts(id, subtask, 3));
        }
        assert_eq!(rescaled, self.expected, "checkpoint {id} at parallelism 3");
    }

    /// The files under the job's shared area, relative to the job's directory.
    fn shared_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        walk(&self.root.join("shared"), &mut found);
        found.sort();
        found.into_iter().map(|p| p.strip_prefix(&self.root).unwrap().to_string_lossy().into_owned()).collect()
    }
}

/// Waits until `done` holds: retention runs after the tasks hear of the completion.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { walk(&path, found) } else { found.push(path) }
    }
}

fn shared_paths(metadata: &CheckpointMetadata) -> Vec<String> {
    let mut paths: Vec<String> = metadata.shared_files().map(|f| f.path.clone()).collect();
    paths.sort();
    paths
}

#[test]
fn a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism() {
    let mut job = Job::start(1);
    for k in 0..2_000 {
        job.add(&format!("key-{k}"), 1);
    }
    let first = job.checkpoint();
    assert_eq!(first.uploaded_size(), first.total_size(), "the first checkpoint is full");
    job.assert_restores(1);

    // 1 % of the keys change, a few are dropped, a few are new.
    for k in (0..2_000).step_by(100) {
        job.add(&format!("key-{k}"), 5);
    }
    for k in 1..4 {
        job.add(&format!("key-{k}"), 0);
    }
    job.add("new-key", 7);
    let second = job.checkpoint();
    let files: Vec<_> = second.shared_files().collect();
    assert_eq!(files.len(), 2, "the full file of checkpoint 1 and the changes of checkpoint 2");
    assert_eq!(files[0], first.shared_files().next().unwrap(), "checkpoint 2 builds on checkpoint 1's file");
    assert!(
        second.uploaded_size() * 20 < first.total_size(),
        "checkpoint 2 uploaded {} bytes of a {} byte state",
        second.uploaded_size(),
        second.total_size()
    );
    job.assert_restores(2);

    // A key dropped and made again, a dropped key that comes back later, nothing else.
    job.add("key-1", 3);
    job.add("new-key", 0);
    job.add("new-key", 2);
    let third = job.checkpoint();
    assert_eq!(third.shared_files().count(), 3);
    job.assert_restores(3);

    // Nothing changed: the change file is (nearly) empty.
    let fourth = job.checkpoint();
    assert!(fourth.uploaded_size() < 16, "{} bytes for no change", fourth.uploaded_size());
    job.assert_restores(4);
    eventually("retention keeps one checkpoint", || job.metadata(3).is_none());
}

#[test]
fn the_changes_of_a_failed_checkpoint_are_in_the_next_one() {
    let mut job = Job::start(1);
    for k in 0..500 {
        job.add(&format!("key-{k}"), 1);
    }
    job.checkpoint();
    job.add("key-1", 10);
    job.add("key-2", 0);

    // Checkpoint 2: the keyed task uploads its changes, then the other task declines.
    let failed = job.barrier();
    let written = format!("shared/chk-{failed}/");
    while !job.shared_files().iter().any(|f| f.starts_with(&written)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    job.coordinator().decline(1, failed, "the other task could not write its state");
    job.coordinator().wait_for_status(PATIENCE, |s| s.checkpoints.failed == 1);

    job.add("key-3", 100);
    let next = job.checkpoint();
    assert_eq!(next.shared_files().count(), 2, "it builds on checkpoint 1, not on the failed one");
    job.assert_restores(next.checkpoint_id);
    // The failed checkpoint's file goes when the coordinator cleans up after it.
    job.coordinator.take().unwrap().stop();
    assert!(
        !job.shared_files().iter().any(|f| f.starts_with(&written)),
        "the failed checkpoint's files are deleted: {:?}",
        job.shared_files()
    );
}

#[test]
fn retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references() {
    let mut job = Job::start(2);
    for k in 0..300 {
        job.add(&format!("key-{k}"), 1);
    }
    let c1 = job.checkpoint();
    job.add("key-1", 1);
    let c2 = job.checkpoint();
    job.add("key-2", 1);
    let c3 = job.checkpoint();
    // Checkpoints 2 and 3 are retained; 3 builds on the files of 1 and 2, so all stay.
    eventually("checkpoint 1 deleted", || job.metadata(1).is_none());
    assert_eq!(job.shared_files(), shared_paths(&c3), "checkpoint 3 needs every file written");
    assert!(shared_paths(&c3).starts_with(&shared_paths(&c2)));
    assert!(shared_paths(&c2).starts_with(&shared_paths(&c1)));

    // A new process restores checkpoint 3: its operator's first checkpoint is full, and the
    // retained set (2 and 3, then 3 and 4) is rebuilt from the metadata on storage.
    let restored = job.operator.restore_from(
        io_runtime().block_on(discover::load(&job.storage.child("chk-3"))).unwrap().unwrap().state,
        0,
        1,
    );
    job.operator = restored;
    job.start_coordinator(2, 4);
    job.add("key-3", 1);
    let c4 = job.checkpoint();
    assert_eq!(c4.shared_files().count(), 1, "the first checkpoint of a new operator instance is full");
    assert_eq!(c4.uploaded_size(), c4.total_size());
    let mut expected = shared_paths(&c3);
    expected.extend(shared_paths(&c4));
    expected.sort();
    eventually("checkpoint 2 deleted", || job.metadata(2).is_none());
    // Checkpoint 2's directory is deleted first; every file it referenced is still needed.
    assert_eq!(job.shared_files(), expected, "checkpoint 3 is still retained, so are its files");
    job.assert_restores(4);

    job.add("key-4", 1);
    let c5 = job.checkpoint();
    eventually("only what 4 and 5 reference (5 builds on 4) is left", || job.shared_files() == shared_paths(&c5));
    assert!(job.metadata(3).is_none());
    assert!(shared_paths(&c5).starts_with(&shared_paths(&c4)));
    job.assert_restores(5);
}

#[test]
fn savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone() {
    let mut job = Job::start(1);
    for k in 0..200 {
        job.add(&format!("key-{k}"), 1);
    }
    job.checkpoint();
    job.add("key-1", 1);
    // The barrier of a savepoint is not incremental: the operator writes its whole state.
    let mut snapshot = job.operator.barrier(99);
    let (_, state) = snapshot.states.pop().expect("keyed state");
    assert!(matches!(state, crate::output::StateBytes::Deferred(_)), "{state:?}");
    job.add("key-2", 1);
    let next = job.checkpoint();
    assert_eq!(next.shared_files().count(), 2, "the chain goes on past the savepoint");
    job.assert_restores(next.checkpoint_id);
}
