//! How the state and timers of a keyed operator's [`KeyedStateBackend`] (keyed process
//! functions, rolling reduce and aggregate, windows) are written to a checkpoint and read back:
//! a full snapshot is every entry, a change file (incremental checkpoints, see
//! [`crate::state::incremental`]) the entries of the keys that changed, and restoring applies
//! the full snapshot, then the change files in order.

use std::collections::HashMap;
use std::sync::Arc;

use serde::ser::{Error as _, SerializeSeq};

use crate::checkpoint::storage::WriteObject;
use crate::graph::OperatorContext;
use crate::output::{CheckpointBarrier, StateBytes, Timestamp};
use crate::state::incremental::{Changes, IncrementalSnapshot, Piece};
use crate::state::restore::{encode, encode_to};
use crate::state::timers::Timers;
use crate::state::{KeyOnDisk, KeyedStateBackend, StateView};
use rheo_types::Key;

/// Restores `state` (its states registered) from the run's checkpoint, if the run restores: the
/// change files first (they are folded per key), then the full snapshots, decoded one entry at a
/// time as they are applied.
pub(crate) fn restore<K: Key>(state: &mut KeyedStateBackend<K>, ctx: &OperatorContext) {
    let changes = ctx.restore_keyed_changes::<ProcessEntry<K>, K>(ProcessEntry::key);
    let full = |visit: &mut dyn FnMut(ProcessEntry<K>)| ctx.restore_keyed_full(ProcessEntry::key, visit);
    apply_changes(full, changes, |entry| match entry {
        ProcessEntry::State { table, key, value } => {
            state.restore_entry(&table, key, &value).unwrap_or_else(|e| panic!("{}: {e}", ctx.info.task_name))
        }
        ProcessEntry::EventTimer { key, at } => state.restore_timer(true, at, key),
        ProcessEntry::ProcessingTimer { key, at } => state.restore_timer(false, at, key),
        // Folded away by `apply_changes`.
        ProcessEntry::KeyDropped { .. }
        | ProcessEntry::StateReplaced { .. }
        | ProcessEntry::EventTimerDeleted { .. }
        | ProcessEntry::ProcessingTimerDeleted { .. } => {}
    });
}

/// Every entry and timer of `state`, written now (a savepoint of the operator alone).
pub(crate) fn full<K: Key>(state: &mut KeyedStateBackend<K>) -> Vec<u8> {
    encode(&ProcessSnapshot { state: state.view(), timers: state.timers().clone() })
}

/// The state for the checkpoint of `barrier`: a copy-on-write view of the state and a copy of
/// the timers, written from them off the task thread: in full, or (incremental checkpoints) the
/// changes since the last completed checkpoint.
pub(crate) fn state<K: Key>(state: &mut KeyedStateBackend<K>, barrier: &CheckpointBarrier) -> StateBytes {
    let (view, timers) = (state.view(), state.timers().clone());
    if !barrier.incremental {
        let snapshot = ProcessSnapshot { state: view, timers };
        return StateBytes::Deferred(Box::new(move |out| encode_to(&snapshot, out)));
    }
    let (piece, builds_on, written) = state.increments().begin(barrier.id, barrier.full);
    let write: WriteObject = match piece {
        Piece::Full => Box::new(move |out| encode_to(&ProcessSnapshot { state: view, timers }, out)),
        Piece::Changes(changes) => {
            Box::new(move |out| encode_to(&ProcessChanges { state: view, timers, changes }, out))
        }
    };
    StateBytes::Incremental(IncrementalSnapshot { builds_on, write, written })
}

/// One restorable piece of a keyed process operator, always with its key. The variants after
/// the first three appear only in change files; new variants go last, so that older snapshots
/// still decode.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) enum ProcessEntry<K> {
    State {
        table: String,
        key: K,
        value: Vec<u8>,
    },
    EventTimer {
        key: K,
        at: Timestamp,
    },
    ProcessingTimer {
        key: K,
        at: Timestamp,
    },
    /// Nothing of the key is left: its state and timers written before are gone.
    KeyDropped {
        key: K,
    },
    /// The key's state entries follow in full: those written before are replaced (its timers
    /// are not; they change one by one).
    StateReplaced {
        key: K,
    },
    EventTimerDeleted {
        key: K,
        at: Timestamp,
    },
    ProcessingTimerDeleted {
        key: K,
        at: Timestamp,
    },
}

impl<K> ProcessEntry<K> {
    pub(super) fn key(&self) -> &K {
        match self {
            ProcessEntry::State { key, .. }
            | ProcessEntry::EventTimer { key, .. }
            | ProcessEntry::ProcessingTimer { key, .. }
            | ProcessEntry::KeyDropped { key }
            | ProcessEntry::StateReplaced { key }
            | ProcessEntry::EventTimerDeleted { key, .. }
            | ProcessEntry::ProcessingTimerDeleted { key, .. } => key,
        }
    }
}

/// [`ProcessEntry`] by reference, encoded the same way (postcard writes a byte string as it
/// writes a `Vec<u8>`: its length, then the bytes), so a snapshot is written straight from the
/// state without a copy of every entry first.
#[derive(serde::Serialize)]
enum ProcessEntryRef<'a, K> {
    State { table: &'a str, key: &'a K, value: Bytes<'a> },
    EventTimer { key: &'a K, at: Timestamp },
    ProcessingTimer { key: &'a K, at: Timestamp },
    KeyDropped { key: &'a K },
    StateReplaced { key: &'a K },
    EventTimerDeleted { key: &'a K, at: Timestamp },
    ProcessingTimerDeleted { key: &'a K, at: Timestamp },
}

struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A keyed process operator's state and timers as the sequence of [`ProcessEntry`] its full
/// snapshot is.
pub(super) struct ProcessSnapshot<K> {
    pub state: StateView<K>,
    /// A copy: timers are a B-tree of timestamps whose sets are bits or small vectors.
    pub timers: Timers,
}

impl<K: Key> serde::Serialize for ProcessSnapshot<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (event, processing) = (&self.timers.event, &self.timers.processing);
        let len = self.state.entry_count() + event.len() + processing.len() + self.state.timers_on_disk();
        let mut seq = serializer.serialize_seq(Some(len))?;
        let mut failed = None;
        let read = self.state.for_each_entry(|table, key, value| {
            if failed.is_none() {
                failed = seq.serialize_element(&ProcessEntryRef::State { table, key, value: Bytes(value) }).err();
            }
        });
        if let Some(error) = failed {
            return Err(error);
        }
        read.map_err(|e| S::Error::custom(format!("keyed state on disk: {e}")))?;
        for (at, id) in event.iter() {
            seq.serialize_element(&ProcessEntryRef::EventTimer { key: self.state.key(id), at })?;
        }
        for (at, id) in processing.iter() {
            seq.serialize_element(&ProcessEntryRef::ProcessingTimer { key: self.state.key(id), at })?;
        }
        let read = self.state.for_each_timer_on_disk(|key, event_time, at| {
            if failed.is_none() {
                let entry = if event_time {
                    ProcessEntryRef::EventTimer { key, at }
                } else {
                    ProcessEntryRef::ProcessingTimer { key, at }
                };
                failed = seq.serialize_element(&entry).err();
            }
        });
        if let Some(error) = failed {
            return Err(error);
        }
        read.map_err(|e| S::Error::custom(format!("keyed state on disk: {e}")))?;
        seq.end()
    }
}

/// The changes since the last completed checkpoint, as a change file: first the keys dropped,
/// then every changed key's state in full, then the timers set or deleted. Ids are read from
/// the view: an id marked changed whose key was dropped since, or given to another key, writes
/// that key's current state and timers, which is right for it too.
pub(super) struct ProcessChanges<K> {
    pub state: StateView<K>,
    pub timers: Timers,
    pub changes: Arc<Changes<K>>,
}

/// A key's state entries: (state name, encoded value).
type EncodedEntries<'a> = Vec<(&'a str, Vec<u8>)>;

impl<K: Key> serde::Serialize for ProcessChanges<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let changes = &self.changes;
        // Keys evicted to disk since they changed: written from the disk as they were at the
        // barrier. One that is back in memory is not there, and is written below (reading it
        // back marked it changed).
        let mut from_disk: Vec<(&K, KeyOnDisk<'_>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for key in changes.evicted.iter().filter(|key| seen.insert(*key)) {
            let on_disk = self.state.on_disk(key).map_err(|e| S::Error::custom(format!("keyed state on disk: {e}")))?;
            if let Some(on_disk) = on_disk {
                from_disk.push((key, on_disk));
            }
        }
        // Postcard needs the length first; the values are few (the changed keys' only).
        let mut values: Vec<(&K, EncodedEntries<'_>)> = Vec::new();
        for id in changes.ids() {
            let Some(key) = self.state.live_key(id) else { continue };
            let mut entries = Vec::new();
            self.state.for_each_entry_of(id, |table, value| entries.push((table, value)));
            values.push((key, entries));
        }
        let timer = |event_time: bool, at: Timestamp, id| {
            let key = self.state.live_key(id)?;
            let queue = if event_time { &self.timers.event } else { &self.timers.processing };
            Some(match (event_time, queue.contains(at, id)) {
                (true, true) => ProcessEntryRef::EventTimer { key, at },
                (true, false) => ProcessEntryRef::EventTimerDeleted { key, at },
                (false, true) => ProcessEntryRef::ProcessingTimer { key, at },
                (false, false) => ProcessEntryRef::ProcessingTimerDeleted { key, at },
            })
        };
        let timers: Vec<ProcessEntryRef<'_, K>> =
            (changes.event_timers.iter().filter_map(|(at, id)| timer(true, at, id)))
                .chain(changes.processing_timers.iter().filter_map(|(at, id)| timer(false, at, id)))
                .collect();
        let len = changes.dropped.len()
            + from_disk.iter().map(|(_, on_disk)| 2 + on_disk.entries.len() + on_disk.timers.len()).sum::<usize>()
            + values.iter().map(|(_, entries)| 1 + entries.len()).sum::<usize>()
            + timers.len();
        let mut seq = serializer.serialize_seq(Some(len))?;
        for key in &changes.dropped {
            seq.serialize_element(&ProcessEntryRef::KeyDropped { key })?;
        }
        // Dropped and made again: all of the key, whatever was written of it before.
        for (key, on_disk) in &from_disk {
            seq.serialize_element(&ProcessEntryRef::KeyDropped { key: *key })?;
            seq.serialize_element(&ProcessEntryRef::StateReplaced { key: *key })?;
            for (table, value) in &on_disk.entries {
                seq.serialize_element(&ProcessEntryRef::State { table, key: *key, value: Bytes(value) })?;
            }
            for &(event_time, at) in &on_disk.timers {
                let key = *key;
                seq.serialize_element(&if event_time {
                    ProcessEntryRef::EventTimer { key, at }
                } else {
                    ProcessEntryRef::ProcessingTimer { key, at }
                })?;
            }
        }
        for (key, entries) in &values {
            seq.serialize_element(&ProcessEntryRef::StateReplaced { key: *key })?;
            for (table, value) in entries {
                seq.serialize_element(&ProcessEntryRef::State { table, key: *key, value: Bytes(value) })?;
            }
        }
        for entry in &timers {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

/// What the change files say of one key, folded in order.
#[derive(Default)]
struct KeyChanges {
    /// Everything the full snapshot has of the key is gone.
    dropped: bool,
    /// The full snapshot's state entries of the key are replaced by `states`.
    state_replaced: bool,
    states: Vec<(String, Vec<u8>)>,
    /// Timers set and deleted since the full snapshot: (event time?, at) → set?
    timers: HashMap<(bool, Timestamp), bool>,
}

/// Restores from a full snapshot and the change files that follow it (of one or more old
/// subtasks: their keys are disjoint), applied in order: `apply` gets each entry that is left.
/// The change files are folded per key first, so the full snapshot streams through: `full`
/// calls its argument with each of its entries.
pub(super) fn apply_changes<K: Key>(
    full: impl FnOnce(&mut dyn FnMut(ProcessEntry<K>)),
    changes: Vec<ProcessEntry<K>>,
    mut apply: impl FnMut(ProcessEntry<K>),
) {
    let mut by_key: HashMap<K, KeyChanges> = HashMap::new();
    for entry in changes {
        match entry {
            ProcessEntry::KeyDropped { key } => {
                by_key.insert(key, KeyChanges { dropped: true, ..KeyChanges::default() });
            }
            ProcessEntry::StateReplaced { key } => {
                let changed = by_key.entry(key).or_default();
                changed.state_replaced = true;
                changed.states.clear();
            }
            ProcessEntry::State { table, key, value } => {
                let states = &mut by_key.entry(key).or_default().states;
                match states.iter_mut().find(|(t, _)| *t == table) {
                    Some(slot) => slot.1 = value,
                    None => states.push((table, value)),
                }
            }
            ProcessEntry::EventTimer { key, at } => {
                by_key.entry(key).or_default().timers.insert((true, at), true);
            }
            ProcessEntry::ProcessingTimer { key, at } => {
                by_key.entry(key).or_default().timers.insert((false, at), true);
            }
            ProcessEntry::EventTimerDeleted { key, at } => {
                by_key.entry(key).or_default().timers.insert((true, at), false);
            }
            ProcessEntry::ProcessingTimerDeleted { key, at } => {
                by_key.entry(key).or_default().timers.insert((false, at), false);
            }
        }
    }
    full(&mut |entry| {
        let kept = match by_key.get(entry.key()) {
            None => true,
            Some(changed) => {
                !changed.dropped
                    && match &entry {
                        ProcessEntry::State { .. } => !changed.state_replaced,
                        ProcessEntry::EventTimer { at, .. } => !changed.timers.contains_key(&(true, *at)),
                        ProcessEntry::ProcessingTimer { at, .. } => !changed.timers.contains_key(&(false, *at)),
                        _ => true,
                    }
            }
        };
        if kept {
            apply(entry);
        }
    });
    for (key, changed) in by_key {
        for (table, value) in changed.states {
            apply(ProcessEntry::State { table, key: key.clone(), value });
        }
        for ((event_time, at), set) in changed.timers {
            let key = key.clone();
            if set {
                apply(if event_time {
                    ProcessEntry::EventTimer { key, at }
                } else {
                    ProcessEntry::ProcessingTimer { key, at }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(key: &str, table: &str, value: u8) -> ProcessEntry<String> {
        ProcessEntry::State { table: table.into(), key: key.into(), value: vec![value] }
    }

    /// What restoring `full` then `changes` leaves, sorted for comparison.
    fn restored(full: Vec<ProcessEntry<String>>, changes: Vec<ProcessEntry<String>>) -> Vec<String> {
        let mut left = Vec::new();
        apply_changes(
            |visit| full.into_iter().for_each(visit),
            changes,
            |entry| {
                left.push(match entry {
                    ProcessEntry::State { table, key, value } => format!("{key} {table}={}", value[0]),
                    ProcessEntry::EventTimer { key, at } => format!("{key} event@{at}"),
                    ProcessEntry::ProcessingTimer { key, at } => format!("{key} processing@{at}"),
                    _ => panic!("only state and timers are applied"),
                })
            },
        );
        left.sort();
        left
    }

    #[test]
    fn changes_replace_state_per_key_and_set_or_delete_timers_one_by_one() {
        let full = vec![
            state("a", "count", 1),
            state("a", "seen", 1),
            state("b", "count", 2),
            state("c", "count", 3),
            ProcessEntry::EventTimer { key: "a".into(), at: 10 },
            ProcessEntry::ProcessingTimer { key: "a".into(), at: 20 },
            ProcessEntry::EventTimer { key: "b".into(), at: 10 },
            ProcessEntry::EventTimer { key: "c".into(), at: 10 },
        ];
        let changes = vec![
            // Checkpoint 2: a's state replaced (its `seen` entry is gone), its processing timer
            // fired; b dropped.
            ProcessEntry::KeyDropped { key: "b".into() },
            ProcessEntry::StateReplaced { key: "a".into() },
            state("a", "count", 5),
            ProcessEntry::ProcessingTimerDeleted { key: "a".into(), at: 20 },
            // Checkpoint 3: b comes back; c gets a second timer; a's count changes again.
            ProcessEntry::StateReplaced { key: "b".into() },
            state("b", "count", 1),
            ProcessEntry::EventTimer { key: "b".into(), at: 30 },
            ProcessEntry::EventTimer { key: "c".into(), at: 40 },
            ProcessEntry::StateReplaced { key: "a".into() },
            state("a", "count", 6),
        ];
        assert_eq!(
            restored(full, changes),
            ["a count=6", "a event@10", "b count=1", "b event@30", "c count=3", "c event@10", "c event@40",]
        );
    }
}
