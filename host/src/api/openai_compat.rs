//! `POST /v1/audio/transcriptions`: OpenAI's transcription API, so a
//! program written for OpenAI (its SDKs included) can point its base URL
//! at Scribe and work unchanged, while Scribe queues, limits and retries.
//!
//! The form is OpenAI's (`file`, `model`, `language`, `prompt`,
//! `response_format`, `temperature`, `timestamp_granularities[]`); the key
//! is a Scribe user key. `model` picks the provider through `[models]` in
//! the config file (`whisper-1`: the default provider). The job is taken
//! in like any other ([`super::intake`]) and the request waits until it
//! ends, then answers in the asked format with OpenAI's content types, or
//! with OpenAI's error envelope `{"error": {message, type, param, code}}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use tokio::sync::broadcast;

use super::auth::require_user;
use super::intake::{check_fields, default_provider, enqueue, read_form, Fields};
use super::jobs::store_problem;
use super::problem::Problem;
use super::AppState;
use crate::formats::Format;
use crate::store::{Inserted, Job, JobStatus};

/// The OpenAI-compatible route. Its upload limit is
/// `SCRIBE_MAX_UPLOAD_BYTES` (intake's), so axum's default is off.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(transcriptions)).layer(DefaultBodyLimit::disable())
}

/// The form, as the OpenAPI document shows it (OpenAI's fields).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // read field by field; this type only documents it
struct TranscriptionForm {
    /// The audio.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `whisper-1` (the default provider) or a name in the config's `[models]`.
    model: String,
    /// ISO-639-1.
    language: Option<String>,
    /// Text to guide the model.
    prompt: Option<String>,
    /// `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
    response_format: Option<String>,
    /// 0 to 1.
    temperature: Option<f32>,
    /// `segment` (words are not supported).
    #[serde(rename = "timestamp_granularities[]")]
    timestamp_granularities: Option<Vec<String>>,
}

/// An error in OpenAI's envelope.
struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl OpenAiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            429 => "rate_limit_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        Self { status, message: message.into(), kind, param: None, code: None, headers: Vec::new() }
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl From<Problem> for OpenAiError {
    fn from(problem: Problem) -> Self {
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut error = OpenAiError::new(status, problem.detail.clone());
        if status == StatusCode::UNAUTHORIZED {
            error.code = Some("invalid_api_key");
        }
        error.headers = problem.headers().to_vec();
        error
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

/// Waits for the job, then answers like OpenAI.
#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai", security(("user_key" = [])),
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"),
    responses((status = OK, description = "The transcript in the asked format, with OpenAI's content types"),
              (status = "4XX", description = "OpenAI's error envelope: {\"error\": {message, type, param, code}}"),
              (status = "5XX", description = "OpenAI's error envelope")))]
async fn transcriptions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match transcribe(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn transcribe(state: &AppState, request: Request) -> Result<Response, OpenAiError> {
    let user = require_user(&state.users, request.headers()).await?;
    let media_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(OpenAiError::new(StatusCode::BAD_REQUEST, "send multipart/form-data with a file and a model"));
    }
    let (pairs, audio) = read_form(state, request).await?;
    let form = OpenAiForm::read(pairs)?;
    let audio = audio.ok_or_else(|| {
        OpenAiError::new(StatusCode::BAD_REQUEST, "you must provide a file (multipart field `file`)").param("file")
    })?;
    let provider = provider_for(state, &form.model)?;
    let fields = Fields {
        provider: Some(provider),
        language: form.language,
        prompt: form.prompt,
        temperature: form.temperature,
        response_format: form.response_format.clone(),
        ..Fields::default()
    };
    let options = check_fields(state, &fields)?;
    let format = Format::parse(&options.response_format).unwrap_or(Format::Json);
    // Listen before the insert, so the job's end cannot slip by unheard.
    let events = state.job_events.subscribe();
    let job = match enqueue(state, user.id.clone(), options, audio, None).await? {
        Inserted::Created(job) | Inserted::Existing(job) => job,
    };
    let job = wait_until_ended(state, job, events).await?;
    answer(state, &job, format).await
}

/// The fields of OpenAI's form that Scribe reads.
struct OpenAiForm {
    model: String,
    language: Option<String>,
    prompt: Option<String>,
    temperature: Option<String>,
    response_format: Option<String>,
}

impl OpenAiForm {
    /// Reads the form; fields this route does not act on are ignored, as
    /// OpenAI ignores what does not apply, except those whose result it
    /// cannot give (word timestamps, streaming).
    fn read(pairs: Vec<(String, String)>) -> Result<Self, OpenAiError> {
        let mut form = OpenAiForm { model: String::new(), language: None, prompt: None, temperature: None, response_format: None };
        for (name, value) in pairs {
            match name.as_str() {
                "model" => form.model = value.trim().to_string(),
                "language" => form.language = Some(value),
                "prompt" => form.prompt = Some(value),
                "temperature" => form.temperature = Some(value),
                "response_format" => form.response_format = Some(value),
                "timestamp_granularities[]" | "timestamp_granularities" if value.trim() == "word" => {
                    return Err(OpenAiError::new(StatusCode::BAD_REQUEST, "word timestamps are not available; ask for segment")
                        .param("timestamp_granularities"))
                }
                "stream" if value.trim() == "true" => {
                    return Err(OpenAiError::new(StatusCode::BAD_REQUEST, "streaming is not available here").param("stream"))
                }
                _ => {}
            }
        }
        if form.model.is_empty() {
            return Err(OpenAiError::new(StatusCode::BAD_REQUEST, "you must provide a model parameter").param("model"));
        }
        Ok(form)
    }
}

/// The provider `model` selects: `[models]`, else `whisper-1` -> the
/// default provider, else a provider plugin of that name.
fn provider_for(state: &AppState, model: &str) -> Result<String, OpenAiError> {
    if let Some(provider) = state.config.models.get(model) {
        return Ok(provider.clone());
    }
    if model == "whisper-1" {
        return Ok(default_provider(state).to_string());
    }
    if state.plugins.provider_info(model).is_some() {
        return Ok(model.to_string());
    }
    Err(OpenAiError::new(
        StatusCode::NOT_FOUND,
        format!("The model `{model}` does not exist here: map it to a provider under [models] in the config file"),
    )
    .param("model")
    .code("model_not_found"))
}

/// Waits (on the scheduler's events, rereading the job on each one that
/// names it or when events were missed) until `job` is terminal.
async fn wait_until_ended(state: &AppState, mut job: Job, mut events: broadcast::Receiver<String>) -> Result<Job, OpenAiError> {
    while !job.status.is_terminal() {
        match events.recv().await {
            Ok(id) if id != job.id => continue,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                return Err(OpenAiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; try again"))
            }
        }
        job = state
            .store
            .job_by_id(&job.id)
            .await
            .map_err(store_problem)?
            .ok_or_else(|| OpenAiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the job vanished"))?;
    }
    Ok(job)
}

/// A terminal job as OpenAI would answer: the transcript in `format`, or
/// the error that ended it.
async fn answer(state: &AppState, job: &Job, format: Format) -> Result<Response, OpenAiError> {
    match job.status {
        JobStatus::Succeeded => Ok(super::jobs_transcript::rendered(state, &job.id, format).await?),
        JobStatus::Canceled => Err(OpenAiError::new(StatusCode::CONFLICT, format!("job {} was canceled", job.id))),
        _ => Err(failure(job)),
    }
}

/// The error of a failed job, with the status that says whose it is: the
/// audio's (400), or the provider's or Scribe's (5xx).
fn failure(job: &Job) -> OpenAiError {
    let (kind, message) = job.error.as_ref().map_or(("fatal", "the job failed"), |e| (e.kind.as_str(), e.message.as_str()));
    let status = match kind {
        "invalid_input" => StatusCode::BAD_REQUEST,
        "rate_limited" | "transient" => StatusCode::SERVICE_UNAVAILABLE,
        "unauthorized" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut error = OpenAiError::new(status, format!("job {} failed ({kind}): {message}", job.id));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        error.kind = "service_unavailable_error";
    }
    error
}
