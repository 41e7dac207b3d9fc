//! Replicate's answers: the prediction object (provider-apis.md §2.4), the
//! `openai/whisper` output (§2.9), the files API's file object (§2.5), and
//! error statuses (§2.7) mapped to a [`Failure`].
//!
//! | answer | kind |
//! | --- | --- |
//! | 429 (`detail`, `Retry-After` in seconds or a date when given) | `rate-limited` |
//! | 408, 409, 5xx | `transient` |
//! | 400, 404 (an unknown version), 413, 422 | `invalid-input` |
//! | 401, 403 | `unauthorized` |
//! | a `failed` prediction | `invalid-input` with its `error`: the model ran on this audio and failed |
//! | `canceled` / `aborted` | `transient` |

use guest_http::{Failure, Heard, HeardSegment, RetryHeaders};
use serde::Deserialize;

/// A prediction, as far as the plugin reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Prediction {
    /// Its id.
    pub id: String,
    /// `starting`, `processing`, `succeeded`, `failed`, `canceled` or `aborted`.
    pub status: String,
    /// The model's output once `succeeded`.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// Where to poll and cancel it.
    pub urls: Urls,
}

/// A prediction's URLs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Urls {
    /// `GET` this to poll.
    pub get: String,
    /// `POST` this to cancel.
    pub cancel: String,
}

impl Prediction {
    /// Whether the prediction will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled" | "aborted")
    }
}

/// Reads a prediction from a 2xx body.
pub fn parse_prediction(body: &[u8]) -> Result<Prediction, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::Fatal(format!("unreadable prediction from Replicate (is base_url right?): {e}")))
}

/// A file object's `urls.get` (the value to pass as the audio input).
pub fn parse_file_url(body: &[u8]) -> Result<String, Failure> {
    #[derive(Deserialize)]
    struct File {
        urls: FileUrls,
    }
    #[derive(Deserialize)]
    struct FileUrls {
        get: String,
    }
    serde_json::from_slice::<File>(body)
        .map(|f| f.urls.get)
        .map_err(|e| Failure::Fatal(format!("unreadable file object from Replicate: {e}")))
}

/// What a terminal prediction means: its output, or the failure to report.
pub fn outcome(prediction: &Prediction) -> Result<Heard, Failure> {
    match prediction.status.as_str() {
        "succeeded" => read_output(prediction.output.as_ref()),
        "failed" => Err(Failure::InvalidInput(format!(
            "Replicate prediction {} failed: {}",
            prediction.id,
            error_text(prediction.error.as_ref())
        ))),
        other => Err(Failure::Transient(format!("Replicate prediction {} ended {other}", prediction.id))),
    }
}

fn error_text(error: Option<&serde_json::Value>) -> String {
    match error {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(serde_json::Value::Null) | None => "no reason given".to_string(),
        Some(other) => other.to_string(),
    }
}

fn read_output(output: Option<&serde_json::Value>) -> Result<Heard, Failure> {
    #[derive(Deserialize)]
    struct Wire {
        transcription: String,
        #[serde(default)]
        segments: Vec<WireSegment>,
        #[serde(default)]
        detected_language: Option<String>,
    }
    #[derive(Deserialize)]
    struct WireSegment {
        start: f64,
        end: f64,
        text: String,
    }
    let output = output.ok_or_else(|| Failure::Fatal("a succeeded prediction without output (data removed?)".into()))?;
    let wire: Wire = serde_json::from_value(output.clone())
        .map_err(|e| Failure::Fatal(format!("unexpected output from Replicate (is version openai/whisper?): {e}")))?;
    let language = wire.detected_language.filter(|l| !l.trim().is_empty()).map(|name| whisper_languages::code_or_name(&name));
    let segments: Vec<HeardSegment> =
        wire.segments.into_iter().map(|s| HeardSegment { start: s.start, end: s.end, text: s.text }).collect();
    Ok(Heard { text: wire.transcription.trim().to_string(), language, duration: segments.last().map(|s| s.end), segments })
}

/// Maps an error status to a [`Failure`], with Replicate's `detail`.
/// `now_ms` turns a `Retry-After` date into a wait.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &[u8], now_ms: u64) -> Failure {
    let message = format!("Replicate answered {status}: {}", detail(body));
    match status {
        429 => Failure::RateLimited(guest_http::retry_after_ms(&RetryHeaders { retry_after_ms: None, retry_after }, now_ms)),
        408 | 409 | 500..=599 => Failure::Transient(message),
        400 | 404 | 413 | 422 => Failure::InvalidInput(message),
        401 | 403 => Failure::Unauthorized(message),
        _ => Failure::Fatal(message),
    }
}

/// The `detail` of Replicate's problem body, else the start of the body.
pub fn detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Problem {
        detail: Option<String>,
    }
    match serde_json::from_slice::<Problem>(body).ok().and_then(|p| p.detail).filter(|d| !d.trim().is_empty()) {
        Some(detail) => detail,
        None => guest_http::excerpt(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction(status: &str, output: serde_json::Value, error: serde_json::Value) -> Prediction {
        let body = json!({
            "id": "p1", "model": "openai/whisper", "version": "v", "input": {}, "status": status, "output": output,
            "error": error, "logs": "", "created_at": "2026-01-01T00:00:00.000Z",
            "urls": {"get": "http://r/v1/predictions/p1", "cancel": "http://r/v1/predictions/p1/cancel", "web": "http://r/p/p1"}
        });
        parse_prediction(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_succeeded_prediction_gives_text_language_and_segments() {
        let output = json!({
            "transcription": " Hello there. ", "detected_language": "english", "translation": null,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": " Hello", "tokens": [1]},
                         {"id": 1, "seek": 0, "start": 1.5, "end": 2.25, "text": " there.", "tokens": [2]}]
        });
        let p = prediction("succeeded", output, json!(null));
        assert!(p.is_terminal());
        let out = outcome(&p).unwrap();
        assert_eq!(out.text, "Hello there.");
        assert_eq!(out.language.as_deref(), Some("en"));
        assert_eq!(out.duration, Some(2.25));
        assert_eq!(out.segments[1], HeardSegment { start: 1.5, end: 2.25, text: " there.".into() });
    }

    #[test]
    fn failed_and_canceled_predictions_map_to_their_kinds() {
        let failed = prediction("failed", json!(null), json!("CUDA error: audio could not be decoded"));
        assert!(matches!(outcome(&failed), Err(Failure::InvalidInput(m)) if m.contains("could not be decoded")));
        assert!(matches!(outcome(&prediction("canceled", json!(null), json!(null))), Err(Failure::Transient(_))));
        assert!(!prediction("processing", json!(null), json!(null)).is_terminal());
        assert!(matches!(outcome(&prediction("succeeded", json!(null), json!(null))), Err(Failure::Fatal(_))));
    }

    #[test]
    fn statuses_map_with_replicates_detail() {
        let throttled = br#"{"detail":"Request was throttled. Your rate limit resets in ~30s."}"#;
        assert_eq!(classify_status(429, Some("7"), throttled, 0), Failure::RateLimited(Some(7000)));
        assert_eq!(classify_status(429, None, throttled, 0), Failure::RateLimited(None));
        assert!(matches!(classify_status(401, None, br#"{"detail":"Invalid token."}"#, 0), Failure::Unauthorized(m) if m.contains("Invalid token.")));
        assert!(matches!(classify_status(422, None, br#"{"detail":"- input.audio: Does not match format 'uri'"}"#, 0), Failure::InvalidInput(m) if m.contains("input.audio")));
        assert!(matches!(classify_status(503, None, b"", 0), Failure::Transient(m) if m.contains("no details")));
        assert!(matches!(classify_status(418, None, b"teapot", 0), Failure::Fatal(_)));
    }

    #[test]
    fn a_file_object_gives_its_get_url() {
        let body = br#"{"id":"f1","name":"audio.wav","content_type":"audio/wav","size":3,"urls":{"get":"https://api.replicate.com/v1/files/f1"}}"#;
        assert_eq!(parse_file_url(body).unwrap(), "https://api.replicate.com/v1/files/f1");
    }
}
