//! One HTTP request over wasi:http, reporting why it got no answer.
//!
//! This follows the plugin template (`examples/plugin-template`): wstd's
//! runtime and streams over the raw wasi:http calls rather than
//! `wstd::http::Client::send`, because when the host refuses a request (a
//! host not in `allowed_hosts`) it drops the request body at once, the first
//! body write fails with a closed stream, and only the response future holds
//! the real reason (`ErrorCode::HttpRequestDenied`). So the body write is
//! finished (or fails), then the response is always read.
//!
//! The body is written from several slices (e.g. a multipart head, the
//! audio, the tail) so the audio is never copied into one buffer.

use crate::Failure;
use wasip2::http::outgoing_handler;
pub use wasip2::http::types::Method;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wstd::http::Uri;
use wstd::io::{AsyncInputStream, AsyncOutputStream, AsyncRead};
use wstd::runtime::AsyncPollable;

/// Who a request goes to, for the messages of requests that got no answer.
pub struct Service<'a> {
    /// The service's name, e.g. `OpenAI`.
    pub name: &'a str,
    /// How the operator grants its host, e.g. `set OPENAI_BASE_URL, or ...`.
    pub grant_hint: &'a str,
}

/// What came back: the status, the headers and the whole body.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers, names in lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (lowercase), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| String::from_utf8(v.clone()).ok())
    }
}

/// Sends `method url` with `headers` and the concatenation of `body`,
/// waiting at most `timeout_ms` to connect and for the answer to start.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &[u8])],
    body: &[&[u8]],
    timeout_ms: u64,
    service: &Service<'_>,
) -> Result<Answer, Failure> {
    let uri: Uri = url.parse().map_err(|e| Failure::Fatal(format!("invalid base_url: {url:?} is not a URL: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(Failure::Fatal(format!("invalid base_url: {url:?} is not http(s)"))),
    };
    let authority = uri.authority().ok_or_else(|| Failure::Fatal(format!("invalid base_url: {url:?} has no host")))?;

    let list: Vec<(String, Vec<u8>)> = headers.iter().map(|(name, value)| (name.to_string(), value.to_vec())).collect();
    // The error names no value: one of them holds the credentials.
    let fields = Fields::from_list(&list)
        .map_err(|e| Failure::Fatal(format!("a request header is not valid HTTP ({e:?}); check the credentials setting")))?;
    let request = OutgoingRequest::new(fields);
    // These setters only fail on malformed values, which `Uri` has ruled out.
    let _ = request.set_method(&method);
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

    let classify = |code| classify_send_error(code, service);
    let response = outgoing_handler::handle(request, Some(options)).map_err(classify)?;
    let written = write_body(outgoing, body).await;

    AsyncPollable::new(response.subscribe()).wait_for().await;
    let response = response.get().expect("the response is ready after the wait").expect("the response is taken once").map_err(classify)?;
    // The server answered although it did not take the whole body (e.g. an
    // early 413): its answer says more than our write error.
    let _ = written;

    let headers = response.headers().entries();
    let status = response.status();
    let incoming = response.consume().expect("the body is taken once");
    let body = read_body(&incoming, service).await?;
    IncomingBody::finish(incoming);
    Ok(Answer { status, headers, body })
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
async fn read_body(incoming: &IncomingBody, service: &Service<'_>) -> Result<Vec<u8>, Failure> {
    // The stream must be dropped before the body is finished, hence the borrow.
    let mut stream = AsyncInputStream::new(incoming.stream().expect("the body stream is taken once"));
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .await
        .map_err(|e| Failure::Transient(format!("reading {}'s answer failed: {e}", service.name)))?;
    Ok(body)
}

/// Maps a request that got no answer. The host refusing it is the
/// operator's business (grant the host), so it is fatal, as is a URL the
/// host cannot use; anything else about the connection (refused, reset,
/// timed out, DNS) may pass and is transient.
fn classify_send_error(code: ErrorCode, service: &Service<'_>) -> Failure {
    let name = service.name;
    match code {
        ErrorCode::HttpRequestDenied => Failure::Fatal(format!(
            "request denied by the host: grant {name}'s host to this plugin ({})",
            service.grant_hint
        )),
        ErrorCode::HttpRequestUriInvalid => Failure::Fatal("the host refused base_url as a request URL".into()),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            Failure::Transient(format!("no answer from {name} in time ({code:?})"))
        }
        other => Failure::Transient(format!("request to {name} failed: {other:?}")),
    }
}
