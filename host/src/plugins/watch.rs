//! Watches `SCRIBE_PLUGIN_DIR` and installs each `NAME.wasm` that appears
//! or changes, so an operator deploys a plugin by dropping a file.
//!
//! Events are gathered for [`SETTLE`] after the first one, so a file copied
//! in several writes is read once it is whole; a file read too early fails
//! validation and is read again on its next event. Removing a file changes
//! nothing until a restart (the serving version stays).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::registry::Source;
use super::{InstallError, Plugins};
use crate::config::is_valid_plugin_name as is_valid_name;

/// How long events are gathered before the files they name are read.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Keeps the directory watched; dropping it stops the watching.
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `dir` for `plugins`.
pub fn spawn(plugins: Arc<Plugins>, dir: PathBuf) -> Result<DirWatcher, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) => event.paths.into_iter().for_each(|p| drop(tx.send(p))),
        Err(e) => tracing::warn!("plugin directory watch error: {e}"),
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let task = tokio::spawn(async move {
        // The content each file had when last read: one write can reach us
        // in more than one batch of events, and the same bytes are
        // validated once.
        let mut last_read: HashMap<PathBuf, String> = HashMap::new();
        while let Some(first) = rx.recv().await {
            let mut paths = BTreeSet::from([first]);
            let settle = tokio::time::sleep(SETTLE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    () = &mut settle => break,
                    Some(path) = rx.recv() => { paths.insert(path); }
                }
            }
            for path in paths.iter().filter(|p| is_plugin_file(p)) {
                if path.exists() {
                    load_changed_file(&plugins, path, &mut last_read).await;
                } else {
                    tracing::info!(path = %path.display(), "plugin file removed; its version keeps serving until a restart");
                }
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the plugin directory");
    Ok(DirWatcher { _watcher: watcher, task })
}

/// The `*.wasm` files in `dir`, sorted.
pub(crate) fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

/// Installs one plugin file; failures are logged (by `install`) and the
/// serving version stays.
pub(crate) async fn load_file(plugins: &Plugins, path: &Path) {
    if let Some((name, bytes)) = read_plugin_file(plugins, path).await {
        drop(plugins.install(name, bytes, Source::File).await);
    }
}

/// Like [`load_file`], unless the file holds what it held when last read.
async fn load_changed_file(plugins: &Plugins, path: &Path, last_read: &mut HashMap<PathBuf, String>) {
    let Some((name, bytes)) = read_plugin_file(plugins, path).await else { return };
    let hash = super::content_hash(&bytes);
    if last_read.get(path) == Some(&hash) {
        return;
    }
    last_read.insert(path.to_path_buf(), hash);
    drop(plugins.install(name, bytes, Source::File).await);
}

async fn read_plugin_file<'p>(plugins: &Plugins, path: &'p Path) -> Option<(&'p str, Vec<u8>)> {
    let name = path.file_stem().and_then(|s| s.to_str())?;
    if !is_valid_name(name) {
        tracing::warn!(path = %path.display(), "{}", InstallError::InvalidName(name.to_string()));
        return None;
    }
    match read_bounded(path, plugins.config.max_plugin_bytes).await {
        Ok(bytes) => Some((name, bytes)),
        Err(e) => {
            tracing::warn!(plugin = name, path = %path.display(), "plugin file not loaded: {e}");
            None
        }
    }
}

async fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, InstallError> {
    let size = tokio::fs::metadata(path).await?.len();
    if size > limit {
        return Err(InstallError::TooLarge { size, limit });
    }
    Ok(tokio::fs::read(path).await?)
}
