//! An exactly-once file sink on any object store (two-phase commit).
//!
//! Records are formatted into an in-memory buffer. On a checkpoint barrier the buffer is
//! pre-committed: it becomes a pending part that travels inside the checkpoint's state. When
//! the checkpoint completes, each pending part is written as `part-<subtask>-<checkpoint>.csv`,
//! so output becomes visible only once the checkpoint that covers it exists. A restore commits
//! the pending parts of the restored checkpoint again; the write is idempotent (same name, same
//! bytes). Keeping pending data in the checkpoint instead of in-progress objects means no
//! rename is needed, which object stores do not have.
//!
//! Without checkpointing, the sink writes its part at the end of input (`part-<subtask>-final.csv`).
//!
//! The sink fences its own output. The location records the job that owns it (`_rheo_owner`,
//! written before the job starts, which also proves the store writable); another job writing
//! there fails unless `fs.overwrite-files` lets it replace that job's parts. A job that starts
//! from a checkpoint or savepoint of the owner continues the owner's output and takes the
//! location over (the Kubernetes operator deploys every upgrade, resume and rollback as a new
//! job id from such a snapshot), and so does one that starts from the same snapshot as the
//! owner did (a second attempt at the same upgrade). And a sink that
//! starts from checkpoint `N` first deletes the parts committed after `N` (all of them when it
//! starts from nothing): they came from a run whose later checkpoints are lost or were
//! discarded, and the rerun commits that output again, cut at other checkpoints. So the
//! committed output always equals one failure-free run, whatever parallelism or checkpoint
//! interval each run used.

use std::sync::Arc;

use crate::api::DataStream;
use crate::api::stream::DataSink;
use rheo_config::{Configuration, options};
use rheo_runtime::checkpoint::{CheckpointStorage, StorageError, io_runtime};
use rheo_runtime::graph::{Data, OperatorContext, OutputClaim};
use rheo_runtime::output::Timestamp;
use rheo_runtime::sink::{SinkError, SinkFunction};
use rheo_runtime::state::restore::encode;

/// Output waiting for its checkpoint to complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingPart {
    checkpoint_id: u64,
    /// The subtask that wrote it (kept when restored at another parallelism).
    subtask: usize,
    data: Vec<u8>,
}

impl PendingPart {
    fn file_name(&self) -> String {
        format!("part-{}-{}.csv", self.subtask, self.checkpoint_id)
    }
}

/// The file naming the job that owns an output location.
pub const OWNER_FILE: &str = "_rheo_owner";

/// What `_rheo_owner` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Owner {
    job_id: String,
    /// The job whose snapshot the owner started from: the output's lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restored_from: Option<String>,
}

impl Owner {
    /// Whether `claim` continues this owner's output: the same job, or one that starts from a
    /// snapshot of the owner or from the snapshot the owner started from.
    fn continued_by(&self, claim: &OutputClaim<'_>) -> bool {
        self.job_id == claim.job_id
            || claim
                .restored_from
                .is_some_and(|from| from == self.job_id || Some(from) == self.restored_from.as_deref())
    }
}

/// The checkpoint a committed part belongs to: `Some(None)` for a final part (written without
/// checkpointing), `None` for a file that is no part.
fn part_checkpoint(name: &str) -> Option<Option<u64>> {
    let (_subtask, id) = name.strip_prefix("part-")?.strip_suffix(".csv")?.rsplit_once('-')?;
    if id == "final" { Some(None) } else { id.parse().ok().map(Some) }
}

/// Whether a part belongs to the output a run starting after checkpoint `after` (`None`: from
/// nothing) writes again.
fn written_again(part: &str, after: Option<u64>) -> bool {
    match (part_checkpoint(part), after) {
        (None, _) => false,
        (Some(Some(id)), Some(after)) => id > after,
        (Some(_), _) => true,
    }
}

/// Deletes the parts committed after checkpoint `after` (every part when `None`), and what
/// killed runs left of their unfinished writes: a whole or partial copy of output that a
/// reader of the directory would count.
async fn roll_back(storage: &CheckpointStorage, after: Option<u64>) -> Result<usize, StorageError> {
    let mut deleted = 0;
    for (part, file) in storage.unfinished_writes("")? {
        if written_again(&part, after) {
            storage.delete_unfinished_write(&file)?;
            deleted += 1;
        }
    }
    for name in storage.list_files("").await? {
        if written_again(&name, after) {
            storage.delete(&name).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Claims `storage` for the claiming job before it starts; see the module docs.
async fn claim(storage: &CheckpointStorage, claim: &OutputClaim<'_>, overwrite: bool) -> Result<(), String> {
    let url = storage.url();
    let unreadable = |e: StorageError| format!("cannot read output {url}: {e}");
    let owner = match storage.get_if_exists(OWNER_FILE).await.map_err(unreadable)? {
        Some(bytes) => Some(
            serde_json::from_slice::<Owner>(&bytes)
                .unwrap_or_else(|_| Owner { job_id: "(unreadable _rheo_owner)".to_string(), restored_from: None }),
        ),
        None => {
            let files = storage.list_files("").await.map_err(unreadable)?;
            files
                .iter()
                .any(|f| part_checkpoint(f).is_some())
                .then(|| Owner { job_id: "(unknown: no _rheo_owner)".to_string(), restored_from: None })
        }
    };
    let job_id = claim.job_id;
    if let Some(other) = owner.filter(|o| !o.continued_by(claim)) {
        let other = other.job_id;
        if !overwrite {
            return Err(format!(
                "output {url} holds the part files of job {other}, not of this job ({job_id}) nor of the job it \
                 restores; jobs never mix their output. Write somewhere else, or replace that output with -D \
                 fs.overwrite-files=true"
            ));
        }
        let deleted = roll_back(storage, None).await.map_err(|e| format!("cannot replace output {url}: {e}"))?;
        tracing::warn!(output = url, previous_owner = %other, deleted, "replacing another job's output (fs.overwrite-files)");
    }
    let owner = Owner { job_id: job_id.to_string(), restored_from: claim.restored_from.map(str::to_string) };
    let owner = serde_json::to_vec(&owner).expect("owner serializes");
    storage.put(OWNER_FILE, owner).await.map_err(|e| format!("cannot write to output {url}: {e}"))
}

/// Appends one CSV record and a line break: fields holding `,`, `"` or a line break are quoted
/// (RFC 4180), so any CSV reader gets the fields back.
pub fn write_csv_record<F: AsRef<[u8]>>(out: &mut String, fields: impl IntoIterator<Item = F>) {
    let mut writer = csv::WriterBuilder::new().buffer_capacity(256).from_writer(Vec::with_capacity(64));
    writer.write_record(fields).expect("writing to memory cannot fail");
    let bytes = writer.into_inner().expect("writing to memory cannot fail");
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// Formats one record as one or more lines appended to the buffer.
pub type LineFormat<T> = Arc<dyn Fn(&T, &mut String) + Send + Sync>;

pub struct ExactlyOnceFileSink<T> {
    storage: CheckpointStorage,
    format: LineFormat<T>,
    subtask: usize,
    buffer: String,
    pending: Vec<PendingPart>,
    checkpointing: bool,
    /// What this run must do to the output before anything else, done on the first call so
    /// that a store error fails the task (and goes through the restart strategy) instead of
    /// panicking while the task is built.
    start: Option<Start>,
}

/// The output's repair at the start of a run.
struct Start {
    /// Roll back the parts committed after this checkpoint (`Some(None)`: every part), which
    /// subtask 0 alone does.
    roll_back_after: Option<Option<u64>>,
    /// Parts pending in the restored checkpoint: it completed, so they are committed.
    restored: Vec<PendingPart>,
}

impl<T> ExactlyOnceFileSink<T> {
    fn new(storage: CheckpointStorage, format: LineFormat<T>, ctx: &OperatorContext) -> Self {
        let checkpointing =
            ctx.info.config.get(&options::CHECKPOINT_INTERVAL).ok().flatten().is_some_and(|d| !d.is_zero());
        let roll_back_after =
            (ctx.info.subtask_index == 0).then(|| ctx.info.restored.as_ref().map(|r| r.checkpoint_id));
        let restored: Vec<Vec<PendingPart>> = ctx.restore_operator();
        Self {
            storage,
            format,
            subtask: ctx.info.subtask_index,
            buffer: String::new(),
            pending: Vec::new(),
            checkpointing,
            start: Some(Start { roll_back_after, restored: restored.into_iter().flatten().collect() }),
        }
    }

    /// Repairs the output once, before this subtask writes or acknowledges anything: no part
    /// of this run can be committed before then, as that needs every subtask's
    /// acknowledgement of a checkpoint. Kept for a retry if it fails.
    fn started(&mut self) -> Result<(), SinkError> {
        let Some(start) = &self.start else { return Ok(()) };
        if let Some(after) = start.roll_back_after {
            let deleted = io_runtime().block_on(roll_back(&self.storage, after)).map_err(|e| {
                SinkError::Other(format!("cannot roll back the output {}: {e}", self.storage.url()).into())
            })?;
            if deleted > 0 {
                tracing::info!(
                    output = self.storage.url(),
                    deleted,
                    after_checkpoint = ?after,
                    "rolled back parts committed after the checkpoint this run starts from"
                );
            }
        }
        if !start.restored.is_empty() {
            let repair = |e: StorageError| SinkError::Other(format!("cannot repair the output: {e}").into());
            // Found before the writes below, so that only writes of killed runs are deleted.
            let unfinished = self.storage.unfinished_writes("").map_err(repair)?;
            for part in &start.restored {
                let name = part.file_name();
                self.write(&name, part.data.clone())?;
                // This subtask alone writes the part (restored state is split between the
                // subtasks), so the part's other unfinished writes are of killed runs.
                for (_, file) in unfinished.iter().filter(|(object, _)| *object == name) {
                    self.storage.delete_unfinished_write(file).map_err(repair)?;
                }
            }
        }
        self.start = None;
        Ok(())
    }

    fn write(&self, name: &str, data: Vec<u8>) -> Result<(), SinkError> {
        io_runtime()
            .block_on(self.storage.put(name, data))
            .map_err(|e| SinkError::Other(format!("cannot commit a part file: {e}").into()))
    }
}

impl<T: Send + 'static> SinkFunction<T> for ExactlyOnceFileSink<T> {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) -> Result<(), SinkError> {
        if self.start.is_some() {
            self.started()?;
        }
        (self.format)(&value, &mut self.buffer);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.started()?;
        if !self.checkpointing && !self.buffer.is_empty() {
            let data = std::mem::take(&mut self.buffer).into_bytes();
            self.write(&format!("part-{}-final.csv", self.subtask), data)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, SinkError> {
        self.started()?;
        if !self.buffer.is_empty() {
            let data = std::mem::take(&mut self.buffer).into_bytes();
            self.pending.push(PendingPart { checkpoint_id, subtask: self.subtask, data });
        }
        Ok(Some(encode(&self.pending)))
    }

    /// A part that cannot be written fails the task; the restart commits it again from the
    /// completed checkpoint, which holds it.
    fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), SinkError> {
        self.started()?;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.checkpoint_id <= checkpoint_id);
        self.pending = waiting;
        for part in ready {
            let name = part.file_name();
            self.write(&name, part.data)?;
        }
        Ok(())
    }
}

impl<T: Data> DataStream<T> {
    /// Writes the stream exactly once into part files under `url` (any object store URL),
    /// each record formatted by `format` (which appends its lines, with `\n`).
    pub fn sink_to_files(
        &self,
        url: &str,
        format: impl Fn(&T, &mut String) + Send + Sync + 'static,
    ) -> Result<DataSink, StorageError> {
        let storage = CheckpointStorage::from_url(url)?;
        let claimed = storage.clone();
        self.add_output_check(Arc::new(move |who: &OutputClaim<'_>, config: &Configuration| {
            let overwrite = config.get(&options::OVERWRITE_FILES).map_err(|e| e.to_string())?;
            io_runtime().block_on(claim(&claimed, who, overwrite))
        }));
        let format: LineFormat<T> = Arc::new(format);
        Ok(self.add_sink("Exactly-once File Sink", move |ctx| {
            ExactlyOnceFileSink::new(storage.clone(), format.clone(), ctx)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_quote_commas_and_quotes() {
        let mut out = String::new();
        write_csv_record(&mut out, ["", "a,b", "say \"hi\"", "7"]);
        assert_eq!(out, r#","a,b","say ""hi""",7"#.to_string() + "\n");
    }

    #[test]
    fn part_names_give_their_checkpoint() {
        assert_eq!(part_checkpoint("part-3-17.csv"), Some(Some(17)));
        assert_eq!(part_checkpoint("part-0-final.csv"), Some(None));
        assert_eq!(part_checkpoint("_rheo_owner"), None);
    }

    #[test]
    fn a_restart_deletes_the_unfinished_writes_of_a_killed_run() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::from_url(dir.path().to_str().unwrap()).unwrap();
        io_runtime().block_on(async {
            for name in ["part-0-1.csv", "part-1-3.csv"] {
                storage.put(name, b"x\n".to_vec()).await.unwrap();
            }
            for killed in ["part-0-2.csv#1", "part-1-3.csv#1", "notes#1"] {
                std::fs::write(dir.path().join(killed), b"x\n").unwrap();
            }
            assert_eq!(roll_back(&storage, Some(2)).await.unwrap(), 2, "the part after 2 and its copy");
            let mut left: Vec<String> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            left.sort();
            assert_eq!(
                left,
                ["notes#1", "part-0-1.csv", "part-0-2.csv#1"],
                "the unfinished write of part 2 is its restart's"
            );
        });
    }

    #[test]
    fn a_location_of_another_job_is_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::from_url(dir.path().to_str().unwrap()).unwrap();
        let fresh = |job_id| OutputClaim { job_id, restored_from: None };
        io_runtime().block_on(async {
            claim(&storage, &fresh("a"), false).await.unwrap();
            storage.put("part-0-1.csv", b"x\n".to_vec()).await.unwrap();
            claim(&storage, &fresh("a"), false).await.expect("its own output");
            let error = claim(&storage, &fresh("b"), false).await.unwrap_err();
            assert!(error.contains("job a") && error.contains("fs.overwrite-files"), "{error}");
            claim(&storage, &fresh("b"), true).await.unwrap();
            assert_eq!(storage.list_files("").await.unwrap(), vec![OWNER_FILE.to_string()]);
        });
    }

    #[test]
    fn a_job_restoring_the_owner_or_the_owner_s_own_start_takes_the_output_over() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::from_url(dir.path().to_str().unwrap()).unwrap();
        let restoring = |job_id, from| OutputClaim { job_id, restored_from: Some(from) };
        io_runtime().block_on(async {
            claim(&storage, &OutputClaim { job_id: "a", restored_from: None }, false).await.unwrap();
            storage.put("part-0-1.csv", b"x\n".to_vec()).await.unwrap();
            // An upgrade: b starts from a savepoint of a.
            claim(&storage, &restoring("b", "a"), false).await.expect("b continues a's output");
            // b failed before it checkpointed; c starts again from the same savepoint of a.
            claim(&storage, &restoring("c", "a"), false).await.expect("c is another attempt of b");
            // d starts from a snapshot of some other job: not this output's lineage.
            let error = claim(&storage, &restoring("d", "x"), false).await.unwrap_err();
            assert!(error.contains("job c"), "{error}");
            assert_eq!(storage.list_files("").await.unwrap().len(), 2, "nothing deleted: {error}");
        });
    }
}
