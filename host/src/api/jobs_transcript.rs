//! `GET /v1/jobs/{id}/transcript?format=`: a succeeded job's transcript in
//! any response format, rendered from the one stored transcript
//! ([`crate::formats`]); without `format`, in the format the job asked for.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::require_user;
use super::jobs::store_problem;
use super::problem::Problem;
use super::AppState;
use crate::formats::{self, Format};
use crate::plugins::types::Transcript;
use crate::store::JobStatus;

/// The query: an optional `format`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TranscriptQuery {
    /// `json`, `text`, `srt`, `vtt` or `verbose_json`; default: the job's `response_format`.
    format: Option<String>,
}

/// The transcript of one of the caller's jobs: 404 for an unknown (or
/// another user's) job, 409 while it is not succeeded, 400 for an unknown
/// format.
#[utoipa::path(get, path = "/v1/jobs/{id}/transcript", tag = "jobs", security(("user_key" = [])),
    params(("id" = String, Path, description = "The job's id"), TranscriptQuery),
    responses((status = OK, description = "The transcript in the format asked for (JSON, text/plain, application/x-subrip or text/vtt)"),
              (status = BAD_REQUEST, description = "An unknown format", body = Problem, content_type = "application/problem+json"),
              (status = CONFLICT, description = "The job has not succeeded", body = Problem, content_type = "application/problem+json"),
              (status = NOT_FOUND, description = "No such job of the caller's (another user's job included)", body = Problem, content_type = "application/problem+json"), (status = UNAUTHORIZED, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn transcript(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TranscriptQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let user = require_user(&state.users, &headers).await?;
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let job = state
        .store
        .job(&user.id, &id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("no job {id:?} of yours")))?;
    let name = query.format.unwrap_or_else(|| job.spec.response_format.clone());
    let format = Format::parse(&name).ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, format!("format: {name:?} is not one of {}", formats::NAMES.join(", ")))
    })?;
    if job.status != JobStatus::Succeeded {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("job {id} is {}: a transcript exists once it succeeded", job.status.as_str()),
        ));
    }
    rendered(&state, &id, format).await
}

/// A succeeded job's stored transcript rendered in `format`, with its
/// content type (this route's and the OpenAI-compatible route's answer).
pub(super) async fn rendered(state: &AppState, job_id: &str, format: Format) -> Result<Response, Problem> {
    let stored = state.store.transcript(job_id).await.map_err(store_problem)?;
    let transcript: Transcript = stored.as_deref().and_then(|json| serde_json::from_str(json).ok()).ok_or_else(|| {
        tracing::error!(job = %job_id, "a succeeded job has no readable transcript");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the stored transcript cannot be read")
    })?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], formats::render(&transcript, format)).into_response())
}
