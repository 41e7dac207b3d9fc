//! One HTTP POST over wasi:http, reporting why a request got no answer.
//!
//! This follows the plugin template (`examples/plugin-template`): wstd's
//! runtime and streams over the raw wasi:http calls rather than
//! `wstd::http::Client::send`, because when the host refuses a request (a
//! host not in `allowed_hosts`) it drops the request body at once, the first
//! body write fails with a closed stream, and only the response future holds
//! the real reason (`ErrorCode::HttpRequestDenied`). So the body write is
//! finished (or fails), then the response is always read.
//!
//! The body is written from several slices (the multipart head, the audio,
//! the tail) so the audio is never copied into one buffer.

use crate::errors::Failure;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wstd::http::Uri;
use wstd::io::{AsyncInputStream, AsyncOutputStream, AsyncRead};
use wstd::runtime::AsyncPollable;

/// What came back: the status, the headers the error mapping reads, and the
/// whole body.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// `retry-after-ms`, if any.
    pub retry_after_ms: Option<String>,
    /// `retry-after`, if any.
    pub retry_after: Option<String>,
    /// `x-request-id`, if any: what OpenAI support asks for.
    pub request_id: Option<String>,
    /// The whole response body.
    pub body: Vec<u8>,
}

/// POSTs the concatenation of `body` to `url` with `headers`, waiting at
/// most `timeout_ms` to connect and for the answer to start.
pub async fn post(url: &str, headers: &[(&str, &[u8])], body: &[&[u8]], timeout_ms: u64) -> Result<Answer, Failure> {
    let uri: Uri = url.parse().map_err(|e| Failure::Fatal(format!("invalid base_url: {url:?} is not a URL: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(Failure::Fatal(format!("invalid base_url: {url:?} is not http(s)"))),
    };
    let authority = uri.authority().ok_or_else(|| Failure::Fatal(format!("invalid base_url: {url:?} has no host")))?;

    let list: Vec<(String, Vec<u8>)> = headers.iter().map(|(name, value)| (name.to_string(), value.to_vec())).collect();
    // The error names no value: one of them holds the API key.
    let fields = Fields::from_list(&list).map_err(|e| Failure::Fatal(format!("a request header is not valid HTTP ({e:?}); check api_key")))?;
    let request = OutgoingRequest::new(fields);
    // These setters only fail on malformed values, which `Uri` has ruled out.
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority.as_str()));
    let _ = request.set_path_with_query(uri.path_and_query().map(|p| p.as_str()));
    let outgoing = request.body().expect("the body is taken once");

    let options = RequestOptions::new();
    let timeout_ns = Some(timeout_ms.saturating_mul(1_000_000));
    // An error only says the host does not support that timeout; its own
    // deadline still applies then.
    let _ = options.set_connect_timeout(timeout_ns);
    let _ = options.set_first_byte_timeout(timeout_ns);
    let _ = options.set_between_bytes_timeout(timeout_ns);

    let response = outgoing_handler::handle(request, Some(options)).map_err(classify_send_error)?;
    let written = write_body(outgoing, body).await;

    AsyncPollable::new(response.subscribe()).wait_for().await;
    let response = response
        .get()
        .expect("the response is ready after the wait")
        .expect("the response is taken once")
        .map_err(classify_send_error)?;
    // The server answered although it did not take the whole body (e.g. an
    // early 413): its answer says more than our write error.
    let _ = written;

    let header = |name: &str| {
        response.headers().get(name).into_iter().next().and_then(|v| String::from_utf8(v).ok())
    };
    let (retry_after_ms, retry_after, request_id) = (header("retry-after-ms"), header("retry-after"), header("x-request-id"));
    let status = response.status();
    let incoming = response.consume().expect("the body is taken once");
    let body = read_body(&incoming).await?;
    IncomingBody::finish(incoming);
    Ok(Answer { status, retry_after_ms, retry_after, request_id, body })
}

/// Writes the slices to the request body and closes it. An error here is not
/// reported by itself: the response says why the request failed.
async fn write_body(outgoing: OutgoingBody, slices: &[&[u8]]) -> std::io::Result<()> {
    {
        // The stream must be dropped before the body is finished.
        let stream = AsyncOutputStream::new(outgoing.write().expect("the body stream is taken once"));
        for slice in slices {
            stream.write_all(slice).await?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| std::io::Error::other(format!("{e:?}")))
}

/// Reads the whole response body. A failure mid-way is transient.
async fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, Failure> {
    // The stream must be dropped before the body is finished, hence the borrow.
    let mut stream = AsyncInputStream::new(incoming.stream().expect("the body stream is taken once"));
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .await
        .map_err(|e| Failure::Transient(format!("reading OpenAI's answer failed: {e}")))?;
    Ok(body)
}

/// Maps a request that got no answer. The host refusing it is the
/// operator's business (grant the host), so it is fatal, as is a URL the
/// host cannot use; anything else about the connection (refused, reset,
/// timed out, DNS) may pass and is transient.
fn classify_send_error(code: ErrorCode) -> Failure {
    match code {
        ErrorCode::HttpRequestDenied => Failure::Fatal(
            "request denied by the host: grant OpenAI's host to this plugin (set OPENAI_BASE_URL, \
             or add the host of base_url to [plugins.openai-whisper] allowed_hosts)"
                .into(),
        ),
        ErrorCode::HttpRequestUriInvalid => Failure::Fatal("the host refused base_url as a request URL".into()),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            Failure::Transient(format!("no answer from OpenAI in time ({code:?})"))
        }
        other => Failure::Transient(format!("request to OpenAI failed: {other:?}")),
    }
}
