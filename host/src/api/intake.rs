//! Intake: how a submission becomes a job, for every route that accepts
//! one (`POST /v1/jobs`, `POST /v1/audio/transcriptions`).
//!
//! Nothing is acknowledged before it is durable: the audio is streamed into
//! the audio store (hashed, size-limited, recognised by content) and the job
//! row committed before an answer goes out. Every refusal is a problem
//! naming the field or setting at fault; an oversize upload is read on and
//! discarded (bounded) so the client reads the 413 instead of a reset.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::Deserialize;

use super::jobs::store_problem;
use super::problem::Problem;
use super::AppState;
use crate::audio::{AudioError, FetchError, StoredAudio};
use crate::clock::now_ms;
use crate::config::LOCAL_PROVIDER;
use crate::models;
use crate::plugins::types::{Priority, ProviderInfo};
use crate::plugins::World;
use crate::store::{Inserted, JobSpec, JobStatus, NewJob, PendingWrite};

/// The largest text field of a multipart submit (a prompt, a language...).
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// After an oversize upload, what is discarded at most beyond what the
/// audio store already read (2x the limit), so a client still sending
/// reads the 413 instead of a reset; past this the connection is closed.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// Providers that need a secret before they can run: (plugin, config key,
/// the variable that sets it).
const PROVIDER_SECRETS: &[(&str, &str, &str)] =
    &[("openai-whisper", "api_key", "OPENAI_API_KEY"), ("replicate", "api_token", "REPLICATE_API_TOKEN")];

/// The fields of a submit, as sent (multipart text or JSON).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Fields {
    /// The audio's address, fetched by Scribe (JSON submits only).
    pub(super) audio_url: Option<String>,
    /// A loaded provider plugin; default: the configured default provider.
    pub(super) provider: Option<String>,
    /// The language spoken (ISO-639-1).
    pub(super) language: Option<String>,
    /// Text to guide the model.
    pub(super) prompt: Option<String>,
    /// Sampling temperature, 0 to 1.
    #[serde(default, deserialize_with = "number_or_string")]
    #[schema(value_type = Option<f32>)]
    pub(super) temperature: Option<String>,
    /// `low`, `normal` (default) or `high`.
    pub(super) priority: Option<String>,
    /// `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
    pub(super) response_format: Option<String>,
    /// The provider's model.
    pub(super) model: Option<String>,
}

/// Accepts `0.2` or `"0.2"` (validated later, with the multipart form).
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(serde::de::Error::custom(format!("expected a number, got {other}"))),
    })
}

/// The fields, checked.
pub(super) struct Options {
    pub(super) provider: String,
    pub(super) info: ProviderInfo,
    pub(super) priority: Priority,
    pub(super) response_format: String,
    pub(super) language: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) temperature: Option<f32>,
    pub(super) model: Option<String>,
}

/// A 400 problem.
pub(super) fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

/// Reads a multipart form: its text fields (each bounded), in order, and
/// its one `file` part, streamed into the audio store.
pub(super) async fn read_form(state: &AppState, request: Request) -> Result<(Vec<(String, String)>, Option<StoredAudio>), Problem> {
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| bad(e.body_text()))?;
    let mut fields = Vec::new();
    let mut audio = None;
    let part_problem = |e: axum::extract::multipart::MultipartError| Problem::new(e.status(), e.body_text());
    while let Some(mut field) = multipart.next_field().await.map_err(part_problem)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if audio.is_some() {
                return Err(bad("file: send one file part only"));
            }
            let stream = (&mut field).map(|chunk| chunk.map_err(std::io::Error::other)).boxed();
            let stored = store_audio(state, stream, Origin::Upload).await;
            if matches!(stored, Err(ref p) if p.status == StatusCode::PAYLOAD_TOO_LARGE.as_u16()) {
                drain(&mut field).await;
            }
            audio = Some(stored?);
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(part_problem)? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_FIELD_BYTES {
                return Err(bad(format!("{name}: over {MAX_FIELD_BYTES} bytes")));
            }
        }
        let text = String::from_utf8(text).map_err(|_| bad(format!("{name}: not UTF-8 text")))?;
        fields.push((name, text));
    }
    Ok((fields, audio))
}

/// Checks `audio` against the provider and the queue against
/// `SCRIBE_MAX_QUEUE_LENGTH`, and inserts the job (see [`insert`]).
pub(super) async fn enqueue(
    state: &AppState,
    user_id: String,
    options: Options,
    audio: StoredAudio,
    idempotency_key: Option<String>,
) -> Result<Inserted, Problem> {
    let extension = audio.format.extension();
    if !options.info.accepted_formats.iter().any(|f| f == extension) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "provider {} does not take {extension} audio; it takes: {}",
                options.provider,
                options.info.accepted_formats.join(", ")
            ),
        ));
    }
    if audio.bytes > options.info.max_audio_bytes {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("provider {} takes audio up to {} bytes", options.provider, options.info.max_audio_bytes),
        ));
    }
    if let Err(queued) = state.queue_limit.reserve(&*state.store).await.map_err(store_problem)? {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("the queue is full ({queued} jobs, SCRIBE_MAX_QUEUE_LENGTH); try again shortly"),
        )
        .with_header(header::RETRY_AFTER, "5"));
    }
    let audio_write = audio.pending;
    let spec = JobSpec {
        provider: options.provider,
        priority: options.priority,
        audio_sha256: audio.sha256,
        audio_format: extension.to_string(),
        audio_bytes: audio.bytes,
        language: options.language,
        prompt: options.prompt,
        temperature: options.temperature,
        model: options.model,
        response_format: options.response_format,
    };
    let inserted = insert(state, user_id, spec, idempotency_key, audio_write).await;
    if !matches!(inserted, Ok(Inserted::Created(ref job)) if job.status == JobStatus::Queued) {
        state.queue_limit.release();
    }
    inserted
}

/// Inserts the job, already succeeded if its transcript is known (to the
/// cache's memory or, found by the insert, to the store), committing only
/// with its audio's `audio_write`; the scheduler is woken for a new queued
/// job.
async fn insert(
    state: &AppState,
    user_id: String,
    spec: JobSpec,
    idempotency_key: Option<String>,
    audio_write: Option<PendingWrite>,
) -> Result<Inserted, Problem> {
    let cache_key = crate::cache::key(&spec);
    let cached = state.cache.remembered(&cache_key).await;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        user_id,
        spec,
        idempotency_key,
        now_ms: now_ms(),
        cache_key: cache_key.digest,
        cached_transcript: cached.map(|t| t.as_ref().clone()),
        audio_write,
    };
    let inserted = state.store.insert_job(job).await.map_err(store_problem)?;
    if let Inserted::Created(job) = &inserted {
        state.cache.count_submit(job);
        state.metrics.jobs_submitted.with_label_values(&[&job.spec.provider]).inc();
        state.activity.submitted(&job.user_id);
        match job.status {
            JobStatus::Queued => state.wake.wake(),
            _ => state.metrics.job_finished(&job.spec.provider, job.status.as_str(), 0.0),
        }
    }
    Ok(inserted)
}

/// Where a submit's audio comes from.
#[derive(Clone, Copy)]
enum Origin {
    /// The `file` part of a multipart submit.
    Upload,
    /// A download of the submit's `audio_url`.
    Download,
}

/// Streams audio into the audio store under `SCRIBE_MAX_UPLOAD_BYTES`,
/// turning the store's refusals into problems naming the field.
async fn store_audio(
    state: &AppState,
    stream: BoxStream<'_, Result<Bytes, std::io::Error>>,
    origin: Origin,
) -> Result<StoredAudio, Problem> {
    let field = match origin {
        Origin::Upload => "file",
        Origin::Download => "audio_url",
    };
    match state.audio.put_deferred(stream, state.config.max_upload_bytes).await {
        Ok(stored) => Ok(stored),
        Err(AudioError::TooLarge { limit }) => Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{field}: the audio is over the {limit}-byte limit (SCRIBE_MAX_UPLOAD_BYTES)"),
        )),
        Err(AudioError::Empty) => Err(bad(format!("{field}: the audio file is empty (0 bytes)"))),
        Err(e @ AudioError::NotAudio { .. }) => {
            Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{field}: {e}")))
        }
        Err(AudioError::Read(e)) => Err(match origin {
            Origin::Upload => bad(format!("file: reading the upload failed: {e}")),
            // The remote server's failure, not the client's request.
            Origin::Download => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("audio_url: {e}")),
        }),
        Err(error) => {
            tracing::error!(%error, "storing audio failed");
            Err(Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "storing the audio failed; try again"))
        }
    }
}

/// Downloads `url` into the audio store. A refused address or a malformed
/// URL is the request's fault (400); a download that fails is 422, since
/// the request was well-formed but its audio could not be had.
pub(super) async fn fetch_audio(state: &AppState, url: &str) -> Result<StoredAudio, Problem> {
    let limit = state.config.max_upload_bytes;
    let stream = state.fetcher.open(url, limit).await.map_err(|e| match e {
        FetchError::InvalidUrl(_) | FetchError::Forbidden(_) => bad(format!("audio_url: {e}")),
        FetchError::TooLarge { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("audio_url: {e}")),
        other => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("audio_url: {other}")),
    })?;
    store_audio(state, stream, Origin::Download).await
}

/// Reads and discards the rest of an oversize part, up to
/// [`MAX_DRAIN_BYTES`] (the audio store stopped at twice the limit).
async fn drain(field: &mut axum::extract::multipart::Field<'_>) {
    let mut drained: u64 = 0;
    while let Ok(Some(chunk)) = field.chunk().await {
        drained += chunk.len() as u64;
        if drained > MAX_DRAIN_BYTES {
            break;
        }
    }
}

/// Checks the fields and resolves the provider.
pub(super) fn check_fields(state: &AppState, fields: &Fields) -> Result<Options, Problem> {
    let priority = match fields.priority.as_deref().map(str::trim) {
        None | Some("") | Some("normal") => Priority::Normal,
        Some("low") => Priority::Low,
        Some("high") => Priority::High,
        Some(other) => return Err(bad(format!("priority: {other:?} is not one of low, normal, high"))),
    };
    let response_format = match fields.response_format.as_deref().map(str::trim) {
        None | Some("") => "json".to_string(),
        Some(f) if crate::formats::Format::parse(f).is_some() => f.to_string(),
        Some(other) => {
            return Err(bad(format!("response_format: {other:?} is not one of {}", crate::formats::NAMES.join(", "))))
        }
    };
    let temperature = match fields.temperature.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => match t.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Some(v),
            _ => return Err(bad(format!("temperature: {t:?} is not a number from 0 to 1"))),
        },
    };
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let provider = text(&fields.provider).unwrap_or_else(|| default_provider(state).to_string());
    let info = check_provider(state, &provider)?;
    check_local_model(state, &provider, text(&fields.model).as_deref())?;
    Ok(Options {
        provider,
        info,
        priority,
        response_format,
        language: text(&fields.language),
        prompt: fields.prompt.clone().filter(|p| !p.is_empty()),
        temperature,
        model: text(&fields.model),
    })
}

/// The provider a job gets when it names none (design.md).
pub(super) fn default_provider(state: &AppState) -> &'static str {
    state.config.default_provider()
}

/// The provider must be loaded, of the provider world, and configured.
pub(super) fn check_provider(state: &AppState, name: &str) -> Result<ProviderInfo, Problem> {
    let loaded = state.plugins.get(name).filter(|l| l.world == World::Provider);
    let Some(info) = loaded.and_then(|l| l.provider_info.clone()) else {
        let mut names: Vec<String> =
            state.plugins.list().into_iter().filter(|p| p.world == World::Provider).map(|p| p.name).collect();
        names.sort();
        let loaded = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        return Err(bad(format!("provider: no provider {name:?} is loaded; loaded providers: {loaded}")));
    };
    for (plugin, key, variable) in PROVIDER_SECRETS {
        if *plugin == name && !state.config.has_setting(plugin, key) {
            return Err(bad(format!("provider {name} is not configured: set {variable}")));
        }
    }
    Ok(info)
}

/// The local provider needs its model installed: `model` (the job's, else
/// the plugin's configured `model`, else the default) must be one Scribe
/// knows and be present under its read-only directory.
pub(super) fn check_local_model(state: &AppState, provider: &str, model: Option<&str>) -> Result<(), Problem> {
    if provider != LOCAL_PROVIDER {
        return Ok(());
    }
    let settings = state.config.plugin(LOCAL_PROVIDER);
    let configured = settings.config.get("model").map(String::as_str);
    let model = model.or(configured).unwrap_or(models::DEFAULT_MODEL);
    let spec = models::spec(model).map_err(|e| bad(format!("model: {e}")))?;
    let dir = settings.read_only_dir.unwrap_or_else(|| state.config.model_dir.clone());
    if models::present(spec, &dir) {
        return Ok(());
    }
    Err(bad(format!(
        "provider {LOCAL_PROVIDER}: model {model} is not installed in {}: run `{}`",
        dir.display(),
        models::fetch_command(model)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_take_numbers_or_strings_and_refuse_unknown_fields() {
        let f: Fields = serde_json::from_str(r#"{"audio_url":"http://x","temperature":0.5}"#).unwrap();
        assert_eq!(f.temperature.as_deref(), Some("0.5"));
        let f: Fields = serde_json::from_str(r#"{"temperature":"0.2"}"#).unwrap();
        assert_eq!(f.temperature.as_deref(), Some("0.2"));
        assert!(serde_json::from_str::<Fields>(r#"{"temprature":1}"#).is_err());
        assert!(serde_json::from_str::<Fields>(r#"{"temperature":[1]}"#).is_err());
    }
}
