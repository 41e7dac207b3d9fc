//! How an answer from OpenAI that is not a success becomes a provider error.
//!
//! This mapping is what the host and the retry policy act on, so it follows
//! `/work/shared/provider-apis.md` §1.5-1.6 to the letter and is kept pure
//! (status, headers, body and the clock in; a [`Failure`] out) to be unit
//! tested natively:
//!
//! | answer | kind |
//! | --- | --- |
//! | 429 with `error.code` (or `type`) `insufficient_quota` / `credit_balance_exhausted` | `fatal`: waiting does not fix a quota |
//! | other 429 | `rate-limited`, with `retry-after-ms`, else `retry-after` (seconds, else an HTTP date) |
//! | 408, 409, 5xx | `transient` |
//! | 400, 404, 413, 415, 422 | `invalid-input` |
//! | 401, 403 | `unauthorized` |
//! | anything else | `fatal` |
//!
//! Every message carries OpenAI's own `error.message`, which the job's
//! owner sees.

use serde::Deserialize;

pub use guest_http::{Failure, RetryHeaders};

/// `error.code` (or `error.type`) values of a 429 that mean the account's
/// quota or credit is used up: retrying does not help until someone pays.
pub const QUOTA_CODES: &[&str] = &["insufficient_quota", "credit_balance_exhausted"];

/// The error envelope OpenAI answers with:
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// The human-readable explanation.
    #[serde(default)]
    pub message: Option<String>,
    /// The error's type, e.g. `invalid_request_error`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A machine-readable code, e.g. `insufficient_quota`.
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ApiError,
}

/// Reads OpenAI's error envelope from `body`; `None` when the body is not one.
pub fn parse_error_body(body: &[u8]) -> Option<ApiError> {
    serde_json::from_slice::<Envelope>(body).ok().map(|e| e.error)
}

/// Maps an error status to a [`Failure`]. `now_ms` (ms since the Unix epoch)
/// turns a `retry-after` date into a wait.
pub fn classify_status(status: u16, headers: &RetryHeaders<'_>, body: &[u8], now_ms: u64) -> Failure {
    let error = parse_error_body(body);
    let message = describe(status, error.as_ref(), body);
    match status {
        429 if error.as_ref().is_some_and(is_quota_error) => Failure::Fatal(message),
        429 => Failure::RateLimited(guest_http::retry_after_ms(headers, now_ms)),
        408 | 409 | 500..=599 => Failure::Transient(message),
        400 | 404 | 413 | 415 | 422 => Failure::InvalidInput(message),
        401 | 403 => Failure::Unauthorized(message),
        _ => Failure::Fatal(message),
    }
}

/// Whether an error means an exhausted quota rather than a rate limit.
pub fn is_quota_error(error: &ApiError) -> bool {
    [&error.code, &error.kind].into_iter().flatten().any(|c| QUOTA_CODES.contains(&c.as_str()))
}

/// `OpenAI answered 429 (insufficient_quota): You exceeded your current quota...`:
/// the status, the code when there is one and OpenAI's message (or the
/// start of the body when it is not an envelope).
pub fn describe(status: u16, error: Option<&ApiError>, body: &[u8]) -> String {
    let code = error.and_then(|e| e.code.as_deref()).map(|c| format!(" ({c})")).unwrap_or_default();
    let detail = match error.and_then(|e| e.message.as_deref()).map(str::trim).filter(|m| !m.is_empty()) {
        Some(message) => message.to_string(),
        None => guest_http::excerpt(body),
    };
    format!("OpenAI answered {status}{code}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_http::{retry_after_ms, MAX_EXCERPT};

    const NOW_MS: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn envelope(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string()
            .into_bytes()
    }

    fn headers<'a>(ms: Option<&'a str>, secs: Option<&'a str>) -> RetryHeaders<'a> {
        RetryHeaders { retry_after_ms: ms, retry_after: secs }
    }

    #[test]
    fn a_rate_limit_carries_the_wait_the_service_asked_for() {
        let body = envelope("Rate limit reached for whisper-1", "requests", Some("rate_limit_exceeded"));
        let none = RetryHeaders::default();
        assert_eq!(classify_status(429, &headers(None, Some("7")), &body, NOW_MS), Failure::RateLimited(Some(7000)));
        assert_eq!(classify_status(429, &headers(Some("1500.2"), Some("7")), &body, NOW_MS), Failure::RateLimited(Some(1501)));
        assert_eq!(classify_status(429, &none, &body, NOW_MS), Failure::RateLimited(None));
        assert_eq!(classify_status(429, &none, b"", NOW_MS), Failure::RateLimited(None));
    }

    #[test]
    fn retry_after_is_read_in_the_sdks_order() {
        assert_eq!(retry_after_ms(&headers(Some("250"), None), NOW_MS), Some(250));
        assert_eq!(retry_after_ms(&headers(Some("0.4"), None), NOW_MS), Some(1));
        assert_eq!(retry_after_ms(&headers(Some(" 20 "), Some("9")), NOW_MS), Some(20));
        assert_eq!(retry_after_ms(&headers(None, Some("2")), NOW_MS), Some(2000));
        assert_eq!(retry_after_ms(&headers(None, Some("1.25")), NOW_MS), Some(1250));
        assert_eq!(retry_after_ms(&headers(None, Some("0")), NOW_MS), Some(0));
        // An unusable retry-after-ms falls through to retry-after.
        for bad in ["soon", "-5", "NaN", "inf", ""] {
            assert_eq!(retry_after_ms(&headers(Some(bad), Some("3")), NOW_MS), Some(3000), "{bad:?}");
            assert_eq!(retry_after_ms(&headers(None, Some(bad)), NOW_MS), None, "{bad:?}");
        }
        assert_eq!(retry_after_ms(&RetryHeaders::default(), NOW_MS), None);
    }

    #[test]
    fn retry_after_as_an_http_date_is_a_wait_from_now() {
        // NOW_MS + 30 s, in each of the three date formats HTTP allows.
        for date in ["Tue, 14 Nov 2023 22:13:50 GMT", "Tuesday, 14-Nov-23 22:13:50 GMT", "Tue Nov 14 22:13:50 2023"] {
            assert_eq!(retry_after_ms(&headers(None, Some(date)), NOW_MS), Some(30_000), "{date}");
        }
        assert_eq!(retry_after_ms(&headers(None, Some("Tue, 14 Nov 2023 22:13:50 GMT")), NOW_MS + 500), Some(29_500));
        // A date already past: go now.
        assert_eq!(retry_after_ms(&headers(None, Some("Tue, 14 Nov 2023 22:00:00 GMT")), NOW_MS), Some(0));
    }

    #[test]
    fn an_exhausted_quota_is_fatal_with_openais_message() {
        let message = "You exceeded your current quota, please check your plan and billing details.";
        for (kind, code) in [
            ("insufficient_quota", Some("insufficient_quota")),
            ("insufficient_quota", None),
            ("requests", Some("credit_balance_exhausted")),
        ] {
            let failure = classify_status(429, &headers(None, Some("5")), &envelope(message, kind, code), NOW_MS);
            let Failure::Fatal(text) = failure else { panic!("{kind}/{code:?}: {failure:?}") };
            assert!(text.contains(message), "{text}");
            assert!(text.starts_with("OpenAI answered 429"), "{text}");
        }
        let text = describe(429, parse_error_body(&envelope(message, "insufficient_quota", Some("insufficient_quota"))).as_ref(), b"");
        assert_eq!(text, format!("OpenAI answered 429 (insufficient_quota): {message}"));
    }

    #[test]
    fn statuses_map_to_the_kinds_of_the_reference() {
        let body = envelope("The server had an error while processing your request.", "server_error", None);
        let none = RetryHeaders::default();
        let kind = |status: u16| match classify_status(status, &none, &body, NOW_MS) {
            Failure::RateLimited(_) => "rate-limited",
            Failure::Transient(_) => "transient",
            Failure::InvalidInput(_) => "invalid-input",
            Failure::Unauthorized(_) => "unauthorized",
            Failure::Fatal(_) => "fatal",
        };
        for status in [408, 409, 500, 502, 503, 504, 599] {
            assert_eq!(kind(status), "transient", "{status}");
        }
        for status in [400, 404, 413, 415, 422] {
            assert_eq!(kind(status), "invalid-input", "{status}");
        }
        for status in [401, 403] {
            assert_eq!(kind(status), "unauthorized", "{status}");
        }
        for status in [300, 302, 402, 405, 410, 418, 451, 600] {
            assert_eq!(kind(status), "fatal", "{status}");
        }
        assert_eq!(kind(429), "rate-limited");
    }

    #[test]
    fn messages_carry_openais_explanation() {
        let body = envelope("Invalid file format. Supported formats: ['flac', 'wav']", "invalid_request_error", None);
        assert_eq!(
            classify_status(400, &RetryHeaders::default(), &body, NOW_MS),
            Failure::InvalidInput("OpenAI answered 400: Invalid file format. Supported formats: ['flac', 'wav']".into())
        );
        let body = envelope("Incorrect API key provided: sk-...", "invalid_request_error", Some("invalid_api_key"));
        assert_eq!(
            classify_status(401, &RetryHeaders::default(), &body, NOW_MS),
            Failure::Unauthorized("OpenAI answered 401 (invalid_api_key): Incorrect API key provided: sk-...".into())
        );
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_quoted_briefly() {
        assert_eq!(describe(502, None, b"  <html>Bad gateway</html>\n"), "OpenAI answered 502: <html>Bad gateway</html>");
        assert_eq!(describe(500, None, b""), "OpenAI answered 500: no details");
        let long = vec![b'x'; 1000];
        assert_eq!(describe(500, None, &long).len(), "OpenAI answered 500: ".len() + MAX_EXCERPT);
        // An envelope without a message falls back to the body.
        let body = br#"{"error":{"message":null,"type":"server_error","param":null,"code":null}}"#;
        let error = parse_error_body(body).unwrap();
        assert_eq!(describe(500, Some(&error), body), format!("OpenAI answered 500: {}", String::from_utf8_lossy(body)));
    }

    #[test]
    fn parses_the_envelope_and_nothing_else() {
        let error = parse_error_body(&envelope("m", "t", Some("c"))).unwrap();
        assert_eq!(error, ApiError { message: Some("m".into()), kind: Some("t".into()), code: Some("c".into()) });
        assert_eq!(parse_error_body(b"{\"detail\":\"x\"}"), None);
        assert_eq!(parse_error_body(b"not json"), None);
    }
}
