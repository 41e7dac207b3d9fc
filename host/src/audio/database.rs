//! Audio in the PostgreSQL database: a fleet's default audio store, so a
//! job submitted to one instance can run on any other with nothing shared
//! but the database.
//!
//! One `audio_blobs` row per stored content, its bytes in `audio_chunks`
//! rows of [`CHUNK_BYTES`]: an upload is written chunk by chunk as it
//! arrives (never whole in memory) under a row without a hash, and only
//! once every chunk is committed is the row given its sha256, in one
//! transaction: a reader sees whole audio under a hash or none. Content
//! stored already is kept and re-stamped instead (`stored_at`, which
//! retention reads), and retention's delete is one statement guarded on
//! that stamp, so audio a submit has just stored again is never removed
//! under it. An upload whose task died leaves a row without a hash, which
//! retention removes later as abandoned.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;

use super::upload::{read_upload, UploadSink};
use super::{check_sha256, AudioError, AudioStore, StoredAudio};

/// The most bytes one chunk row holds.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Audio in the `audio_blobs` and `audio_chunks` tables.
#[derive(Debug, Clone)]
pub struct DatabaseAudioStore {
    pool: PgPool,
}

impl DatabaseAudioStore {
    /// A store in the database `pool` connects to (its schema is the
    /// PostgreSQL store's migrations).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Gives upload `blob` its hash, or, if that content is stored already,
    /// re-stamps that and drops the upload; one transaction either way.
    async fn place(&self, blob: i64, stored: &StoredAudio) -> Result<(), sqlx::Error> {
        // A concurrent upload of the same content may take the hash
        // between the two statements: then the second round re-stamps it.
        for _ in 0..2 {
            let mut tx = self.pool.begin().await?;
            let now = crate::clock::now_ms();
            let restamped = sqlx::query("UPDATE audio_blobs SET stored_at = $2 WHERE sha256 = $1")
                .bind(&stored.sha256)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if restamped.rows_affected() == 1 {
                sqlx::query("DELETE FROM audio_blobs WHERE id = $1").bind(blob).execute(&mut *tx).await?;
                return tx.commit().await;
            }
            let named = sqlx::query("UPDATE audio_blobs SET sha256 = $2, bytes = $3, stored_at = $4 WHERE id = $1")
                .bind(blob)
                .bind(&stored.sha256)
                .bind(stored.bytes as i64)
                .bind(now)
                .execute(&mut *tx)
                .await;
            match named {
                Ok(done) if done.rows_affected() == 1 => return tx.commit().await,
                Ok(_) => return Err(sqlx::Error::Protocol("the upload was removed as abandoned before it was named".into())),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(sqlx::Error::Protocol("the same audio was stored and removed concurrently twice; try again".into()))
    }

    async fn discard(&self, blob: i64) {
        if let Err(e) = sqlx::query("DELETE FROM audio_blobs WHERE id = $1").bind(blob).execute(&self.pool).await {
            tracing::warn!("an unfinished upload stays until retention removes it: {e}");
        }
    }
}

/// An upload's chunks, written as they fill.
struct ChunkSink<'a> {
    pool: &'a PgPool,
    blob: i64,
    seq: i32,
    buffer: Vec<u8>,
}

impl ChunkSink<'_> {
    /// Writes a chunk and re-stamps the upload (so retention, which takes
    /// an upload without a hash stamped 10 minutes ago for abandoned, never
    /// removes a slow one still arriving); an upload removed meanwhile is
    /// an error.
    async fn write_chunk(&mut self, len: usize) -> std::io::Result<()> {
        let data: Vec<u8> = self.buffer.drain(..len).collect();
        let written = sqlx::query(
            "WITH upload AS (UPDATE audio_blobs SET stored_at = $4 WHERE id = $1 AND sha256 IS NULL RETURNING id) \
             INSERT INTO audio_chunks (blob_id, seq, data) SELECT id, $2, $3 FROM upload",
        )
        .bind(self.blob)
        .bind(self.seq)
        .bind(data)
        .bind(crate::clock::now_ms())
        .execute(self.pool)
        .await
        .map_err(std::io::Error::other)?;
        if written.rows_affected() != 1 {
            return Err(std::io::Error::other("the upload was removed as abandoned while it arrived"));
        }
        self.seq += 1;
        Ok(())
    }

    /// Writes what the last chunk holds.
    async fn finish(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.write_chunk(self.buffer.len()).await
    }
}

#[async_trait::async_trait]
impl UploadSink for ChunkSink<'_> {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.buffer.extend_from_slice(chunk);
        while self.buffer.len() >= CHUNK_BYTES {
            self.write_chunk(CHUNK_BYTES).await?;
        }
        Ok(())
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn not_found(sha256: &str) -> AudioError {
    AudioError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no audio stored under {sha256}")))
}

#[async_trait::async_trait]
impl AudioStore for DatabaseAudioStore {
    async fn put(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        let blob: i64 = sqlx::query_scalar("INSERT INTO audio_blobs (stored_at) VALUES ($1) RETURNING id")
            .bind(crate::clock::now_ms())
            .fetch_one(&self.pool)
            .await?;
        let mut sink = ChunkSink { pool: &self.pool, blob, seq: 0, buffer: Vec::with_capacity(CHUNK_BYTES) };
        let stored = async {
            let stored = read_upload(stream, limit, &mut sink).await?;
            sink.finish().await?;
            self.place(blob, &stored).await?;
            Ok::<_, AudioError>(stored)
        }
        .await;
        if stored.is_err() {
            self.discard(blob).await;
        }
        stored
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, AudioError> {
        check_sha256(sha256)?;
        let blob: Option<(i64, i64)> = sqlx::query_as("SELECT id, bytes FROM audio_blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        let Some((blob, bytes)) = blob else { return Err(not_found(sha256)) };
        let mut audio = Vec::with_capacity(bytes.max(0) as usize);
        let mut chunks = sqlx::query_scalar::<_, Vec<u8>>("SELECT data FROM audio_chunks WHERE blob_id = $1 ORDER BY seq")
            .bind(blob)
            .fetch(&self.pool);
        while let Some(chunk) = chunks.try_next().await? {
            audio.extend_from_slice(&chunk);
        }
        // Removed while being read: as good as not there.
        if audio.len() as i64 != bytes {
            return Err(not_found(sha256));
        }
        Ok(audio)
    }

    async fn delete(&self, sha256: &str) -> Result<(), AudioError> {
        check_sha256(sha256)?;
        sqlx::query("DELETE FROM audio_blobs WHERE sha256 = $1").bind(sha256).execute(&self.pool).await?;
        Ok(())
    }

    async fn exists(&self, sha256: &str) -> Result<bool, AudioError> {
        check_sha256(sha256)?;
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audio_blobs WHERE sha256 = $1)")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn stored_before(&self, before: SystemTime) -> Result<Vec<String>, AudioError> {
        Ok(sqlx::query_scalar("SELECT sha256 FROM audio_blobs WHERE sha256 IS NOT NULL AND stored_at < $1")
            .bind(millis(before))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn delete_if_stored_before(&self, sha256: &str, before: SystemTime) -> Result<bool, AudioError> {
        check_sha256(sha256)?;
        let done = sqlx::query("DELETE FROM audio_blobs WHERE sha256 = $1 AND stored_at < $2")
            .bind(sha256)
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_abandoned_uploads(&self, before: SystemTime) -> Result<u64, AudioError> {
        let done = sqlx::query("DELETE FROM audio_blobs WHERE sha256 IS NULL AND stored_at < $1")
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
