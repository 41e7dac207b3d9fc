//! Reading a successful answer (`response_format=json`).
//!
//! OpenAI answers `{"text": "...", "usage": {...}}` (plus optional fields
//! that depend on the model); only `text` is required, so only `text` is
//! read, and unknown fields are ignored.

use crate::errors::Failure;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reply {
    text: String,
}

/// The transcript text of a 2xx answer. A body without `text` is `fatal`:
/// it means the URL does not lead to OpenAI's API (a wrong `base_url`),
/// which retrying will not fix.
pub fn parse_text(body: &[u8]) -> Result<String, Failure> {
    serde_json::from_slice::<Reply>(body)
        .map(|r| r.text)
        .map_err(|e| Failure::Fatal(format!("unreadable answer from OpenAI (is base_url right?): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_text_and_ignores_the_rest() {
        let body = br#"{"text":"Hello there.","usage":{"type":"duration","seconds":3},"logprobs":[]}"#;
        assert_eq!(parse_text(body).unwrap(), "Hello there.");
    }

    #[test]
    fn a_body_without_text_is_fatal() {
        for body in [&b"<html></html>"[..], br#"{"transcript":"x"}"#, b""] {
            assert!(matches!(parse_text(body), Err(Failure::Fatal(_))), "{body:?}");
        }
    }
}
