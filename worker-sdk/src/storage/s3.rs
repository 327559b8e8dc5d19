//! [`S3Storage`]: outputs in an S3-compatible object store (AWS S3, MinIO, Supabase
//! Storage's S3 endpoint), through the `object_store` crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use secrecy::{ExposeSecret, SecretString};

use super::{check_name, Storage, StorageError, StorageFuture};

/// Connection settings of an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint URL, e.g. `https://<project>.supabase.co/storage/v1/s3` or
    /// `http://127.0.0.1:9000`; `None` means AWS itself.
    pub endpoint: Option<String>,
    /// Region (Supabase and MinIO accept any; AWS needs the bucket's).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key; never logged.
    pub secret_access_key: SecretString,
    /// Upload every object to this bucket instead of the job's own bucket. Leave `None`
    /// for Supabase-style deployments with one bucket per job type.
    pub bucket: Option<String>,
    /// Allow a plain-HTTP endpoint (local MinIO); refused otherwise.
    pub allow_http: bool,
}

/// Uploads with path-style requests (`<endpoint>/<bucket>/<key>`), which every
/// S3-compatible service understands. One client per bucket, built on first use.
pub struct S3Storage {
    config: S3Config,
    stores: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("endpoint", &self.config.endpoint)
            .field("region", &self.config.region)
            .field("bucket", &self.config.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// A store with `config`; checks it by building a client (no request is made).
    pub fn new(config: S3Config) -> Result<Self, StorageError> {
        let storage = Self {
            config,
            stores: Mutex::new(HashMap::new()),
        };
        if let Some(bucket) = storage.config.bucket.clone() {
            storage.store(&bucket)?;
        }
        Ok(storage)
    }

    fn store(&self, bucket: &str) -> Result<Arc<AmazonS3>, StorageError> {
        check_name("bucket", bucket)?;
        // A poisoned lock only means another upload panicked; the map itself is fine.
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        let c = &self.config;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&c.region)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(c.secret_access_key.expose_secret())
            .with_allow_http(c.allow_http)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &c.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = Arc::new(builder.build()?);
        stores.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<String, StorageError> {
        check_name("key", key)?;
        let bucket = self.config.bucket.as_deref().unwrap_or(bucket);
        let store = self.store(bucket)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        let opts = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        store
            .put_opts(&Path::from(key), PutPayload::from_bytes(bytes), opts)
            .await?;
        Ok(key.to_owned())
    }
}

impl Storage for S3Storage {
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        bytes: Bytes,
        content_type: &'a str,
    ) -> StorageFuture<'a> {
        Box::pin(self.upload(bucket, key, bytes, content_type))
    }
}
