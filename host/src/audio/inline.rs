//! Small audio in the SQLite database, the rest in files: one instance's
//! default audio store.
//!
//! A file costs a create, a write, an fsync of the file and one of its
//! directory, per upload; on a busy instance that was the larger part of a
//! submit's cost. A row in the database instead rides in the group commit
//! ([`crate::store::group_commit`]) with the other writes waiting, so many
//! uploads share one flush, and it is as durable as the job that names it.
//! Only uploads up to `SCRIBE_AUDIO_INLINE_MAX_BYTES` are held in memory
//! for this; one that grows past it is streamed to a file from there on,
//! as [`LocalAudioStore`] does.
//!
//! Every write of the table goes through the one writer, so a `put`
//! re-stamping a row and retention's guarded delete of it never interleave.
//! A submit does not wait for its row's commit on its own
//! ([`AudioStore::put_deferred`]): the job's insert is made to commit only
//! with it, so both share one commit.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;

use super::upload::{read_upload, UploadSink};
use super::{check_sha256, AudioError, AudioStore, LocalAudioStore, StoredAudio};
use crate::store::group_commit::Writer;
use crate::store::read_pool::ReadPool;
use crate::store::SqliteStore;

/// How many bytes of recently stored rows are kept in memory too, so the
/// worker that runs a job soon after its submit reads its audio from there.
pub const RECENT_AUDIO_BYTES: u64 = 64 * 1024 * 1024;

/// Audio up to a size in the SQLite database, larger audio in files.
pub struct InlineAudioStore {
    reads: ReadPool,
    writer: Writer,
    files: LocalAudioStore,
    inline_max: u64,
    /// Rows stored lately, by hash (a copy: the row is the record).
    recent: moka::sync::Cache<String, Bytes>,
}

/// An upload held in memory.
struct MemorySink(Vec<u8>);

#[async_trait::async_trait]
impl UploadSink for MemorySink {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(chunk);
        Ok(())
    }
}

impl InlineAudioStore {
    /// Keeps uploads up to `inline_max` bytes in `database`, the others in
    /// `files`.
    pub fn new(database: &SqliteStore, files: LocalAudioStore, inline_max: u64) -> Self {
        let recent = moka::sync::Cache::builder()
            .max_capacity(RECENT_AUDIO_BYTES)
            .weigher(|_: &String, audio: &Bytes| u32::try_from(audio.len()).unwrap_or(u32::MAX))
            .build();
        Self { reads: database.read_pool().clone(), writer: database.writer().clone(), files, inline_max, recent }
    }

    /// Keeps a whole upload, read into `held`, as a row. The row's write
    /// is sent, not awaited: it is [`StoredAudio::pending`].
    async fn put_row(&self, held: Vec<Bytes>, size: u64, limit: u64) -> Result<StoredAudio, AudioError> {
        let mut sink = MemorySink(Vec::with_capacity(size as usize));
        let stored = read_upload(stream::iter(held.into_iter().map(Ok)).boxed(), limit, &mut sink).await?;
        let (sha256, data, now) = (stored.sha256.clone(), sink.0, ms_since_epoch(SystemTime::now()));
        let copy = Bytes::copy_from_slice(&data);
        let sql = "INSERT INTO audio_inline (sha256, data, stored_at) VALUES (?1, ?2, ?3) \
                   ON CONFLICT (sha256) DO UPDATE SET stored_at = excluded.stored_at";
        let pending = self.writer.send(move |c| {
            c.prepare_cached(sql)?.execute(rusqlite::params![sha256, data, now])?;
            Ok(())
        })?;
        // Before the commit: should it fail, no job names this audio (it
        // commits only with the row), and a later row of the same hash
        // holds the same bytes.
        self.recent.insert(stored.sha256.clone(), copy);
        Ok(StoredAudio { pending: Some(pending), ..stored })
    }

    /// Deletes the row of `sha256` if stamped before `before_ms`, through
    /// the writer; whether there was one.
    async fn delete_row(&self, sha: &str, before_ms: i64) -> Result<bool, AudioError> {
        let sha256 = sha.to_string();
        let sql = "DELETE FROM audio_inline WHERE sha256 = ?1 AND stored_at < ?2";
        let deleted = self
            .writer
            .write(move |c| Ok(c.prepare_cached(sql)?.execute(rusqlite::params![sha256, before_ms])? > 0))
            .await?;
        if deleted {
            self.recent.invalidate(sha);
        }
        Ok(deleted)
    }
}

#[async_trait::async_trait]
impl AudioStore for InlineAudioStore {
    async fn put(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        let mut stored = self.put_deferred(stream, limit).await?;
        if let Some(pending) = stored.pending.take() {
            pending.committed().await?;
        }
        Ok(stored)
    }

    /// A row when the upload ends within `inline_max` bytes (its write not
    /// awaited), else a file (durable when this answers).
    async fn put_deferred(&self, mut stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        let mut held = Vec::new();
        let mut size: u64 = 0;
        while size <= self.inline_max {
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(AudioError::Read)?;
                    size += chunk.len() as u64;
                    held.push(chunk);
                }
                None => return self.put_row(held, size, limit).await,
            }
        }
        // Too large to hold: a file, from the first byte.
        let whole = stream::iter(held.into_iter().map(Ok)).chain(stream).boxed();
        self.files.put(whole, limit).await
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, AudioError> {
        check_sha256(sha256)?;
        if let Some(audio) = self.recent.get(sha256) {
            return Ok(audio.to_vec());
        }
        let row: Option<Vec<u8>> = self.reads.scalar("SELECT data FROM audio_inline WHERE sha256 = ?1", [sha256]).await?;
        match row {
            Some(data) => Ok(data),
            None => self.files.get(sha256).await,
        }
    }

    async fn delete(&self, sha256: &str) -> Result<(), AudioError> {
        check_sha256(sha256)?;
        self.delete_row(sha256, i64::MAX).await?;
        self.files.delete(sha256).await
    }

    async fn exists(&self, sha256: &str) -> Result<bool, AudioError> {
        check_sha256(sha256)?;
        let row: Option<i64> = self.reads.scalar("SELECT 1 FROM audio_inline WHERE sha256 = ?1", [sha256]).await?;
        Ok(row.is_some() || self.files.exists(sha256).await?)
    }

    async fn stored_before(&self, before: SystemTime) -> Result<Vec<String>, AudioError> {
        let sql = "SELECT sha256 FROM audio_inline WHERE stored_at < ?1";
        let mut hashes: Vec<String> = self.reads.column(sql, [ms_since_epoch(before)]).await?;
        hashes.extend(self.files.stored_before(before).await?);
        Ok(hashes)
    }

    async fn delete_if_stored_before(&self, sha256: &str, before: SystemTime) -> Result<bool, AudioError> {
        check_sha256(sha256)?;
        let row = self.delete_row(sha256, ms_since_epoch(before)).await?;
        let file = self.files.delete_if_stored_before(sha256, before).await?;
        Ok(row || file)
    }

    async fn remove_abandoned_uploads(&self, before: SystemTime) -> Result<u64, AudioError> {
        // Rows are whole or absent; only files can be left half-written.
        self.files.remove_abandoned_uploads(before).await
    }
}

/// `at` as ms since the Unix epoch (0 before it).
fn ms_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
