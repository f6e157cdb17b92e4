//! Rolling reduce and aggregate: their output, and their state across snapshots (full and
//! incremental), restores at other parallelisms, and state written by the old operators.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::rolling::{AGGREGATE_STATE, REDUCE_STATE};
use super::snapshot::ProcessEntry;
use crate::checkpoint::metadata::SharedFile;
use crate::keyed::{rolling_aggregate, rolling_reduce};
use crate::output::{StateBytes, TaskSnapshot, Timestamp};
use crate::state::restore::{RestoredState, SubtaskState, encode};
use crate::testing::{HarnessSetup, OneInputHarness};
use crate::window::AggregateFunction;
use rheo_types::keygroups::{KeyGroupRange, hash_key};

type Ev = (String, i64);

fn ev(key: &str, value: i64) -> Ev {
    (key.to_string(), value)
}

/// Where the operators keep their state: in memory, or with the disk tier holding at most
/// [`CACHED_KEYS`] keys in memory, so that most keys live on disk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Memory,
    Disk,
}

const CACHED_KEYS: usize = 40;

fn setup(task_name: &str, backend: Backend) -> HarnessSetup {
    let mut config = rheo_config::Configuration::default();
    if backend == Backend::Disk {
        config.set(rheo_config::options::STATE_BACKEND_TYPE.key, "disk");
        config.set(rheo_config::options::STATE_BACKEND_DISK_CACHED_KEYS.key, CACHED_KEYS.to_string());
    }
    HarnessSetup { task_name: task_name.into(), config: Arc::new(config), ..HarnessSetup::default() }
}

fn running_sum() -> OneInputHarness<Ev, Ev> {
    running_sum_on("Keyed Reduce", Backend::Memory)
}

fn running_sum_on(task_name: &str, backend: Backend) -> OneInputHarness<Ev, Ev> {
    OneInputHarness::for_operator_with(setup(task_name, backend), |ctx| {
        rolling_reduce(Arc::new(|e: &Ev| e.0.clone()), Arc::new(|a: Ev, b: Ev| (a.0, a.1 + b.1)), ctx)
    })
}

/// The mean of the values per key, as `(key, sum, count)`.
struct Mean;

impl AggregateFunction<Ev> for Mean {
    type Acc = (String, i64, u64);
    type Out = (String, i64, u64);
    fn create_accumulator(&self) -> Self::Acc {
        (String::new(), 0, 0)
    }
    fn add(&self, (key, value): Ev, acc: &mut Self::Acc) {
        *acc = (key, acc.1 + value, acc.2 + 1);
    }
    fn get_result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        (a.0, a.1 + b.1, a.2 + b.2)
    }
}

fn running_mean() -> OneInputHarness<Ev, (String, i64, u64)> {
    running_mean_on(Backend::Memory)
}

fn running_mean_on(backend: Backend) -> OneInputHarness<Ev, (String, i64, u64)> {
    OneInputHarness::for_operator_with(setup("Keyed Aggregate", backend), |ctx| {
        rolling_aggregate(Arc::new(|e: &Ev| e.0.clone()), Arc::new(Mean), ctx)
    })
}

/// Whether `key` belongs to `subtask` of `parallelism` (max parallelism 128, the harness's).
fn owns(key: &str, subtask: usize, parallelism: usize) -> bool {
    let group = KeyGroupRange::key_group_of(hash_key(&key.to_string()), 128);
    KeyGroupRange::for_subtask(128, parallelism, subtask).contains(group)
}

/// Restores `restored` at `parallelism`, gives each key one more record on the subtask that owns
/// it, and returns what came out per key.
fn continue_at<O: Clone + Send + 'static>(
    harness: &OneInputHarness<Ev, O>,
    restored: impl Fn() -> RestoredState,
    parallelism: usize,
    keys: &[&str],
    key_of: impl Fn(&O) -> String,
) -> BTreeMap<String, O> {
    let mut out = BTreeMap::new();
    for subtask in 0..parallelism {
        let mut instance = harness.restore_from(restored(), subtask, parallelism);
        for key in keys.iter().filter(|k| owns(k, subtask, parallelism)) {
            instance.process(ev(key, 100), 7);
        }
        for (record, timestamp) in instance.take_records() {
            assert_eq!(timestamp, 7);
            assert!(out.insert(key_of(&record), record).is_none(), "a key on two subtasks");
        }
    }
    out
}

/// Plays the uploader of an incremental checkpoint: writes the keyed state's file, reports it
/// written as `shared/chk-<id>`, and returns its bytes and the files it builds on.
fn upload(checkpoint_id: u64, mut snapshot: TaskSnapshot) -> (Vec<u8>, Vec<SharedFile>) {
    let (_, state) = snapshot.states.pop().expect("keyed state");
    let StateBytes::Incremental(incremental) = state else { panic!("expected an incremental state, got {state:?}") };
    let mut bytes = Vec::new();
    (incremental.write)(&mut bytes).expect("written into memory");
    let file = SharedFile {
        path: format!("shared/chk-{checkpoint_id}/0-0.state"),
        size: bytes.len() as u64,
        crc32: 0,
        checkpoint_id,
    };
    incremental.written.set(file).unwrap();
    (bytes, incremental.builds_on)
}

/// What a checkpoint of node 0 made of `full` then `changes` restores, written at parallelism 1.
fn restored(full: &[u8], changes: &[Vec<u8>]) -> RestoredState {
    let subtask = SubtaskState {
        subtask: 0,
        parallelism: 1,
        bytes: full.to_vec().into(),
        changes: changes.iter().cloned().map(Into::into).collect(),
    };
    RestoredState { max_parallelism: 128, nodes: HashMap::from([(0, vec![subtask])]), ..RestoredState::default() }
}

fn decode(bytes: &[u8]) -> Vec<ProcessEntry<String>> {
    postcard::from_bytes(bytes).expect("keyed process entries")
}

#[test]
fn reduce_and_aggregate_emit_the_running_result_with_each_records_timestamp() {
    let mut sum = running_sum();
    let mut mean = running_mean();
    for (value, timestamp) in [(ev("a", 1), 10), (ev("b", 5), 11), (ev("a", 2), 12), (ev("a", 4), 9)] {
        sum.process(value.clone(), timestamp);
        mean.process(value, timestamp);
    }
    sum.process_watermark(20);
    let as_records =
        |r: &[(&str, i64, Timestamp)]| -> Vec<(Ev, Timestamp)> { r.iter().map(|(k, v, t)| (ev(k, *v), *t)).collect() };
    assert_eq!(sum.records(), as_records(&[("a", 1, 10), ("b", 5, 11), ("a", 3, 12), ("a", 7, 9)]));
    assert_eq!(sum.watermarks(), vec![20], "watermarks pass through");
    let means: Vec<_> = mean.records().into_iter().map(|((k, s, c), t)| (k, s, c, t)).collect();
    assert_eq!(
        means,
        vec![("a".into(), 1, 1, 10), ("b".into(), 5, 1, 11), ("a".into(), 3, 2, 12), ("a".into(), 7, 3, 9)]
    );
}

#[test]
fn a_snapshot_restores_at_any_parallelism_and_the_running_results_go_on() {
    snapshot_restores_at_any_parallelism(Backend::Memory);
}

#[test]
fn a_snapshot_restores_at_any_parallelism_and_the_running_results_go_on_with_the_disk_tier() {
    snapshot_restores_at_any_parallelism(Backend::Disk);
}

fn snapshot_restores_at_any_parallelism(backend: Backend) {
    let keys: Vec<String> = (0..50).map(|k| format!("key-{k}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut sum = running_sum_on("Keyed Reduce", backend);
    let mut mean = running_mean_on(backend);
    for (i, key) in keys.iter().enumerate() {
        for _ in 0..=i % 3 {
            sum.process(ev(key, i as i64), 0);
            mean.process(ev(key, i as i64), 0);
        }
    }
    let (sums, means) = (sum.snapshot(1), mean.snapshot(1));
    for parallelism in [1, 2, 3] {
        let after = continue_at(
            &sum,
            || crate::testing::restored_state(std::slice::from_ref(&sums)),
            parallelism,
            &keys,
            |r| r.0.clone(),
        );
        let expected: BTreeMap<String, Ev> =
            keys.iter().enumerate().map(|(i, k)| (k.to_string(), ev(k, (i % 3 + 1) as i64 * i as i64 + 100))).collect();
        assert_eq!(after, expected, "reduce restored at parallelism {parallelism}");

        let after = continue_at(
            &mean,
            || crate::testing::restored_state(std::slice::from_ref(&means)),
            parallelism,
            &keys,
            |r| r.0.clone(),
        );
        let expected: BTreeMap<String, (String, i64, u64)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), (k.to_string(), (i % 3 + 1) as i64 * i as i64 + 100, (i % 3 + 2) as u64)))
            .collect();
        assert_eq!(after, expected, "aggregate restored at parallelism {parallelism}");
    }
}

#[test]
fn an_incremental_change_file_holds_only_the_keys_that_changed() {
    change_file_holds_only_the_keys_that_changed(Backend::Memory);
}

#[test]
fn an_incremental_change_file_holds_only_the_keys_that_changed_with_the_disk_tier() {
    change_file_holds_only_the_keys_that_changed(Backend::Disk);
}

fn change_file_holds_only_the_keys_that_changed(backend: Backend) {
    let keys: Vec<String> = (0..1_000).map(|k| format!("key-{k}")).collect();
    let mut sum = running_sum_on("Keyed Reduce", backend);
    for key in &keys {
        sum.process(ev(key, 1), 0);
    }
    let barrier = sum.incremental_barrier(1);
    let (full, builds_on) = upload(1, barrier);
    assert!(builds_on.is_empty(), "the first incremental checkpoint is full");
    assert_eq!(decode(&full).len(), keys.len(), "one state entry per key");
    sum.notify_checkpoint_complete(1);

    // 1 % of the keys change, twice for one of them.
    let changed: BTreeSet<String> = keys.iter().step_by(100).cloned().collect();
    for key in &changed {
        sum.process(ev(key, 5), 0);
    }
    sum.process(ev("key-0", 5), 0);
    let barrier = sum.incremental_barrier(2);
    let (change_file, builds_on) = upload(2, barrier);
    assert_eq!(builds_on.iter().map(|f| f.checkpoint_id).collect::<Vec<_>>(), vec![1], "it builds on checkpoint 1");
    let entries = decode(&change_file);
    let replaced: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| match e {
            ProcessEntry::StateReplaced { key } => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(replaced, changed, "the change file holds the changed keys");
    assert_eq!(entries.len(), 2 * changed.len(), "a marker and the state of each changed key, nothing else");
    assert!(entries.iter().all(|e| match e {
        ProcessEntry::State { table, .. } => table == REDUCE_STATE,
        ProcessEntry::StateReplaced { .. } => true,
        _ => false,
    }));
    assert!(change_file.len() * 50 < full.len(), "{} bytes of changes, {} in full", change_file.len(), full.len());

    // Full snapshot and change file restore at any parallelism.
    let probe = ["key-0", "key-1", "key-100", "key-999"];
    for parallelism in [1, 3] {
        let after = continue_at(
            &sum,
            || restored(&full, std::slice::from_ref(&change_file)),
            parallelism,
            &probe,
            |r| r.0.clone(),
        );
        let expected: BTreeMap<String, Ev> = [("key-0", 111), ("key-1", 101), ("key-100", 106), ("key-999", 101)]
            .map(|(k, v)| (k.into(), ev(k, v)))
            .into();
        assert_eq!(after, expected, "parallelism {parallelism}");
    }
}

#[test]
fn a_full_checkpoint_writes_every_key_and_the_next_incremental_one_builds_on_it_alone() {
    full_checkpoint_then_incremental(Backend::Memory);
}

#[test]
fn a_full_checkpoint_writes_every_key_and_the_next_incremental_one_builds_on_it_alone_with_the_disk_tier() {
    full_checkpoint_then_incremental(Backend::Disk);
}

fn full_checkpoint_then_incremental(backend: Backend) {
    let mut sum = running_sum_on("Keyed Reduce", backend);
    for k in 0..200 {
        sum.process(ev(&format!("key-{k}"), 1), 0);
    }
    let barrier = sum.incremental_barrier(1);
    upload(1, barrier);
    sum.notify_checkpoint_complete(1);
    sum.process(ev("key-1", 1), 0);
    let barrier = sum.incremental_barrier(2);
    upload(2, barrier);
    sum.notify_checkpoint_complete(2);

    sum.process(ev("key-2", 1), 0);
    let barrier = sum.full_checkpoint_barrier(3);
    let (full, builds_on) = upload(3, barrier);
    assert!(builds_on.is_empty(), "a FULL checkpoint builds on no earlier file: {builds_on:?}");
    let entries = decode(&full);
    assert_eq!(entries.len(), 200);
    assert!(entries.iter().all(|e| matches!(e, ProcessEntry::State { .. })), "a full snapshot, not changes");
    sum.notify_checkpoint_complete(3);

    sum.process(ev("key-3", 1), 0);
    let barrier = sum.incremental_barrier(4);
    let (changes, builds_on) = upload(4, barrier);
    assert_eq!(builds_on.iter().map(|f| f.checkpoint_id).collect::<Vec<_>>(), vec![3]);
    assert_eq!(decode(&changes).len(), 2, "only key-3 changed since the FULL checkpoint");
    let after = continue_at(
        &sum,
        || restored(&full, std::slice::from_ref(&changes)),
        2,
        &["key-1", "key-2", "key-3", "key-4"],
        |r| r.0.clone(),
    );
    let values: Vec<i64> = after.values().map(|r| r.1).collect();
    assert_eq!(values, vec![102, 102, 102, 101]);
}

/// State as the rolling operators wrote it before metadata version 3: per old subtask, the
/// `(key, value)` pairs of its keys.
fn old_format<V: serde::Serialize>(parallelism: usize, entries: &[(String, V)]) -> RestoredState {
    let subtasks = (0..parallelism)
        .map(|subtask| {
            let own: Vec<&(String, V)> = entries.iter().filter(|(k, _)| owns(k, subtask, parallelism)).collect();
            SubtaskState { subtask, parallelism, bytes: encode(&own).into(), changes: Vec::new() }
        })
        .collect();
    RestoredState {
        metadata_version: 2,
        max_parallelism: 128,
        nodes: HashMap::from([(0, subtasks)]),
        ..Default::default()
    }
}

#[test]
fn state_written_by_the_old_rolling_operators_is_restored_at_any_parallelism() {
    old_state_is_restored(Backend::Memory);
}

#[test]
fn state_written_by_the_old_rolling_operators_is_restored_at_any_parallelism_with_the_disk_tier() {
    old_state_is_restored(Backend::Disk);
}

fn old_state_is_restored(backend: Backend) {
    let keys: Vec<String> = (0..40).map(|k| format!("key-{k}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let sums: Vec<(String, Ev)> = keys.iter().enumerate().map(|(i, k)| (k.to_string(), ev(k, i as i64))).collect();
    let means: Vec<(String, (String, i64, u64))> =
        keys.iter().enumerate().map(|(i, k)| (k.to_string(), (k.to_string(), i as i64, 2))).collect();
    for (written_at, parallelism) in [(2, 1), (1, 3), (3, 2)] {
        let after = continue_at(
            &running_sum_on("Keyed Reduce", backend),
            || old_format(written_at, &sums),
            parallelism,
            &keys,
            |r| r.0.clone(),
        );
        let expected: BTreeMap<String, Ev> =
            keys.iter().enumerate().map(|(i, k)| (k.to_string(), ev(k, i as i64 + 100))).collect();
        assert_eq!(after, expected, "reduce written at {written_at}, restored at {parallelism}");

        let after = continue_at(
            &running_mean_on(backend),
            || old_format(written_at, &means),
            parallelism,
            &keys,
            |r| r.0.clone(),
        );
        let expected: BTreeMap<String, (String, i64, u64)> =
            keys.iter().enumerate().map(|(i, k)| (k.to_string(), (k.to_string(), i as i64 + 100, 3))).collect();
        assert_eq!(after, expected, "aggregate written at {written_at}, restored at {parallelism}");
    }

    // Once restored, the state is the new one: its next snapshot is a keyed process snapshot.
    let mut upgraded = running_sum_on("Keyed Reduce", backend).restore_from(old_format(1, &sums), 0, 1);
    let snapshot = upgraded.snapshot(5);
    let entries = decode(&snapshot.states[0].1);
    assert_eq!(entries.len(), keys.len());
    assert!(entries.iter().all(|e| matches!(e, ProcessEntry::State { table, .. } if table == REDUCE_STATE)));
    let mut upgraded = running_mean_on(backend).restore_from(old_format(2, &means), 0, 1);
    let snapshot = upgraded.snapshot(5);
    let entries = decode(&snapshot.states[0].1);
    assert_eq!(entries.len(), keys.len());
    assert!(entries.iter().all(|e| matches!(e, ProcessEntry::State { table, .. } if table == AGGREGATE_STATE)));
}

#[test]
#[should_panic(expected = "Keyed Reduce -> Map: state of operator 0 cannot be read")]
fn old_state_that_cannot_be_read_fails_naming_the_operator() {
    let mut broken = old_format(1, &[("a".to_string(), ev("a", 1))]);
    broken.nodes.get_mut(&0).unwrap()[0].bytes = vec![0xff; 3].into();
    let _ = running_sum_on("Keyed Reduce -> Map", Backend::Memory).restore_from(broken, 0, 1);
}

/// What a checkpoint of a rolling reduce costs with 1M keys of which 1 % changed, against the
/// operator it replaces (a hash map serialised whole at the barrier, on the task thread).
/// `cargo test --release -p rheo-runtime --lib measure_rolling -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand in release mode"]
fn measure_rolling_reduce_checkpoints() {
    use std::time::Instant;
    const KEYS: usize = 1_000_000;
    let keys: Vec<String> = (0..KEYS).map(|k| format!("k{k:x}")).collect();
    let changed: Vec<&String> = keys.iter().step_by(100).collect();
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1000.0;

    // Before: the map, remove + reduce + insert per record, everything encoded at the barrier.
    let mut old: foldhash::HashMap<String, Ev> = foldhash::HashMap::default();
    let mut out = Vec::with_capacity(KEYS);
    let started = Instant::now();
    for key in keys.iter().chain(changed.iter().copied()) {
        let value = ev(key, 1);
        let result = match old.remove(key) {
            Some(previous) => (previous.0, previous.1 + value.1),
            None => value,
        };
        old.insert(key.clone(), result.clone());
        out.push((result, 0));
    }
    let old_records = ms(started);
    let started = Instant::now();
    let old_bytes = encode(&old.iter().collect::<Vec<_>>()).len();
    let old_pause = ms(started);
    drop(out);

    // After: the keyed process operator.
    let mut sum = running_sum();
    let started = Instant::now();
    for key in &keys {
        sum.process(ev(key, 1), 0);
    }
    let load = ms(started);
    let started = Instant::now();
    let barrier = sum.incremental_barrier(1);
    let first_pause = ms(started);
    let started = Instant::now();
    let (full, _) = upload(1, barrier);
    let first_write = ms(started);
    sum.notify_checkpoint_complete(1);
    let started = Instant::now();
    for key in &changed {
        sum.process(ev(key, 1), 0);
    }
    let new_records = load + ms(started);
    let started = Instant::now();
    let barrier = sum.incremental_barrier(2);
    let steady_pause = ms(started);
    let started = Instant::now();
    let (changes, _) = upload(2, barrier);
    let steady_write = ms(started);
    let records = KEYS + changed.len();
    println!("rolling reduce, {KEYS} keys, {} changed before the second checkpoint:", changed.len());
    println!(
        "  before: {:.0} ns/record; every checkpoint {old_pause:.0} ms on the task thread, {:.1} MiB",
        old_records * 1e6 / records as f64,
        old_bytes as f64 / 1048576.0
    );
    println!(
        "  after:  {:.0} ns/record; first checkpoint {first_pause:.1} ms on the task thread + {first_write:.0} ms \
         written off it, {:.1} MiB; next {steady_pause:.1} ms + {steady_write:.1} ms, {:.0} KiB",
        new_records * 1e6 / records as f64,
        full.len() as f64 / 1048576.0,
        changes.len() as f64 / 1024.0
    );
}
