//! `POST /v1/jobs`: a submit (multipart with a `file`, or JSON with an
//! `audio_url`), taken in through [`super::intake`]: 202 with the new job.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;

use super::auth::require_user;
use super::body::read_limited;
use super::intake::{bad, check_fields, enqueue, fetch_audio, read_form, Fields};
use super::jobs::JobView;
use super::problem::Problem;
use super::AppState;
use crate::store::Inserted;

/// The largest JSON submit body (it carries no audio).
const MAX_JSON_BYTES: u64 = 64 * 1024;
/// The longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The multipart submit, as the OpenAPI document shows it.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // read field by field by `read_form`; this type only documents it
struct MultipartSubmit {
    /// The audio (wav, mp3, flac, ogg, webm, m4a; recognised by content).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The other fields, as in a JSON submit (`audio_url` excepted).
    #[serde(flatten)]
    fields: Fields,
}

/// `POST /v1/jobs`: multipart (`file` + fields) or JSON (`audio_url` +
/// fields). 202 with a new job, 200 with the job an earlier submit with the
/// same `Idempotency-Key` created.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("user_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit return the same job")),
    request_body(content((MultipartSubmit = "multipart/form-data"), (Fields = "application/json"))),
    responses((status = ACCEPTED, description = "Queued", body = JobView),
              (status = OK, description = "The job an earlier submit with this Idempotency-Key created", body = JobView),
              (status = BAD_REQUEST, description = "A missing, empty or bad field", body = Problem, content_type = "application/problem+json"),
              (status = UNAUTHORIZED, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json"),
              (status = PAYLOAD_TOO_LARGE, description = "Over SCRIBE_MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
              (status = UNSUPPORTED_MEDIA_TYPE, description = "Not audio, or a format the provider does not take", body = Problem, content_type = "application/problem+json"),
              (status = UNPROCESSABLE_ENTITY, description = "The audio_url could not be fetched", body = Problem, content_type = "application/problem+json"),
              (status = TOO_MANY_REQUESTS, description = "The queue is full (SCRIBE_MAX_QUEUE_LENGTH); see Retry-After", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<(StatusCode, Json<JobView>), Problem> {
    let headers = request.headers().clone();
    let user = require_user(&state.users, &headers).await?;
    let idempotency_key = idempotency_key(&headers)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (fields, audio) = match media_type.as_str() {
        "multipart/form-data" => {
            let (pairs, audio) = read_form(&state, request).await?;
            (fields_from_form(pairs, audio.is_some())?, audio)
        }
        "application/json" => {
            let bytes = read_limited(request.into_body(), MAX_JSON_BYTES, "the JSON body limit").await?;
            let fields: Fields =
                serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
            if fields.audio_url.is_none() {
                return Err(bad("audio_url: required in a JSON submit (or send multipart/form-data with a file part)"));
            }
            (fields, None)
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send multipart/form-data with a `file` part, or application/json with `audio_url`",
            ))
        }
    };
    let options = check_fields(&state, &fields)?;
    let audio = match (audio, &fields.audio_url) {
        (Some(audio), _) => audio,
        (None, Some(url)) => fetch_audio(&state, url).await?,
        (None, None) => return Err(bad("file: a `file` part with the audio is required")),
    };
    match enqueue(&state, user.id, options, audio, idempotency_key).await? {
        Inserted::Created(job) => Ok((StatusCode::ACCEPTED, Json(JobView::from(&job)))),
        Inserted::Existing(job) => Ok((StatusCode::OK, Json(JobView::from(&job)))),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| bad("Idempotency-Key: must be visible ASCII"))?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(bad(format!("Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} characters")));
    }
    Ok(Some(key.to_string()))
}

/// The `POST /v1/jobs` fields of a multipart form; an unknown field, or a
/// file and an `audio_url` together, are refused.
fn fields_from_form(pairs: Vec<(String, String)>, has_file: bool) -> Result<Fields, Problem> {
    let mut fields = Fields::default();
    for (name, text) in pairs {
        let slot = match name.as_str() {
            "provider" => &mut fields.provider,
            "language" => &mut fields.language,
            "prompt" => &mut fields.prompt,
            "temperature" => &mut fields.temperature,
            "priority" => &mut fields.priority,
            "response_format" => &mut fields.response_format,
            "model" => &mut fields.model,
            "audio_url" => &mut fields.audio_url,
            other => {
                return Err(bad(format!(
                    "unknown field {other:?}; fields: file, provider, language, prompt, temperature, priority, response_format, model"
                )))
            }
        };
        *slot = Some(text);
    }
    if fields.audio_url.is_some() && has_file {
        return Err(bad("send either a file part or audio_url, not both"));
    }
    if !has_file && fields.audio_url.is_none() {
        return Err(bad("file: a `file` part with the audio is required"));
    }
    Ok(fields)
}

