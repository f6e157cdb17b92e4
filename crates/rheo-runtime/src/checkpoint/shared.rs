//! The job's retained checkpoints and the shared files they reference (incremental checkpoints).
//!
//! A shared file (`<job>/shared/chk-<n>/...`) is written once and read by every later
//! checkpoint that builds on it, so it may be deleted only when no retained checkpoint
//! references it. Who references what is read from the retained checkpoints' `_metadata` when
//! the coordinator starts and kept up to date as checkpoints complete and are dropped: the
//! count of references is always derived from the metadata on storage, never stored on its own,
//! so a process killed at any moment leaves nothing to repair.

use std::collections::{BTreeMap, BTreeSet};

use crate::checkpoint::discover::checkpoint_ids;
use crate::checkpoint::metadata::{CheckpointMetadata, METADATA_FILE, checkpoint_dir, shared_dir};
use crate::checkpoint::storage::{CheckpointStorage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A checkpoint built on a file that retention may already have deleted: it must not
    /// complete (its operator had not yet heard that a newer checkpoint replaced the one it
    /// built on).
    #[error(
        "checkpoint {checkpoint} needs shared file {path} of checkpoint {written_by}, which no retained \
         checkpoint references any more"
    )]
    Unprotected { checkpoint: u64, path: String, written_by: u64 },
}

/// The retained complete checkpoints of one job, with the shared files each references.
#[derive(Debug, Default, Clone)]
pub struct RetainedCheckpoints {
    by_id: BTreeMap<u64, BTreeSet<String>>,
}

/// What dropping old checkpoints leaves to delete.
#[derive(Debug, Default, PartialEq)]
pub struct Dropped {
    pub checkpoints: Vec<u64>,
    /// Shared files the dropped checkpoints referenced and no retained one does.
    pub files: BTreeSet<String>,
}

impl RetainedCheckpoints {
    /// Reads the `_metadata` of every checkpoint of the job under `job`. A directory without
    /// one is a checkpoint that never completed; one that cannot be parsed cannot be restored
    /// either, and keeps nothing alive.
    pub async fn load(job: &CheckpointStorage) -> Result<Self, StorageError> {
        let mut retained = Self::default();
        for id in checkpoint_ids(job).await? {
            let Some(raw) = job.child(&checkpoint_dir(id)).get_if_exists(METADATA_FILE).await? else { continue };
            match serde_json::from_slice::<CheckpointMetadata>(&raw) {
                Ok(metadata) => retained.add(&metadata),
                Err(e) => tracing::warn!(checkpoint = id, error = %e, "unreadable _metadata: it references nothing"),
            }
        }
        tracing::debug!(checkpoints = ?retained.ids(), files = retained.referenced().count(), "retained checkpoints loaded");
        Ok(retained)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.by_id.keys().copied().collect()
    }

    pub fn contains(&self, checkpoint_id: u64) -> bool {
        self.by_id.contains_key(&checkpoint_id)
    }

    /// Every shared file a retained checkpoint references.
    pub fn referenced(&self) -> impl Iterator<Item = &String> {
        self.by_id.values().flatten()
    }

    pub fn is_referenced(&self, path: &str) -> bool {
        self.by_id.values().any(|files| files.contains(path))
    }

    /// Checks that `metadata` only builds on files that are safe: written by it, or referenced
    /// by a retained checkpoint (retention deletes no other).
    pub fn check(&self, metadata: &CheckpointMetadata) -> Result<(), SharedError> {
        let unsafe_file =
            metadata.shared_files().find(|f| f.checkpoint_id != metadata.checkpoint_id && !self.is_referenced(&f.path));
        match unsafe_file {
            None => Ok(()),
            Some(f) => Err(SharedError::Unprotected {
                checkpoint: metadata.checkpoint_id,
                path: f.path.clone(),
                written_by: f.checkpoint_id,
            }),
        }
    }

    /// A checkpoint completed.
    pub fn add(&mut self, metadata: &CheckpointMetadata) {
        let files = metadata.shared_files().map(|f| f.path.clone()).collect();
        self.by_id.insert(metadata.checkpoint_id, files);
    }

    /// Keeps the newest `keep` checkpoints; returns the others and the shared files only they
    /// referenced.
    pub fn drop_oldest(&mut self, keep: usize) -> Dropped {
        let mut dropped = Dropped::default();
        while self.by_id.len() > keep {
            let (id, files) = self.by_id.pop_first().expect("more than `keep` checkpoints");
            dropped.checkpoints.push(id);
            dropped.files.extend(files);
        }
        dropped.files.retain(|path| !self.is_referenced(path));
        dropped
    }
}

/// Deletes checkpoint `id`'s directory and whatever its shared directory holds that no retained
/// checkpoint references: the files only it needed, and files of writers that never completed
/// it (an upload that finished after the checkpoint failed, or a process killed while writing).
pub async fn delete_checkpoint(
    job: &CheckpointStorage,
    retained: &RetainedCheckpoints,
    id: u64,
) -> Result<(), StorageError> {
    job.delete_all(&checkpoint_dir(id)).await?;
    let dir = shared_dir(id);
    let files = job.list_files(&dir).await?;
    let (kept, unreferenced): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|name| retained.is_referenced(&format!("{dir}/{name}")));
    if kept.is_empty() {
        // Removes the emptied directory too (on a local file system).
        return job.delete_all(&dir).await;
    }
    for name in unreferenced {
        job.delete(&format!("{dir}/{name}")).await?;
    }
    Ok(())
}

/// Deletes what [`RetainedCheckpoints::drop_oldest`] dropped, and the directories of
/// checkpoints older than every retained one that never completed (no `_metadata`).
pub async fn delete_dropped(
    job: &CheckpointStorage,
    retained: &RetainedCheckpoints,
    dropped: &Dropped,
) -> Result<(), StorageError> {
    let oldest_kept = retained.ids().first().copied().unwrap_or(u64::MAX);
    let leftovers: Vec<u64> = checkpoint_ids(job)
        .await?
        .into_iter()
        .filter(|&id| id < oldest_kept && !dropped.checkpoints.contains(&id))
        .collect();
    for &id in dropped.checkpoints.iter().chain(&leftovers) {
        delete_checkpoint(job, retained, id).await?;
    }
    for path in &dropped.files {
        job.delete(path).await?;
    }
    if !dropped.checkpoints.is_empty() {
        tracing::debug!(
            checkpoints = ?dropped.checkpoints,
            leftovers = ?leftovers,
            shared_files = dropped.files.len(),
            "deleted checkpoints no longer retained"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{METADATA_VERSION, SharedFile, StateHandle};

    fn metadata(id: u64, files: &[(u64, &str)]) -> CheckpointMetadata {
        let shared = files
            .iter()
            .map(|&(written_by, name)| SharedFile {
                path: format!("{}/{name}", shared_dir(written_by)),
                size: 1,
                crc32: 0,
                checkpoint_id: written_by,
            })
            .collect();
        CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: "job".into(),
            job_name: "job".into(),
            checkpoint_id: id,
            timestamp: 0,
            is_final: false,
            max_parallelism: 128,
            states: vec![StateHandle {
                node: 0,
                operator: "op".into(),
                subtask: 0,
                parallelism: 1,
                file: String::new(),
                size: 0,
                crc32: 0,
                shared,
            }],
        }
    }

    #[test]
    fn dropping_a_checkpoint_releases_only_the_files_no_retained_one_references() {
        let mut retained = RetainedCheckpoints::default();
        retained.add(&metadata(1, &[(1, "full")]));
        retained.add(&metadata(2, &[(1, "full"), (2, "changes")]));
        retained.add(&metadata(3, &[(3, "full")]));
        let dropped = retained.drop_oldest(2);
        assert_eq!(dropped.checkpoints, vec![1]);
        assert!(dropped.files.is_empty(), "checkpoint 2 still needs 1's file");
        let dropped = retained.drop_oldest(1);
        assert_eq!(dropped.checkpoints, vec![2]);
        let expected: BTreeSet<String> =
            ["shared/chk-1/full", "shared/chk-2/changes"].into_iter().map(String::from).collect();
        assert_eq!(dropped.files, expected);
    }

    #[test]
    fn a_checkpoint_may_build_only_on_files_a_retained_checkpoint_protects() {
        let mut retained = RetainedCheckpoints::default();
        retained.add(&metadata(2, &[(1, "full"), (2, "changes")]));
        assert!(retained.check(&metadata(3, &[(1, "full"), (2, "changes"), (3, "changes")])).is_ok());
        assert!(retained.check(&metadata(3, &[(3, "full")])).is_ok());
        let err = retained.check(&metadata(3, &[(1, "full"), (1, "gone"), (3, "changes")])).unwrap_err();
        assert!(err.to_string().contains("shared/chk-1/gone"), "{err}");
    }
}
