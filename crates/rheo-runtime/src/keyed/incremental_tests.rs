//! Incremental checkpoints of one keyed process operator, through the real checkpoint
//! coordinator and a local checkpoint directory: what each checkpoint uploads, what a restore
//! (at any parallelism) gets back, and which shared files retention deletes. The window
//! operator, whose windows live on the same backend, is checked the same way at the end.

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
use crate::testing::{CoordinatorHarness, HarnessSetup, OneInputHarness, TaskSpec};
use crate::window::TumblingEventTimeWindows;
use crate::window::functions::ReduceAggregation;
use crate::window::operator::{OpenWindow, WINDOWS_STATE, WindowOperator};

use super::snapshot::ProcessEntry;

const PATIENCE: Duration = Duration::from_secs(30);

/// The keyed task (a source for the coordinator: it is told to inject barriers) and a
/// downstream task that only acknowledges or declines.
const TASKS: [TaskSpec; 2] =
    [TaskSpec { is_source: true, parallelism: 1 }, TaskSpec { is_source: false, parallelism: 1 }];

/// Where the operator keeps its state: in memory, or with the disk tier holding at most
/// [`CACHED_KEYS`] keys in memory, so that most keys and their timers live on disk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Memory,
    Disk,
}

const CACHED_KEYS: usize = 40;

/// A delta that only reads the key's count: the key is used (read back from disk if it was
/// evicted) but does not change.
const READ: u64 = u64::MAX;

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
        if delta == READ {
            ctx.value(count);
            return;
        }
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

/// The operator under test: the counter above, or a window operator summing each key's deltas
/// per event-time tumbling window of [`WINDOW_MS`] (each window emits `(key, sum)` as it fires).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Counter,
    Window,
}

const WINDOW_MS: Timestamp = 1_000;

fn operator(backend: Backend, op: Op) -> Harness {
    let mut config = rheo_config::Configuration::default();
    if backend == Backend::Disk {
        config.set(rheo_config::options::STATE_BACKEND_TYPE.key, "disk");
        config.set(rheo_config::options::STATE_BACKEND_DISK_CACHED_KEYS.key, CACHED_KEYS.to_string());
    }
    let setup = HarnessSetup { config: Arc::new(config), ..HarnessSetup::default() };
    match op {
        Op::Counter => OneInputHarness::for_operator_with(setup, move |ctx| {
            KeyedProcessOperator::new(Arc::new(|r: &(String, u64)| r.0.clone()), Counter::default(), ctx)
        }),
        Op::Window => OneInputHarness::with_setup(setup, |ctx, outs| {
            Box::new(WindowOperator::new(
                "window".into(),
                ctx,
                Arc::new(|r: &(String, u64)| r.0.clone()),
                TumblingEventTimeWindows::of(Duration::from_millis(WINDOW_MS as u64)),
                Arc::new(ReduceAggregation(|a: (String, u64), b: (String, u64)| (a.0, a.1 + b.1))),
                0,
                outs.main(),
                outs.side::<(String, u64)>("late"),
            ))
        }),
    }
}

/// The counts an operator holds, read from a full snapshot of it (memory and disk alike).
fn counts_of(operator: &mut Harness) -> BTreeMap<String, u64> {
    let snapshot = operator.snapshot(u64::MAX);
    let mut counts = BTreeMap::new();
    for (_, bytes) in snapshot.states {
        let entries: Vec<ProcessEntry<String>> = postcard::from_bytes(&bytes).expect("a full snapshot decodes");
        for entry in entries {
            if let ProcessEntry::State { table, key, value } = entry {
                let count = match table.as_str() {
                    "count" => postcard::from_bytes(&value).expect("a count"),
                    WINDOWS_STATE => {
                        let windows: Vec<OpenWindow<Option<(String, u64)>>> =
                            postcard::from_bytes(&value).expect("a key's windows");
                        windows.iter().map(|open| open.acc.as_ref().map_or(0, |(_, sum)| *sum)).sum()
                    }
                    other => panic!("unexpected state {other}"),
                };
                assert!(counts.insert(key.clone(), count).is_none(), "{key} is in the snapshot twice");
            }
        }
    }
    counts
}

/// A keyed operator checkpointed by a coordinator, with the counts it should hold.
struct Job {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    storage: CheckpointStorage,
    coordinator: Option<CoordinatorHarness>,
    operator: Harness,
    expected: BTreeMap<String, u64>,
    /// The timestamp of the records added (the window they go to).
    time: Timestamp,
}

impl Job {
    fn start(retained: usize, backend: Backend) -> Self {
        Self::start_op(retained, backend, Op::Counter)
    }

    fn start_op(retained: usize, backend: Backend, op: Op) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let storage = CheckpointStorage::from_url(root.to_str().expect("utf-8")).expect("local storage");
        let operator = operator(backend, op);
        let expected = BTreeMap::new();
        let mut job = Self { _dir: dir, root, storage, coordinator: None, operator, expected, time: 0 };
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
        self.operator.process((key.to_string(), delta), self.time);
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
        let held = counts_of(&mut restored);
        // The timers fire, from memory and disk, once per key with its count.
        restored.finish();
        let mut fired = BTreeMap::new();
        for ((key, count), _) in restored.take_records() {
            assert!(fired.insert(key.clone(), count).is_none(), "{key} fired twice");
        }
        assert_eq!(fired, held, "what the timers emit is what the state holds");
        held
    }

    /// The window operator: the watermark passes the window of the records added so far, which
    /// fires (emitting what is expected of it) and is dropped; records go to the next window.
    fn next_window(&mut self) {
        self.operator.process_watermark(self.time + WINDOW_MS - 1);
        let mut fired = BTreeMap::new();
        for ((key, sum), _) in self.operator.take_records() {
            assert!(fired.insert(key.clone(), sum).is_none(), "{key} fired twice");
        }
        assert_eq!(fired, std::mem::take(&mut self.expected), "the window fires what was added to it");
        self.time += WINDOW_MS;
    }

    /// Uses `key` without changing it.
    fn read(&mut self, key: &str) {
        self.operator.process((key.to_string(), READ), 0);
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

fn a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism(backend: Backend) {
    let mut job = Job::start(1, backend);
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

fn the_changes_of_a_failed_checkpoint_are_in_the_next_one(backend: Backend) {
    let mut job = Job::start(1, backend);
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

fn retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references(backend: Backend) {
    let mut job = Job::start(2, backend);
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

fn savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone(backend: Backend) {
    let mut job = Job::start(1, backend);
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

#[test]
fn a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism_in_memory() {
    a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism(Backend::Memory);
}

#[test]
fn a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism_on_disk() {
    a_checkpoint_uploads_only_what_changed_and_restores_everything_at_any_parallelism(Backend::Disk);
}

#[test]
fn the_changes_of_a_failed_checkpoint_are_in_the_next_one_in_memory() {
    the_changes_of_a_failed_checkpoint_are_in_the_next_one(Backend::Memory);
}

#[test]
fn the_changes_of_a_failed_checkpoint_are_in_the_next_one_on_disk() {
    the_changes_of_a_failed_checkpoint_are_in_the_next_one(Backend::Disk);
}

#[test]
fn retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references_in_memory() {
    retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references(Backend::Memory);
}

#[test]
fn retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references_on_disk() {
    retention_deletes_exactly_the_shared_files_no_retained_checkpoint_references(Backend::Disk);
}

#[test]
fn savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone_in_memory() {
    savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone(Backend::Memory);
}

#[test]
fn savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone_on_disk() {
    savepoints_are_full_whatever_the_setting_and_leave_the_chain_alone(Backend::Disk);
}

/// The disk tier's hard cases: a key changed and then evicted is written from disk; one evicted
/// before a checkpoint that fails and read back after it is written by the next one, though it
/// did not change again; keys pass back and forth between memory and disk between checkpoints.
#[test]
fn keys_that_move_between_memory_and_disk_around_a_failed_checkpoint_are_all_restored() {
    let mut job = Job::start(1, Backend::Disk);
    for k in 0..2_000 {
        job.add(&format!("key-{k}"), 1);
    }
    job.checkpoint();
    // key-5 and key-6 change, then 200 other keys are used: both are evicted.
    job.add("key-5", 10);
    job.add("key-6", 20);
    for k in 100..300 {
        job.read(&format!("key-{k}"));
    }
    // Checkpoint 2 writes them from disk, and fails.
    let failed = job.barrier();
    let written = format!("shared/chk-{failed}/");
    eventually("the failed checkpoint's file is written", || {
        job.shared_files().iter().any(|f| f.starts_with(&written))
    });
    job.coordinator().decline(1, failed, "the other task could not write its state");
    job.coordinator().wait_for_status(PATIENCE, |s| s.checkpoints.failed == 1);
    // key-5 is read back (not changed); key-6 stays on disk; key-7 changes and is evicted.
    job.read("key-5");
    job.add("key-7", 30);
    for k in 300..400 {
        job.read(&format!("key-{k}"));
    }
    let next = job.checkpoint();
    // Keys only read back from disk are not written again (key-5 is: the checkpoint that
    // wrote it from disk failed).
    assert!(
        next.uploaded_size() * 20 < next.total_size(),
        "the changes, not everything: {} of {} bytes",
        next.uploaded_size(),
        next.total_size()
    );
    job.assert_restores(next.checkpoint_id);
    // And a key dropped while on disk's neighbours are busy, then made again.
    job.add("key-8", 0);
    for k in 0..100 {
        job.read(&format!("key-{k}"));
    }
    job.add("key-8", 4);
    let last = job.checkpoint();
    job.assert_restores(last.checkpoint_id);
}

/// The backend alone: at most the cached keys stay in memory, the rest is read back from disk
/// with the same values, and a view shows every entry once, wherever it is.
#[test]
fn the_disk_tier_keeps_the_cached_keys_in_memory_and_every_value() {
    use crate::state::BackendOptions;
    let options = BackendOptions::Disk { dir: None, cached_keys: 100 };
    let mut backend = KeyedStateBackend::<String>::new(&options, "disk-test (1/1)").expect("a disk tier");
    let count: ValueState<u64> = backend.value_state("count");
    for k in 0..10_000u64 {
        let id = backend.intern(format!("key-{k}"));
        backend.update(&count, id, k);
        backend.free_if_unused(id);
        assert!(backend.key_count() <= 100, "{} keys in memory", backend.key_count());
    }
    assert!(backend.keys_on_disk() >= 9_900, "{} keys on disk", backend.keys_on_disk());
    let mut seen = BTreeMap::new();
    backend
        .view()
        .for_each_entry(|_, key, value| {
            assert!(seen.insert(key.clone(), postcard::from_bytes::<u64>(value).unwrap()).is_none(), "{key} twice");
        })
        .expect("readable");
    assert_eq!(seen.len(), 10_000);
    for k in (0..10_000u64).rev().step_by(7) {
        let id = backend.intern(format!("key-{k}"));
        assert_eq!(backend.value(&count, id), Some(&k), "key-{k}");
        backend.free_if_unused(id);
    }

    // A timer per key, at 100 distinct times: they go to disk with their keys and fire in time
    // order, every one once, with at most a batch read back beyond the cached keys.
    for k in 0..10_000u64 {
        let id = backend.intern(format!("key-{k}"));
        backend.register_timer(true, (k % 100) as Timestamp, id);
        backend.free_if_unused(id);
    }
    assert!(backend.key_count() <= 100);
    assert_eq!(backend.next_timer(true), Some(0));
    let mut fired = Vec::new();
    while let Some((at, id)) = backend.pop_due_timer(true, Timestamp::MAX) {
        let key = backend.key(id).clone();
        fired.push((at, key));
        backend.free_if_unused(id);
        assert!(backend.key_count() <= 100 + 1024, "{} keys in memory", backend.key_count());
    }
    assert_eq!(fired.len(), 10_000);
    assert!(fired.windows(2).all(|pair| pair[0].0 <= pair[1].0), "in time order");
    let keys: std::collections::BTreeSet<_> = fired.iter().map(|(_, key)| key.clone()).collect();
    assert_eq!(keys.len(), 10_000);
    assert_eq!(backend.next_timer(true), None);
}

/// Windows on the keyed backend: a checkpoint writes the keys whose windows changed; a window
/// that fires drops its keys, which the next change file records; every checkpoint restores at
/// any parallelism with each key's window firing once with its sum.
fn windows_checkpoint_what_changed_and_restore_at_any_parallelism(backend: Backend) {
    let mut job = Job::start_op(1, backend, Op::Window);
    for k in 0..2_000 {
        job.add(&format!("key-{k}"), 1);
    }
    let first = job.checkpoint();
    assert_eq!(first.uploaded_size(), first.total_size(), "the first checkpoint is full");
    job.assert_restores(first.checkpoint_id);

    // 1 % of the keys get more records in the open window.
    for k in (0..2_000).step_by(100) {
        job.add(&format!("key-{k}"), 5);
    }
    let second = job.checkpoint();
    assert_eq!(second.shared_files().count(), 2, "the full file and the changes");
    assert!(
        second.uploaded_size() * 20 < first.total_size(),
        "checkpoint 2 uploaded {} bytes of a {} byte state",
        second.uploaded_size(),
        second.total_size()
    );
    job.assert_restores(second.checkpoint_id);

    // The window fires and drops every key; a few keys open the next window.
    job.next_window();
    for k in 0..30 {
        job.add(&format!("key-{k}"), 2);
    }
    let third = job.checkpoint();
    job.assert_restores(third.checkpoint_id);
    job.add("key-1", 1);
    let fourth = job.checkpoint();
    assert!(
        fourth.uploaded_size() * 20 < first.total_size(),
        "one key changed: {} bytes uploaded",
        fourth.uploaded_size()
    );
    job.assert_restores(fourth.checkpoint_id);
}

#[test]
fn windows_checkpoint_what_changed_and_restore_at_any_parallelism_in_memory() {
    windows_checkpoint_what_changed_and_restore_at_any_parallelism(Backend::Memory);
}

#[test]
fn windows_checkpoint_what_changed_and_restore_at_any_parallelism_on_disk() {
    windows_checkpoint_what_changed_and_restore_at_any_parallelism(Backend::Disk);
}
