//! State read back from a checkpoint, handed to operators as they are built.
//!
//! Keyed state is restored by key group: each subtask reads the snapshots of every old subtask
//! of its operator and keeps the entries whose key falls in its own key-group range, so a job
//! can resume at another parallelism. Non-keyed state (source positions, pending sink commits)
//! is per subtask.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::checkpoint::metadata::METADATA_VERSION;
use crate::output::NodeId;
use rheo_types::keygroups::{KeyGroupRange, hash_key};

/// One subtask's state of one operator, as found in a checkpoint.
#[derive(Debug, Clone)]
pub struct SubtaskState {
    pub subtask: usize,
    pub parallelism: usize,
    /// The state, or for incremental keyed state the full snapshot it starts from.
    pub bytes: Vec<u8>,
    /// Incremental keyed state: the change files applied after `bytes`, in order.
    pub changes: Vec<Vec<u8>>,
}

/// Everything a run restores from.
#[derive(Debug)]
pub struct RestoredState {
    /// The `_metadata` version of the checkpoint: which format some operators' state is in.
    pub metadata_version: u32,
    /// The job that took the snapshot (empty when unknown).
    pub job_id: String,
    pub checkpoint_id: u64,
    pub max_parallelism: usize,
    pub nodes: HashMap<NodeId, Vec<SubtaskState>>,
    /// The operator name of each node's state when it was taken.
    pub operators: HashMap<NodeId, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("state of operator {node} cannot be read: {message}")]
    Decode { node: NodeId, message: String },
    #[error(
        "checkpoint was taken with max parallelism {checkpoint}, the job now has {now}; \
         keyed state can only be restored with the same pipeline.max-parallelism"
    )]
    MaxParallelism { checkpoint: usize, now: usize },
}

impl Default for RestoredState {
    /// Nothing to restore, as the current version writes it.
    fn default() -> Self {
        Self {
            metadata_version: METADATA_VERSION,
            job_id: String::new(),
            checkpoint_id: 0,
            max_parallelism: 0,
            nodes: HashMap::new(),
            operators: HashMap::new(),
        }
    }
}

impl RestoredState {
    /// State whose operator is not in the job (by node and name): Flink's "unclaimed state".
    /// Returns a description of each, for the error message.
    pub fn unclaimed(&self, operators: &[String]) -> Vec<String> {
        let mut unclaimed: Vec<String> = self
            .operators
            .iter()
            .filter(|(node, name)| operators.get(**node) != Some(*name))
            .map(|(node, name)| format!("operator {node} '{name}'"))
            .collect();
        unclaimed.sort();
        unclaimed
    }

    /// Drops the state of operators the job does not have.
    pub fn drop_unclaimed(&mut self, operators: &[String]) {
        let keep: Vec<NodeId> = self
            .operators
            .iter()
            .filter(|(node, name)| operators.get(**node) == Some(*name))
            .map(|(n, _)| *n)
            .collect();
        self.nodes.retain(|node, _| keep.contains(node));
        self.operators.retain(|node, _| keep.contains(node));
    }

    /// The keyed entries of `node` whose key belongs to `range`. `key_of` picks the key of an
    /// entry. For an operator whose state has change files, see [`keyed_with_changes`](Self::keyed_with_changes).
    pub fn keyed<E: DeserializeOwned, K: std::hash::Hash>(
        &self,
        node: NodeId,
        range: KeyGroupRange,
        max_parallelism: usize,
        key_of: impl Fn(&E) -> &K,
    ) -> Result<Vec<E>, RestoreError> {
        let (mut entries, changes) = self.keyed_with_changes(node, range, max_parallelism, key_of)?;
        entries.extend(changes);
        Ok(entries)
    }

    /// Like [`keyed`](Self::keyed), with the entries of the full snapshots apart from those of
    /// the change files of incremental checkpoints (in the order they apply, per old subtask).
    /// Old subtasks hold disjoint key groups, so their files can be applied one after another.
    pub fn keyed_with_changes<E: DeserializeOwned, K: std::hash::Hash>(
        &self,
        node: NodeId,
        range: KeyGroupRange,
        max_parallelism: usize,
        key_of: impl Fn(&E) -> &K,
    ) -> Result<(Vec<E>, Vec<E>), RestoreError> {
        let changes = self.keyed_changes(node, range, max_parallelism, &key_of)?;
        let mut full = Vec::new();
        self.for_each_keyed_full(node, range, max_parallelism, &key_of, |entry| full.push(entry))?;
        Ok((full, changes))
    }

    /// The entries of the change files of `node` whose key belongs to `range`, in the order they
    /// apply.
    pub fn keyed_changes<E: DeserializeOwned, K: std::hash::Hash>(
        &self,
        node: NodeId,
        range: KeyGroupRange,
        max_parallelism: usize,
        key_of: impl Fn(&E) -> &K,
    ) -> Result<Vec<E>, RestoreError> {
        self.check_max_parallelism(max_parallelism)?;
        let mut changes = Vec::new();
        for state in self.nodes.get(&node).into_iter().flatten() {
            for bytes in &state.changes {
                for_each_entry(bytes, |entry: E| {
                    if range.contains(KeyGroupRange::key_group_of(hash_key(key_of(&entry)), max_parallelism)) {
                        changes.push(entry);
                    }
                })
                .map_err(|e| RestoreError::Decode { node, message: e.to_string() })?;
            }
        }
        Ok(changes)
    }

    /// Calls `visit` with each entry of the full snapshots of `node` whose key belongs to
    /// `range`, decoded one at a time: a state larger than memory is never decoded all at once.
    pub fn for_each_keyed_full<E: DeserializeOwned, K: std::hash::Hash>(
        &self,
        node: NodeId,
        range: KeyGroupRange,
        max_parallelism: usize,
        key_of: impl Fn(&E) -> &K,
        mut visit: impl FnMut(E),
    ) -> Result<(), RestoreError> {
        self.check_max_parallelism(max_parallelism)?;
        for state in self.nodes.get(&node).into_iter().flatten() {
            for_each_entry(&state.bytes, |entry: E| {
                if range.contains(KeyGroupRange::key_group_of(hash_key(key_of(&entry)), max_parallelism)) {
                    visit(entry);
                }
            })
            .map_err(|e| RestoreError::Decode { node, message: e.to_string() })?;
        }
        Ok(())
    }

    fn check_max_parallelism(&self, max_parallelism: usize) -> Result<(), RestoreError> {
        if self.max_parallelism != max_parallelism {
            return Err(RestoreError::MaxParallelism { checkpoint: self.max_parallelism, now: max_parallelism });
        }
        Ok(())
    }

    /// The non-keyed states of `node` this subtask takes over: its own at the same
    /// parallelism, otherwise those of old subtasks `i` with `i % parallelism == subtask`.
    pub fn operator<E: DeserializeOwned>(
        &self,
        node: NodeId,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Vec<E>, RestoreError> {
        self.nodes
            .get(&node)
            .into_iter()
            .flatten()
            .filter(|s| s.subtask % parallelism == subtask)
            .map(|s| postcard::from_bytes(&s.bytes).map_err(|e| RestoreError::Decode { node, message: e.to_string() }))
            .collect()
    }
}

/// Decodes a sequence (as postcard writes a `Vec<E>`: its length, then each entry) one entry at
/// a time.
fn for_each_entry<E: DeserializeOwned>(bytes: &[u8], mut visit: impl FnMut(E)) -> Result<(), postcard::Error> {
    let (len, mut rest) = postcard::take_from_bytes::<usize>(bytes)?;
    for _ in 0..len {
        let (entry, after) = postcard::take_from_bytes::<E>(rest)?;
        visit(entry);
        rest = after;
    }
    Ok(())
}

/// Encodes state for a snapshot. Encoding plain data into a vector cannot fail.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("state is serializable")
}
