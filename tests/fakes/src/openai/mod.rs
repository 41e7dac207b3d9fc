//! A fake OpenAI transcription service on 127.0.0.1, for tests and benches.
//!
//! It follows `/work/shared/provider-apis.md` §1: `POST
//! /v1/audio/transcriptions` with `Authorization: Bearer <key>` (401 with
//! OpenAI's error envelope otherwise) and a `multipart/form-data` body whose
//! `file` (with a file name that has a supported extension) and `model`
//! fields are required (400 otherwise); the request content is capped at
//! 26,214,400 bytes (413). A success is `{"text": ..., "usage":
//! {"type":"duration","seconds":1}}` (or the `text`, `srt`, `vtt` and
//! `verbose_json` forms), and the text is a function of the audio alone
//! ([`transcript_text`]), so a test knows what to expect.
//!
//! Tests script it through the [`FakeOpenAi`] handle: a latency for every
//! answer, a queue of [`Scripted`] answers used first (then `Ok`), or
//! seeded random faults (500s and 429s with a retry-after); and they observe
//! it: calls, the most calls in flight at once, arrival times, and every
//! request as received ([`RecordedRequest`]).
//!
//! Every error body is OpenAI's envelope `{"error": {"message", "type",
//! "param", "code"}}`, and every answer has an `x-request-id`.
//!
//! The type is not tied to the test harness: [`FakeOpenAi::start_on`] binds
//! a chosen address, so a bench or a person can run it by hand.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// The largest request content OpenAI accepts, in bytes (§1.4).
pub const MAX_CONTENT_BYTES: usize = 26_214_400;

/// The audio formats OpenAI accepts, as file extensions (§1.4's 400 message).
pub const SUPPORTED_FORMATS: &[&str] = &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];

/// The transcript the fake answers for `audio`:
/// `transcript of {len} bytes {first 8 hex digits of its sha256}`.
pub fn transcript_text(audio: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(audio));
    format!("transcript of {} bytes {}", audio.len(), &digest[..8])
}

/// One scripted answer. Scripted answers are used first, in order, by
/// requests that pass the auth and form checks; then the fake answers `Ok`
/// (or by its fault rates, when set).
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// A normal transcription.
    Ok,
    /// 500 `server_error`, as OpenAI's "The server had an error...".
    Status500,
    /// 429 `rate_limit_exceeded`. With `Some(d)`: a `retry-after` header of
    /// `d` in whole seconds, rounded up (at least 1, as OpenAI documents),
    /// plus `retry-after-ms` when `d` is not a whole number of seconds.
    RateLimited {
        /// The wait to announce, if any.
        retry_after: Option<Duration>,
    },
    /// 429 `rate_limit_exceeded` with only a `retry-after-ms` header (float ms).
    RateLimitedMs(f64),
    /// 429 `rate_limit_exceeded` with `retry-after` as an HTTP date.
    RateLimitedUntil(SystemTime),
    /// 429 `insufficient_quota`, without retry-after: waiting does not help.
    InsufficientQuota,
    /// Reads the request and never answers.
    Hang,
    /// This status with a generic envelope (a 2xx status is a normal
    /// transcription with that status).
    Status(u16),
}

impl Scripted {
    /// The status this answer has; `None` for [`Scripted::Hang`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Scripted::Ok => Some(200),
            Scripted::Status500 => Some(500),
            Scripted::RateLimited { .. } | Scripted::RateLimitedMs(_) | Scripted::RateLimitedUntil(_) | Scripted::InsufficientQuota => Some(429),
            Scripted::Hang => None,
            Scripted::Status(status) => Some(*status),
        }
    }
}

/// The file part of a recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// The part's file name, when it had one.
    pub filename: Option<String>,
    /// The part's `Content-Type`, when it had one.
    pub content_type: Option<String>,
    /// The file's length in bytes.
    pub len: usize,
    /// The file's sha256, in hex.
    pub sha256: String,
}

/// One request to `/v1/audio/transcriptions`, as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When its head arrived.
    pub arrived: Instant,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The request's `Content-Type` header.
    pub content_type: Option<String>,
    /// The text fields, in the order received.
    pub fields: Vec<(String, String)>,
    /// The `file` part, if there was one.
    pub file: Option<RecordedFile>,
    /// The status the fake answered (or is about to, after its latency);
    /// `None` when it hangs.
    pub answered: Option<u16>,
}

impl RecordedRequest {
    /// The first text field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Random faults drawn for requests with no scripted answer.
struct Faults {
    error_500: f64,
    rate_limited: f64,
    retry_after: Duration,
    rng: StdRng,
}

/// What a test can change, and what the fake saw.
struct Script {
    latency: Duration,
    queue: VecDeque<Scripted>,
    faults: Option<Faults>,
    arrivals: Vec<Instant>,
    requests: Vec<RecordedRequest>,
}

struct Shared {
    api_key: String,
    script: Mutex<Script>,
    calls: AtomicU64,
    /// The client ends (address and port) calls came from: one per
    /// connection.
    peers: Mutex<std::collections::HashSet<SocketAddr>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    next_request_id: AtomicU64,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock must not hide the
        // fake's state from the others.
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake OpenAI server, on a thread of its own. Dropping it stops
/// the server and closes its connections.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped to stop the server's thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's thread, joined once stopped.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOpenAi {
    /// Starts the fake on 127.0.0.1 with a free port, accepting `api_key`.
    pub async fn start(api_key: &str) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), api_key).await.expect("binding 127.0.0.1:0")
    }

    /// Starts the fake on `addr` (port 0 picks a free one), accepting
    /// `api_key`. For running it by hand on a known port.
    pub async fn start_on(addr: SocketAddr, api_key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            api_key: api_key.to_string(),
            script: Mutex::new(Script {
                latency: Duration::ZERO,
                queue: VecDeque::new(),
                faults: None,
                arrivals: Vec::new(),
                requests: Vec::new(),
            }),
            calls: AtomicU64::new(0),
            peers: Mutex::default(),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            next_request_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcriptions))
            .fallback(unknown_route)
            .layer(DefaultBodyLimit::max(MAX_CONTENT_BYTES))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A thread and runtime of its own, as a real provider is apart from
        // Scribe: when a request arrives is when this thread reads it, not
        // when the caller's busy runtime gets round to the fake's task.
        let thread = std::thread::Builder::new().name("fake-openai".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!("fake OpenAI server has no runtime: {e}"),
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return tracing::error!("fake OpenAI server cannot listen: {e}"),
                };
                let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>());
                tokio::select! {
                    served = serve => if let Err(e) = served {
                        tracing::error!("fake OpenAI server stopped: {e}");
                    },
                    // Dropping the runtime on return drops every connection.
                    _ = stopped => {}
                }
            });
        })?;
        Ok(Self { addr, shared, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure (`OPENAI_BASE_URL`): `http://127.0.0.1:PORT`,
    /// without `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every answer waits this long after the request was read.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.script().latency = latency;
    }

    /// Queues answers for the next requests, after those already queued.
    pub fn push_script(&self, answers: Vec<Scripted>) {
        self.shared.script().queue.extend(answers);
    }

    /// Answers requests with no scripted answer at random, from a generator
    /// seeded with `seed`: 500 with probability `error_500`, 429 with a
    /// `retry_after` (as [`Scripted::RateLimited`]) with probability
    /// `rate_limited`, `Ok` otherwise. The draws follow arrival order.
    pub fn set_fault_rates(&self, error_500: f64, rate_limited: f64, retry_after: Duration, seed: u64) {
        assert!(error_500 >= 0.0 && rate_limited >= 0.0 && error_500 + rate_limited <= 1.0, "rates are probabilities");
        self.shared.script().faults = Some(Faults { error_500, rate_limited, retry_after, rng: StdRng::seed_from_u64(seed) });
    }

    /// Stops drawing random faults.
    pub fn clear_faults(&self) {
        self.shared.script().faults = None;
    }

    /// Requests received on the transcription endpoint so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// How many connections the calls so far came over.
    pub fn connections(&self) -> usize {
        self.shared.peers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The most requests that were in progress at once (from arrival to
    /// the end of the answer's latency).
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in progress now.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.script().arrivals.clone()
    }

    /// Every request with the fields it carried, in order of arrival at
    /// the point its body had been read.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }
}

impl Drop for FakeOpenAi {
    /// Stops the server and waits for its thread, so the port and every
    /// connection are closed when the handle is gone.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

mod wire;
use wire::{transcriptions, unknown_route};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_depend_on_the_audio_only() {
        assert_eq!(transcript_text(b""), "transcript of 0 bytes e3b0c442");
        assert_eq!(transcript_text(b"abc"), transcript_text(b"abc"));
        assert_ne!(transcript_text(b"abc"), transcript_text(b"abd"));
    }

    #[test]
    fn wrong_keys_are_masked() {
        use super::wire::mask;
        assert_eq!(mask("sk-abcdefghijkl"), "sk-a*******ijkl");
        assert_eq!(mask("short"), "*****");
    }
}

