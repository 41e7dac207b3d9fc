//! Reading an upload: every audio store takes its bytes the same way
//! (hashed and counted on the way, the limit enforced, the content
//! recognised), and differs only in where the bytes go.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{format, AudioError, StoredAudio};

/// Where an upload's bytes go while it is read.
#[async_trait::async_trait]
pub(super) trait UploadSink: Send {
    /// Keeps `chunk`, the next bytes of the upload.
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()>;
}

/// Reads `stream` into `sink`, hashing and counting it. Past `limit` bytes
/// nothing more is written and the rest is read and discarded up to
/// `2 * limit` (so the client gets the answer rather than a reset), and the
/// result is [`AudioError::TooLarge`]; then an empty upload is
/// [`AudioError::Empty`] and one whose first bytes are not accepted audio
/// [`AudioError::NotAudio`]. On any error the caller discards what the sink
/// holds.
pub(super) async fn read_upload(
    mut stream: BoxStream<'_, Result<Bytes, std::io::Error>>,
    limit: u64,
    sink: &mut dyn UploadSink,
) -> Result<StoredAudio, AudioError> {
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(format::HEAD_LEN);
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(AudioError::Read)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            if seen > limit.saturating_mul(2) {
                break;
            }
            continue;
        }
        if head.len() < format::HEAD_LEN {
            let take = (format::HEAD_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        sink.write(&chunk).await?;
    }
    if seen > limit {
        return Err(AudioError::TooLarge { limit });
    }
    if seen == 0 {
        return Err(AudioError::Empty);
    }
    let format = format::sniff(&head)?;
    Ok(StoredAudio { sha256: hex::encode(hasher.finalize()), format, bytes: seen, pending: None })
}
