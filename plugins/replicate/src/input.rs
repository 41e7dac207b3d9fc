//! What the plugin sends: the audio as a data URI (small audio) and the
//! prediction's JSON body.

use base64::Engine;
use serde_json::json;

/// `data:<mime>;base64,<audio>`.
pub fn data_uri(mime: &str, audio: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(audio))
}

/// The options of one transcription, as `openai/whisper` takes them.
pub struct Options<'a> {
    /// The model version.
    pub version: &'a str,
    /// A URL, data URI or files-API URL of the audio.
    pub audio: &'a str,
    /// A Whisper code or `auto`.
    pub language: &'a str,
    /// `initial_prompt`, if any.
    pub prompt: Option<&'a str>,
    /// `temperature`, if any.
    pub temperature: Option<f32>,
}

/// `{"version", "input": {...}}` for `POST /v1/predictions`.
pub fn prediction_body(options: &Options<'_>) -> Vec<u8> {
    let mut input = json!({
        "audio": options.audio,
        "transcription": "plain text",
        "language": options.language,
    });
    if let Some(prompt) = options.prompt.filter(|p| !p.trim().is_empty()) {
        input["initial_prompt"] = json!(prompt);
    }
    if let Some(t) = options.temperature {
        input["temperature"] = json!(f64::from(t));
    }
    json!({ "version": options.version, "input": input }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_uri_is_base64_with_the_mime_type() {
        assert_eq!(data_uri("audio/wav", b"RIFF"), "data:audio/wav;base64,UklGRg==");
    }

    #[test]
    fn the_body_carries_version_audio_and_the_options_given() {
        let options = Options { version: "v1", audio: "data:x", language: "en", prompt: Some("Zoë"), temperature: Some(0.5) };
        let body: serde_json::Value = serde_json::from_slice(&prediction_body(&options)).unwrap();
        assert_eq!(body["version"], "v1");
        assert_eq!(body["input"]["audio"], "data:x");
        assert_eq!(body["input"]["transcription"], "plain text");
        assert_eq!(body["input"]["language"], "en");
        assert_eq!(body["input"]["initial_prompt"], "Zoë");
        assert_eq!(body["input"]["temperature"], 0.5);
        let bare = Options { prompt: None, temperature: None, ..options };
        let body: serde_json::Value = serde_json::from_slice(&prediction_body(&bare)).unwrap();
        assert!(body["input"].get("initial_prompt").is_none() && body["input"].get("temperature").is_none());
    }
}
