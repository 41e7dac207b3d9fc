//! A fake Replicate predictions API on 127.0.0.1, for tests and for trying
//! Scribe without a token.
//!
//! It follows `/work/shared/provider-apis.md` §2: `POST /v1/predictions`
//! (`{"version", "input": {"audio", ...}}`, honouring `Prefer: wait[=N]`:
//! 201 with the finished prediction, or 202 with one still `starting` or
//! `processing`), `GET /v1/predictions/{id}`, `POST
//! /v1/predictions/{id}/cancel`, and `POST /v1/files` (multipart `content`,
//! 201 with a file object whose `urls.get` the predictions accept as
//! audio). Every route wants `Authorization: Bearer <token>` (401 `{"detail":
//! "Invalid token."}` otherwise); errors are `{"detail": ...}`; a 429 says
//! `Request was throttled...` with or without `Retry-After`.
//!
//! A prediction is `starting` for the first half of its run time, then
//! `processing`, then `succeeded` with `openai/whisper`'s output
//! (`transcription`, `segments`, `detected_language` as a full name); its
//! text is [`crate::openai::transcript_text`] of the audio, so a test
//! knows what to expect. Tests script it through [`FakeReplicate`]: the run
//! time, answers for the next creates ([`Scripted`]), and they read what it
//! received ([`Received`]).

mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

/// What the next `POST /v1/predictions` answers (then `Ok`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// A prediction that runs and succeeds.
    Ok,
    /// A prediction that runs and fails with this `error`.
    Failed(String),
    /// 429 `{"detail": "Request was throttled..."}`, with `Retry-After: N`
    /// (seconds) when given.
    Throttled(Option<u64>),
    /// 429 as [`Scripted::Throttled`], with `Retry-After` as an HTTP date.
    ThrottledUntil(std::time::SystemTime),
    /// This status with a `{"detail"}` body (e.g. 500, 503, 422).
    Status(u16),
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `POST` or `GET`.
    pub method: String,
    /// The path.
    pub path: String,
    /// `Authorization`, as sent.
    pub authorization: Option<String>,
    /// `Prefer`, as sent.
    pub prefer: Option<String>,
    /// The JSON body of a create (else `Null`).
    pub json: serde_json::Value,
}

/// One prediction's life.
struct Run {
    created: Instant,
    version: String,
    input: serde_json::Value,
    audio: Vec<u8>,
    fails_with: Option<String>,
    canceled: bool,
}

struct State {
    token: String,
    run_time: Duration,
    script: VecDeque<Scripted>,
    predictions: HashMap<String, Run>,
    files: HashMap<String, Vec<u8>>,
    received: Vec<Received>,
    next_id: u64,
}

/// What the handlers share.
struct Shared {
    base_url: String,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking handler must not take the rest of the fake down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake Replicate server. Dropping it stops it.
pub struct FakeReplicate {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeReplicate {
    /// Starts the fake on 127.0.0.1 with a free port, accepting `token`.
    pub async fn start(token: &str) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), token).await.expect("binding 127.0.0.1:0")
    }

    /// Starts the fake on `addr` (port 0 picks a free one), accepting `token`.
    pub async fn start_on(addr: SocketAddr, token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(State {
                token: token.to_string(),
                run_time: Duration::ZERO,
                script: VecDeque::new(),
                predictions: HashMap::new(),
                files: HashMap::new(),
                received: Vec::new(),
                next_id: 1,
            }),
        });
        let app = Router::new()
            .route("/v1/predictions", post(wire::create))
            .route("/v1/predictions/{id}", get(wire::show))
            .route("/v1/predictions/{id}/cancel", post(wire::cancel))
            .route("/v1/files", post(wire::upload))
            .fallback(wire::not_found)
            .layer(DefaultBodyLimit::max(110_000_000))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake Replicate server stopped: {e}");
            }
        });
        Ok(Self { addr, shared, server })
    }

    /// The base URL to configure (`REPLICATE_BASE_URL`), without `/v1`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long a prediction runs (half `starting`, half `processing`).
    pub fn set_run_time(&self, run_time: Duration) {
        self.shared.state().run_time = run_time;
    }

    /// Queues answers for the next creates.
    pub fn push_script(&self, answers: Vec<Scripted>) {
        self.shared.state().script.extend(answers);
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// The requests received with `method` on paths starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.shared.state().received.iter().filter(|r| r.method == method && r.path.starts_with(prefix)).count()
    }

    /// Predictions canceled so far.
    pub fn canceled(&self) -> usize {
        self.shared.state().predictions.values().filter(|r| r.canceled).count()
    }
}

impl Drop for FakeReplicate {
    fn drop(&mut self) {
        self.server.abort();
    }
}
