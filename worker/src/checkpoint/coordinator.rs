//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): triggers a checkpoint every
//! interval by sending a barrier to every source, collects each task's snapshot, uploads the
//! snapshots while the tasks keep processing, writes `_metadata` last, and tells every task the
//! checkpoint completed so sinks commit.
//!
//! At the end of input every source waits for a final checkpoint, which commits the last
//! output; then the sources close their streams (Flink's FLIP-147).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::checkpoint::io_runtime;
use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE, METADATA_VERSION, StateHandle, checkpoint_dir};
use crate::checkpoint::storage::{CheckpointStorage, StorageError};
use crate::runtime::output::CheckpointBarrier;
use crate::runtime::task::{Control, TaskEvent, now_ms};

/// What the coordinator needs to know about one task.
pub struct TaskEntry {
    pub is_source: bool,
    pub parallelism: usize,
    pub control: Sender<Control>,
}

/// Settings of checkpointing for one job.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub retained: usize,
    pub job_id: String,
    pub job_name: String,
    pub max_parallelism: usize,
    /// Operator names by node id, recorded with each state file.
    pub operators: Vec<String>,
}

/// Statistics of completed checkpoints, for logs, the benchmark and (later) the REST API.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    pub completed: u64,
    pub failed: u64,
    pub last_id: Option<u64>,
    pub last_duration: Duration,
    pub last_size: u64,
    pub total_duration: Duration,
}

struct Pending {
    barrier: CheckpointBarrier,
    is_final: bool,
    started: Instant,
    awaiting: HashSet<usize>,
    uploads: Vec<tokio::task::JoinHandle<Result<StateHandle, StorageError>>>,
}

pub struct CheckpointCoordinator {
    settings: CheckpointSettings,
    /// The job's directory: `<state.checkpoints.dir>/<job-id>`.
    storage: CheckpointStorage,
    tasks: Vec<TaskEntry>,
    events: Receiver<TaskEvent>,
    next_id: u64,
    stats: CheckpointStats,
}

impl CheckpointCoordinator {
    pub fn new(
        settings: CheckpointSettings,
        storage: CheckpointStorage,
        tasks: Vec<TaskEntry>,
        events: Receiver<TaskEvent>,
        next_id: u64,
    ) -> Self {
        Self { settings, storage, tasks, events, next_id, stats: CheckpointStats::default() }
    }

    /// Runs until every task has gone (all event senders dropped). Returns the statistics.
    pub fn run(mut self) -> CheckpointStats {
        let sources: HashSet<usize> = (0..self.tasks.len()).filter(|&t| self.tasks[t].is_source).collect();
        let mut at_end: HashSet<usize> = HashSet::new();
        let mut pending: Option<Pending> = None;
        let mut next_trigger = Instant::now() + self.settings.interval;
        let mut final_done = false;
        loop {
            let wait = next_trigger.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            match self.events.recv_timeout(wait) {
                Ok(TaskEvent::Acknowledge { task, checkpoint_id, subtask, snapshot }) => {
                    let Some(current) = pending.as_mut() else { continue };
                    if current.barrier.id != checkpoint_id || !current.awaiting.remove(&task) {
                        continue;
                    }
                    let chk = self.storage.child(&checkpoint_dir(checkpoint_id));
                    let parallelism = self.tasks[task].parallelism;
                    for (node, bytes) in snapshot.states {
                        let operator = self.settings.operators.get(node).cloned().unwrap_or_default();
                        let file = StateFile { node, operator, subtask, parallelism };
                        current.uploads.push(io_runtime().spawn(upload(chk.clone(), file, bytes)));
                    }
                    if current.awaiting.is_empty() {
                        let done = pending.take().expect("pending checkpoint");
                        final_done |= self.complete(done, &sources);
                        next_trigger = Instant::now() + self.settings.interval;
                    }
                }
                Ok(TaskEvent::EndOfInput { task }) => {
                    at_end.insert(task);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some(current) = &pending
                && current.started.elapsed() > self.settings.timeout
            {
                tracing::warn!(checkpoint = current.barrier.id, "checkpoint expired before completing");
                self.stats.failed += 1;
                pending = None;
            }
            let all_at_end = !sources.is_empty() && at_end.len() == sources.len();
            if pending.is_none() && !final_done && (all_at_end || Instant::now() >= next_trigger) {
                pending = Some(self.trigger(all_at_end));
            }
        }
        self.stats
    }

    fn trigger(&mut self, is_final: bool) -> Pending {
        let barrier = CheckpointBarrier { id: self.next_id, timestamp: now_ms() };
        self.next_id += 1;
        tracing::debug!(checkpoint = barrier.id, is_final, "triggering checkpoint");
        for task in self.tasks.iter().filter(|t| t.is_source) {
            let _ = task.control.send(Control::Trigger(barrier));
        }
        Pending {
            barrier,
            is_final,
            started: Instant::now(),
            awaiting: (0..self.tasks.len()).collect(),
            uploads: Vec::new(),
        }
    }

    /// Waits for the uploads, writes `_metadata`, notifies the tasks. Returns whether this was
    /// the final checkpoint (and the sources were told to close).
    fn complete(&mut self, pending: Pending, sources: &HashSet<usize>) -> bool {
        let id = pending.barrier.id;
        let result: Result<CheckpointMetadata, StorageError> = io_runtime().block_on(async {
            let mut states = Vec::with_capacity(pending.uploads.len());
            for upload in pending.uploads {
                states.push(upload.await.expect("upload task panicked")?);
            }
            states.sort_by_key(|s| (s.node, s.subtask));
            let metadata = CheckpointMetadata {
                version: METADATA_VERSION,
                job_id: self.settings.job_id.clone(),
                job_name: self.settings.job_name.clone(),
                checkpoint_id: id,
                timestamp: pending.barrier.timestamp,
                is_final: pending.is_final,
                max_parallelism: self.settings.max_parallelism,
                states,
            };
            let json = serde_json::to_vec_pretty(&metadata).expect("metadata serializes");
            self.storage.child(&checkpoint_dir(id)).put(METADATA_FILE, json).await?;
            Ok(metadata)
        });
        let metadata = match result {
            Ok(metadata) => metadata,
            Err(e) => {
                tracing::warn!(checkpoint = id, error = %e, "checkpoint could not be written");
                self.stats.failed += 1;
                return false;
            }
        };
        let duration = pending.started.elapsed();
        self.stats.completed += 1;
        self.stats.last_id = Some(id);
        self.stats.last_duration = duration;
        self.stats.last_size = metadata.total_size();
        self.stats.total_duration += duration;
        tracing::info!(
            checkpoint = id,
            duration_ms = duration.as_millis() as u64,
            bytes = metadata.total_size(),
            is_final = pending.is_final,
            "completed checkpoint"
        );
        // Non-sources first: by the time a source closes its stream, every completion is queued.
        let order = (0..self.tasks.len()).filter(|t| !sources.contains(t)).chain(sources.iter().copied());
        for task in order {
            let _ = self.tasks[task].control.send(Control::Complete(id));
        }
        if pending.is_final {
            for &task in sources {
                let _ = self.tasks[task].control.send(Control::Finish);
            }
        }
        self.retain();
        pending.is_final
    }

    /// Deletes all but the newest `state.checkpoints.num-retained` checkpoints.
    fn retain(&self) {
        let storage = self.storage.clone();
        let retained = self.settings.retained.max(1);
        let cleanup = async move {
            let ids = crate::checkpoint::discover::checkpoint_ids(&storage).await?;
            for old in ids.into_iter().skip(retained) {
                storage.delete_all(&checkpoint_dir(old)).await?;
            }
            Ok::<(), StorageError>(())
        };
        if let Err(e) = io_runtime().block_on(cleanup) {
            tracing::warn!(error = %e, "cannot delete old checkpoints");
        }
    }
}

/// Whose state a file holds.
struct StateFile {
    node: usize,
    operator: String,
    subtask: usize,
    parallelism: usize,
}

async fn upload(chk: CheckpointStorage, state: StateFile, bytes: Vec<u8>) -> Result<StateHandle, StorageError> {
    let file = format!("{}-{}.state", state.node, state.subtask);
    let handle = StateHandle {
        node: state.node,
        operator: state.operator,
        subtask: state.subtask,
        parallelism: state.parallelism,
        file: file.clone(),
        size: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    };
    chk.put(&file, bytes).await?;
    Ok(handle)
}
