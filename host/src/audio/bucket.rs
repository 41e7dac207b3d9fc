//! Audio in an S3-compatible bucket (the `object_store` crate), for a fleet
//! whose operator would rather keep audio out of the database.
//!
//! An upload streams into a multipart upload under `uploads/{uuid}` (parts
//! of 5 MiB, so never whole in memory), hashed on the way; once complete it
//! is copied to `audio/{sha256}` and the upload removed: a reader sees whole
//! audio under a hash or none. Copying over existing content re-stamps it
//! (its last-modified time is what retention reads). Buckets have no
//! conditional delete, so retention's check-then-delete can race a submit
//! that stores the same content again in between; retention only looks at
//! audio no job has needed for `SCRIBE_AUDIO_RETENTION_HOURS`, which makes
//! that a narrow window, but it is one the database and directory stores
//! do not have.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

use super::upload::{read_upload, UploadSink};
use super::{check_sha256, AudioError, AudioStore, StoredAudio};

/// Parts of an upload in flight at once (each up to 5 MiB).
const PARTS_IN_FLIGHT: usize = 2;

/// Audio in a bucket, under a prefix.
#[derive(Debug, Clone)]
pub struct BucketAudioStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl BucketAudioStore {
    /// A store in `store`, under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self { store, prefix: Path::from(prefix) }
    }

    /// The bucket at `url` (`s3://BUCKET[/PREFIX]`), configured by
    /// `options`: `AWS_*` settings as `object_store` names them (e.g.
    /// `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`); unknown names
    /// are refused.
    pub fn from_url(url: &str, options: &[(String, String)]) -> Result<Self, AudioError> {
        let bad = |reason: String| AudioError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, reason));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad(format!("not an s3:// URL: {url}")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (name, value) in options {
            let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().map_err(|e| bad(format!("{name}: {e}")))?;
            builder = builder.with_config(key, value);
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(Self::new(Arc::new(store), prefix))
    }

    fn key(&self, folder: &str, name: &str) -> Path {
        self.prefix.child(folder).child(name)
    }

    fn audio_key(&self, sha256: &str) -> Result<Path, AudioError> {
        check_sha256(sha256)?;
        Ok(self.key("audio", sha256))
    }

    /// The objects in `folder` last modified before `before`.
    async fn listed_before(&self, folder: &str, before: SystemTime) -> Result<Vec<Path>, AudioError> {
        let before: chrono::DateTime<chrono::Utc> = before.into();
        let listed: Vec<_> = self.store.list(Some(&self.prefix.child(folder))).try_collect().await.map_err(io)?;
        Ok(listed.into_iter().filter(|meta| meta.last_modified < before).map(|meta| meta.location).collect())
    }

    async fn delete_quietly(&self, key: &Path) -> Result<(), AudioError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

fn io(error: object_store::Error) -> AudioError {
    AudioError::Io(error.into())
}

/// An upload's multipart upload, parts sent as they fill.
struct PartSink(WriteMultipart);

#[async_trait::async_trait]
impl UploadSink for PartSink {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.0.write(chunk);
        Ok(())
    }
}

#[async_trait::async_trait]
impl AudioStore for BucketAudioStore {
    async fn put(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        let upload_key = self.key("uploads", &uuid::Uuid::now_v7().to_string());
        let upload = self.store.put_multipart(&upload_key).await.map_err(io)?;
        let mut sink = PartSink(WriteMultipart::new(upload));
        let stored = match read_upload(stream, limit, &mut sink).await {
            Ok(stored) => stored,
            Err(e) => {
                if let Err(abort) = sink.0.abort().await {
                    tracing::warn!("an abandoned upload stays in the bucket until retention removes it: {abort}");
                }
                return Err(e);
            }
        };
        sink.0.finish().await.map_err(io)?;
        let placed = self.store.copy(&upload_key, &self.key("audio", &stored.sha256)).await.map_err(io);
        self.delete_quietly(&upload_key).await?;
        placed?;
        Ok(stored)
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, AudioError> {
        let key = self.audio_key(sha256)?;
        let got = self.store.get(&key).await.map_err(io)?;
        Ok(got.bytes().await.map_err(io)?.to_vec())
    }

    async fn delete(&self, sha256: &str) -> Result<(), AudioError> {
        let key = self.audio_key(sha256)?;
        self.delete_quietly(&key).await
    }

    async fn exists(&self, sha256: &str) -> Result<bool, AudioError> {
        let key = self.audio_key(sha256)?;
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    async fn stored_before(&self, before: SystemTime) -> Result<Vec<String>, AudioError> {
        let keys = self.listed_before("audio", before).await?;
        Ok(keys.iter().filter_map(|k| k.filename().map(str::to_string)).filter(|name| check_sha256(name).is_ok()).collect())
    }

    async fn delete_if_stored_before(&self, sha256: &str, before: SystemTime) -> Result<bool, AudioError> {
        let key = self.audio_key(sha256)?;
        let stamped = match self.store.head(&key).await {
            Ok(meta) => meta.last_modified,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        if stamped >= chrono::DateTime::<chrono::Utc>::from(before) {
            return Ok(false);
        }
        self.delete_quietly(&key).await?;
        Ok(true)
    }

    async fn remove_abandoned_uploads(&self, before: SystemTime) -> Result<u64, AudioError> {
        let mut removed = 0;
        for key in self.listed_before("uploads", before).await? {
            self.delete_quietly(&key).await?;
            removed += 1;
        }
        Ok(removed)
    }
}
