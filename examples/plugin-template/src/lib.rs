//! A Scribe provider plugin, as a template: copy this folder, rename it, and
//! change what the service expects (see README.md).
//!
//! It sends the audio in ONE HTTP POST to the URL of the `url` setting, as
//! the raw body with `content-type: application/octet-stream`, and expects
//! `{"text": "..."}` back. Everything the host needs to know about a failure
//! is in which `ProviderError` we return, so the mapping from HTTP to errors
//! (`classify_status`, `classify_send_error`) is the part to get right.
//!
//! Rules of the sandbox (see `wit/plugin.wit`):
//! - every call gets a fresh instance: keep no state between calls;
//! - outbound HTTP goes only to hosts the operator granted in
//!   `[plugins.NAME] allowed_hosts`; anything else is denied by the host;
//! - settings and secrets come from `config-get`, never from the job.

// Bindings for the `provider` world of Scribe's contract.
//
// `path` is relative to this crate's folder and points at Scribe's own
// `wit/` directory. If you copy this folder somewhere else, copy Scribe's
// `wit/` folder too (with its `deps/`) and change `path` to match.
wit_bindgen::generate!({
    world: "provider",
    path: "../../wit",
    // The world imports wasi:http. Reuse the `wasip2` crate's bindings for
    // it (the ones wstd uses) instead of generating a second copy, so the
    // types below are interchangeable with wstd's.
    with: {
        "wasi:http/types@0.2.12": wasip2::http::types,
        "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
    },
});

use exports::scribe::plugin::transcriber::{
    Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript,
};
use scribe::plugin::host::{self, LogLevel};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wstd::http::Uri;
use wstd::io::{AsyncInputStream, AsyncOutputStream, AsyncRead};
use wstd::runtime::{block_on, AsyncPollable};

/// The plugin. The host calls it through the exported `transcriber` interface.
struct Plugin;

impl Guest for Plugin {
    /// Tells the host what we accept. Called once per loaded version; must
    /// not do I/O.
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "plugin-template".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // The host refuses other formats before they reach us.
            accepted_formats: vec!["wav".into(), "mp3".into(), "flac".into()],
            max_audio_bytes: 25 * 1024 * 1024,
            // We call a remote service rather than run a model ourselves.
            in_process: false,
        }
    }

    /// Transcribes one file. Exported functions are synchronous; wstd's
    /// `block_on` runs the async HTTP code to completion inside the call.
    fn transcribe(request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        let url = host::config_get("url")
            .ok_or_else(|| ProviderError::Fatal("url not configured".into()))?;
        let reply = block_on(post(&url, &request.audio))?;
        let status = reply.status;
        if !(200..300).contains(&status) {
            return Err(classify_status(
                status,
                reply.retry_after.as_deref(),
                &reply.body,
            ));
        }
        let parsed: Reply = serde_json::from_slice(&reply.body).map_err(|e| {
            // A 2xx we cannot read: most likely the wrong URL, so retrying
            // will not help.
            ProviderError::Fatal(format!("unreadable answer from the service: {e}"))
        })?;
        host::log(
            LogLevel::Debug,
            &format!("transcribed {} bytes", request.audio.len()),
        );
        Ok(Transcript {
            text: parsed.text,
            language: parsed.language.or(request.language),
            duration: None,
            segments: Vec::new(),
        })
    }
}

/// The JSON the service answers with. Add the fields your service has
/// (segments, duration, ...) and map them into `Transcript` above.
#[derive(serde::Deserialize)]
struct Reply {
    /// The transcript.
    text: String,
    /// The detected language, if the service says.
    #[serde(default)]
    language: Option<String>,
}

/// What came back from the service: just what `transcribe` looks at.
struct Answer {
    /// The HTTP status code.
    status: u16,
    /// The `Retry-After` header, if any.
    retry_after: Option<String>,
    /// The whole response body.
    body: Vec<u8>,
}

/// POSTs `audio` to `url` and reads the whole answer.
///
/// This uses wstd's async runtime and streams over the raw wasi:http calls
/// rather than `wstd::http::Client::send`, for one reason: when the host
/// refuses a request (a host not in `allowed_hosts`) it drops the request
/// body at once, so the first body write fails with a closed stream, and
/// `Client::send` reports that and never reads the response, which holds
/// the real reason (`ErrorCode::HttpRequestDenied`). A dropped connection
/// looks the same. Here we finish (or fail) the body write, then always
/// read the response to learn why.
async fn post(url: &str, audio: &[u8]) -> Result<Answer, ProviderError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ProviderError::Fatal(format!("invalid url {url:?}: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(ProviderError::Fatal(format!("url {url:?} is not http(s)"))),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ProviderError::Fatal(format!("url {url:?} has no host")))?;

    // Build the request head. Secrets (e.g. `config_get("api_key")`) would
    // go into an `authorization` header here.
    let headers = Fields::from_list(&[
        ("content-type".into(), b"application/octet-stream".to_vec()),
        (
            "content-length".into(),
            audio.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| ProviderError::Fatal(format!("bad header: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    // These setters only fail on malformed values, which `Uri` has ruled out.
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority.as_str()));
    let _ = request.set_path_with_query(uri.path_and_query().map(|p| p.as_str()));
    let body = request.body().expect("body is taken once");

    // Send the head, then stream the audio. Options such as timeouts could
    // be passed instead of `None`; the host stops the call at its deadline
    // anyway.
    let response = outgoing_handler::handle(request, None).map_err(classify_send_error)?;
    let written = write_body(body, audio).await;

    // Wait for the answer (or for the reason the request failed).
    AsyncPollable::new(response.subscribe()).wait_for().await;
    let response = response
        .get()
        .expect("the response is ready after the wait")
        .expect("the response is taken once")
        .map_err(classify_send_error)?;
    // The server answered although it did not take the whole body (e.g. an
    // early 413): its answer says more than our write error.
    let _ = written;

    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok());
    let incoming = response.consume().expect("the body is taken once");
    let body = read_body(&incoming).await?;
    IncomingBody::finish(incoming);
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Writes the whole audio to the request body and closes it. An error here
/// is not reported by itself: the response says why the request failed.
async fn write_body(body: OutgoingBody, audio: &[u8]) -> std::io::Result<()> {
    {
        // The stream must be dropped before the body is finished.
        let stream = AsyncOutputStream::new(body.write().expect("body stream is taken once"));
        stream.write_all(audio).await?;
    }
    OutgoingBody::finish(body, None).map_err(|e| std::io::Error::other(format!("{e:?}")))
}

/// Reads the whole response body. A failure mid-way is transient.
async fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, ProviderError> {
    // The stream must be dropped before the body is finished, hence the borrow.
    let mut stream = AsyncInputStream::new(incoming.stream().expect("body stream is taken once"));
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .await
        .map_err(|e| ProviderError::Transient(format!("reading the answer failed: {e}")))?;
    Ok(body)
}

/// Maps a request that got no answer to an error. The host refusing the
/// request is the operator's business (grant the host in `allowed_hosts`),
/// so it is fatal; anything else about the connection may pass.
fn classify_send_error(code: ErrorCode) -> ProviderError {
    match code {
        ErrorCode::HttpRequestDenied => ProviderError::Fatal(
            "request denied by the host: add the service's host to this plugin's allowed_hosts"
                .into(),
        ),
        other => ProviderError::Transient(format!("request failed: {other:?}")),
    }
}

/// Maps an HTTP error status to the kind of failure the host acts on.
fn classify_status(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    // Show the start of the service's own explanation to the job's owner.
    let detail = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let message = format!("service answered {status}: {detail}");
    match status {
        // `Retry-After` in seconds; its HTTP-date form is rare and ignored.
        429 => ProviderError::RateLimited(
            retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.saturating_mul(1000)),
        ),
        401 | 403 => ProviderError::Unauthorized(message),
        400..=499 => ProviderError::InvalidInput(message),
        500..=599 => ProviderError::Transient(message),
        _ => ProviderError::Fatal(message),
    }
}

export!(Plugin);
