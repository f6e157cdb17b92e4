//! State read back from a checkpoint, handed to operators as they are built.
//!
//! Keyed state is restored by key group: each subtask reads the snapshots of every old subtask
//! of its operator and keeps the entries whose key falls in its own key-group range, so a job
//! can resume at another parallelism. Non-keyed state (source positions, pending sink commits)
//! is per subtask.

use std::collections::HashMap;
use std::sync::Arc;

use std::io::Write as _;

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
    pub bytes: StateBlob,
    /// Incremental keyed state: the change files applied after `bytes`, in order.
    pub changes: Vec<StateBlob>,
}

/// The content of a state file read back: small ones in memory, large ones a map of a local
/// copy, so that restoring a large state costs page cache (which the kernel can drop and read
/// again), not a heap copy of every file. Either way it reads as a byte slice.
#[derive(Clone)]
pub enum StateBlob {
    Bytes(Vec<u8>),
    Mapped(Arc<memmap2::Mmap>),
}

impl StateBlob {
    /// A map of `file`, which nothing else writes while it is mapped.
    pub fn map(file: &std::fs::File) -> std::io::Result<Self> {
        if file.metadata()?.len() == 0 {
            // Nothing to map (mapping an empty file fails on some systems).
            return Ok(StateBlob::Bytes(Vec::new()));
        }
        // SAFETY: the map's bytes must not change while it lives. The file is a local copy
        // made for this map alone (an unnamed temporary file, see `discover`): nothing else
        // can open it, and it is not written after it is mapped.
        let map = unsafe { memmap2::Mmap::map(file)? };
        // Decoding reads it once, front to back: read ahead, and drop pages behind early.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(StateBlob::Mapped(Arc::new(map)))
    }

    /// Lets the kernel take the pages of `range` of a mapped file out of this process: a state
    /// file is decoded once, front to back, so the pages behind are done with. Without this they
    /// stay mapped (and counted in the process's resident memory) until memory runs short.
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let StateBlob::Mapped(map) = self
            && !range.is_empty()
        {
            // SAFETY: dropping the pages of a read-only map of a file nobody writes changes no
            // byte: a later read (a rescaled subtask reading the same file) faults them in from
            // the file again.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len()) };
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}

impl Default for StateBlob {
    fn default() -> Self {
        StateBlob::Bytes(Vec::new())
    }
}

impl From<Vec<u8>> for StateBlob {
    fn from(bytes: Vec<u8>) -> Self {
        StateBlob::Bytes(bytes)
    }
}

impl std::ops::Deref for StateBlob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StateBlob::Bytes(bytes) => bytes,
            StateBlob::Mapped(map) => map,
        }
    }
}

impl PartialEq for StateBlob {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for StateBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateBlob::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            StateBlob::Mapped(map) => write!(f, "Mapped({} bytes)", map.len()),
        }
    }
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
/// a time. Of a mapped file, the pages read are handed back as it goes (see [`StateBlob::release`]).
fn for_each_entry<E: DeserializeOwned>(blob: &StateBlob, mut visit: impl FnMut(E)) -> Result<(), postcard::Error> {
    const RELEASE_EVERY: usize = 8 * 1024 * 1024;
    let bytes: &[u8] = blob;
    let (len, mut rest) = postcard::take_from_bytes::<usize>(bytes)?;
    let mut released = 0;
    for _ in 0..len {
        let (entry, after) = postcard::take_from_bytes::<E>(rest)?;
        visit(entry);
        rest = after;
        let read = bytes.len() - rest.len();
        if read - released >= RELEASE_EVERY {
            blob.release(released..read);
            released = read;
        }
    }
    blob.release(released..bytes.len());
    Ok(())
}

/// Encodes state for a snapshot. Encoding plain data into a vector cannot fail.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("state is serializable")
}

/// Encodes state for a snapshot into `out` as [`encode`] does into a vector: a state file is
/// written as it uploads, never held whole.
pub fn encode_to<T: serde::Serialize + ?Sized>(value: &T, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    // postcard writes a byte at a time: a buffer keeps that off the dynamic writer.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    postcard::to_io(value, &mut out).map_err(std::io::Error::other)?;
    out.flush()
}
