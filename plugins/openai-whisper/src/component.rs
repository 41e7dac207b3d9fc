//! The component glue: the bindings of the `provider` world (with the
//! conversions `guest-http` provides) and the exported `transcriber`
//! interface. Everything that decides something lives in the pure
//! modules; this file only reads settings, calls them and does the I/O.

// The `provider` world's bindings, from Scribe's own `wit/`.
guest_http::provider_bindings!();

use crate::errors::{self, Failure, RetryHeaders};
use crate::{reply, settings};
use guest_http::multipart;
use guest_http::{Method, Service};
use exports::scribe::plugin::transcriber::{Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript};
use scribe::plugin::host::{self, LogLevel};

/// Audio formats OpenAI accepts (provider-apis.md §1.2 and its 400 message).
const ACCEPTED_FORMATS: &[&str] = &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];

/// The largest upload OpenAI takes: 25 MiB (provider-apis.md §1.4).
const MAX_AUDIO_BYTES: u64 = 26_214_400;

/// The plugin, exported through the `transcriber` interface.
struct OpenAiWhisper;

impl Guest for OpenAiWhisper {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "openai-whisper".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            accepted_formats: ACCEPTED_FORMATS.iter().map(|f| f.to_string()).collect(),
            max_audio_bytes: MAX_AUDIO_BYTES,
            in_process: false,
        }
    }

    fn transcribe(request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        transcribe(request).map_err(ProviderError::from)
    }
}

/// A setting, `None` when unset or blank.
fn setting(key: &str) -> Option<String> {
    host::config_get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn transcribe(request: TranscribeRequest) -> Result<Transcript, Failure> {
    let api_key = setting("api_key").ok_or_else(|| Failure::Unauthorized("no API key: set OPENAI_API_KEY".into()))?;
    let base_url = setting("base_url").unwrap_or_else(|| settings::DEFAULT_BASE_URL.to_string());
    let url = settings::endpoint(&base_url);
    let model = settings::choose_model(request.model.as_deref(), setting("model").as_deref());
    let temperature = request.temperature.map(|t| t.to_string());

    let mut fields: Vec<(&str, &str)> = vec![("model", &model)];
    let optional = [("language", request.language.as_deref()), ("prompt", request.prompt.as_deref()), ("temperature", temperature.as_deref())];
    fields.extend(optional.into_iter().filter_map(|(name, value)| Some((name, value.filter(|v| !v.trim().is_empty())?))));
    fields.push(("response_format", settings::response_format_for(&model)));
    let filename = multipart::file_name(&request.audio_format);
    let file = multipart::FilePart {
        field: "file",
        filename: &filename,
        content_type: multipart::audio_mime(&request.audio_format),
        bytes: &request.audio,
    };
    let body = multipart::build(&fields, &file);

    let authorization = format!("Bearer {api_key}");
    let content_length = body.content_length(request.audio.len()).to_string();
    let headers: [(&str, &[u8]); 4] = [
        ("authorization", authorization.as_bytes()),
        ("content-type", body.content_type.as_bytes()),
        ("content-length", content_length.as_bytes()),
        ("accept", b"application/json"),
    ];
    let slices: [&[u8]; 3] = [&body.head, &request.audio, &body.tail];
    let timeout_ms = settings::io_timeout_ms(request.deadline_ms);
    let service = Service {
        name: "OpenAI",
        grant_hint: "set OPENAI_BASE_URL, or add the host of base_url to [plugins.openai-whisper] allowed_hosts",
    };
    let answer = wstd::runtime::block_on(guest_http::send(Method::Post, &url, &headers, &slices, timeout_ms, &service))?;

    if !(200..300).contains(&answer.status) {
        let (retry_after_ms, retry_after) = (answer.header("retry-after-ms"), answer.header("retry-after"));
        let retry = RetryHeaders { retry_after_ms: retry_after_ms.as_deref(), retry_after: retry_after.as_deref() };
        let failure = errors::classify_status(answer.status, &retry, &answer.body, host::now());
        let request_id = answer.header("x-request-id").unwrap_or_else(|| "-".into());
        host::log(LogLevel::Warn, &format!("{url} answered {} (request id {request_id}): {failure:?}", answer.status));
        return Err(failure);
    }
    let mut heard = reply::parse(&answer.body)?;
    host::log(LogLevel::Debug, &format!("transcribed {} bytes of {} with {model}", request.audio.len(), request.audio_format));
    heard.language = heard.language.or(request.language);
    Ok(Transcript::from(heard))
}

export!(OpenAiWhisper);
