//! What Scribe's shipped providers share, so each provider crate holds
//! only what is particular to its service: [`multipart`] (a form with one
//! streamed file part), [`Failure`] (the WIT
//! `provider-error` as plain Rust), [`retry_after_ms`] (how long a 429 asks
//! to wait) and, on wasm, [`send`]: one HTTP request over wasi:http.
//!
//! Everything but `send` is plain Rust, unit tested natively.

use std::time::UNIX_EPOCH;

pub mod multipart;

#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
pub use http::{send, Answer, Method, Service};

/// A failed transcription, mirroring the WIT `provider-error` variant (each
/// provider's component glue converts it), so pure code builds without the
/// bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Slow down; wait this many ms when the service said so.
    RateLimited(Option<u64>),
    /// May go away by itself: worth retrying.
    Transient(String),
    /// The audio or an option was refused.
    InvalidInput(String),
    /// The credentials were refused.
    Unauthorized(String),
    /// Waiting does not fix it.
    Fatal(String),
}

/// A transcript as plain Rust: what a provider heard, before the component
/// glue converts it to the WIT `transcript` ([`provider_bindings!`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// The whole text.
    pub text: String,
    /// The language's ISO-639-1 code (or the service's name for it, when
    /// Whisper has no code).
    pub language: Option<String>,
    /// The audio's length in seconds.
    pub duration: Option<f64>,
    /// Timed segments, in order.
    pub segments: Vec<HeardSegment>,
}

/// One timed segment of a [`Heard`] transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct HeardSegment {
    /// Start, in seconds.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// What was said (the service's text, spacing and all).
    pub text: String,
}

/// The bindings of the `provider` world (from Scribe's `wit/`, reusing the
/// `wasip2` crate's wasi:http types), and the conversions of [`Failure`]
/// and [`Heard`] into the generated `provider-error` and `transcript`.
/// Invoke once, at the root of a provider's wasm-only module; the crate
/// must depend on `wit-bindgen` and `wasip2`.
#[macro_export]
macro_rules! provider_bindings {
    () => {
        wit_bindgen::generate!({
            world: "provider",
            path: "../../wit",
            with: {
                "wasi:http/types@0.2.12": wasip2::http::types,
                "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
                "wasi:io/error@0.2.12": wasip2::io::error,
                "wasi:io/poll@0.2.12": wasip2::io::poll,
                "wasi:io/streams@0.2.12": wasip2::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            },
        });

        impl From<$crate::Failure> for exports::scribe::plugin::transcriber::ProviderError {
            fn from(failure: $crate::Failure) -> Self {
                use exports::scribe::plugin::transcriber::ProviderError;
                match failure {
                    $crate::Failure::RateLimited(ms) => ProviderError::RateLimited(ms),
                    $crate::Failure::Transient(m) => ProviderError::Transient(m),
                    $crate::Failure::InvalidInput(m) => ProviderError::InvalidInput(m),
                    $crate::Failure::Unauthorized(m) => ProviderError::Unauthorized(m),
                    $crate::Failure::Fatal(m) => ProviderError::Fatal(m),
                }
            }
        }

        impl From<$crate::Heard> for scribe::plugin::types::Transcript {
            fn from(heard: $crate::Heard) -> Self {
                scribe::plugin::types::Transcript {
                    text: heard.text,
                    language: heard.language,
                    duration: heard.duration,
                    segments: heard
                        .segments
                        .into_iter()
                        .map(|s| scribe::plugin::types::Segment { start: s.start, end: s.end, text: s.text })
                        .collect(),
                }
            }
        }
    };
}

/// The response headers that say how long to wait after a 429, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryHeaders<'a> {
    /// `retry-after-ms`: milliseconds, possibly fractional (OpenAI's own
    /// header, read first, as its SDK does).
    pub retry_after_ms: Option<&'a str>,
    /// `retry-after`: seconds, or an HTTP date.
    pub retry_after: Option<&'a str>,
}

/// How long the service asked us to wait, in ms: `retry-after-ms` (float
/// ms), else `retry-after` as (possibly fractional) seconds, else as an HTTP
/// date minus `now_ms` (0 when the date has passed). Values that do not
/// parse, are negative or not finite are ignored. Fractions round up, so we
/// never come back early.
pub fn retry_after_ms(headers: &RetryHeaders<'_>, now_ms: u64) -> Option<u64> {
    let from_ms = headers.retry_after_ms.and_then(parse_non_negative).map(|ms| ms.ceil() as u64);
    from_ms.or_else(|| {
        let value = headers.retry_after?.trim();
        match parse_non_negative(value) {
            Some(secs) => Some((secs * 1000.0).ceil() as u64),
            None => {
                let at = httpdate::parse_http_date(value).ok()?;
                let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
                Some(u64::try_from(at_ms).unwrap_or(u64::MAX).saturating_sub(now_ms))
            }
        }
    })
}

/// A finite, non-negative number, or `None`.
fn parse_non_negative(value: &str) -> Option<f64> {
    value.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// Longest excerpt of a body kept in a message.
pub const MAX_EXCERPT: usize = 200;

/// The start of `body` as text, or `no details` when it is empty.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_EXCERPT)]);
    let text = text.trim();
    if text.is_empty() {
        "no details".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn retry_after_is_read_in_the_sdks_order() {
        let h = |ms, secs| RetryHeaders { retry_after_ms: ms, retry_after: secs };
        assert_eq!(retry_after_ms(&h(Some("1500.2"), Some("7")), NOW_MS), Some(1501));
        assert_eq!(retry_after_ms(&h(None, Some("7")), NOW_MS), Some(7000));
        assert_eq!(retry_after_ms(&h(None, Some("0.25")), NOW_MS), Some(250));
        assert_eq!(retry_after_ms(&h(Some("-1"), Some("x")), NOW_MS), None);
        assert_eq!(retry_after_ms(&h(None, Some("Tue, 14 Nov 2023 22:13:50 GMT")), NOW_MS), Some(30_000));
        assert_eq!(retry_after_ms(&h(None, Some("Tue, 14 Nov 2023 22:13:00 GMT")), NOW_MS), Some(0), "a past date: no wait");
        assert_eq!(retry_after_ms(&RetryHeaders::default(), NOW_MS), None);
    }

    #[test]
    fn an_excerpt_is_bounded_and_never_empty() {
        assert_eq!(excerpt(b"  "), "no details");
        assert_eq!(excerpt(&[b'x'; 500]).len(), MAX_EXCERPT);
    }
}
