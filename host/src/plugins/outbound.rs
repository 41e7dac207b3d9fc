//! How a provider's outgoing HTTP request leaves the host, once the sandbox
//! has let it through ([`super::sandbox`]): over a pool of kept-alive
//! connections shared by every call, instead of a new connection (and, for
//! https, a new TLS handshake) per request as wasmtime-wasi-http's default
//! makes. A provider makes one request per job, so at thousands of jobs a
//! second the connects were a fair share of a job's cost, and against a
//! real provider each handshake is a round trip or two of latency.
//!
//! The guest's request options still bound the request: the connect and
//! first-byte timeouts together bound the wait for the response head (the
//! larger of the two: a pooled connection has nothing to connect), and the
//! between-bytes timeout each wait for more of the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The wait for a response head, or for more body, when the guest sets
/// no timeout (wasmtime-wasi-http's own default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Idle connections kept per host.
const IDLE_PER_HOST: usize = 64;

/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The connection pool every call of one plugin runtime sends through;
/// cheap to clone (clones share the pool).
#[derive(Clone)]
pub(crate) struct Outbound {
    client: Client<Connector, WasiBody>,
}

impl Outbound {
    /// An empty pool.
    pub(crate) fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Self { client }
    }

    /// Sends `request` over a pooled connection; its response, with a
    /// body that fails if more of it takes longer than the between-bytes
    /// timeout.
    pub(crate) fn send(&self, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> SendFuture {
        let head_timeout =
            options.and_then(|o| o.connect_timeout.max(o.first_byte_timeout)).unwrap_or(DEFAULT_TIMEOUT);
        let between_bytes = options.and_then(|o| o.between_bytes_timeout).unwrap_or(DEFAULT_TIMEOUT);
        let sent = self.client.request(request);
        Box::new(async move {
            let response = tokio::time::timeout(head_timeout, sent)
                .await
                .map_err(|_| Error::ConnectionReadTimeout)?
                .map_err(error_of)?;
            let response = response.map(|incoming| TimedBody::new(incoming, between_bytes).boxed_unsync());
            // The pool drives the connection itself.
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// The future [`send`] returns, as wasmtime-wasi-http's hook wants it.
pub(crate) type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<(http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), Error>> + Send>), Error>,
        > + Send,
>;

/// What a failed request was, in the terms the guest gets.
fn error_of(error: hyper_util::client::legacy::Error) -> Error {
    let io = cause::<std::io::Error>(&error).map(std::io::Error::kind);
    match io {
        Some(std::io::ErrorKind::ConnectionRefused) => Error::ConnectionRefused,
        Some(std::io::ErrorKind::TimedOut) => Error::ConnectionTimeout,
        _ if error.is_connect() => Error::Connect(std::io::Error::other(error.to_string())),
        _ => match cause::<hyper::Error>(&error) {
            Some(e) if e.is_incomplete_message() => Error::HttpResponseIncomplete,
            _ => Error::ConnectionTerminated,
        },
    }
}

/// The first cause of type `E` in `error`'s chain of sources.
fn cause<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut next = error.source();
    while let Some(source) = next {
        if let Some(found) = source.downcast_ref::<E>() {
            return Some(found);
        }
        next = source.source();
    }
    None
}

/// A response body that fails when more of it is not there in time.
struct TimedBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(incoming: hyper::body::Incoming, between_bytes: Duration) -> Self {
        Self { incoming, between_bytes, deadline: Box::pin(tokio::time::sleep(between_bytes)) }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
