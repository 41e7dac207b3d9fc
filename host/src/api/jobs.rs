//! The jobs API: submit (in [`super::jobs_submit`]), show, list, cancel
//! and read the transcript (in [`super::jobs_transcript`]) of a user's own
//! jobs.
//!
//! Every route authenticates the user first, and every lookup is scoped to
//! that user in the store, so another user's job id is indistinguishable
//! from an unknown one (404). The HTTP layer only reads and writes the store
//! and wakes the scheduler; it never calls a plugin.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::require_user;
use super::problem::Problem;
use super::AppState;
use crate::clock::now_ms;
use crate::plugins::types::Priority;
use crate::store::{Job, JobError, JobStatus, StoreError};

/// Jobs listed per page when the client does not say.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// The most jobs one page lists (a larger `limit` is lowered to this).
pub const MAX_LIST_LIMIT: u32 = 200;

/// The jobs routes. The submit route sets its own upload limit
/// (`SCRIBE_MAX_UPLOAD_BYTES`), so axum's default body limit is off here.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(super::jobs_submit::submit, list))
        .routes(routes!(show, cancel))
        .routes(routes!(super::jobs_transcript::transcript))
        .layer(DefaultBodyLimit::disable())
}

/// A job as the API shows it (design.md, "HTTP surface").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// Id (a UUID v7).
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `canceled`.
    pub status: JobStatus,
    /// The provider plugin.
    pub provider: String,
    /// `low`, `normal` or `high`.
    #[schema(value_type = String, example = "normal")]
    pub priority: &'static str,
    /// Attempts started so far.
    pub attempts: u32,
    /// Submitted (RFC 3339).
    pub created_at: String,
    /// First claimed (RFC 3339).
    pub started_at: Option<String>,
    /// Reached a terminal state (RFC 3339).
    pub finished_at: Option<String>,
    /// Why the job failed, or why its last attempt did.
    pub error: Option<JobError>,
    /// The transcript format asked for.
    pub response_format: String,
    /// The audio's size.
    pub audio_bytes: u64,
    /// The language asked for, if any.
    pub language: Option<String>,
    /// The model asked for, if any.
    pub model: Option<String>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        JobView {
            id: job.id.clone(),
            status: job.status,
            provider: job.spec.provider.clone(),
            priority: priority_str(job.spec.priority),
            attempts: job.attempts,
            created_at: rfc3339(job.created_at_ms),
            started_at: job.started_at_ms.map(rfc3339),
            finished_at: job.finished_at_ms.map(rfc3339),
            error: job.error.clone(),
            response_format: job.spec.response_format.clone(),
            audio_bytes: job.spec.audio_bytes,
            language: job.spec.language.clone(),
            model: job.spec.model.clone(),
        }
    }
}

/// The API's spelling of a priority.
pub fn priority_str(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A store failure, logged, as a 500 that says nothing of the database.
pub(super) fn store_problem(error: StoreError) -> Problem {
    tracing::error!(%error, "a store operation failed");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the store failed; try again")
}

fn not_found(id: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("no job {id:?} of yours"))
}

/// `GET /v1/jobs/{id}`: one of the caller's jobs.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("user_key" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = OK, body = JobView), (status = NOT_FOUND, description = "No such job of the caller's (another user's job included)", body = Problem, content_type = "application/problem+json"), (status = UNAUTHORIZED, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, Problem> {
    let user = require_user(&state.users, &headers).await?;
    let job = state.store.job(&user.id, &id).await.map_err(store_problem)?.ok_or_else(|| not_found(&id))?;
    Ok(Json(JobView::from(&job)))
}

/// `GET /v1/jobs` query: both optional, as decimal integers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Jobs per page: 1 to 200, default 50.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Jobs to skip, default 0.
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
}

/// A page of the caller's jobs.
#[derive(Debug, Serialize, ToSchema)]
struct JobPage {
    /// Newest first.
    jobs: Vec<JobView>,
    /// The page size used.
    limit: u32,
    /// Jobs skipped.
    offset: u32,
}

/// `GET /v1/jobs?limit=&offset=`: the caller's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("user_key" = [])), params(ListQuery),
    responses((status = OK, body = JobPage), (status = BAD_REQUEST, description = "A bad limit or offset", body = Problem, content_type = "application/problem+json"), (status = UNAUTHORIZED, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobPage>, Problem> {
    let user = require_user(&state.users, &headers).await?;
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let number = |name: &str, value: Option<&str>, default: u32| -> Result<u32, Problem> {
        match value {
            None => Ok(default),
            Some(v) => v.trim().parse::<u32>().map_err(|_| {
                Problem::new(StatusCode::BAD_REQUEST, format!("{name}: expected a whole number >= 0, got {v:?}"))
            }),
        }
    };
    let limit = number("limit", query.limit.as_deref(), DEFAULT_LIST_LIMIT)?;
    if limit == 0 {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("limit: must be 1 to {MAX_LIST_LIMIT}")));
    }
    let limit = limit.min(MAX_LIST_LIMIT);
    let offset = number("offset", query.offset.as_deref(), 0)?;
    let jobs = state.store.list_jobs(&user.id, limit, offset).await.map_err(store_problem)?;
    Ok(Json(JobPage { jobs: jobs.iter().map(JobView::from).collect(), limit, offset }))
}

/// `DELETE /v1/jobs/{id}`: cancels a queued job of the caller's. A job
/// already canceled answers 200 again (the request's aim holds); a running
/// or finished one answers 409 naming its status.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", security(("user_key" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = OK, description = "Canceled (now or before)", body = JobView),
              (status = CONFLICT, description = "Running or finished: only a queued job can be canceled", body = Problem, content_type = "application/problem+json"),
              (status = NOT_FOUND, description = "No such job of the caller's (another user's job included)", body = Problem, content_type = "application/problem+json"), (status = UNAUTHORIZED, description = "No or an unknown API key", body = Problem, content_type = "application/problem+json")))]
async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, Problem> {
    let user = require_user(&state.users, &headers).await?;
    let (job, changed) = state.store.cancel_job(&user.id, &id, now_ms()).await.map_err(store_problem)?.ok_or_else(|| not_found(&id))?;
    if changed {
        state.metrics.job_finished(&job.spec.provider, "canceled", job.age_seconds(now_ms()));
        // Room in the queue at once, not at the next count.
        state.queue_limit.release();
    }
    match job.status {
        JobStatus::Canceled => Ok(Json(JobView::from(&job))),
        status => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("job {id} is {}: only a queued job can be canceled", status.as_str()),
        )),
    }
}
