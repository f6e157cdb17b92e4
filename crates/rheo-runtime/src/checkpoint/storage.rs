//! Where checkpoints and exactly-once output live: any store `object_store` supports, chosen by
//! URL. `file:///abs`, `file://./relative` or a plain path use the local file system; `s3://bucket/prefix`
//! (with the `s3` feature) uses S3 with Flink's `s3.endpoint`, `s3.access-key`, `s3.secret-key`
//! and `s3.path-style-access` where the process configuration sets them, and otherwise the
//! standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`), path-style by default; other schemes (`memory://`, `gs://`,
//! `az://`, ...) go through `object_store::parse_url_opts`.

use std::io::{Read, Write};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
#[cfg(feature = "s3")]
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use rheo_config::{ConfigError, Configuration, options};
use tokio::io::AsyncWriteExt;

/// Flink's `s3.*` options of this process. Like Flink's `FileSystem.initialize`, they are set
/// once per process from its configuration (see [`initialize_file_systems`]), so that every
/// place that opens a storage URL (the job driver, TaskManager uploads, file sinks, savepoint
/// targets) reaches the store the same way.
#[derive(Clone, PartialEq)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub path_style_access: Option<bool>,
    /// How often and how long a failed request is retried (`s3.retry.*`).
    pub max_retries: usize,
    pub retry_timeout: std::time::Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            access_key: None,
            secret_key: None,
            path_style_access: None,
            max_retries: options::S3_RETRY_MAX_RETRIES.default,
            retry_timeout: options::S3_RETRY_TIMEOUT.default,
        }
    }
}

impl std::fmt::Debug for S3Options {
    /// Credentials are never shown, so a logged `S3Options` leaks nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| rheo_config::MASK);
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("access_key", &masked(&self.access_key))
            .field("secret_key", &masked(&self.secret_key))
            .field("path_style_access", &self.path_style_access)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}

impl S3Options {
    pub fn from_config(config: &Configuration) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: config.get(&options::S3_ENDPOINT)?,
            access_key: config.get(&options::S3_ACCESS_KEY)?,
            secret_key: config.get(&options::S3_SECRET_KEY)?,
            path_style_access: config.get(&options::S3_PATH_STYLE_ACCESS)?,
            max_retries: config.get(&options::S3_RETRY_MAX_RETRIES)?,
            retry_timeout: config.get(&options::S3_RETRY_TIMEOUT)?,
        })
    }

    /// An S3 store for `bucket`: these options over the AWS environment.
    #[cfg(feature = "s3")]
    fn builder(&self, bucket: &str, env: impl Fn(&str) -> Option<String>) -> AmazonS3Builder {
        let retry = object_store::RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            ..Default::default()
        };
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry);
        if let Some(endpoint) = &self.endpoint {
            // A plain-HTTP endpoint (a store inside the cluster) is asked for by name.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.trim().to_ascii_lowercase().starts_with("http://"));
        }
        if let Some(key) = &self.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_key {
            builder = builder.with_secret_access_key(secret);
        }
        let path_style = match self.path_style_access {
            Some(path_style) => path_style,
            None => env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none(),
        };
        if path_style || self.path_style_access.is_some() {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        builder
    }
}

static FILE_SYSTEMS: RwLock<Option<S3Options>> = RwLock::new(None);

/// Sets the `s3.*` options every later storage URL of this process uses (Flink's
/// `FileSystem.initialize`): called where a process loads its configuration.
pub fn initialize_file_systems(config: &Configuration) -> Result<(), ConfigError> {
    let s3 = S3Options::from_config(config)?;
    *FILE_SYSTEMS.write().unwrap_or_else(PoisonError::into_inner) = Some(s3);
    Ok(())
}

fn s3_options() -> S3Options {
    FILE_SYSTEMS.read().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage URL '{url}': {message}")]
    Url { url: String, message: String },
    #[error("{url}/{path}: {source}")]
    Io { url: String, path: String, source: object_store::Error },
    /// Writing an operator's state from its view failed (a panic while encoding it).
    #[error("writing the state of operator {node}: {message}")]
    Encode { node: usize, message: String },
    /// What a streamed object is made of could not be produced (see [`CheckpointStorage::put_streamed`]).
    #[error("{url}/{path}: writing it failed: {message}")]
    Write { url: String, path: String, message: String },
    /// A local file a download is copied into could not be written.
    #[error("{url}/{path}: cannot copy it to a local file: {source}")]
    Local { url: String, path: String, source: std::io::Error },
}

/// Writes an object's content into a writer, off the async runtime (a blocking thread).
pub type WriteObject = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// The part size of streamed uploads: an object is written in parts of this many bytes (the
/// last one shorter), and one smaller than a part in a single request. 5 MiB is S3's smallest
/// part and the default of Flink's S3 file systems; it bounds an upload's memory to a few parts.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts of one upload sent at once; with the one being filled and the one queued between
/// the writer and the uploader, an upload holds at most this many plus two parts in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// The size and CRC32 of an object as written or read, computed while it streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksummed {
    pub size: u64,
    pub crc32: u32,
}

/// What [`CheckpointStorage::put_streamed`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    pub written: Checksummed,
    /// The parts it was sent in: 1 for a plain write (an object of at most one part).
    pub parts: usize,
}

/// What [`CheckpointStorage::download`] found.
#[derive(Debug)]
pub enum Download {
    Missing,
    /// The object has this size, not the one expected: it was not downloaded.
    OtherSize(u64),
    /// Downloaded into the file, with its size and CRC32 as read.
    Done(Checksummed, std::fs::File),
}

/// Copies `from` to the end of `to`, with the size and CRC32 of what was copied.
fn copy_checksummed(mut from: std::fs::File, to: std::fs::File) -> std::io::Result<Download> {
    let (mut hasher, mut size) = (crc32fast::Hasher::new(), 0);
    let mut to = std::io::BufWriter::with_capacity(1 << 20, to);
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
        to.write_all(&buffer[..n])?;
    }
    let to = to.into_inner().map_err(std::io::IntoInnerError::into_error)?;
    Ok(Download::Done(Checksummed { size, crc32: hasher.finalize() }, to))
}

/// The `Write` a streamed object's content is written into: full parts go to the uploader
/// through a bounded channel, so a writer faster than the store waits instead of buffering.
struct PartWriter {
    part: Vec<u8>,
    part_size: usize,
    parts: tokio::sync::mpsc::Sender<Bytes>,
    hasher: crc32fast::Hasher,
    size: u64,
}

impl PartWriter {
    fn send_part(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(self.part_size));
        self.hasher.update(&part);
        self.size += part.len() as u64;
        // Refused only when the uploader stopped (the upload failed): the writer stops too.
        self.parts
            .blocking_send(Bytes::from(part))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends the last, partial part.
    fn finish(mut self) -> std::io::Result<Checksummed> {
        if !self.part.is_empty() {
            self.send_part()?;
        }
        Ok(Checksummed { size: self.size, crc32: self.hasher.finalize() })
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.part_size - self.part.len());
        self.part.extend_from_slice(&buf[..n]);
        if self.part.len() == self.part_size {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A directory-like view of an object store under a URL.
#[derive(Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    /// For the local file system: the directory `root` is in, to remove emptied directories
    /// (object stores have none).
    local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStorage({})", self.url)
    }
}

impl CheckpointStorage {
    /// The storage at `url`, with this process's file system options.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::open(url, &s3_options())
    }

    /// Checks, without touching the store, that `url` names one Rheo can write to: a path,
    /// `file://...` or (with S3 support built in) `s3://bucket/prefix`.
    pub fn check_scheme(url: &str) -> Result<(), StorageError> {
        let Some((scheme, _)) = url.split_once("://") else { return Ok(()) };
        let supported: &[&str] = if cfg!(feature = "s3") { &["file", "s3"] } else { &["file"] };
        if supported.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Ok(());
        }
        Err(StorageError::Url {
            url: url.to_string(),
            message: format!(
                "unsupported scheme '{scheme}': expected a path, file://{}",
                if cfg!(feature = "s3") { " or s3://bucket/prefix" } else { "" }
            ),
        })
    }

    /// The storage at `url`, reaching S3 with `s3`.
    pub fn open(url: &str, s3: &S3Options) -> Result<Self, StorageError> {
        let fail = |message: String| StorageError::Url { url: url.to_string(), message };
        let trimmed = url.trim_end_matches('/');
        let local = trimmed.strip_prefix("file://").or_else(|| (!trimmed.contains("://")).then_some(trimmed));
        if let Some(path) = local {
            let path = if path.is_empty() { "." } else { path };
            std::fs::create_dir_all(path).map_err(|e| fail(format!("cannot create directory: {e}")))?;
            let absolute = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(&absolute).map_err(|e| fail(e.to_string()))?;
            let url = format!("file://{}", absolute.display());
            return Ok(Self { store: Arc::new(store), root: Path::default(), url, local_dir: Some(absolute) });
        }
        let parsed = url::Url::parse(trimmed).map_err(|e| fail(e.to_string()))?;
        if parsed.scheme() == "s3" {
            #[cfg(feature = "s3")]
            {
                let prefix = Path::from(parsed.path().trim_start_matches('/'));
                let bucket = parsed.host_str().ok_or_else(|| fail("expected s3://bucket/prefix".into()))?;
                let store =
                    s3.builder(bucket, |name| std::env::var(name).ok()).build().map_err(|e| fail(e.to_string()))?;
                return Ok(Self { store: Arc::new(store), root: prefix, url: trimmed.to_string(), local_dir: None });
            }
            #[cfg(not(feature = "s3"))]
            {
                let _ = s3;
                return Err(fail("S3 support is not built in (the `s3` feature of rheo)".into()));
            }
        }
        let options: Vec<(String, String)> = std::env::vars().collect();
        let (store, path) = object_store::parse_url_opts(&parsed, options).map_err(|e| fail(e.to_string()))?;
        Ok(Self { store: Arc::from(store), root: path, url: trimmed.to_string(), local_dir: None })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same store, one directory down.
    pub fn child(&self, name: &str) -> Self {
        Self {
            store: self.store.clone(),
            root: self.path(name),
            url: format!("{}/{}", self.url, name),
            local_dir: self.local_dir.as_ref().map(|d| d.join(name)),
        }
    }

    /// The directory this one is in: where a checkpoint (`<job>/chk-<n>`) finds the shared files
    /// of its job. A storage opened at a local directory is rooted there, so its parent is
    /// opened anew.
    pub fn parent(&self) -> Result<Self, StorageError> {
        let fail = |message: &str| StorageError::Url { url: self.url.clone(), message: message.to_string() };
        let (parent_url, _) = self.url.rsplit_once('/').ok_or_else(|| fail("has no parent directory"))?;
        let parts: Vec<_> = self.root.parts().collect();
        if let Some((_, above)) = parts.split_last() {
            return Ok(Self {
                store: self.store.clone(),
                root: Path::from_iter(above.iter().cloned()),
                url: parent_url.to_string(),
                local_dir: self.local_dir.as_ref().and_then(|d| d.parent()).map(std::path::Path::to_path_buf),
            });
        }
        match &self.local_dir {
            Some(dir) => {
                let above = dir.parent().ok_or_else(|| fail("has no parent directory"))?;
                Self::open(&above.to_string_lossy(), &s3_options())
            }
            None => Err(fail("is the root of its store: it has no parent directory")),
        }
    }

    fn path(&self, relative: &str) -> Path {
        relative.split('/').filter(|p| !p.is_empty()).fold(self.root.clone(), |p, part| p.join(part))
    }

    fn io_error(&self, path: &str, source: object_store::Error) -> StorageError {
        StorageError::Io { url: self.url.clone(), path: path.to_string(), source }
    }

    /// Writes a whole object; the object appears atomically.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&self.path(relative), PutPayload::from(Bytes::from(bytes)))
            .await
            .map(|_| ())
            .map_err(|e| self.io_error(relative, e))
    }

    /// Writes an object whose content `write` produces, streaming: `write` runs on a blocking
    /// thread, and its output is uploaded as it comes, in parts of `part_size` bytes (a
    /// multipart upload; one smaller than a part is one plain write). Memory stays at a few
    /// parts whatever the object's size. If `write` or the upload fails, the upload is aborted:
    /// no object appears. Returns the object's size and CRC32.
    pub async fn put_streamed(
        &self,
        relative: &str,
        part_size: usize,
        write: WriteObject,
    ) -> Result<Streamed, StorageError> {
        let (parts, mut received) = tokio::sync::mpsc::channel::<Bytes>(1);
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = PartWriter {
                part: Vec::with_capacity(part_size),
                part_size,
                parts,
                hasher: Default::default(),
                size: 0,
            };
            write(&mut out)?;
            out.finish()
        });
        let written = |result: Result<std::io::Result<Checksummed>, tokio::task::JoinError>| match result {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(self.write_error(relative, e.to_string())),
            Err(panic) => Err(self.write_error(relative, panic.to_string())),
        };
        let path = self.path(relative);
        let (first, second) = match received.recv().await {
            Some(first) => (Some(first), received.recv().await),
            None => (None, None),
        };
        let (first, second) = match (first, second) {
            (Some(first), Some(second)) => (first, second),
            (first, _) => {
                // At most one part: written whole once the writer is known to have succeeded.
                let written = written(writer.await)?;
                self.store
                    .put(&path, PutPayload::from(first.unwrap_or_default()))
                    .await
                    .map_err(|e| self.io_error(relative, e))?;
                return Ok(Streamed { written, parts: 1 });
            }
        };
        let upload = match self.store.put_multipart(&path).await {
            Ok(upload) => upload,
            Err(e) => {
                drop(received);
                let _ = writer.await;
                return Err(self.io_error(relative, e));
            }
        };
        let mut upload = WriteMultipart::new_with_chunk_size(upload, part_size);
        upload.put(first);
        upload.put(second);
        let mut parts = 2;
        let uploaded: Result<(), object_store::Error> = async {
            loop {
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                match received.recv().await {
                    Some(part) => {
                        upload.put(part);
                        parts += 1;
                    }
                    None => return Ok(()),
                }
            }
        }
        .await;
        // A writer still writing (the upload failed) stops at its next part.
        drop(received);
        let written = written(writer.await);
        let failure = match (uploaded, written) {
            (Ok(()), Ok(written)) => {
                // `finish` aborts the upload itself when completing it fails.
                upload.finish().await.map_err(|e| self.io_error(relative, e))?;
                tracing::debug!(path = relative, bytes = written.size, parts, "streamed upload complete");
                return Ok(Streamed { written, parts });
            }
            (Err(e), _) => self.io_error(relative, e),
            (Ok(()), Err(e)) => e,
        };
        if let Err(e) = upload.abort().await {
            tracing::warn!(path = relative, error = %e, "cannot abort a failed multipart upload");
        }
        Err(failure)
    }

    /// A local copy of `relative` could not be made.
    pub fn local_error(&self, relative: &str, source: std::io::Error) -> StorageError {
        StorageError::Local { url: self.url.clone(), path: relative.to_string(), source }
    }

    fn write_error(&self, relative: &str, message: String) -> StorageError {
        StorageError::Write { url: self.url.clone(), path: relative.to_string(), message }
    }

    /// Copies the object at `relative` into the local file `out` as it downloads, computing its
    /// size and CRC32. An object whose size is not `expected_size` is not downloaded, so a
    /// damaged file is found without reading it and never fills the local disk.
    pub async fn download(
        &self,
        relative: &str,
        expected_size: u64,
        out: std::fs::File,
    ) -> Result<Download, StorageError> {
        let result = match self.store.get(&self.path(relative)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(Download::Missing),
            Err(e) => return Err(self.io_error(relative, e)),
        };
        if result.meta.size != expected_size {
            return Ok(Download::OtherSize(result.meta.size));
        }
        let local_error = |source| self.local_error(relative, source);
        match result.payload {
            // A local file is copied on a blocking thread, in large reads.
            GetResultPayload::File(file, _) => tokio::task::spawn_blocking(move || copy_checksummed(file, out))
                .await
                .map_err(|e| local_error(std::io::Error::other(e.to_string())))?
                .map_err(local_error),
            GetResultPayload::Stream(mut chunks) => {
                let (mut hasher, mut size) = (crc32fast::Hasher::new(), 0);
                let mut out = tokio::fs::File::from_std(out);
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|e| self.io_error(relative, e))?;
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    out.write_all(&chunk).await.map_err(local_error)?;
                }
                out.flush().await.map_err(local_error)?;
                let written = Checksummed { size, crc32: hasher.finalize() };
                Ok(Download::Done(written, out.into_std().await))
            }
        }
    }

    pub async fn get(&self, relative: &str) -> Result<Vec<u8>, StorageError> {
        let result = self.store.get(&self.path(relative)).await.map_err(|e| self.io_error(relative, e))?;
        let bytes = result.bytes().await.map_err(|e| self.io_error(relative, e))?;
        Ok(bytes.to_vec())
    }

    /// `None` when the object does not exist.
    pub async fn get_if_exists(&self, relative: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.get(relative).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StorageError::Io { source: object_store::Error::NotFound { .. }, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of the "directories" directly under `relative`.
    pub async fn list_dirs(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.path(relative);
        let listing = self.store.list_with_delimiter(Some(&prefix)).await.map_err(|e| self.io_error(relative, e))?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    /// Names of the objects directly under `relative`.
    pub async fn list_files(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        let prefix = self.path(relative);
        let listing = self.store.list_with_delimiter(Some(&prefix)).await.map_err(|e| self.io_error(relative, e))?;
        Ok(listing.objects.iter().filter_map(|o| o.location.filename().map(str::to_string)).collect())
    }

    /// Deletes every object under `relative`.
    pub async fn delete_all(&self, relative: &str) -> Result<(), StorageError> {
        let prefix = self.path(relative);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.io_error(relative, e))?;
        for location in objects {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.io_error(relative, e)),
            }
        }
        if let Some(dir) = &self.local_dir {
            let dir = dir.join(relative);
            // Best effort: a directory another writer filled again stays.
            let _ = std::fs::remove_dir_all(&dir);
            if relative.is_empty() {
                let _ = std::fs::create_dir_all(&dir);
            }
        }
        Ok(())
    }

    /// Files that processes killed while writing objects directly under `relative` left
    /// behind, as (object name, file name). Only a local file system has them: its store
    /// writes `<name>#<n>` and renames it when complete (and hides such files from listings),
    /// while object stores write atomically.
    pub fn unfinished_writes(&self, relative: &str) -> Result<Vec<(String, String)>, StorageError> {
        let Some(dir) = &self.local_dir else { return Ok(Vec::new()) };
        let entries = match std::fs::read_dir(dir.join(relative)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.local_io_error(relative, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let file = entry.map_err(|e| self.local_io_error(relative, e))?.file_name().to_string_lossy().to_string();
            if let Some((object, n)) = file.rsplit_once('#')
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
            {
                found.push((object.to_string(), file.clone()));
            }
        }
        Ok(found)
    }

    /// Deletes a file that [`Self::unfinished_writes`] found.
    pub fn delete_unfinished_write(&self, relative: &str) -> Result<(), StorageError> {
        let Some(dir) = &self.local_dir else { return Ok(()) };
        match std::fs::remove_file(dir.join(relative)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.local_io_error(relative, e)),
        }
    }

    fn local_io_error(&self, path: &str, e: std::io::Error) -> StorageError {
        self.io_error(path, object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })
    }

    pub async fn delete(&self, relative: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io_error(relative, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::io_runtime;
    use crate::state::restore::StateBlob;

    /// Bytes in which no two parts are alike, so a part lost, doubled or out of order shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i >> 16) as u8).collect()
    }

    /// Writes `data` in uneven pieces, as an encoder does.
    fn writing(data: Vec<u8>) -> WriteObject {
        Box::new(move |out| data.chunks(4093).try_for_each(|piece| out.write_all(piece)))
    }

    /// Writes `len` bytes, then fails as `fail` says.
    fn failing_after(len: usize, fail: fn() -> std::io::Result<()>) -> WriteObject {
        Box::new(move |out| {
            out.write_all(&pattern(len))?;
            fail()
        })
    }

    /// Uploads `data` streaming in parts of `part_size`, downloads it into a local file the way a
    /// restore does, and checks both ways' size and CRC32 and the bytes. Returns the parts.
    async fn round_trip(storage: &CheckpointStorage, name: &str, data: Vec<u8>, part_size: usize) -> usize {
        let expected = Checksummed { size: data.len() as u64, crc32: crc32fast::hash(&data) };
        let streamed = storage.put_streamed(name, part_size, writing(data.clone())).await.expect("uploaded");
        assert_eq!(streamed.written, expected, "{name}: size and CRC32 as written");
        let local = tempfile::tempfile().expect("temp file");
        let Download::Done(read, local) = storage.download(name, expected.size, local).await.expect("downloaded")
        else {
            panic!("{name}: not found with its size");
        };
        assert_eq!(read, expected, "{name}: size and CRC32 as read");
        let blob = StateBlob::map(&local).expect("mapped");
        assert!(*blob == *data, "{name}: read back byte for byte");
        streamed.parts
    }

    /// Every object and every unfinished local write under `storage`.
    async fn everything(storage: &CheckpointStorage) -> Vec<String> {
        let mut found = storage.list_files("").await.expect("listed");
        found.extend(storage.unfinished_writes("").expect("listed").into_iter().map(|(_, file)| file));
        found
    }

    fn local() -> (tempfile::TempDir, CheckpointStorage) {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = CheckpointStorage::from_url(dir.path().to_str().expect("utf-8 path")).expect("local storage");
        (dir, storage)
    }

    #[test]
    fn a_state_larger_than_a_part_is_uploaded_in_parts_and_reads_back_identical() {
        let (_dir, storage) = local();
        let part = 64 * 1024;
        io_runtime().block_on(async {
            assert_eq!(round_trip(&storage, "large", pattern(5 * part + 1000), part).await, 6);
            assert_eq!(round_trip(&storage, "parts", pattern(3 * part), part).await, 3);
            assert_eq!(round_trip(&storage, "one-part", pattern(part), part).await, 1, "a plain write");
            assert_eq!(round_trip(&storage, "small", pattern(1000), part).await, 1, "a plain write");
            assert_eq!(round_trip(&storage, "empty", Vec::new(), part).await, 1, "a plain write");
            // The real part size, as checkpoints write.
            assert_eq!(round_trip(&storage, "real", pattern(2 * PART_SIZE + 12_345), PART_SIZE).await, 3);
            // The size known from the metadata is checked before anything is downloaded.
            let local = tempfile::tempfile().expect("temp file");
            let found = storage.download("large", 7, local).await.expect("asked");
            assert!(matches!(found, Download::OtherSize(size) if size == 5 * part as u64 + 1000), "{found:?}");
            let local = tempfile::tempfile().expect("temp file");
            assert!(matches!(storage.download("absent", 7, local).await, Ok(Download::Missing)));
        });
    }

    #[test]
    fn a_writer_that_fails_mid_stream_leaves_no_object() {
        let (_dir, storage) = local();
        let part = 64 * 1024;
        let broken = || Err(std::io::Error::other("the view broke"));
        let panics = || -> std::io::Result<()> { panic!("the encoder panicked") };
        io_runtime().block_on(async {
            for (name, write, cause) in [
                ("in-parts", failing_after(3 * part + 17, broken), "the view broke"),
                ("in-one-part", failing_after(100, broken), "the view broke"),
                ("panicking", failing_after(4 * part, panics), "panic"),
            ] {
                let err = storage.put_streamed(name, part, write).await.expect_err("the write fails");
                assert!(matches!(&err, StorageError::Write { .. }), "{name}: {err:?}");
                assert!(err.to_string().contains(cause), "{name}: {err}");
                assert_eq!(everything(&storage).await, Vec::<String>::new(), "{name}: nothing is left");
            }
        });
    }

    /// The root of the test S3 store (`scripts/with-s3.sh`); without it the test fails, unless
    /// `RHEO_ALLOW_SKIP=1` allows skipping it (as `rheo_testkit::skip_or_fail`, which this crate
    /// cannot depend on).
    #[cfg(feature = "s3")]
    fn s3_root() -> Option<String> {
        if let Ok(root) = std::env::var("RHEO_TEST_S3") {
            return Some(root);
        }
        let why = "RHEO_TEST_S3 is not set (run under scripts/with-s3.sh)";
        if std::env::var("RHEO_ALLOW_SKIP").is_ok_and(|v| v == "1") {
            eprintln!("{why}: skipping the S3 test (RHEO_ALLOW_SKIP=1)");
            return None;
        }
        panic!("{why}: cannot run the S3 test; set RHEO_ALLOW_SKIP=1 to skip it instead");
    }

    /// On a real S3 store (SeaweedFS): a large state goes up as a multipart upload of S3-sized
    /// parts and reads back identical; one whose writer fails leaves no object.
    #[cfg(feature = "s3")]
    #[test]
    fn on_s3_a_large_state_streams_in_parts_and_a_failed_one_leaves_nothing() {
        let Some(root) = s3_root() else { return };
        let url = format!("{root}/streamed-{}-{}", std::process::id(), crate::task::now_ms());
        let storage = CheckpointStorage::from_url(&url).expect("S3 storage");
        io_runtime().block_on(async {
            assert_eq!(round_trip(&storage, "large", pattern(2 * PART_SIZE + 12_345), PART_SIZE).await, 3);
            assert_eq!(round_trip(&storage, "small", pattern(1000), PART_SIZE).await, 1);
            let broken = || Err(std::io::Error::other("the view broke"));
            let err = storage
                .put_streamed("failed", PART_SIZE, failing_after(2 * PART_SIZE + 1, broken))
                .await
                .expect_err("the write fails");
            assert!(err.to_string().contains("the view broke"), "{err}");
            let mut files = storage.list_files("").await.expect("listed");
            files.sort();
            assert_eq!(files, ["large", "small"], "the failed upload left no object");
            storage.delete_all("").await.expect("cleaned up");
        });
    }

    fn s3_config(pairs: &[(&str, &str)]) -> S3Options {
        let mut config = Configuration::new();
        for (k, v) in pairs {
            config.set(*k, *v);
        }
        S3Options::from_config(&config).unwrap()
    }

    #[test]
    fn s3_options_never_show_credentials() {
        let s3 = s3_config(&[("s3.access-key", "AKIA0000"), ("s3.secret-key", "hunter2")]);
        let shown = format!("{s3:?}");
        assert!(!shown.contains("AKIA0000") && !shown.contains("hunter2"), "{shown}");
        let mut config = Configuration::new();
        config.set("s3.path-style-access", "sometimes");
        let err = S3Options::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("s3.path-style-access") && err.contains("true or false"), "{err}");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn flink_s3_options_override_the_aws_environment() {
        use object_store::aws::AmazonS3ConfigKey as Key;
        let s3 = s3_config(&[
            ("s3.endpoint", "http://seaweedfs.storage:8333"),
            ("s3.access-key", "AKIA0000"),
            ("s3.secret-key", "hunter2"),
            ("s3.path-style-access", "true"),
        ]);
        let builder = s3.builder("bucket", |_| None);
        let value = |key: Key| builder.get_config_value(&key);
        assert_eq!(value(Key::Endpoint).as_deref(), Some("http://seaweedfs.storage:8333"));
        assert_eq!(value(Key::AccessKeyId).as_deref(), Some("AKIA0000"));
        assert_eq!(value(Key::SecretAccessKey).as_deref(), Some("hunter2"));
        assert_eq!(value(Key::VirtualHostedStyleRequest).as_deref(), Some("false"));
        assert_eq!(value(Key::Client(object_store::ClientConfigKey::AllowHttp)).as_deref(), Some("true"));

        let hosted = s3_config(&[("s3.path-style-access", "false")]).builder("bucket", |_| None);
        assert_eq!(hosted.get_config_value(&Key::VirtualHostedStyleRequest).as_deref(), Some("true"));
    }

    /// Against the real store of `scripts/with-s3.sh`: the configured credentials are the ones
    /// used, over the (valid) ones in the environment.
    #[cfg(feature = "s3")]
    #[test]
    fn configured_credentials_reach_the_store() {
        let (Ok(root), Ok(endpoint), Ok(key), Ok(secret)) = (
            std::env::var("RHEO_TEST_S3"),
            std::env::var("AWS_ENDPOINT"),
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) else {
            eprintln!("RHEO_TEST_S3 not set: skipping (run under scripts/with-s3.sh)");
            return;
        };
        let url = format!("{root}/s3-options-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let good = s3_config(&[("s3.endpoint", &endpoint), ("s3.access-key", &key), ("s3.secret-key", &secret)]);
        let storage = CheckpointStorage::open(&url, &good).unwrap();
        runtime.block_on(storage.put("probe", b"ok".to_vec())).unwrap();
        assert_eq!(runtime.block_on(storage.get("probe")).unwrap(), b"ok");

        let wrong = S3Options { secret_key: Some("not-the-secret".into()), ..good };
        let denied = CheckpointStorage::open(&url, &wrong).unwrap();
        let err = runtime.block_on(denied.get("probe")).unwrap_err().to_string();
        assert!(!err.contains("not-the-secret"), "{err}");
        runtime.block_on(storage.delete_all("")).unwrap();
    }
}
