//! The text file source (Flink's `readTextFile`) and a text file sink.
//!
//! Source: bounded and parallel; subtask `s` of `p` emits the lines whose 0-based line number
//! `n` has `n % p == s`, so the split is deterministic. A trailing `\r` is stripped. A file that
//! cannot be opened or read, or a line that is not UTF-8, fails the job with an error naming the
//! path (and line). [`StreamEnv::read_text_file_parsed`] also parses each line with a job's
//! function; a parse error fails the job naming `path:line`. Each subtask checkpoints its line
//! number and byte offset; a restore at the same parallelism seeks there, one at another
//! parallelism skips exactly the lines some old subtask emitted ([`emitted`](super::emitted)).
//!
//! Sink: [`DataStream::write_as_text`] writes one line per record; with parallelism `p > 1` it
//! writes to a directory with one file per subtask (`1`, `2`, ...), as Flink's `writeAsText`.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::stream::DataSink;
use crate::api::{DataStream, StreamEnv};
use crate::connectors::emitted::{Layer, Position, emitted_layers};
use rheo_runtime::graph::Data;
use rheo_runtime::output::{NO_TIMESTAMP, Timestamp};
use rheo_runtime::sink::{SinkError, SinkFunction};
use rheo_runtime::task::{SourceError, SourceFunction, SourceOutput, SourceStatus, TaskInfo};

/// Turns a line into a record and its event timestamp (or [`NO_TIMESTAMP`]); an error is a
/// message saying what was expected, the source adds the path and line number.
pub type LineParser<T> = Arc<dyn Fn(&str) -> Result<(T, Timestamp), String> + Send + Sync>;

/// Lines per `poll`.
const BATCH: usize = 1024;

/// How much of the file's head, and of its tail, its fingerprint covers.
const FINGERPRINT_BYTES: u64 = 64 * 1024;

/// What a checkpointed read position is valid for: the file as it was when read. A file
/// rewritten under the same path (another size, other first or last bytes) makes the saved byte
/// offset meaningless.
///
/// The identity is the content's, not the modification time's: the same bytes copied anew (a
/// Kubernetes ConfigMap volume mounted in a new pod, `cp` without `-p`, a restore from backup)
/// keep their offsets valid, and a job restarted on them must resume, not fail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub size: u64,
    /// CRC32 of the first 64 KiB.
    pub head_crc32: u32,
    /// CRC32 of the last 64 KiB.
    pub tail_crc32: u32,
}

impl FileIdentity {
    fn of(file: &mut File) -> std::io::Result<Self> {
        use std::io::Read;
        let size = file.metadata()?.len();
        let mut crc_of = |from: u64| -> std::io::Result<u32> {
            file.seek(SeekFrom::Start(from))?;
            let mut bytes = Vec::with_capacity(FINGERPRINT_BYTES as usize);
            Read::take(&mut *file, FINGERPRINT_BYTES).read_to_end(&mut bytes)?;
            Ok(crc32fast::hash(&bytes))
        };
        let head_crc32 = crc_of(0)?;
        let tail_crc32 = crc_of(size.saturating_sub(FINGERPRINT_BYTES))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Self { size, head_crc32, tail_crc32 })
    }

    /// What differs from `earlier`, for the error message.
    fn changes_since(&self, earlier: &FileIdentity) -> Option<String> {
        let mut changes = Vec::new();
        if self.size != earlier.size {
            changes.push(format!("its size was {} bytes, now {}", earlier.size, self.size));
        }
        if self.head_crc32 != earlier.head_crc32 {
            changes.push("its first 64 KiB differ".to_string());
        }
        if self.tail_crc32 != earlier.tail_crc32 {
            changes.push("its last 64 KiB differ".to_string());
        }
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

/// A file source subtask's checkpointed state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FileSourceState {
    position: Position,
    input: FileIdentity,
}

/// One subtask of the text file source.
pub struct TextFileSource<T> {
    path: PathBuf,
    parse: LineParser<T>,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
    /// 0-based number of the next line to read.
    line_number: u64,
    /// Byte offset of the next line to read.
    offset: u64,
    subtask: u64,
    parallelism: u64,
    /// What earlier runs emitted, when restored at another parallelism.
    restored: Vec<Layer>,
    /// Lines per second this subtask reads at most, and since when it counts.
    throttle: Option<Throttle>,
    /// The file as the restored checkpoint saw it.
    restored_input: Option<(u64, FileIdentity)>,
    /// The file as this run opened it.
    input: Option<FileIdentity>,
    /// The file's length when opened, for the backlog.
    length: u64,
    /// This subtask's backlog metric (`pendingRecords`).
    counters: Option<Arc<rheo_runtime::task::TaskCounters>>,
}

/// Paces a source to a rate (lines per second), for demos and failure tests that need a job
/// to run for a while.
struct Throttle {
    per_second: f64,
    since: std::time::Instant,
    lines: u64,
}

impl<T> TextFileSource<T> {
    pub fn new(path: PathBuf, parse: LineParser<T>, subtask_index: usize, parallelism: usize) -> Self {
        Self {
            path,
            parse,
            reader: None,
            line: Vec::new(),
            line_number: 0,
            offset: 0,
            subtask: subtask_index as u64,
            parallelism: parallelism.max(1) as u64,
            restored: Vec::new(),
            throttle: None,
            restored_input: None,
            input: None,
            length: 0,
            counters: None,
        }
    }

    /// Publishes this subtask's backlog (`pendingRecords`): the unread lines of its share,
    /// estimated from the unread bytes and the bytes per line so far. Paced, only the lines due
    /// at the rate and not read yet count (the file stands for input that arrives over time),
    /// never more than are left. A subtask that has read its file to the end has none.
    fn report_backlog(&self) {
        let Some(counters) = &self.counters else { return };
        let pending = if self.reader.is_none() {
            0
        } else {
            let unread = self.length.saturating_sub(self.offset) as f64;
            // Before the first line, count every 64 bytes as a line.
            let bytes_per_line = if self.line_number > 0 { self.offset as f64 / self.line_number as f64 } else { 64.0 };
            let left = (unread / bytes_per_line.max(1.0) / self.parallelism as f64).ceil() as u64;
            match &self.throttle {
                Some(throttle) => {
                    let due = (throttle.since.elapsed().as_secs_f64() * throttle.per_second) as u64;
                    due.saturating_sub(throttle.lines).min(left)
                }
                None => left,
            }
        };
        counters.pending_records.store(pending, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads at most `lines_per_second` lines per second (this subtask's share of a rate).
    pub fn with_rate(mut self, lines_per_second: Option<f64>) -> Self {
        self.throttle = lines_per_second.filter(|r| *r > 0.0).map(|per_second| Throttle {
            per_second,
            since: std::time::Instant::now(),
            lines: 0,
        });
        self
    }
}

impl<T> TextFileSource<T> {
    /// Resumes from checkpointed positions taken at any parallelism.
    fn restore(mut self, positions: &[Position]) -> Self {
        let layers = emitted_layers(positions);
        // Every line below the smallest old position was emitted by some old subtask.
        if let Some(start) = positions.iter().filter(|p| p.stride == positions[0].stride).min_by_key(|p| p.next) {
            (self.line_number, self.offset) = (start.next, start.offset);
        }
        if let [only] = layers.as_slice()
            && only.stride == self.parallelism
            && let Some(own) = positions.iter().find(|p| p.first == self.subtask && p.stride == self.parallelism)
        {
            // Same parallelism: continue exactly where this subtask stopped.
            (self.line_number, self.offset) = (own.next, own.offset);
        } else {
            self.restored = layers;
        }
        self
    }
}

impl<T: Data> SourceFunction<T> for TextFileSource<T> {
    fn open(&mut self, info: &TaskInfo) -> Result<(), SourceError> {
        let mut file = File::open(&self.path).map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let input = FileIdentity::of(&mut file).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if let Some((checkpoint, earlier)) = &self.restored_input
            && let Some(changes) = input.changes_since(earlier)
        {
            return Err(format!(
                "input {} changed since checkpoint {checkpoint} was taken ({changes}): the read position saved \
                 there does not apply to it. Restore the file, or read it from the start with `--fresh-start` \
                 (execution.fresh-start: true)",
                self.path.display()
            )
            .into());
        }
        self.input = Some(input);
        self.length = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.counters = Some(info.counters.clone());
        if self.offset > 0 {
            file.seek(SeekFrom::Start(self.offset))
                .map_err(|e| format!("cannot seek in {}: {e}", self.path.display()))?;
        }
        self.reader = Some(BufReader::with_capacity(256 * 1024, file));
        Ok(())
    }

    fn snapshot_state(&mut self) -> Option<Vec<u8>> {
        self.restored.retain(|layer| self.line_number < layer.end());
        let position = Position {
            first: self.subtask,
            stride: self.parallelism,
            next: self.line_number,
            offset: self.offset,
            earlier: self.restored.clone(),
        };
        let input = self.input.clone().or_else(|| self.restored_input.as_ref().map(|(_, i)| i.clone()))?;
        Some(rheo_runtime::state::restore::encode(&FileSourceState { position, input }))
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        self.report_backlog();
        let Some(reader) = self.reader.as_mut() else { return Ok(SourceStatus::Finished) };
        let mut budget = BATCH as u64;
        if let Some(throttle) = &mut self.throttle {
            let due = (throttle.since.elapsed().as_secs_f64() * throttle.per_second) as u64;
            budget = budget.min(due.saturating_sub(throttle.lines));
            if budget == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
                return Ok(SourceStatus::Idle);
            }
            throttle.lines += budget;
        }
        let mut emitted = 0;
        while emitted < budget {
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 {
                self.reader = None;
                self.report_backlog();
                return Ok(SourceStatus::Finished);
            }
            let number = self.line_number;
            self.line_number += 1;
            self.offset += n as u64;
            if number % self.parallelism != self.subtask || self.restored.iter().any(|l| l.contains(number)) {
                continue;
            }
            let mut bytes = self.line.as_slice();
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let text = std::str::from_utf8(bytes)
                .map_err(|_| format!("{}:{}: the line is not valid UTF-8", self.path.display(), number + 1))?;
            let (value, timestamp) =
                (self.parse)(text).map_err(|message| format!("{}:{}: {message}", self.path.display(), number + 1))?;
            out.collect_with_timestamp(value, timestamp);
            emitted += 1;
        }
        Ok(SourceStatus::More)
    }
}

impl StreamEnv {
    /// The lines of a text file (Flink's `readTextFile`), split over the subtasks by line number.
    pub fn read_text_file(&self, path: impl AsRef<Path>) -> DataStream<String> {
        self.read_text_file_parsed(path, Arc::new(|line: &str| Ok((line.to_string(), NO_TIMESTAMP))))
    }

    /// The lines of a text file turned into records by `parse`; a line it rejects fails the job
    /// with `path:line: message`.
    pub fn read_text_file_parsed<T: Data>(&self, path: impl AsRef<Path>, parse: LineParser<T>) -> DataStream<T> {
        self.read_text_file_paced(path, parse, None)
    }

    /// [`read_text_file_parsed`](Self::read_text_file_parsed) at most `lines_per_second` lines per
    /// second over all subtasks.
    pub fn read_text_file_paced<T: Data>(
        &self,
        path: impl AsRef<Path>,
        parse: LineParser<T>,
        lines_per_second: Option<f64>,
    ) -> DataStream<T> {
        let path = path.as_ref().to_path_buf();
        let name = format!("File {}", path.display());
        self.add_source(&name, move |ctx| {
            let states: Vec<FileSourceState> = ctx.restore_operator_all();
            let positions: Vec<Position> = states.iter().map(|s| s.position.clone()).collect();
            let share = lines_per_second.map(|r| r / ctx.info.parallelism as f64);
            let mut source =
                TextFileSource::new(path.clone(), parse.clone(), ctx.info.subtask_index, ctx.info.parallelism)
                    .restore(&positions)
                    .with_rate(share);
            if let (Some(state), Some(restored)) = (states.first(), &ctx.info.restored) {
                source.restored_input = Some((restored.checkpoint_id, state.input.clone()));
            }
            source
        })
    }
}

/// Writes each record as a line of text.
pub struct TextFileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl TextFileSink {
    /// The file of one subtask: `path` itself at parallelism 1, `path/<subtask + 1>` otherwise.
    pub fn new(path: &Path, subtask_index: usize, parallelism: usize) -> Self {
        let path = if parallelism > 1 { path.join((subtask_index + 1).to_string()) } else { path.to_path_buf() };
        Self { path, out: None }
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, SinkError> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| SinkError::io(format!("cannot create {}", dir.display()), e))?;
            }
            let file = File::create(&self.path)
                .map_err(|e| SinkError::io(format!("cannot create {}", self.path.display()), e))?;
            self.out = Some(BufWriter::new(file));
        }
        Ok(self.out.as_mut().expect("opened above"))
    }

    fn write_error(&self, e: std::io::Error) -> SinkError {
        SinkError::io(format!("cannot write {}", self.path.display()), e)
    }
}

impl<T: Display> SinkFunction<T> for TextFileSink {
    fn invoke(&mut self, value: T, _timestamp: Timestamp) -> Result<(), SinkError> {
        writeln!(self.writer()?, "{value}").map_err(|e| self.write_error(e))
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        match self.out.as_mut().map(|out| out.flush()) {
            Some(Err(e)) => Err(self.write_error(e)),
            _ => Ok(()),
        }
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        // An empty subtask still leaves its (empty) file, so the output is complete.
        self.writer()?;
        SinkFunction::<T>::flush(self)
    }
}

impl<T: Data + Display> DataStream<T> {
    /// Writes every record as a line of text to `path` (a directory of per-subtask files when the
    /// sink's parallelism is above 1).
    pub fn write_as_text(&self, path: impl AsRef<Path>) -> DataSink {
        let path = path.as_ref().to_path_buf();
        self.add_sink(&format!("Text File {}", path.display()), move |info| {
            TextFileSink::new(&path, info.info.subtask_index, info.info.parallelism)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use rheo_runtime::output::Discard;
    use rheo_runtime::task::{JobShared, TaskCounters};

    use super::*;

    /// 5000 lines of 10 bytes (`line-0000` to `line-4999`).
    fn input(dir: &Path) -> PathBuf {
        let path = dir.join("lines.txt");
        let text: String = (0..5_000).map(|i| format!("line-{i:04}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Subtask `subtask` of `parallelism`, opened, and its counters.
    fn opened(
        path: &Path,
        subtask: usize,
        parallelism: usize,
        rate: Option<f64>,
    ) -> (TextFileSource<String>, Arc<TaskCounters>) {
        let parse: LineParser<String> = Arc::new(|line: &str| Ok((line.to_string(), NO_TIMESTAMP)));
        let mut source = TextFileSource::new(path.to_path_buf(), parse, subtask, parallelism).with_rate(rate);
        let counters = Arc::new(TaskCounters::default());
        let info = TaskInfo {
            task_name: "Source: File".into(),
            subtask_index: subtask,
            parallelism,
            max_parallelism: 128,
            config: Arc::new(rheo_config::Configuration::default()),
            job: Arc::new(JobShared::default()),
            restored: None,
            counters: counters.clone(),
        };
        source.open(&info).unwrap();
        (source, counters)
    }

    fn poll(source: &mut TextFileSource<String>) -> SourceStatus {
        source.poll(&mut SourceOutput::new(&mut Discard)).unwrap()
    }

    #[test]
    fn unpaced_pending_records_are_the_unread_lines_of_the_share() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, counters) = opened(&input(dir.path()), 0, 2, None);
        let pending = || counters.pending_records.load(Ordering::Relaxed);
        // Before the first line, 64 bytes count as a line: 50 000 bytes / 64 / 2 subtasks.
        source.report_backlog();
        assert_eq!(pending(), 391);
        // One batch: 1024 lines of this subtask's share (lines 0, 2, .., 2046) read, 2047 in all.
        assert_eq!(poll(&mut source), SourceStatus::More);
        assert_eq!(source.line_number, 2_047);
        // 29 530 unread bytes at 10 bytes a line, half of them this subtask's: the even lines
        // 2048..=4998 are 1476.
        source.report_backlog();
        assert_eq!(pending(), 1_477);
        while poll(&mut source) != SourceStatus::Finished {}
        assert_eq!(pending(), 0);
    }

    #[test]
    fn paced_pending_records_are_the_lines_due_and_not_read_never_more_than_are_left() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, counters) = opened(&input(dir.path()), 0, 1, Some(100.0));
        let pending = || counters.pending_records.load(Ordering::Relaxed);
        let started = |source: &mut TextFileSource<String>, ago: Duration| {
            source.throttle.as_mut().unwrap().since = Instant::now() - ago;
        };
        // 100 lines a second for 3 s: 300 due, none read (fewer than the 782 left).
        started(&mut source, Duration::from_secs(3));
        source.report_backlog();
        let due = |source: &TextFileSource<String>| {
            let t = source.throttle.as_ref().unwrap();
            (t.since.elapsed().as_secs_f64() * t.per_second) as u64
        };
        assert!((300..=due(&source)).contains(&pending()), "{}", pending());
        // A poll reads what is due: then only what fell due since.
        assert_eq!(poll(&mut source), SourceStatus::More);
        let read = source.line_number;
        assert!(read >= 300, "{read}");
        source.report_backlog();
        assert!(pending() <= due(&source) - read, "{} pending", pending());
        // Far behind (10 000 lines due), the backlog is what the file has left: 5000 - read.
        started(&mut source, Duration::from_secs(100));
        source.report_backlog();
        assert_eq!(pending(), 5_000 - read);
        // Read to the end while still behind the rate: nothing is pending any more.
        while poll(&mut source) != SourceStatus::Finished {}
        assert_eq!(pending(), 0);
    }
}
