//! Audio in a local directory (`$SCRIBE_DATA_DIR/audio` on one instance),
//! one file per content hash.
//!
//! An upload is written to a uniquely named temporary file in the same
//! directory (`.upload-*.tmp`, so a rename into place is atomic), fsynced,
//! then renamed to its sha256 and the directory fsynced: a reader, or a
//! restart, sees a whole file under a hash name or none. The temporary file
//! is removed on every error, and when the upload is abandoned (its future
//! dropped); only a crash mid-upload leaves one behind, and retention
//! removes it later.
//!
//! A file's modification time says when audio was last stored: a `put` of
//! content that is already there re-stamps the file, so retention, which
//! removes only files stamped before its cutoff, never removes audio that a
//! submit has just stored for a job it is about to insert.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use super::upload::{read_upload, UploadSink};
use super::{check_sha256, AudioError, AudioStore, StoredAudio};

/// An upload's temporary file.
struct FileSink(tokio::fs::File);

#[async_trait::async_trait]
impl UploadSink for FileSink {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0.write_all(chunk).await
    }
}

/// Audio stored as files named by their sha256 in one directory.
#[derive(Debug, Clone)]
pub struct LocalAudioStore {
    dir: PathBuf,
    /// Held while a `put` places or re-stamps a file and while retention
    /// checks a file's stamp and removes it, so the two never interleave.
    placing: Arc<Mutex<()>>,
}

impl LocalAudioStore {
    /// A store in `dir` (normally `$SCRIBE_DATA_DIR/audio`), created at the
    /// first upload if it does not exist.
    pub fn new(dir: PathBuf) -> Self {
        LocalAudioStore { dir, placing: Arc::default() }
    }

    /// The directory the audio files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, sha256: &str) -> Result<PathBuf, AudioError> {
        check_sha256(sha256)?;
        Ok(self.dir.join(sha256))
    }
}

#[async_trait::async_trait]
impl AudioStore for LocalAudioStore {
    async fn put(&self, stream: BoxStream<'_, Result<Bytes, std::io::Error>>, limit: u64) -> Result<StoredAudio, AudioError> {
        let dir = self.dir.clone();
        let temp = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::Builder::new().prefix(".upload-").suffix(".tmp").tempfile_in(&dir)
        })
        .await?;
        // The path deletes the file when dropped, until it is persisted.
        let (file, temp_path) = temp.into_parts();
        let mut file = FileSink(tokio::fs::File::from_std(file));
        let stored = read_upload(stream, limit, &mut file).await?;
        let FileSink(mut file) = file;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);

        let target = self.dir.join(&stored.sha256);
        let dir = self.dir.clone();
        let placing = self.placing.clone();
        blocking(move || -> std::io::Result<()> {
            let _placing = placing.lock().unwrap_or_else(|e| e.into_inner());
            if target.exists() {
                // Same name, same content: keep the file that is there
                // (dropping the temporary path deletes the copy), stamped
                // as stored now.
                return std::fs::File::options().append(true).open(&target)?.set_modified(SystemTime::now());
            }
            temp_path.persist(&target)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await?;
        Ok(stored)
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>, AudioError> {
        let path = self.path_of(sha256)?;
        Ok(tokio::fs::read(path).await?)
    }

    async fn delete(&self, sha256: &str) -> Result<(), AudioError> {
        let path = self.path_of(sha256)?;
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn exists(&self, sha256: &str) -> Result<bool, AudioError> {
        let path = self.path_of(sha256)?;
        Ok(tokio::fs::try_exists(path).await?)
    }

    async fn stored_before(&self, before: SystemTime) -> Result<Vec<String>, AudioError> {
        let dir = self.dir.clone();
        let files = blocking(move || files_stamped_before(&dir, before)).await?;
        Ok(files.into_iter().filter(|name| check_sha256(name).is_ok()).collect())
    }

    async fn delete_if_stored_before(&self, sha256: &str, before: SystemTime) -> Result<bool, AudioError> {
        let path = self.path_of(sha256)?;
        let placing = self.placing.clone();
        let deleted = blocking(move || {
            let _placing = placing.lock().unwrap_or_else(|e| e.into_inner());
            let stamped = match std::fs::metadata(&path) {
                Ok(meta) => meta.modified()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            if stamped >= before {
                return Ok(false);
            }
            std::fs::remove_file(&path)?;
            Ok(true)
        })
        .await?;
        Ok(deleted)
    }

    async fn remove_abandoned_uploads(&self, before: SystemTime) -> Result<u64, AudioError> {
        let dir = self.dir.clone();
        let removed = blocking(move || {
            let mut removed = 0;
            for name in files_stamped_before(&dir, before)? {
                if name.starts_with(".upload-") && name.ends_with(".tmp") {
                    match std::fs::remove_file(dir.join(&name)) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await?;
        Ok(removed)
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

/// The names of the files in `dir` last modified before `before` (none if
/// the directory does not exist yet).
fn files_stamped_before(dir: &Path, before: SystemTime) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() && meta.modified()? < before {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::audio::AudioFormat;
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};

    const WAV_HEADER: &[u8] = b"RIFF\x24\x08\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0";

    fn wav(len: usize) -> Vec<u8> {
        let mut bytes = WAV_HEADER.to_vec();
        bytes.extend((0..len.saturating_sub(WAV_HEADER.len())).map(|i| (i % 251) as u8));
        bytes
    }

    /// `bytes` as a stream of `chunk`-byte pieces.
    fn chunks(bytes: &[u8], chunk: usize) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let pieces: Vec<_> = bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures_util::stream::iter(pieces).boxed()
    }

    /// A stream of `total` bytes of WAV in `chunk`-byte pieces that counts
    /// the bytes pulled from it.
    fn counting(total: usize, chunk: usize, pulled: Arc<AtomicU64>) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let bytes = wav(total);
        let pieces: Vec<Bytes> = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
        futures_util::stream::iter(pieces)
            .map(move |piece| {
                pulled.fetch_add(piece.len() as u64, Ordering::SeqCst);
                Ok(piece)
            })
            .boxed()
    }

    /// Every file in the store's directory, temporary ones included.
    fn files(dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn store() -> (tempfile::TempDir, LocalAudioStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalAudioStore::new(tmp.path().join("audio"));
        (tmp, store)
    }

    #[tokio::test]
    async fn round_trip() {
        let (_tmp, store) = store();
        let audio = wav(100_000);
        let stored = store.put(chunks(&audio, 4096), 1 << 20).await.unwrap();
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(&audio)));
        assert_eq!(stored.format, AudioFormat::Wav);
        assert_eq!(stored.bytes, audio.len() as u64);
        assert_eq!(files(store.dir()), [stored.sha256.as_str()]);

        assert!(store.exists(&stored.sha256).await.unwrap());
        assert_eq!(store.get(&stored.sha256).await.unwrap(), audio);

        store.delete(&stored.sha256).await.unwrap();
        assert!(!store.exists(&stored.sha256).await.unwrap());
        assert!(store.get(&stored.sha256).await.unwrap_err().is_not_found());
        // Deleting again is fine.
        store.delete(&stored.sha256).await.unwrap();
        assert!(files(store.dir()).is_empty());
    }

    #[tokio::test]
    async fn exactly_the_limit_is_accepted() {
        let (_tmp, store) = store();
        let audio = wav(1000);
        let stored = store.put(chunks(&audio, 333), 1000).await.unwrap();
        assert_eq!(stored.bytes, 1000);
    }

    #[tokio::test]
    async fn same_content_twice_is_one_file() {
        let (_tmp, store) = store();
        let audio = wav(10_000);
        let first = store.put(chunks(&audio, 1000), 1 << 20).await.unwrap();
        // Different chunking, same content.
        let second = store.put(chunks(&audio, 777), 1 << 20).await.unwrap();
        assert_eq!((&first.sha256, first.format, first.bytes), (&second.sha256, second.format, second.bytes));
        assert_eq!(files(store.dir()), [first.sha256.as_str()]);
        assert_eq!(store.get(&first.sha256).await.unwrap(), audio);
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_after_draining_up_to_twice_the_limit() {
        let (_tmp, store) = store();
        let limit = 10_000u64;
        let chunk = 1000usize;
        let pulled = Arc::new(AtomicU64::new(0));
        let err = store.put(counting(100_000, chunk, pulled.clone()), limit).await.unwrap_err();
        assert!(matches!(err, AudioError::TooLarge { limit: 10_000 }), "{err:?}");
        assert!(err.to_string().contains("SCRIBE_MAX_UPLOAD_BYTES"), "{err}");
        let pulled = pulled.load(Ordering::SeqCst);
        assert!(pulled > 2 * limit, "drained only {pulled} bytes");
        assert!(pulled <= 2 * limit + chunk as u64, "read on past the bound: {pulled} bytes");
        assert!(files(store.dir()).is_empty(), "{:?}", files(store.dir()));
    }

    #[tokio::test]
    async fn slightly_over_the_limit_is_read_to_the_end_and_refused() {
        let (_tmp, store) = store();
        let pulled = Arc::new(AtomicU64::new(0));
        let err = store.put(counting(1500, 100, pulled.clone()), 1000).await.unwrap_err();
        assert!(matches!(err, AudioError::TooLarge { limit: 1000 }), "{err:?}");
        assert_eq!(pulled.load(Ordering::SeqCst), 1500);
        assert!(files(store.dir()).is_empty());
    }

    #[tokio::test]
    async fn empty_is_refused() {
        let (_tmp, store) = store();
        let err = store.put(futures_util::stream::empty().boxed(), 1000).await.unwrap_err();
        assert!(matches!(err, AudioError::Empty), "{err:?}");
        // Empty chunks are still nothing.
        let err = store.put(chunks(b"", 1), 1000).await.unwrap_err();
        assert!(matches!(err, AudioError::Empty), "{err:?}");
        assert!(files(store.dir()).is_empty());
    }

    #[tokio::test]
    async fn non_audio_is_refused_and_not_kept() {
        let (_tmp, store) = store();
        let err = store.put(chunks(b"<html><body>Not Found</body></html>", 7), 1000).await.unwrap_err();
        let AudioError::NotAudio { detail } = &err else { panic!("expected NotAudio, got {err:?}") };
        assert!(detail.contains("text"), "{detail}");
        assert!(err.to_string().contains("WAV"), "{err}");
        assert!(files(store.dir()).is_empty(), "{:?}", files(store.dir()));
    }

    #[tokio::test]
    async fn a_read_error_is_the_clients_and_keeps_nothing() {
        let (_tmp, store) = store();
        let pieces = vec![
            Ok(Bytes::from_static(WAV_HEADER)),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
        ];
        let err = store.put(futures_util::stream::iter(pieces).boxed(), 1000).await.unwrap_err();
        assert!(matches!(err, AudioError::Read(_)), "{err:?}");
        assert!(files(store.dir()).is_empty());
    }

    #[tokio::test]
    async fn a_bad_hash_argument_is_refused_before_the_filesystem() {
        let (tmp, store) = store();
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(tmp.path().join("secret"), b"x").unwrap();
        let upper = "A".repeat(64);
        let short = "a".repeat(63);
        for bad in ["../secret", "", upper.as_str(), short.as_str(), "/etc/passwd"] {
            for err in [
                store.get(bad).await.unwrap_err(),
                store.exists(bad).await.unwrap_err(),
                store.delete(bad).await.unwrap_err(),
            ] {
                assert!(
                    matches!(&err, AudioError::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput),
                    "{bad:?}: {err:?}"
                );
            }
        }
        assert!(tmp.path().join("secret").exists());
        assert!(!store.exists(&"0".repeat(64)).await.unwrap());
    }

    #[tokio::test]
    async fn storing_audio_again_restamps_it_so_retention_keeps_it() {
        let (_tmp, store) = store();
        let audio = wav(1000);
        let stored = store.put(chunks(&audio, 256), 1 << 20).await.unwrap();
        let path = store.dir().join(&stored.sha256);
        let day_ago = SystemTime::now() - std::time::Duration::from_secs(86_400);
        std::fs::File::options().append(true).open(&path).unwrap().set_modified(day_ago).unwrap();
        let hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(store.stored_before(hour_ago).await.unwrap(), [stored.sha256.clone()]);

        store.put(chunks(&audio, 256), 1 << 20).await.unwrap();
        assert!(store.stored_before(hour_ago).await.unwrap().is_empty(), "a second put re-stamps the file");
        assert!(!store.delete_if_stored_before(&stored.sha256, hour_ago).await.unwrap());
        assert_eq!(store.get(&stored.sha256).await.unwrap(), audio);

        std::fs::File::options().append(true).open(&path).unwrap().set_modified(day_ago).unwrap();
        assert!(store.delete_if_stored_before(&stored.sha256, hour_ago).await.unwrap());
        assert!(!store.exists(&stored.sha256).await.unwrap());
        assert!(!store.delete_if_stored_before(&stored.sha256, hour_ago).await.unwrap(), "gone already");
    }
}
