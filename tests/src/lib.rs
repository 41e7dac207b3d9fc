//! Support for Scribe's end-to-end tests: the wasm guests the tests load,
//! a host started on a temporary data directory, and small servers on
//! 127.0.0.1 that plugins talk to.
//!
//! The test files are in `tests/tests/`: `sandbox` (hostile guests),
//! `hot_swap`, `policies`, `template`, `admin_api` and `openai_plugin`.
//! [`fake_openai`] (from the `scribe-fakes` crate) stands in for OpenAI's
//! transcription API.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scribe_host::config::Config;
use scribe_host::metrics::Metrics;
use scribe_host::plugins::Plugins;

pub mod api;
pub mod browser;
pub mod fleet;
pub mod moto;
pub mod postgres;
pub mod provider_view;
pub mod proxy;
pub use scribe_fakes::openai as fake_openai;
pub use scribe_fakes::replicate as fake_replicate;

mod table {
    include!(concat!(env!("OUT_DIR"), "/test_guests.rs"));
}

/// The bytes of a test guest: `hostile-provider`, `hostile-retry`,
/// `echo-v1`, `echo-v2`, `plugin-template-template-wasip2` (built with
/// `cargo build`) or `plugin-template-template-component` (built with
/// `cargo component build`).
pub fn guest(name: &str) -> &'static [u8] {
    table::GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no test guest {name}; built: {:?}", table::GUESTS.iter().map(|g| g.0).collect::<Vec<_>>()))
}

/// A plugin runtime on its own temporary data directory.
pub struct TestHost {
    /// The runtime.
    pub plugins: Arc<Plugins>,
    /// The configuration it was started with.
    pub config: Config,
    dir: tempfile::TempDir,
}

impl TestHost {
    /// Starts a runtime with `config_toml` as its config file and `env` as
    /// extra variables.
    pub async fn start(config_toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(dir.path(), config_toml, env);
        let plugins = Plugins::start(&config, Metrics::new()).await.expect("plugin runtime starts");
        Self { plugins, config, dir }
    }

    /// The watched plugin directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.config.plugin_dir.clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `bytes` as an upload arriving in `piece`-byte parts (what an audio
/// store's `put` reads).
pub fn upload(bytes: &[u8], piece: usize) -> futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    use futures_util::StreamExt;
    let parts: Vec<_> = bytes.chunks(piece.max(1)).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(parts).boxed()
}

/// A config whose data directory is `dir`, with `config_toml` as its file.
pub fn test_config(dir: &Path, config_toml: &str, env: &[(&str, &str)]) -> Config {
    let file = dir.join("scribe.toml");
    std::fs::write(&file, config_toml).expect("writing the config file");
    let mut vars: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vars.insert("SCRIBE_DATA_DIR".into(), dir.display().to_string());
    vars.insert("SCRIBE_CONFIG".into(), file.display().to_string());
    Config::from_vars(vars).expect("valid test config")
}

/// Writes `bytes` as `dir/NAME.wasm` the way an operator should: a
/// temporary file, then a rename.
pub fn drop_plugin(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).expect("writing the plugin");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("renaming the plugin into place");
}

/// Waits until `condition` holds, checking every few milliseconds, and
/// panics with `what` after `timeout`. For events the test cannot be told
/// about directly (a watcher picking up a file).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An HTTP server on 127.0.0.1 that answers `POST /` with
/// `{"text": "heard N bytes"}`, N being the body's length: the service the
/// plugin template calls.
pub async fn text_server() -> SocketAddr {
    slow_text_server(Duration::ZERO).await
}

/// [`text_server`] that takes `latency` to answer each request.
pub async fn slow_text_server(latency: Duration) -> SocketAddr {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| async move {
            tokio::time::sleep(latency).await;
            axum::Json(serde_json::json!({ "text": format!("heard {} bytes", body.len()) }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers:
/// a provider that hangs.
pub async fn hanging_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

pub use scribe_fakes::wav;

/// Checks that `response` is problem JSON with `status` and returns its
/// `detail`.
pub async fn problem(response: reqwest::Response, status: reqwest::StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status.as_u16());
    body["detail"].as_str().expect("a detail").to_string()
}
