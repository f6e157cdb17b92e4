//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): triggers a checkpoint every
//! interval by sending a barrier to every source, collects each task's snapshot, uploads the
//! snapshots while the tasks keep processing, writes `_metadata` last, and tells every task the
//! checkpoint completed so sinks commit.
//!
//! Savepoints are checkpoints written to `savepoint-<job>-<id>/` under a target directory, not
//! subject to retention. Stop-with-savepoint makes the sources emit nothing after the barrier and
//! closes them once the savepoint completes. At the end of input every source waits for a
//! final checkpoint, which commits the last output; then the sources close (Flink's FLIP-147).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::checkpoint::io_runtime;
use crate::checkpoint::metadata::{
    CheckpointMetadata, METADATA_FILE, METADATA_VERSION, SharedFile, StateHandle, checkpoint_dir, shared_dir,
};
use crate::checkpoint::shared::{RetainedCheckpoints, SharedError, delete_checkpoint, delete_dropped};
use crate::checkpoint::storage::{CheckpointStorage, PART_SIZE, StorageError, WriteObject};
use crate::driver::handle::{
    CheckpointTriggerStatus, CompletedCheckpoint, JobHandle, SavepointRequest, SavepointStatus, SnapshotRequest,
};
use crate::output::{CheckpointBarrier, StateBytes};
use crate::task::{Control, TaskEvent, now_ms};

/// What the coordinator needs to know about one task.
pub struct TaskEntry {
    pub is_source: bool,
    pub parallelism: usize,
    pub control: ControlSender,
}

/// How control messages reach a task: its channel in this process, or a function that sends
/// them to the TaskManager running it.
pub enum ControlSender {
    Local(Sender<Control>),
    Remote(Box<dyn Fn(Control) + Send>),
}

impl ControlSender {
    /// Sends `control`; a task that is gone has nothing to act on, so this never fails.
    pub fn send(&self, control: Control) {
        match self {
            ControlSender::Local(tx) => {
                let _ = tx.send(control);
            }
            ControlSender::Remote(send) => send(control),
        }
    }
}

/// Called with a checkpoint's id and directory before its barriers are injected, so that
/// TaskManagers know where to upload their state.
pub type Announce = Box<dyn Fn(u64, &str) + Send>;

/// A state upload: running here, or already done by a TaskManager.
enum Upload {
    Running(tokio::task::JoinHandle<Result<StateHandle, StorageError>>),
    Done(StateHandle),
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
    /// `state.backend.incremental`: checkpoints (never savepoints) write keyed state as the
    /// changes since the last completed checkpoint.
    pub incremental: bool,
}

/// Statistics of completed checkpoints, for logs and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    pub completed: u64,
    pub failed: u64,
    pub last_id: Option<u64>,
    pub last_duration: Duration,
    pub last_size: u64,
    pub max_size: u64,
    pub total_duration: Duration,
    /// The first completed checkpoint, and the last [`RECENT_CHECKPOINTS`] ones.
    pub first: Option<CheckpointSample>,
    pub recent: VecDeque<CheckpointSample>,
}

/// How many completed checkpoints [`CheckpointStats::recent`] keeps.
pub const RECENT_CHECKPOINTS: usize = 256;

/// One completed checkpoint's cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckpointSample {
    pub id: u64,
    /// When it was triggered, ms since the epoch.
    pub triggered_ms: i64,
    pub duration: Duration,
    /// Bytes it wrote (less than `size` when incremental).
    pub uploaded: u64,
    /// Bytes of state it needs, shared files of earlier checkpoints included.
    pub size: u64,
}

impl CheckpointStats {
    pub fn record(&mut self, sample: CheckpointSample) {
        self.first.get_or_insert(sample);
        if self.recent.len() == RECENT_CHECKPOINTS {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
    }
}

/// Where a pending checkpoint goes and what follows it.
enum Kind {
    /// `trigger`: the id of a checkpoint asked for through REST, if it was; `full`: asked for
    /// as `checkpointType: FULL`.
    Checkpoint {
        is_final: bool,
        trigger: Option<String>,
        full: bool,
    },
    Savepoint(SavepointRequest),
}

struct Pending {
    barrier: CheckpointBarrier,
    kind: Kind,
    /// The directory its files and `_metadata` go to.
    dir: CheckpointStorage,
    started: Instant,
    awaiting: HashSet<usize>,
    uploads: Vec<Upload>,
}

pub struct CheckpointCoordinator {
    settings: CheckpointSettings,
    /// The job's directory: `<state.checkpoints.dir>/<job-id>`.
    storage: CheckpointStorage,
    tasks: Vec<TaskEntry>,
    events: Receiver<TaskEvent>,
    savepoints: Receiver<SnapshotRequest>,
    handle: JobHandle,
    next_id: u64,
    stats: CheckpointStats,
    announce: Option<Announce>,
    /// Checkpoints that failed in a row, and when the next may be triggered: failures back off
    /// (a full disk is not hammered, nor the log flooded, by the final checkpoint's retries).
    consecutive_failures: u32,
    retry_at: Option<Instant>,
    /// Deletions of failed checkpoints' files, awaited before the coordinator ends.
    cleanups: Vec<tokio::task::JoinHandle<()>>,
    /// The job's retained checkpoints and the shared files they reference, read from storage
    /// when first needed (`None` until then, or while storage could not be read).
    retained: Option<RetainedCheckpoints>,
}

/// The wait before the next checkpoint after `failures` failed in a row.
fn retry_delay(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);
    FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(MAX)
}

impl CheckpointCoordinator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: CheckpointSettings,
        storage: CheckpointStorage,
        tasks: Vec<TaskEntry>,
        events: Receiver<TaskEvent>,
        savepoints: Receiver<SnapshotRequest>,
        handle: JobHandle,
        next_id: u64,
    ) -> Self {
        Self {
            settings,
            storage,
            tasks,
            events,
            savepoints,
            handle,
            next_id,
            stats: CheckpointStats::default(),
            announce: None,
            consecutive_failures: 0,
            retry_at: None,
            cleanups: Vec::new(),
            retained: None,
        }
    }

    /// The retained checkpoints, read from storage if they are not known yet.
    fn retained(&mut self) -> Result<&mut RetainedCheckpoints, StorageError> {
        if self.retained.is_none() {
            self.retained = Some(io_runtime().block_on(RetainedCheckpoints::load(&self.storage))?);
        }
        Ok(self.retained.as_mut().expect("just loaded"))
    }

    /// Tells `announce` where each checkpoint goes before triggering it.
    pub fn with_announce(mut self, announce: Announce) -> Self {
        self.announce = Some(announce);
        self
    }

    /// Runs until every task has gone (all event senders dropped). Returns the statistics.
    pub fn run(mut self) -> CheckpointStats {
        let sources: HashSet<usize> = (0..self.tasks.len()).filter(|&t| self.tasks[t].is_source).collect();
        let mut at_end: HashSet<usize> = HashSet::new();
        let mut pending: Option<Pending> = None;
        let mut queued: Vec<SnapshotRequest> = Vec::new();
        let mut next_trigger = Instant::now() + self.settings.interval;
        let mut closing = false;
        loop {
            let wait = next_trigger.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
            match self.events.recv_timeout(wait) {
                Ok(TaskEvent::Acknowledge { task, checkpoint_id, subtask, snapshot }) => {
                    let Some(current) = pending.as_mut() else { continue };
                    if current.barrier.id != checkpoint_id || !current.awaiting.remove(&task) {
                        continue;
                    }
                    let parallelism = self.tasks[task].parallelism;
                    let target = UploadTarget {
                        dir: current.dir.clone(),
                        job: self.storage.clone(),
                        checkpoint_id,
                        subtask,
                        parallelism,
                    };
                    let uploads = upload_snapshot(&target, &self.settings.operators, snapshot);
                    current.uploads.extend(uploads.into_iter().map(Upload::Running));
                    if current.awaiting.is_empty() {
                        let done = pending.take().expect("pending checkpoint");
                        closing |= self.complete(done, &sources);
                        next_trigger = Instant::now() + self.settings.interval;
                    }
                }
                Ok(TaskEvent::Uploaded { task, checkpoint_id, states }) => {
                    let Some(current) = pending.as_mut() else { continue };
                    if current.barrier.id != checkpoint_id || !current.awaiting.remove(&task) {
                        continue;
                    }
                    match states {
                        Ok(states) => current.uploads.extend(states.into_iter().map(Upload::Done)),
                        Err(cause) => {
                            tracing::warn!(checkpoint = checkpoint_id, %cause, "a TaskManager could not upload its state");
                            let failed = pending.take().expect("pending checkpoint");
                            self.failed(failed, &cause);
                            next_trigger = Instant::now() + self.settings.interval;
                            continue;
                        }
                    }
                    if current.awaiting.is_empty() {
                        let done = pending.take().expect("pending checkpoint");
                        closing |= self.complete(done, &sources);
                        next_trigger = Instant::now() + self.settings.interval;
                    }
                }
                Ok(TaskEvent::EndOfInput { task }) => {
                    at_end.insert(task);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            queued.extend(self.savepoints.try_iter());
            if let Some(current) = &pending
                && current.started.elapsed() > self.settings.timeout
            {
                tracing::warn!(checkpoint = current.barrier.id, "checkpoint expired before completing");
                let expired = pending.take().expect("pending checkpoint");
                self.failed(expired, "the checkpoint expired (execution.checkpointing.timeout)");
            }
            let all_at_end = !sources.is_empty() && at_end.len() == sources.len();
            if pending.is_some() || closing || self.retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            if all_at_end {
                // The input is done: snapshots can no longer be taken; the final checkpoint.
                for request in queued.drain(..) {
                    self.refuse(request, "the job reached the end of its input");
                }
                pending = Some(self.trigger(Kind::Checkpoint { is_final: true, trigger: None, full: false }));
            } else if !queued.is_empty() {
                let kind = match queued.remove(0) {
                    SnapshotRequest::Savepoint(request) => Kind::Savepoint(request),
                    SnapshotRequest::Checkpoint { trigger_id, full } => {
                        Kind::Checkpoint { is_final: false, trigger: Some(trigger_id), full }
                    }
                };
                pending = Some(self.trigger(kind));
            } else if Instant::now() >= next_trigger {
                pending = Some(self.trigger(Kind::Checkpoint { is_final: false, trigger: None, full: false }));
            }
        }
        if let Some(current) = pending {
            self.failed(current, "the job attempt ended before it completed");
        }
        for request in queued.into_iter().chain(self.savepoints.try_iter()) {
            self.refuse(request, "the job attempt ended before the snapshot was taken");
        }
        // The next attempt (or process) finds only complete checkpoints.
        for cleanup in std::mem::take(&mut self.cleanups) {
            let _ = io_runtime().block_on(cleanup);
        }
        self.stats
    }

    /// Fails a snapshot asked for that will not be taken.
    fn refuse(&self, request: SnapshotRequest, cause: &str) {
        match request {
            SnapshotRequest::Savepoint(request) => {
                self.handle.savepoint_done(&request.trigger_id, SavepointStatus::Failed { cause: cause.into() })
            }
            SnapshotRequest::Checkpoint { trigger_id, .. } => self
                .handle
                .checkpoint_trigger_done(&trigger_id, CheckpointTriggerStatus::Failed { cause: cause.into() }),
        }
    }

    fn trigger(&mut self, kind: Kind) -> Pending {
        // Savepoints are full and self-contained whatever the setting (Flink's semantics);
        // a rescale's stop is a checkpoint of the job and may be incremental. A FULL checkpoint
        // writes keyed state whole but to the shared area, where later ones build on it.
        let is_savepoint = matches!(&kind, Kind::Savepoint(request) if !request.as_checkpoint);
        let incremental = self.settings.incremental && !is_savepoint;
        let full = matches!(kind, Kind::Checkpoint { full: true, .. });
        let barrier = CheckpointBarrier { id: self.next_id, timestamp: now_ms(), incremental, full };
        self.next_id += 1;
        let (dir, stop) = match &kind {
            Kind::Checkpoint { .. } => (self.storage.child(&checkpoint_dir(barrier.id)), false),
            // A rescale's stop is the job's newest checkpoint, where the next attempt looks.
            Kind::Savepoint(request) if request.as_checkpoint => {
                (self.storage.child(&checkpoint_dir(barrier.id)), request.stop)
            }
            Kind::Savepoint(request) => {
                let name = savepoint_dir_name(&self.settings.job_id, &request.trigger_id, barrier.id);
                match CheckpointStorage::from_url(&request.target_dir) {
                    Ok(root) => (root.child(&name), request.stop),
                    Err(e) => {
                        tracing::warn!(error = %e, "savepoint target unusable; writing it under the checkpoints");
                        (self.storage.child(&name), request.stop)
                    }
                }
            }
        };
        tracing::debug!(checkpoint = barrier.id, dir = dir.url(), "triggering checkpoint");
        if let Some(announce) = &self.announce {
            announce(barrier.id, dir.url());
        }
        for task in self.tasks.iter().filter(|t| t.is_source) {
            task.control.send(Control::Trigger { barrier, stop });
        }
        self.handle.update(|s| s.checkpoints.in_progress = 1);
        Pending {
            barrier,
            kind,
            dir,
            started: Instant::now(),
            awaiting: (0..self.tasks.len()).collect(),
            uploads: Vec::new(),
        }
    }

    /// Counts a failed checkpoint, backs off the next, and deletes what it wrote: without its
    /// `_metadata` it can never be restored, and its files only take space.
    fn failed(&mut self, pending: Pending, cause: &str) {
        self.consecutive_failures += 1;
        self.retry_at = Some(Instant::now() + retry_delay(self.consecutive_failures));
        let in_job_dir = match &pending.kind {
            Kind::Checkpoint { .. } => true,
            Kind::Savepoint(request) => request.as_checkpoint,
        };
        let (root, relative) = match in_job_dir {
            // The job's directory, so that the emptied chk-<n> directory goes too.
            true => (self.storage.clone(), checkpoint_dir(pending.barrier.id)),
            false => (pending.dir.clone(), String::new()),
        };
        // Its shared files go too, unless (an id reused after a crash) a retained checkpoint
        // references them; without knowing which are referenced, none is deleted.
        let retained = if in_job_dir { self.retained().ok().cloned() } else { None };
        let running: Vec<_> = pending
            .uploads
            .into_iter()
            .filter_map(|u| match u {
                Upload::Running(upload) => Some(upload),
                Upload::Done(_) => None,
            })
            .collect();
        let id = pending.barrier.id;
        self.cleanups.retain(|c| !c.is_finished());
        self.cleanups.push(io_runtime().spawn(async move {
            for upload in running {
                upload.abort();
                let _ = upload.await;
            }
            let deleted = match &retained {
                Some(retained) => delete_checkpoint(&root, retained, id).await,
                None => root.delete_all(&relative).await,
            };
            if let Err(e) = deleted {
                tracing::warn!(checkpoint = id, error = %e, "cannot delete the files of a failed checkpoint");
            }
        }));
        self.stats.failed += 1;
        self.handle.update(|s| {
            s.checkpoints.failed += 1;
            s.checkpoints.in_progress = 0;
        });
        match &pending.kind {
            Kind::Savepoint(request) => {
                self.handle.savepoint_done(&request.trigger_id, SavepointStatus::Failed { cause: cause.to_string() })
            }
            Kind::Checkpoint { trigger: Some(trigger_id), .. } => self
                .handle
                .checkpoint_trigger_done(trigger_id, CheckpointTriggerStatus::Failed { cause: cause.to_string() }),
            Kind::Checkpoint { trigger: None, .. } => {}
        }
    }

    /// Waits for the uploads, writes `_metadata`, notifies the tasks. Returns whether the
    /// sources were told to close (final checkpoint, or stop-with-savepoint).
    fn complete(&mut self, pending: Pending, sources: &HashSet<usize>) -> bool {
        let id = pending.barrier.id;
        let is_final = matches!(pending.kind, Kind::Checkpoint { is_final: true, .. });
        let is_savepoint = matches!(&pending.kind, Kind::Savepoint(request) if !request.as_checkpoint);
        let dir = pending.dir.clone();
        // Loaded before the uploads are awaited: the check below must not block on storage
        // inside the I/O runtime.
        let retained = if is_savepoint { None } else { Some(self.retained().map(|r| r.clone())) };
        let result: Result<CheckpointMetadata, SharedError> = io_runtime().block_on(async {
            let mut states = Vec::with_capacity(pending.uploads.len());
            let mut failure = None;
            for upload in pending.uploads {
                match upload {
                    // After one failed, the others are stopped, so none writes into the
                    // directory once the failed checkpoint's files are deleted.
                    Upload::Running(upload) if failure.is_some() => {
                        upload.abort();
                        let _ = upload.await;
                    }
                    Upload::Running(upload) => match upload.await.expect("upload task panicked") {
                        Ok(state) => states.push(state),
                        Err(e) => failure = Some(e),
                    },
                    Upload::Done(state) => states.push(state),
                }
            }
            if let Some(e) = failure {
                return Err(e.into());
            }
            states.sort_by_key(|s| (s.node, s.subtask));
            let metadata = CheckpointMetadata {
                version: METADATA_VERSION,
                job_id: self.settings.job_id.clone(),
                job_name: self.settings.job_name.clone(),
                checkpoint_id: id,
                timestamp: pending.barrier.timestamp,
                is_final,
                max_parallelism: self.settings.max_parallelism,
                states,
            };
            if let Some(retained) = retained {
                retained?.check(&metadata)?;
            }
            let json = serde_json::to_vec_pretty(&metadata).expect("metadata serializes");
            dir.put(METADATA_FILE, json).await?;
            Ok(metadata)
        });
        let metadata = match result {
            Ok(metadata) => metadata,
            Err(e) => {
                tracing::warn!(checkpoint = id, error = %e, "checkpoint could not be written");
                let failed = Pending { uploads: Vec::new(), ..pending };
                self.failed(failed, &e.to_string());
                return false;
            }
        };
        self.consecutive_failures = 0;
        self.retry_at = None;
        let duration = pending.started.elapsed();
        let size = metadata.total_size();
        let uploaded = metadata.uploaded_size();
        let triggered_ms = pending.barrier.timestamp;
        self.stats.record(CheckpointSample { id, triggered_ms, duration, uploaded, size });
        self.stats.completed += 1;
        self.stats.last_id = Some(id);
        self.stats.last_duration = duration;
        self.stats.last_size = size;
        self.stats.max_size = self.stats.max_size.max(size);
        self.stats.total_duration += duration;
        let stop = match &pending.kind {
            Kind::Savepoint(request) => request.stop,
            Kind::Checkpoint { .. } => false,
        };
        let completed = CompletedCheckpoint {
            id,
            trigger_timestamp: pending.barrier.timestamp,
            duration_ms: duration.as_millis() as u64,
            size,
            external_path: dir.url().to_string(),
            is_savepoint,
        };
        self.handle.update(|s| {
            s.checkpoints.completed += 1;
            s.checkpoints.in_progress = 0;
            if is_savepoint {
                s.last_savepoint = Some(completed.clone());
            } else {
                s.last_checkpoint = Some(completed.clone());
            }
        });
        let location = dir.url().to_string();
        match &pending.kind {
            Kind::Savepoint(request) => {
                self.handle.savepoint_done(&request.trigger_id, SavepointStatus::Completed { location })
            }
            Kind::Checkpoint { trigger: Some(trigger_id), .. } => self.handle.checkpoint_trigger_done(
                trigger_id,
                CheckpointTriggerStatus::Completed { checkpoint_id: id, location },
            ),
            Kind::Checkpoint { trigger: None, .. } => {}
        }
        tracing::info!(
            checkpoint = id,
            duration_ms = duration.as_millis() as u64,
            bytes = size,
            uploaded_bytes = uploaded,
            is_final,
            is_savepoint,
            path = dir.url(),
            "completed checkpoint"
        );
        abort_if_failpoint(id);
        // Non-sources first: by the time a source closes its stream, every completion is queued.
        let order = (0..self.tasks.len()).filter(|t| !sources.contains(t)).chain(sources.iter().copied());
        for task in order {
            self.tasks[task].control.send(Control::Complete(id));
        }
        if is_final || stop {
            for &task in sources {
                self.tasks[task].control.send(Control::Finish);
            }
        }
        if !is_savepoint {
            self.retain(&metadata);
        }
        is_final || stop
    }

    /// Adds a completed checkpoint to the retained ones and deletes all but the newest
    /// `state.checkpoints.num-retained`, with the shared files no retained checkpoint needs.
    fn retain(&mut self, completed: &CheckpointMetadata) {
        let keep = self.settings.retained.max(1);
        let storage = self.storage.clone();
        let retained = match self.retained() {
            Ok(retained) => retained,
            Err(e) => {
                // Without knowing what the retained checkpoints reference, nothing is deleted.
                tracing::warn!(error = %e, "cannot read the retained checkpoints; deleting none");
                return;
            }
        };
        retained.add(completed);
        let dropped = retained.drop_oldest(keep);
        if let Err(e) = io_runtime().block_on(delete_dropped(&storage, retained, &dropped)) {
            tracing::warn!(error = %e, "cannot delete old checkpoints");
        }
    }
}

/// `savepoint-<first 6 of the job id>-<12 hex>`, as Flink names savepoint directories.
fn savepoint_dir_name(job_id: &str, trigger_id: &str, checkpoint_id: u64) -> String {
    let unique = rheo_types::keygroups::hash_key(&(trigger_id, checkpoint_id));
    format!("savepoint-{}-{:012x}", &job_id[..job_id.len().min(6)], unique & 0xffff_ffff_ffff)
}

/// Where one task's snapshot of one checkpoint goes.
#[derive(Clone)]
pub struct UploadTarget {
    /// The checkpoint's (or savepoint's) directory: full states go there.
    pub dir: CheckpointStorage,
    /// The job's directory, whose shared area incremental states go to.
    pub job: CheckpointStorage,
    pub checkpoint_id: u64,
    pub subtask: usize,
    pub parallelism: usize,
}

/// Starts uploading a task's snapshot, one file per stateful operator.
pub fn upload_snapshot(
    target: &UploadTarget,
    operators: &[String],
    snapshot: crate::output::TaskSnapshot,
) -> Vec<tokio::task::JoinHandle<Result<StateHandle, StorageError>>> {
    snapshot
        .states
        .into_iter()
        .map(|(node, state)| {
            let operator = operators.get(node).cloned().unwrap_or_default();
            let target = target.clone();
            io_runtime().spawn(async move {
                let handle = StateHandle {
                    node,
                    operator,
                    subtask: target.subtask,
                    parallelism: target.parallelism,
                    file: String::new(),
                    size: 0,
                    crc32: 0,
                    shared: Vec::new(),
                };
                // A state taken as a view at the barrier is written here, off the task thread,
                // into the upload as it goes.
                let encode_failed = |e: StorageError| match e {
                    StorageError::Write { message, .. } => StorageError::Encode { node, message },
                    e => e,
                };
                match state {
                    StateBytes::Incremental(incremental) => {
                        let file = upload_shared(&target, node, incremental.write).await.map_err(encode_failed)?;
                        // The operator builds on it once the checkpoint completes.
                        let _ = incremental.written.set(file.clone());
                        let shared = incremental.builds_on.into_iter().chain([file]).collect();
                        Ok(StateHandle { shared, ..handle })
                    }
                    StateBytes::Ready(bytes) => {
                        let file = format!("{node}-{}.state", target.subtask);
                        let (size, crc32) = (bytes.len() as u64, crc32fast::hash(&bytes));
                        target.dir.put(&file, bytes).await?;
                        Ok(StateHandle { file, size, crc32, ..handle })
                    }
                    StateBytes::Deferred(write) => {
                        let file = format!("{node}-{}.state", target.subtask);
                        let streamed = target.dir.put_streamed(&file, PART_SIZE, write).await.map_err(encode_failed)?;
                        let (size, crc32) = (streamed.written.size, streamed.written.crc32);
                        Ok(StateHandle { file, size, crc32, ..handle })
                    }
                }
            })
        })
        .collect()
}

/// Writes a new file of the job's shared area. Its name is new every time (a nonce), so a
/// late write of an earlier attempt that reused the checkpoint id never replaces it.
async fn upload_shared(target: &UploadTarget, node: usize, write: WriteObject) -> Result<SharedFile, StorageError> {
    use std::hash::BuildHasher;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nonce = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), count, now_ms()));
    let path = format!("{}/{node}-{}-{nonce:016x}.state", shared_dir(target.checkpoint_id), target.subtask);
    let written = target.job.put_streamed(&path, PART_SIZE, write).await?.written;
    Ok(SharedFile { path, size: written.size, crc32: written.crc32, checkpoint_id: target.checkpoint_id })
}

/// A test hook: with `RHEO_FAILPOINT_ABORT_AFTER_CHECKPOINT=N`, the process aborts once
/// checkpoint N (or a later one) is complete and before any task hears of it: the crash between
/// a checkpoint and the commit of its two-phase-commit sinks, which a restore must repair.
fn abort_if_failpoint(checkpoint_id: u64) {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        std::env::var("RHEO_FAILPOINT_ABORT_AFTER_CHECKPOINT").ok().and_then(|v| v.trim().parse().ok())
    });
    if at.is_some_and(|at| checkpoint_id >= at) {
        tracing::error!(
            checkpoint = checkpoint_id,
            "failpoint: aborting after the checkpoint completed, before commits"
        );
        std::process::abort();
    }
}

#[cfg(test)]
mod tests;
