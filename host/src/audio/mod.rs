//! The audio store: uploads kept by content hash, and audio recognised by
//! its content.
//!
//! A job is acknowledged only once its audio is durably stored, so an upload
//! is streamed to disk (never held whole in memory), hashed on the way, and
//! renamed into place under its sha256 once it is complete, fsynced, within
//! the size limit, and recognised as audio. Naming by content makes a
//! repeated upload cost no space and lets the cache key on the audio hash.
//! The store is a trait because where audio lives depends on the deployment
//! (a local directory on one instance; the database, a shared directory or a
//! bucket in a fleet): [`LocalAudioStore`] keeps files in a directory (the
//! data dir's, or one a fleet shares), [`InlineAudioStore`] keeps small
//! uploads in the SQLite database beside it (one instance's default),
//! [`DatabaseAudioStore`] keeps the bytes in PostgreSQL (a fleet's default),
//! [`BucketAudioStore`] in an S3-compatible bucket.

mod bucket;
mod database;
mod fetch;
mod format;
mod inline;
mod local;
mod upload;

pub use fetch::{is_public, FetchError, UrlFetcher};
pub use format::{sniff, AudioFormat, ACCEPTED, HEAD_LEN};
pub use bucket::BucketAudioStore;
pub use database::{DatabaseAudioStore, CHUNK_BYTES};
pub use inline::InlineAudioStore;
pub use local::LocalAudioStore;

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;

/// Storing, reading or recognising audio failed.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The upload is longer than the limit.
    #[error("the audio is over the {limit}-byte limit (SCRIBE_MAX_UPLOAD_BYTES)")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The upload has no bytes.
    #[error("the audio file is empty")]
    Empty,
    /// The content is not audio in an accepted format.
    #[error("the file is not audio in an accepted format: {detail}; accepted formats: {}", format::ACCEPTED)]
    NotAudio {
        /// What the content looks like instead.
        detail: String,
    },
    /// Reading the upload itself failed (the client went away, or its body
    /// was malformed): the client's side, not the store's.
    #[error("reading the upload failed: {0}")]
    Read(std::io::Error),
    /// The storage failed (also: a hash argument that is not a sha256, as
    /// `InvalidInput`; a missing file on `get`, as `NotFound`).
    #[error("audio storage: {0}")]
    Io(#[from] std::io::Error),
    /// The database holding the audio failed.
    #[error("audio storage (database): {0}")]
    Database(#[from] sqlx::Error),
    /// The store's database (SQLite, holding small audio) failed.
    #[error("audio storage (database): {0}")]
    Store(#[from] crate::store::StoreError),
}

impl AudioError {
    /// Whether this is a `get` of audio that is not (or no longer) stored.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AudioError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What [`AudioStore::put`] stored.
#[derive(Debug, Clone)]
pub struct StoredAudio {
    /// The content's sha256, 64 lowercase hex digits: its name in the store.
    pub sha256: String,
    /// The format recognised from the first bytes.
    pub format: AudioFormat,
    /// The length in bytes.
    pub bytes: u64,
    /// The write that stores it, when the store answered before that
    /// write committed ([`AudioStore::put_deferred`] only): the audio is
    /// durable once it commits.
    pub pending: Option<crate::store::PendingWrite>,
}

/// Where uploaded audio lives, by content hash.
#[async_trait::async_trait]
pub trait AudioStore: Send + Sync {
    /// Streams `stream` into the store while hashing and counting it, and
    /// returns what was stored. Past `limit` bytes the rest is read and
    /// discarded up to `2 * limit` (so the client gets the answer rather
    /// than a reset) and the result is [`AudioError::TooLarge`]; then an
    /// empty upload is [`AudioError::Empty`] and one whose first bytes are
    /// not accepted audio is [`AudioError::NotAudio`]. Nothing is kept on
    /// any error. Audio already stored under the same hash is kept as it is.
    async fn put(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError>;

    /// [`AudioStore::put`], except that it may answer before the audio is
    /// durable: then [`StoredAudio::pending`] names the write that makes it
    /// so. A job inserted with that write ([`crate::store::NewJob`]'s
    /// `audio_write`) commits only if the write does, so a submit waits
    /// for one commit instead of two in a row. Stores whose `put` is
    /// durable when it answers keep this default.
    async fn put_deferred(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        self.put(stream, limit).await
    }

    /// The whole audio stored under `sha256` (the provider call needs it
    /// whole); a missing file is an `Io` error for which
    /// [`AudioError::is_not_found`] holds.
    async fn get(&self, sha256: &str) -> Result<Vec<u8>, AudioError>;

    /// Removes the audio stored under `sha256`; removing audio that is not
    /// there succeeds.
    async fn delete(&self, sha256: &str) -> Result<(), AudioError>;

    /// Whether audio is stored under `sha256`.
    async fn exists(&self, sha256: &str) -> Result<bool, AudioError>;

    /// The hashes of audio last stored (by any `put`) before `before`.
    async fn stored_before(&self, before: SystemTime) -> Result<Vec<String>, AudioError>;

    /// Removes the audio under `sha256` if no `put` stored it since
    /// `before`, atomically with respect to `put` (so audio a submit has
    /// just stored again is never removed under it); whether it was removed.
    async fn delete_if_stored_before(&self, sha256: &str, before: SystemTime) -> Result<bool, AudioError>;

    /// Removes what uploads interrupted by a crash left behind, if started
    /// before `before`; how many.
    async fn remove_abandoned_uploads(&self, before: SystemTime) -> Result<u64, AudioError>;
}

/// Refuses anything but 64 lowercase hex digits, before a hash is used as a
/// name (so no argument can reach outside the store).
fn check_sha256(sha256: &str) -> Result<(), AudioError> {
    let ok = sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(AudioError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a sha256 (64 lowercase hex digits): {:?}", sha256.chars().take(80).collect::<String>()),
        )))
    }
}
