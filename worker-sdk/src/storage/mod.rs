//! Where outputs go: the [`Storage`] trait and its two backends, [`LocalStorage`] (a
//! folder) and `S3Storage` (feature `s3`: any S3-compatible service, Supabase Storage
//! included).
//!
//! Keys follow one layout, `<user_id>/<job_id>/<index>.<ext>` ([`output_key`]), and the
//! path a worker reports is that bucket-relative key: the callback service turns it into
//! `(bucket, key)` with the job's bucket.

mod local;
#[cfg(feature = "s3")]
mod s3;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use gpuq_schemas::{JobId, UserId};

pub use local::LocalStorage;
#[cfg(feature = "s3")]
pub use s3::{S3Config, S3Storage};

/// A boxed future, so [`Storage`] can be used as `dyn Storage`.
pub type StorageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, StorageError>> + Send + 'a>>;

/// An object store outputs are uploaded to.
pub trait Storage: Send + Sync + 'static {
    /// Writes `bytes` under `key` in `bucket` with `content_type`, replacing any previous
    /// object (a retried attempt overwrites its own earlier outputs). Returns the path to
    /// report in the callback: the bucket-relative key.
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        bytes: Bytes,
        content_type: &'a str,
    ) -> StorageFuture<'a>;
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bucket or key could escape its place (`..`, absolute, backslash, control
    /// characters) or is empty.
    #[error("invalid storage {what} {value:?}")]
    InvalidKey {
        /// `bucket` or `key`.
        what: &'static str,
        /// The offending value (truncated).
        value: String,
    },
    /// The local filesystem refused.
    #[error("local storage I/O")]
    Io(#[from] std::io::Error),
    /// The object store refused or could not be reached.
    #[cfg(feature = "s3")]
    #[error("object store")]
    ObjectStore(#[from] object_store::Error),
    /// No storage is configured for this worker.
    #[error("no storage configured; call WorkerBuilder::storage")]
    NotConfigured,
}

/// The key of output number `index` of a job: `<user_id>/<job_id>/<index>.<ext>`.
pub fn output_key(user: &UserId, job: &JobId, index: usize, ext: &str) -> String {
    format!("{user}/{job}/{index}.{ext}")
}

/// Refuses names that could leave their directory or confuse a URL.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), StorageError> {
    let bad = value.is_empty()
        || value.starts_with('/')
        || value.contains('\\')
        || value.chars().any(char::is_control)
        || value
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        || (what == "bucket" && value.contains('/'));
    if bad {
        return Err(StorageError::InvalidKey {
            what,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let user: UserId = "6b1f0c3e-2c7a-4d55-9a57-0d5b8e0c1a11".parse().unwrap();
        let job: JobId = "0192f0c4-1111-7abc-8def-000000000001".parse().unwrap();
        assert_eq!(
            output_key(&user, &job, 2, "png"),
            format!("{user}/{job}/2.png")
        );
    }

    #[test]
    fn names_that_escape_are_refused() {
        for bad in ["", "/abs", "a/../b", "a\\b", "a//b", "a/./b", "a\nb", ".."] {
            assert!(check_name("key", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("bucket", "a/b").is_err());
        assert!(check_name("key", "u/j/0.png").is_ok());
        assert!(check_name("bucket", "sdxl_image_fast").is_ok());
    }
}
