//! The disk tier of the keyed state backend (`state.backend.type: disk`): the state of keys
//! that have not been used for a while, kept in an embedded database on local disk so an
//! operator's state is bounded by its disk, not its memory.
//!
//! The store is [redb](https://www.redb.org): a pure-Rust, ACID B-tree with a stable file
//! format and MVCC reads. A read transaction sees the last commit while the task goes on
//! writing, which is exactly what a checkpoint needs: at the barrier the task commits and opens
//! a read transaction (a pointer to the committed root, whatever the size), and the checkpoint
//! is written from it on another thread. It builds from source in seconds with no C/C++
//! toolchain, which a RocksDB binding would need (minutes of C++ on every cold build).
//!
//! The database is a working copy, not a durable store: each operator instance creates its own
//! in a fresh directory and deletes it when dropped. What survives a failure are checkpoints.
//!
//! One record per key: the key's encoding → its state entries (table index, encoded value) and
//! timers; and a row per timer, ordered by time domain and time, so that the next timer due on
//! disk is one lookup. A key is in memory or here, never both at a commit: it is written when
//! evicted and removed when it is used again or a timer of it is due (read back), in the same
//! write transaction that stays open between commits.

use std::path::{Path, PathBuf};

use crate::output::Timestamp;

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// Encoded key → encoded [`StoredKey`].
const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");

/// A timer of a key on disk: time domain (1 event time, 0 processing time), time (big-endian,
/// sign bit flipped, so byte order is time order), encoded key.
const TIMERS: TableDefinition<&[u8], ()> = TableDefinition::new("timers");

fn timer_row(event_time: bool, at: Timestamp, key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + key.len());
    row.push(u8::from(event_time));
    row.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    row.extend_from_slice(key);
    row
}

fn timer_of_row(row: &[u8]) -> (Timestamp, &[u8]) {
    let at = u64::from_be_bytes(row[1..9].try_into().expect("9-byte timer prefix")) ^ (1 << 63);
    (at as Timestamp, &row[9..])
}

/// Every this many commits is durable: redb keeps the pages freed by non-durable commits until a
/// durable one, so a long run of them would grow the file.
const DURABLE_EVERY: u64 = 32;

/// The page cache of one operator instance's database.
const PAGE_CACHE_BYTES: usize = 16 << 20;

/// A key's state entries: (index of the state's table, encoded value).
pub(crate) type DiskRecord = Vec<(u32, Vec<u8>)>;

/// A key as stored on disk.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredKey {
    /// If the key had changes no completed checkpoint holds yet when it was evicted, the
    /// number of checkpoint barriers the operator had seen by then (see
    /// [`Increments::key_evicted`](super::incremental::Increments::key_evicted)).
    pub changed_at: Option<u64>,
    pub entries: DiskRecord,
    /// (event time?, at)
    pub timers: Vec<(bool, Timestamp)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot create the state directory {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("state database {path}: {message}")]
    Database { path: PathBuf, message: String },
}

/// One operator instance's keys on disk.
pub(crate) struct DiskTier {
    /// Deleted with its contents when the tier is dropped.
    dir: tempfile::TempDir,
    db: Database,
    /// Open between commits: evictions and fault-ins go here, and reads see them.
    txn: Option<WriteTransaction>,
    commits: u64,
    /// Keys, state entries and timers on disk now.
    keys: u64,
    entries: u64,
    timers: u64,
    /// Keys written since the last commit.
    uncommitted: u64,
    /// The earliest timer on disk per domain (processing, event time), if known.
    first_timer: [Option<Option<Timestamp>>; 2],
}

/// The keys on disk as of a checkpoint's barrier, readable from any thread.
pub(crate) struct DiskView {
    table: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    pub entries: u64,
    pub timers: u64,
}

impl DiskTier {
    /// A new, empty tier in a fresh directory under `parent` (the system's temporary
    /// directory when `None`).
    pub fn create(parent: Option<&Path>, name: &str) -> Result<Self, DiskError> {
        let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).map_err(|source| DiskError::Directory { path: parent.clone(), source })?;
        remove_stale_directories(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-{}-", std::process::id(), sanitize(name)))
            .tempdir_in(&parent)
            .map_err(|source| DiskError::Directory { path: parent.clone(), source })?;
        let path = dir.path().join("state.redb");
        let db = Database::builder()
            .set_cache_size(PAGE_CACHE_BYTES)
            .create(&path)
            .map_err(|e| DiskError::Database { path: path.clone(), message: e.to_string() })?;
        let mut tier = Self {
            dir,
            db,
            txn: None,
            commits: 0,
            keys: 0,
            entries: 0,
            timers: 0,
            uncommitted: 0,
            first_timer: [Some(None); 2],
        };
        tier.txn = Some(tier.begin()?);
        Ok(tier)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("state.redb")
    }

    fn error(&self, error: impl std::fmt::Display) -> DiskError {
        DiskError::Database { path: self.path(), message: error.to_string() }
    }

    fn begin(&mut self) -> Result<WriteTransaction, DiskError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        self.commits += 1;
        let durable = self.commits.is_multiple_of(DURABLE_EVERY);
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })
            .map_err(|e| self.error(e))?;
        Ok(txn)
    }

    fn txn(&self) -> &WriteTransaction {
        self.txn.as_ref().expect("a write transaction is open between commits")
    }

    /// How many keys are on disk.
    pub fn key_count(&self) -> u64 {
        self.keys
    }

    /// Takes `key` off the disk, if it is there.
    pub fn take(&mut self, key: &[u8]) -> Result<Option<StoredKey>, DiskError> {
        if self.keys == 0 {
            return Ok(None);
        }
        let record = {
            let mut table = self.txn().open_table(KEYS).map_err(|e| self.error(e))?;
            let removed = table.remove(key).map_err(|e| self.error(e))?;
            match removed {
                None => None,
                Some(bytes) => Some(postcard::from_bytes::<StoredKey>(bytes.value()).map_err(|e| self.error(e))?),
            }
        };
        if let Some(record) = &record {
            if !record.timers.is_empty() {
                let mut timers = self.txn().open_table(TIMERS).map_err(|e| self.error(e))?;
                for &(event_time, at) in &record.timers {
                    timers.remove(timer_row(event_time, at, key).as_slice()).map_err(|e| self.error(e))?;
                }
                drop(timers);
                for &(event_time, at) in &record.timers {
                    // The first one may be gone: looked up again when asked.
                    let first = &mut self.first_timer[usize::from(event_time)];
                    if first.is_some_and(|known| known.is_none_or(|known| known >= at)) {
                        *first = None;
                    }
                }
            }
            self.keys -= 1;
            self.entries -= record.entries.len() as u64;
            self.timers -= record.timers.len() as u64;
        }
        Ok(record)
    }

    /// Writes evicted keys (none of them is on disk already); commits once `commit_after` keys
    /// were written since the last commit (the open transaction's pages stay in memory until it
    /// commits).
    pub fn put_all(&mut self, records: &[(Vec<u8>, StoredKey)], commit_after: u64) -> Result<(), DiskError> {
        {
            let mut table = self.txn().open_table(KEYS).map_err(|e| self.error(e))?;
            let mut timers = self.txn().open_table(TIMERS).map_err(|e| self.error(e))?;
            let mut buffer = Vec::new();
            for (key, record) in records {
                buffer.clear();
                buffer = postcard::to_extend(record, buffer).map_err(|e| self.error(e))?;
                table.insert(key.as_slice(), buffer.as_slice()).map_err(|e| self.error(e))?;
                for &(event_time, at) in &record.timers {
                    timers.insert(timer_row(event_time, at, key).as_slice(), ()).map_err(|e| self.error(e))?;
                }
            }
        }
        for (_, record) in records {
            for &(event_time, at) in &record.timers {
                if let Some(known) = &mut self.first_timer[usize::from(event_time)] {
                    *known = Some(known.map_or(at, |first| first.min(at)));
                }
            }
        }
        self.timers += records.iter().map(|(_, r)| r.timers.len() as u64).sum::<u64>();
        self.keys += records.len() as u64;
        self.entries += records.iter().map(|(_, r)| r.entries.len() as u64).sum::<u64>();
        self.uncommitted += records.len() as u64;
        if self.uncommitted >= commit_after { self.commit() } else { Ok(()) }
    }

    /// The earliest timer of the domain on disk.
    pub fn first_timer(&mut self, event_time: bool) -> Result<Option<Timestamp>, DiskError> {
        if self.timers == 0 {
            return Ok(None);
        }
        if let Some(known) = self.first_timer[usize::from(event_time)] {
            return Ok(known);
        }
        let first = self.look_up_first_timer(event_time)?;
        self.first_timer[usize::from(event_time)] = Some(first);
        Ok(first)
    }

    fn look_up_first_timer(&self, event_time: bool) -> Result<Option<Timestamp>, DiskError> {
        let timers = self.txn().open_table(TIMERS).map_err(|e| self.error(e))?;
        let domain = [u8::from(event_time)];
        let next_domain = [u8::from(event_time) + 1];
        let mut range = timers.range(domain.as_slice()..next_domain.as_slice()).map_err(|e| self.error(e))?;
        match range.next() {
            None => Ok(None),
            Some(row) => Ok(Some(timer_of_row(row.map_err(|e| self.error(e))?.0.value()).0)),
        }
    }

    /// The keys (encoded) of the earliest `limit` timers of the domain on disk due at `time`.
    pub fn keys_with_timers_due(
        &self,
        event_time: bool,
        time: Timestamp,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, DiskError> {
        let timers = self.txn().open_table(TIMERS).map_err(|e| self.error(e))?;
        let start = [u8::from(event_time)];
        let end = match time.checked_add(1) {
            Some(next) => timer_row(event_time, next, &[]),
            None => vec![u8::from(event_time) + 1],
        };
        let mut keys = Vec::new();
        for row in timers.range(start.as_slice()..end.as_slice()).map_err(|e| self.error(e))?.take(limit) {
            keys.push(timer_of_row(row.map_err(|e| self.error(e))?.0.value()).1.to_vec());
        }
        Ok(keys)
    }

    /// Commits what was written since the last commit and opens the next write transaction.
    fn commit(&mut self) -> Result<(), DiskError> {
        let txn = self.txn.take().expect("a write transaction is open between commits");
        txn.commit().map_err(|e| self.error(e))?;
        self.uncommitted = 0;
        self.txn = Some(self.begin()?);
        Ok(())
    }

    /// Commits and returns a view of the keys on disk now, for a checkpoint.
    pub fn view(&mut self) -> Result<DiskView, DiskError> {
        self.commit()?;
        if self.keys == 0 {
            return Ok(DiskView { table: None, entries: 0, timers: 0 });
        }
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = read.open_table(KEYS).map_err(|e| self.error(e))?;
        Ok(DiskView { table: Some(table), entries: self.entries, timers: self.timers })
    }
}

impl DiskView {
    /// Calls `visit` with every key (encoded) and what is stored of it.
    pub fn for_each(&self, mut visit: impl FnMut(&[u8], StoredKey)) -> Result<(), String> {
        let Some(table) = &self.table else { return Ok(()) };
        for item in table.iter().map_err(|e| e.to_string())? {
            let (key, value) = item.map_err(|e| e.to_string())?;
            visit(key.value(), postcard::from_bytes::<StoredKey>(value.value()).map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// What was stored of `key`, if it was on disk at the view.
    pub fn get(&self, key: &[u8]) -> Result<Option<StoredKey>, String> {
        let Some(table) = &self.table else { return Ok(None) };
        match table.get(key).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(value) => postcard::from_bytes::<StoredKey>(value.value()).map(Some).map_err(|e| e.to_string()),
        }
    }
}

/// The directories of the databases: `rheo-state-<pid>-<task>-<random>`.
const DIR_PREFIX: &str = "rheo-state-";

/// Deletes the directories that processes no longer running left behind (a process killed with
/// SIGKILL deletes nothing), as Flink's TaskManagers clean their RocksDB directories at start.
/// Only where a process can be looked up by its id (`/proc`).
fn remove_stale_directories(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(path = %entry.path().display(), "deleting the state directory of a process that is gone");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A task name as part of a directory name.
fn sanitize(name: &str) -> String {
    let mut clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(40).collect();
    if clean.is_empty() {
        clean.push_str("operator");
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_tier_deletes_the_directories_of_processes_that_are_gone_and_its_own_when_dropped() {
        let parent = tempfile::tempdir().unwrap();
        // Above any process id Linux gives out (at most 2^22).
        let gone = parent.path().join(format!("{DIR_PREFIX}999999999-Keyed_Process-abc"));
        let alive = parent.path().join(format!("{DIR_PREFIX}{}-Keyed_Process-def", std::process::id()));
        let other = parent.path().join("not-rheo");
        for dir in [&gone, &alive, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        let tier = DiskTier::create(Some(parent.path()), "Keyed Process (1/2)").unwrap();
        let own = tier.dir.path().to_path_buf();
        assert!(
            own.file_name().unwrap().to_str().unwrap().starts_with(&format!("{DIR_PREFIX}{}-", std::process::id()))
        );
        assert_eq!(gone.exists(), !Path::new("/proc/self").exists(), "a dead process's directory is deleted");
        assert!(alive.exists() && other.exists() && own.exists());
        drop(tier);
        assert!(!own.exists(), "the tier's own directory goes with it");
    }
}
