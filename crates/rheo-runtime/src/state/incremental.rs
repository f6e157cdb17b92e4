//! The operator's side of incremental checkpoints: what changed since the last completed
//! checkpoint, and which shared files the state of that checkpoint is made of.
//!
//! Changes are tracked per key, not per key group: a job whose 1 % of keys change every second
//! touches every key group every second, so writing changed key groups whole would write
//! everything. A checkpoint writes either a full snapshot (the first of an operator instance,
//! so a job restored from a savepoint or another job's directory never refers to files outside
//! its own directory, and whenever the changes written since the last full one outgrow it) or
//! the changes: for every changed key its whole current state, with the timers that were set or
//! deleted, and a marker for every key dropped since (a rewritten key needs no per-entry
//! deletes; a dropped key is one marker). Restore applies the full snapshot, then each change
//! file in order.
//!
//! Marks are reset only when a checkpoint completes: at each barrier the changes of every
//! checkpoint still in flight are merged into the new one, so a checkpoint that fails or
//! expires loses nothing; the next one carries its changes too.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::checkpoint::metadata::SharedFile;
use crate::output::Timestamp;
use crate::state::keys::KeyId;
use crate::state::timers::{IdSet, TimerQueue};

/// A full snapshot is written instead of changes once the chain holds this many change files:
/// a restore reads every file of the chain.
pub const MAX_CHANGE_FILES: usize = 32;

/// Checkpoints in flight whose completion is still awaited; older ones are forgotten (their
/// changes stay in the newer ones).
const MAX_IN_FLIGHT: usize = 8;

/// After this many barriers without a completion, the next checkpoint is full: if the job
/// refused to complete checkpoints built on these files (retention deleted one), building on
/// them again would never succeed.
const FULL_AFTER_UNCOMPLETED: usize = 3;

/// What changed in an operator instance's keyed state over some time.
#[derive(Clone)]
pub struct Changes<K> {
    /// A bit per key id whose state or timers changed.
    ids: Vec<u64>,
    /// Timers set or deleted, by time domain; whether each is set now is read at the barrier.
    pub event_timers: TimerQueue<IdSet>,
    pub processing_timers: TimerQueue<IdSet>,
    /// Keys that changed and then were dropped (nothing holds them any more), in order. With
    /// the disk tier, also keys read back from disk: their state is written in full, as a key
    /// dropped and made again.
    pub dropped: Vec<K>,
    /// Keys that changed and then were evicted to disk (disk backend): written from the disk.
    pub evicted: Vec<K>,
}

impl<K> Default for Changes<K> {
    fn default() -> Self {
        Self {
            ids: Vec::new(),
            event_timers: TimerQueue::default(),
            processing_timers: TimerQueue::default(),
            dropped: Vec::new(),
            evicted: Vec::new(),
        }
    }
}

impl<K> Changes<K> {
    fn mark(&mut self, id: KeyId) {
        let word = id as usize / 64;
        if self.ids.len() <= word {
            self.ids.resize(word + 1, 0);
        }
        self.ids[word] |= 1 << (id % 64);
    }

    fn is_marked(&self, id: KeyId) -> bool {
        self.ids.get(id as usize / 64).is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    /// Clears the mark of `id`; whether it was marked.
    fn unmark(&mut self, id: KeyId) -> bool {
        let Some(word) = self.ids.get_mut(id as usize / 64) else { return false };
        let bit = 1 << (id % 64);
        let was = *word & bit != 0;
        *word &= !bit;
        was
    }

    /// The ids whose state or timers changed, ascending.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.ids.iter().enumerate().flat_map(|(word, &bits)| {
            (0..64).filter(move |bit| bits & (1 << bit) != 0).map(move |bit| (word * 64 + bit) as KeyId)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.iter().all(|&w| w == 0) && self.dropped.is_empty() && self.evicted.is_empty()
    }

    /// Adds `other`'s changes, which happened before this one's.
    fn absorb_earlier(&mut self, mut other: Changes<K>) {
        if self.ids.len() < other.ids.len() {
            self.ids.resize(other.ids.len(), 0);
        }
        for (mine, theirs) in self.ids.iter_mut().zip(&other.ids) {
            *mine |= theirs;
        }
        for (at, id) in other.event_timers.iter() {
            self.event_timers.register(at, id);
        }
        for (at, id) in other.processing_timers.iter() {
            self.processing_timers.register(at, id);
        }
        // Earlier drops first: a key dropped and made again is live at the end.
        other.dropped.append(&mut self.dropped);
        self.dropped = other.dropped;
        other.evicted.append(&mut self.evicted);
        self.evicted = other.evicted;
    }
}

/// What the barrier of an incremental checkpoint writes.
pub enum Piece<K> {
    /// Everything: the operator's chain starts again from this file.
    Full,
    /// The changes since the last completed checkpoint, on top of `builds_on`.
    Changes(Arc<Changes<K>>),
}

/// An incremental checkpoint's state of one operator subtask, handed to the uploader: a new file
/// for the job's shared area, and the shared files of earlier checkpoints it builds on.
pub struct IncrementalSnapshot {
    /// In the order they are applied on restore; empty when `write` writes a full snapshot.
    pub builds_on: Vec<SharedFile>,
    /// Writes the new file (called off the task thread, as it uploads).
    pub write: crate::checkpoint::storage::WriteObject,
    /// The uploader sets what it wrote, so that the operator can build on it once the
    /// checkpoint completes.
    pub written: Arc<OnceLock<SharedFile>>,
}

struct InFlight<K> {
    /// The files the checkpoint's state is made of, the new one last (once written).
    builds_on: Vec<SharedFile>,
    written: Arc<OnceLock<SharedFile>>,
    /// Changes up to its barrier since the last checkpoint known complete at that barrier.
    changes: Arc<Changes<K>>,
    /// Which barrier it was, counting from 1.
    barrier: u64,
}

/// Tracks one operator instance's changes and shared files across checkpoints.
pub struct Increments<K> {
    /// The files of the last completed checkpoint, full snapshot first; empty: the next
    /// incremental checkpoint is full.
    files: Vec<SharedFile>,
    in_flight: BTreeMap<u64, InFlight<K>>,
    /// Changes since the last barrier.
    changes: Changes<K>,
    /// Barriers seen, and the number of the barrier of the last completed checkpoint (counting
    /// from 1): changes made before that barrier are in a completed checkpoint.
    barriers: u64,
    completed_barrier: u64,
}

impl<K> Default for Increments<K> {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            in_flight: BTreeMap::new(),
            changes: Changes::default(),
            barriers: 0,
            completed_barrier: 0,
        }
    }
}

impl<K: Clone> Increments<K> {
    /// Whether a later checkpoint may build on one taken before: only then are changes
    /// worth recording (without checkpoints, or before the first, nothing is recorded).
    fn tracking(&self) -> bool {
        !self.files.is_empty() || !self.in_flight.is_empty()
    }

    /// The state of `id` changed.
    pub fn state_changed(&mut self, id: KeyId) {
        if self.tracking() {
            self.changes.mark(id);
        }
    }

    /// A timer of `id` at `at` was set or deleted.
    pub fn timer_changed(&mut self, event_time: bool, at: Timestamp, id: KeyId) {
        if self.tracking() {
            self.changes.mark(id);
            let queue = if event_time { &mut self.changes.event_timers } else { &mut self.changes.processing_timers };
            queue.register(at, id);
        }
    }

    /// `key` (id `id`) is dropped: nothing holds it any more, and the id may go to another key.
    /// A key that never changed had nothing before either, so it needs no marker.
    pub fn key_dropped(&mut self, id: KeyId, key: &K) {
        if self.changes.unmark(id) {
            self.changes.dropped.push(key.clone());
        }
    }

    /// `key` (id `id`) was evicted to disk and its id may go to another key. If a checkpoint not
    /// yet complete would write it (its id is marked now or in a checkpoint in flight, which a
    /// failure would fold into the next), it is remembered by value, to be written from disk,
    /// and the number of barriers seen so far is returned, to be stored with it.
    pub fn key_evicted(&mut self, id: KeyId, key: &K) -> Option<u64> {
        let marked_now = self.changes.unmark(id);
        if marked_now || self.in_flight.values().any(|f| f.changes.is_marked(id)) {
            self.changes.evicted.push(key.clone());
            return Some(self.barriers);
        }
        None
    }

    /// `key` was read back from disk into id `id` with its `timers`; `changed_at` is what
    /// [`key_evicted`] returned for it. If no checkpoint whose barrier came after the eviction
    /// has completed, a checkpoint in flight may count on finding the key on disk, where it no
    /// longer is: its state and timers are written in full at the next checkpoint (as a key
    /// dropped and made again).
    ///
    /// [`key_evicted`]: Self::key_evicted
    pub fn key_faulted_in(&mut self, id: KeyId, key: &K, changed_at: Option<u64>, timers: &[(bool, Timestamp)]) {
        let covered = changed_at.is_none_or(|at| self.completed_barrier > at);
        if self.tracking() && !covered {
            self.changes.dropped.push(key.clone());
            for &(event_time, at) in timers {
                self.timer_changed(event_time, at, id);
            }
            self.changes.mark(id);
        }
    }

    /// The barrier of incremental checkpoint `checkpoint_id`: what to write, what it builds on,
    /// and where the uploader reports the file it wrote. `full` (a checkpoint of type FULL)
    /// writes a full snapshot whatever is due; once it completes, later checkpoints build on it.
    pub fn begin(&mut self, checkpoint_id: u64, full: bool) -> (Piece<K>, Vec<SharedFile>, Arc<OnceLock<SharedFile>>) {
        self.barriers += 1;
        let mut changes = std::mem::take(&mut self.changes);
        // Changes of checkpoints not (yet) known complete go into this one too.
        for earlier in self.in_flight.values_mut().rev() {
            let theirs = std::mem::replace(&mut earlier.changes, Arc::new(Changes::default()));
            changes.absorb_earlier(Arc::unwrap_or_clone(theirs));
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.pop_first();
        }
        let changes = Arc::new(changes);
        let (piece, builds_on) = if full || self.needs_full() {
            (Piece::Full, Vec::new())
        } else {
            (Piece::Changes(changes.clone()), self.files.clone())
        };
        let written = Arc::new(OnceLock::new());
        let in_flight =
            InFlight { builds_on: builds_on.clone(), written: written.clone(), changes, barrier: self.barriers };
        self.in_flight.insert(checkpoint_id, in_flight);
        (piece, builds_on, written)
    }

    /// A full snapshot is due: there is none to build on, or the changes written since the last
    /// one are as large as it (restoring reads them all), or there are too many files, or
    /// checkpoints built on these files keep failing.
    fn needs_full(&self) -> bool {
        let Some((full, changes)) = self.files.split_first() else { return true };
        if self.in_flight.len() >= FULL_AFTER_UNCOMPLETED {
            return true;
        }
        changes.len() >= MAX_CHANGE_FILES || changes.iter().map(|f| f.size).sum::<u64>() >= full.size
    }

    /// Checkpoint `checkpoint_id` completed: later ones build on its files, and the changes it
    /// holds are no longer needed.
    pub fn completed(&mut self, checkpoint_id: u64) {
        let Some(done) = self.in_flight.remove(&checkpoint_id) else { return };
        self.in_flight.retain(|&id, _| id > checkpoint_id);
        self.completed_barrier = self.completed_barrier.max(done.barrier);
        self.files = match done.written.get() {
            Some(file) => done.builds_on.into_iter().chain([file.clone()]).collect(),
            // Not uploaded here (cannot happen for a completed checkpoint): start over, safely.
            None => Vec::new(),
        };
        tracing::debug!(checkpoint = checkpoint_id, files = self.files.len(), "incremental state builds on");
    }

    /// The shared files the last completed checkpoint's state is made of.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(checkpoint_id: u64, size: u64) -> SharedFile {
        SharedFile { path: format!("shared/chk-{checkpoint_id}/x"), size, crc32: 0, checkpoint_id }
    }

    fn changed_ids(piece: &Piece<String>) -> Vec<KeyId> {
        match piece {
            Piece::Full => panic!("expected changes, got a full snapshot"),
            Piece::Changes(changes) => changes.ids().collect(),
        }
    }

    #[test]
    fn the_first_checkpoint_is_full_and_later_ones_carry_only_what_changed_since_the_last_completed() {
        let mut inc = Increments::<String>::default();
        inc.state_changed(1);
        let (piece, builds_on, written) = inc.begin(1, false);
        assert!(matches!(piece, Piece::Full) && builds_on.is_empty());
        written.set(file(1, 100)).unwrap();
        inc.state_changed(2);
        inc.completed(1);
        inc.state_changed(3);
        let (piece, builds_on, written) = inc.begin(2, false);
        assert_eq!(changed_ids(&piece), vec![2, 3], "changes from the barrier of 1 on");
        assert_eq!(builds_on, vec![file(1, 100)]);
        written.set(file(2, 10)).unwrap();
        // Checkpoint 2 fails: its changes go into 3 with the new ones.
        inc.state_changed(4);
        let (piece, builds_on, written) = inc.begin(3, false);
        assert_eq!(changed_ids(&piece), vec![2, 3, 4]);
        assert_eq!(builds_on, vec![file(1, 100)]);
        written.set(file(3, 10)).unwrap();
        inc.completed(3);
        assert_eq!(inc.files(), &[file(1, 100), file(3, 10)]);
        inc.completed(2);
        assert_eq!(inc.files(), &[file(1, 100), file(3, 10)], "a late completion of a forgotten one changes nothing");
        let (piece, _, _) = inc.begin(4, false);
        assert!(changed_ids(&piece).is_empty());
    }

    #[test]
    fn a_dropped_key_is_remembered_by_value_and_only_if_it_changed() {
        let mut inc = Increments::<String>::default();
        let (_, _, written) = inc.begin(1, false);
        written.set(file(1, 100)).unwrap();
        inc.completed(1);
        inc.key_dropped(7, &"never changed".to_string());
        inc.state_changed(7);
        inc.key_dropped(7, &"a".to_string());
        let (piece, _, _) = inc.begin(2, false);
        let Piece::Changes(changes) = piece else { panic!("expected changes") };
        assert_eq!(changes.dropped, vec!["a".to_string()]);
        assert_eq!(changes.ids().count(), 0, "the dropped key's id is free for another key");
    }

    #[test]
    fn a_full_snapshot_follows_once_the_changes_outgrow_it() {
        let mut inc = Increments::<String>::default();
        let mut id = 0;
        let mut next = |inc: &mut Increments<String>, size| {
            id += 1;
            let (piece, _, written) = inc.begin(id, false);
            written.set(file(id, size)).unwrap();
            inc.completed(id);
            matches!(piece, Piece::Full)
        };
        assert!(next(&mut inc, 100));
        assert!(!next(&mut inc, 60));
        assert!(!next(&mut inc, 40));
        assert!(next(&mut inc, 100), "changes of 100 bytes on a full snapshot of 100");
        assert_eq!(inc.files(), &[file(4, 100)]);
        for _ in 0..MAX_CHANGE_FILES {
            assert!(!next(&mut inc, 1));
        }
        assert!(next(&mut inc, 100), "too many files");
    }

    #[test]
    fn checkpoints_that_keep_failing_are_followed_by_a_full_one() {
        let mut inc = Increments::<String>::default();
        let (_, _, written) = inc.begin(1, false);
        written.set(file(1, 100)).unwrap();
        inc.completed(1);
        for id in 2..2 + FULL_AFTER_UNCOMPLETED as u64 {
            assert!(matches!(inc.begin(id, false).0, Piece::Changes(_)), "checkpoint {id}");
        }
        assert!(matches!(inc.begin(9, false).0, Piece::Full));
    }

    #[test]
    fn a_full_checkpoint_builds_on_nothing_and_once_complete_the_next_builds_on_it_alone() {
        let mut inc = Increments::<String>::default();
        for id in 1..=2 {
            inc.state_changed(id as KeyId);
            let (_, _, written) = inc.begin(id, false);
            written.set(file(id, 100 / id)).unwrap();
            inc.completed(id);
        }
        assert_eq!(inc.files(), &[file(1, 100), file(2, 50)]);

        // Checkpoint 3 is FULL and fails: its changes go into 4, which builds on 1 and 2.
        inc.state_changed(3);
        let (piece, builds_on, written) = inc.begin(3, true);
        assert!(matches!(piece, Piece::Full) && builds_on.is_empty());
        written.set(file(3, 200)).unwrap();
        inc.state_changed(4);
        let (piece, builds_on, written) = inc.begin(4, false);
        assert_eq!(changed_ids(&piece), vec![3, 4]);
        assert_eq!(builds_on, vec![file(1, 100), file(2, 50)]);
        written.set(file(4, 10)).unwrap();

        // Checkpoint 5 is FULL and completes: 6 builds on its file only.
        let (piece, builds_on, written) = inc.begin(5, true);
        assert!(matches!(piece, Piece::Full) && builds_on.is_empty());
        written.set(file(5, 200)).unwrap();
        inc.completed(5);
        assert_eq!(inc.files(), &[file(5, 200)]);
        inc.state_changed(6);
        let (piece, builds_on, _) = inc.begin(6, false);
        assert_eq!(changed_ids(&piece), vec![6]);
        assert_eq!(builds_on, vec![file(5, 200)]);
    }

    #[test]
    fn without_a_checkpoint_to_build_on_nothing_is_recorded() {
        let mut inc = Increments::<String>::default();
        inc.state_changed(1);
        inc.timer_changed(true, 5, 1);
        assert!(inc.changes.is_empty() && inc.changes.event_timers.len() == 0);
    }
}
