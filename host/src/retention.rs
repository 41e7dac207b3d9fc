//! Audio retention: audio is removed once no job needs it any more, and
//! transcripts stay.
//!
//! design.md: audio is deleted once every job that uses it is terminal and
//! `SCRIBE_AUDIO_RETENTION_HOURS` have passed since the last of them
//! finished. The sweep walks the audio store rather than the jobs table, so
//! it also removes audio no job ever referenced (a submit refused after its
//! audio was stored, or a crash between storing and inserting) and the
//! partial files of uploads a crash interrupted. A file is only removed if
//! it was last stored before the cutoff and at least [`MIN_AUDIO_AGE`] ago,
//! which covers the moment between a submit storing audio and inserting its
//! job (the audio store re-stamps a file each time it is stored again).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audio::{AudioError, AudioStore};
use crate::store::{Store, StoreError};

/// How often the sweep runs (and once at start-up).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The least time since audio was last stored before it may be removed,
/// whatever the retention (a submit inserts its job well within this).
pub const MIN_AUDIO_AGE: Duration = Duration::from_secs(10 * 60);

/// A sweep failed part-way (what it removed stays removed).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The audio store failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Audio files no job needs any more.
    pub audio: u64,
    /// Partial files of interrupted uploads.
    pub abandoned_uploads: u64,
}

/// Removes, as of `now`, the audio no job needs (see the module docs) and
/// abandoned partial uploads.
pub async fn sweep(
    store: &dyn Store,
    audio: &dyn AudioStore,
    retention: Duration,
    now: SystemTime,
) -> Result<Swept, RetentionError> {
    let finished_cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
    let stored_cutoff = now.checked_sub(retention.max(MIN_AUDIO_AGE)).unwrap_or(UNIX_EPOCH);
    let finished_since_ms = finished_cutoff.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let mut swept = Swept::default();
    for sha256 in audio.stored_before(stored_cutoff).await? {
        if store.audio_in_use(&sha256, finished_since_ms).await? {
            continue;
        }
        if audio.delete_if_stored_before(&sha256, stored_cutoff).await? {
            swept.audio += 1;
        }
    }
    swept.abandoned_uploads = audio.remove_abandoned_uploads(now.checked_sub(MIN_AUDIO_AGE).unwrap_or(UNIX_EPOCH)).await?;
    Ok(swept)
}

/// Sweeps at start-up and every [`SWEEP_INTERVAL`] until the task is
/// aborted; failures are logged and the next sweep tries again.
pub fn spawn(store: Arc<dyn Store>, audio: Arc<dyn AudioStore>, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep(&*store, &*audio, retention, SystemTime::now()).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(audio = swept.audio, abandoned_uploads = swept.abandoned_uploads, "audio retention removed files")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "audio retention sweep failed; trying again later"),
            }
        }
    })
}
