//! [`LocalStorage`]: outputs as files under a root folder, `<root>/<bucket>/<key>`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{check_name, Storage, StorageError, StorageFuture};

/// Writes each object to `<root>/<bucket>/<key>`, creating folders as needed. A file is
/// written beside its final name and renamed into place, so a reader never sees half an
/// image.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Storage under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn write(&self, bucket: &str, key: &str, bytes: Bytes) -> Result<String, StorageError> {
        check_name("bucket", bucket)?;
        check_name("key", key)?;
        let path = self.root.join(bucket).join(key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp-{:08x}", rand_suffix()));
        tokio::fs::write(&tmp, &bytes).await?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(key.to_owned())
    }
}

/// A per-write suffix so two writers of the same key never share a temporary file.
fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id().rotate_left(16)
}

impl Storage for LocalStorage {
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        bytes: Bytes,
        _content_type: &'a str,
    ) -> StorageFuture<'a> {
        Box::pin(self.write(bucket, key, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_under_root_bucket_key_and_reports_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let path = s
            .put("b", "u/j/0.png", Bytes::from_static(b"png"), "image/png")
            .await
            .unwrap();
        assert_eq!(path, "u/j/0.png");
        let on_disk = std::fs::read(dir.path().join("b/u/j/0.png")).unwrap();
        assert_eq!(on_disk, b"png");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("b/u/j"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[tokio::test]
    async fn refuses_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let err = s
            .put("b", "../x.png", Bytes::new(), "image/png")
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidKey { .. }));
    }
}
