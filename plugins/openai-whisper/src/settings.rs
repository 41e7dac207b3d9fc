//! The plugin's settings turned into what one request needs: the endpoint
//! URL, the model and the I/O timeout.
//!
//! Operators write base URLs in several shapes (`https://api.openai.com`,
//! with a trailing `/`, or the SDK's `https://api.openai.com/v1`), so the
//! endpoint is derived here, in one tested place.

/// The service's base URL when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

/// The model when neither the job nor the `model` setting names one.
pub const DEFAULT_MODEL: &str = "whisper-1";

/// The transcription endpoint under `base_url`: `{base_url}/v1/audio/transcriptions`.
/// A trailing `/` is ignored, and a base URL that already ends in `/v1` (as
/// the OpenAI SDKs write it) does not get a second one.
pub fn endpoint(base_url: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/audio/transcriptions")
}

/// The model to ask for: the job's when it names one, else the configured
/// one, else [`DEFAULT_MODEL`]. Blank values count as unset.
pub fn choose_model(requested: Option<&str>, configured: Option<&str>) -> String {
    [requested, configured]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MODEL)
        .to_string()
}

/// The `response_format` to ask `model` for: `verbose_json` (segments,
/// language, duration) from the Whisper models, which support it; `json`
/// from the others (`gpt-4o(-mini)-transcribe` take `json` only,
/// provider-apis.md §1.2), whose transcripts then have text alone.
pub fn response_format_for(model: &str) -> &'static str {
    if model.trim().to_ascii_lowercase().starts_with("whisper") {
        "verbose_json"
    } else {
        "json"
    }
}

/// How long (ms) to wait on the connection and on the answer, given the ms
/// left before the host stops the call. It stops a little earlier (a tenth,
/// at most one second), so a service that does not answer is reported as a
/// `transient` error by the plugin instead of ending in the host's timeout.
pub fn io_timeout_ms(deadline_ms: u64) -> u64 {
    let margin = (deadline_ms / 10).min(1000);
    deadline_ms - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_accepts_every_shape_of_base_url() {
        let want = "https://api.openai.com/v1/audio/transcriptions";
        for base in ["https://api.openai.com", "https://api.openai.com/", "https://api.openai.com/v1", "https://api.openai.com/v1/", " https://api.openai.com "] {
            assert_eq!(endpoint(base), want, "{base:?}");
        }
        assert_eq!(endpoint("http://127.0.0.1:4000"), "http://127.0.0.1:4000/v1/audio/transcriptions");
        assert_eq!(endpoint("https://proxy.example/openai/"), "https://proxy.example/openai/v1/audio/transcriptions");
        assert_eq!(endpoint("https://proxy.example/openai/v1"), "https://proxy.example/openai/v1/audio/transcriptions");
        // Only a whole `/v1` segment is dropped.
        assert_eq!(endpoint("https://x.example/apiv1"), "https://x.example/apiv1/v1/audio/transcriptions");
    }

    #[test]
    fn the_jobs_model_wins_then_the_setting_then_the_default() {
        assert_eq!(choose_model(Some("gpt-4o-transcribe"), Some("whisper-2")), "gpt-4o-transcribe");
        assert_eq!(choose_model(None, Some("whisper-2")), "whisper-2");
        assert_eq!(choose_model(Some("  "), Some("whisper-2")), "whisper-2");
        assert_eq!(choose_model(None, None), "whisper-1");
        assert_eq!(choose_model(Some(""), Some("")), "whisper-1");
    }

    #[test]
    fn whisper_models_are_asked_for_verbose_json_and_others_for_json() {
        assert_eq!(response_format_for("whisper-1"), "verbose_json");
        assert_eq!(response_format_for("Whisper-large"), "verbose_json");
        for model in ["gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize", "gpt-transcribe"] {
            assert_eq!(response_format_for(model), "json", "{model}");
        }
    }

    #[test]
    fn the_io_timeout_ends_before_the_hosts_deadline() {
        assert_eq!(io_timeout_ms(300_000), 299_000);
        assert_eq!(io_timeout_ms(1_000), 900);
        assert_eq!(io_timeout_ms(0), 0);
        for d in [1, 9, 10, 500, 10_001, u64::MAX] {
            assert!(io_timeout_ms(d) <= d);
        }
    }
}
