//! Where checkpoints and exactly-once output live: any store `object_store` supports, chosen by
//! URL. `file:///abs`, `file://./relative` or a plain path use the local file system; `s3://bucket/prefix`
//! uses S3 with credentials and endpoint from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ALLOW_HTTP`), path-style by default;
//! other schemes (`memory://`, `gs://`, `az://`, ...) go through `object_store::parse_url_opts`.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage URL '{url}': {message}")]
    Url { url: String, message: String },
    #[error("{url}/{path}: {source}")]
    Io { url: String, path: String, source: object_store::Error },
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
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
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
        #[cfg(not(feature = "s3"))]
        if parsed.scheme() == "s3" {
            return Err(fail("this binary was built without S3 support (the `s3` feature of rheo)".into()));
        }
        #[cfg(feature = "s3")]
        if parsed.scheme() == "s3" {
            use object_store::aws::AmazonS3Builder;
            let prefix = Path::from(parsed.path().trim_start_matches('/'));
            let bucket = parsed.host_str().ok_or_else(|| fail("expected s3://bucket/prefix".into()))?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
                builder = builder.with_virtual_hosted_style_request(false);
            }
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| fail(e.to_string()))?;
            return Ok(Self { store: Arc::new(store), root: prefix, url: trimmed.to_string(), local_dir: None });
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

    pub async fn delete(&self, relative: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io_error(relative, e)),
        }
    }
}
