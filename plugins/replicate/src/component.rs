//! The component glue: bindings of the `provider` world, the exported
//! `transcriber` interface, and the I/O of one transcription (upload,
//! create, poll, cancel). Decisions live in the pure modules.

// The `provider` world's bindings, from Scribe's own `wit/`.
guest_http::provider_bindings!();

use crate::input::{self, Options};
use crate::prediction::{self, Prediction};
use crate::settings;
use exports::scribe::plugin::transcriber::{Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript};
use guest_http::{multipart, Answer, Failure, Method, Service};
use scribe::plugin::host::{self, LogLevel};

/// Audio formats Whisper decodes (ffmpeg underneath).
const ACCEPTED_FORMATS: &[&str] = &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];

const SERVICE: Service<'static> = Service {
    name: "Replicate",
    grant_hint: "set REPLICATE_BASE_URL, or add the host of base_url to [plugins.replicate] allowed_hosts",
};

struct ReplicateWhisper;

impl Guest for ReplicateWhisper {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "replicate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            accepted_formats: ACCEPTED_FORMATS.iter().map(|f| f.to_string()).collect(),
            max_audio_bytes: settings::MAX_AUDIO_BYTES,
            in_process: false,
        }
    }

    fn transcribe(request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        wstd::runtime::block_on(transcribe(request)).map_err(ProviderError::from)
    }
}

/// A setting, `None` when unset or blank.
fn setting(key: &str) -> Option<String> {
    host::config_get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The plugin's connection to Replicate for one call.
struct Client {
    base_url: String,
    authorization: String,
    /// The host's clock (ms) at which the call must be over.
    deadline_at: u64,
}

impl Client {
    fn left_ms(&self) -> u64 {
        self.deadline_at.saturating_sub(host::now())
    }

    async fn send(&self, method: Method, url: &str, headers: &[(&str, &[u8])], body: &[&[u8]]) -> Result<Answer, Failure> {
        let mut all: Vec<(&str, &[u8])> = vec![("authorization", self.authorization.as_bytes())];
        all.extend_from_slice(headers);
        guest_http::send(method, url, &all, body, self.left_ms(), &SERVICE).await
    }

    /// The 2xx answer's body, or the failure its status means.
    fn expect_success(answer: Answer) -> Result<Vec<u8>, Failure> {
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let retry_after = answer.header("retry-after");
        Err(prediction::classify_status(answer.status, retry_after.as_deref(), &answer.body, host::now()))
    }
}

async fn transcribe(request: TranscribeRequest) -> Result<Transcript, Failure> {
    let token = setting("api_token").ok_or_else(|| Failure::Unauthorized("no API token: set REPLICATE_API_TOKEN".into()))?;
    let client = Client {
        base_url: setting("base_url").unwrap_or_else(|| settings::DEFAULT_BASE_URL.to_string()),
        authorization: format!("Bearer {token}"),
        deadline_at: host::now() + request.deadline_ms,
    };
    let budget = settings::budget(request.deadline_ms);
    let audio = audio_input(&client, &request).await?;
    let version = setting("version").unwrap_or_else(|| settings::DEFAULT_VERSION.to_string());
    let language = settings::language_input(request.language.as_deref());
    let body = input::prediction_body(&Options {
        version: &version,
        audio: &audio,
        language: &language,
        prompt: request.prompt.as_deref(),
        temperature: request.temperature,
    });
    let prefer = format!("wait={}", settings::prefer_wait_secs(&budget, setting("wait_secs").as_deref()));
    let headers: [(&str, &[u8]); 2] = [("content-type", b"application/json"), ("prefer", prefer.as_bytes())];
    let url = settings::endpoint(&client.base_url, "predictions");
    let created = Client::expect_success(client.send(Method::Post, &url, &headers, &[&body]).await?)?;
    let mut current = prediction::parse_prediction(&created)?;
    while !current.is_terminal() {
        if client.left_ms() <= budget.cancel_margin_ms + settings::POLL_INTERVAL_MS {
            return Err(cancel(&client, &current).await);
        }
        wstd::task::sleep(wstd::time::Duration::from_millis(settings::POLL_INTERVAL_MS)).await;
        let polled = Client::expect_success(client.send(Method::Get, &current.urls.get, &[], &[]).await?)?;
        current = prediction::parse_prediction(&polled)?;
    }
    let mut heard = prediction::outcome(&current)?;
    host::log(LogLevel::Debug, &format!("prediction {} succeeded for {} bytes", current.id, request.audio.len()));
    heard.language = heard.language.or(request.language);
    Ok(Transcript::from(heard))
}

/// The audio input: a data URI when small, else an upload to the files API.
async fn audio_input(client: &Client, request: &TranscribeRequest) -> Result<String, Failure> {
    let mime = multipart::audio_mime(&request.audio_format);
    if request.audio.len() <= settings::DATA_URI_MAX_BYTES {
        return Ok(input::data_uri(mime, &request.audio));
    }
    let filename = multipart::file_name(&request.audio_format);
    let file = multipart::FilePart { field: "content", filename: &filename, content_type: mime, bytes: &request.audio };
    let body = multipart::build(&[("filename", filename.as_str())], &file);
    let length = body.content_length(request.audio.len()).to_string();
    let headers: [(&str, &[u8]); 2] = [("content-type", body.content_type.as_bytes()), ("content-length", length.as_bytes())];
    let url = settings::endpoint(&client.base_url, "files");
    let answer = client.send(Method::Post, &url, &headers, &[&body.head, &request.audio, &body.tail]).await?;
    prediction::parse_file_url(&Client::expect_success(answer)?)
}

/// Cancels a prediction that would outlive the call; the failure to report.
async fn cancel(client: &Client, current: &Prediction) -> Failure {
    let outcome = client.send(Method::Post, &current.urls.cancel, &[], &[]).await;
    let how = match outcome {
        Ok(answer) if (200..300).contains(&answer.status) => "canceled".to_string(),
        Ok(answer) => format!("cancel answered {}", answer.status),
        Err(e) => format!("cancel failed: {e:?}"),
    };
    host::log(LogLevel::Warn, &format!("prediction {} still {} near the deadline: {how}", current.id, current.status));
    Failure::Transient(format!("Replicate prediction {} did not finish within the call's deadline ({how})", current.id))
}

export!(ReplicateWhisper);
