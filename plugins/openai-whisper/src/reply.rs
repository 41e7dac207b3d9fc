//! Reading a successful answer: `verbose_json` (text, language, duration
//! and segments) or `json` (text only).
//!
//! Only `text` is required; everything else is read when present and
//! unknown fields are ignored, so one reader serves both formats and every
//! model. `verbose_json` names the language in full ("english"); the
//! transcript carries its ISO-639-1 code.

use crate::errors::Failure;
use guest_http::{Heard, HeardSegment};
use serde::Deserialize;

#[derive(Deserialize)]
struct Wire {
    text: String,
    language: Option<String>,
    duration: Option<f64>,
    #[serde(default)]
    segments: Vec<WireSegment>,
}

#[derive(Deserialize)]
struct WireSegment {
    start: f64,
    end: f64,
    text: String,
}

/// The transcript of a 2xx answer. A body without `text` is `fatal`: it
/// means the URL does not lead to OpenAI's API (a wrong `base_url`), which
/// retrying will not fix.
pub fn parse(body: &[u8]) -> Result<Heard, Failure> {
    let wire: Wire = serde_json::from_slice(body)
        .map_err(|e| Failure::Fatal(format!("unreadable answer from OpenAI (is base_url right?): {e}")))?;
    let language = wire.language.filter(|l| !l.trim().is_empty()).map(|name| whisper_languages::code_or_name(&name));
    Ok(Heard {
        text: wire.text,
        language,
        duration: wire.duration,
        segments: wire.segments.into_iter().map(|s| HeardSegment { start: s.start, end: s.end, text: s.text }).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_gives_the_text_and_ignores_the_rest() {
        let body = br#"{"text":"Hello there.","usage":{"type":"duration","seconds":3},"logprobs":[]}"#;
        let reply = parse(body).unwrap();
        assert_eq!(reply.text, "Hello there.");
        assert_eq!((reply.language, reply.duration, reply.segments.len()), (None, None, 0));
    }

    #[test]
    fn verbose_json_gives_language_code_duration_and_segments() {
        let body = br#"{"task":"transcribe","language":"english","duration":8.47,"text":"The beach. It was.",
            "segments":[{"id":0,"seek":0,"start":0.0,"end":3.32,"text":" The beach.","tokens":[50364],"temperature":0.0,
            "avg_logprob":-0.28,"compression_ratio":1.2,"no_speech_prob":0.01},
            {"id":1,"seek":0,"start":3.32,"end":8.47,"text":" It was.","tokens":[1],"temperature":0.0,
            "avg_logprob":-0.2,"compression_ratio":1.1,"no_speech_prob":0.02}],"usage":{"type":"duration","seconds":9}}"#;
        let reply = parse(body).unwrap();
        assert_eq!(reply.language.as_deref(), Some("en"));
        assert_eq!(reply.duration, Some(8.47));
        assert_eq!(reply.segments, [
            HeardSegment { start: 0.0, end: 3.32, text: " The beach.".into() },
            HeardSegment { start: 3.32, end: 8.47, text: " It was.".into() },
        ]);
    }

    #[test]
    fn an_unknown_language_name_is_kept_as_named() {
        let reply = parse(br#"{"text":"x","language":"klingon"}"#).unwrap();
        assert_eq!(reply.language.as_deref(), Some("klingon"));
    }

    #[test]
    fn a_body_without_text_is_fatal() {
        for body in [&b"<html></html>"[..], br#"{"transcript":"x"}"#, b""] {
            assert!(matches!(parse(body), Err(Failure::Fatal(_))), "{body:?}");
        }
    }
}
