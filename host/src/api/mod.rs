//! The HTTP surface, one file per route family. Handlers validate, call the
//! runtime's public API and answer; errors leave as problem JSON
//! ([`problem::Problem`]).
//!
//! Every route is registered through utoipa's `OpenApiRouter` from its
//! handler's `#[utoipa::path]`, so `GET /openapi.json` is built from the
//! same declarations the router serves and cannot drift from it.

pub mod admin;
pub mod auth;
pub mod body;
mod dashboard;
mod openapi;
mod intake;
pub mod jobs;
mod openai_compat;
mod queue_limit;
pub use queue_limit::QueueLimit;
mod queue_status;
mod jobs_submit;
mod jobs_transcript;
pub mod problem;

use std::sync::Arc;

use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use tokio::sync::broadcast;

use crate::audio::{AudioStore, UrlFetcher};
use crate::cache::TranscriptCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::Plugins;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// This instance's id (also its lease owner name and the `instance`
    /// of `scribe_instance_info`).
    pub instance: String,
    /// The plugin runtime.
    pub plugins: Arc<Plugins>,
    /// The metrics.
    pub metrics: Metrics,
    /// Users and jobs.
    pub store: Arc<dyn Store>,
    /// `SCRIBE_MAX_QUEUE_LENGTH`, checked at each submit.
    pub queue_limit: queue_limit::QueueLimit,
    /// Finds the user behind an API key.
    pub users: Arc<crate::users::Authenticator>,
    /// Uploaded audio.
    pub audio: Arc<dyn AudioStore>,
    /// Transcripts already made, so a repeated submit finishes at once.
    pub cache: Arc<TranscriptCache>,
    /// Downloads the audio of submits that name an `audio_url`.
    pub fetcher: UrlFetcher,
    /// The scheduler's wake-up: notified after each accepted submit.
    pub wake: Arc<crate::wakeup::Wakeup>,
    /// Recent events for the queue-status figures (shared with the scheduler).
    pub activity: Arc<crate::activity::Activity>,
    /// Provider limits and pauses (shared with the scheduler).
    pub admission: Arc<dyn crate::admission::Admission>,
    /// This instance's heartbeat in a fleet (PostgreSQL), which also lists
    /// the instances alive.
    pub presence: Option<Arc<crate::instances::Presence>>,
    /// Ids of jobs whose attempt just ended (succeeded, failed or put back
    /// for a retry), for requests that wait for their job.
    pub job_events: broadcast::Sender<String>,
}

/// The whole router, with `GET /openapi.json` describing it.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::document))
        .merge(admin::routes())
        .merge(dashboard::routes())
        .merge(jobs::routes())
        .merge(openai_compat::routes())
        .merge(queue_status::routes())
        .split_for_parts();
    router
        .layer(axum::Extension(Arc::new(api)))
        .fallback(|| async { problem::Problem::new(axum::http::StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), time_request))
        .with_state(state)
}

/// Observes every request's duration by route (the matched pattern, never
/// the raw path, so ids do not become labels), method and status.
async fn time_request(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state.metrics.http_seconds.with_label_values(&[&route, &method, &status]).observe(started.elapsed().as_secs_f64());
    response
}

/// How long `/readyz` waits for the store: a load balancer's check must
/// get its answer while the database is unreachable, not after
/// `DB_TIMEOUT`.
pub const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: the store answers and the plugins a job needs (the
/// active retry and priority policies, at least one provider) are loaded;
/// 503 problem JSON saying what is missing otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = OK, description = "Ready to take jobs"),
              (status = SERVICE_UNAVAILABLE, description = "What is missing", body = problem::Problem, content_type = "application/problem+json")))]
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> Result<Json<serde_json::Value>, problem::Problem> {
    let unready = |detail: String| problem::Problem::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, detail);
    match tokio::time::timeout(READY_STORE_TIMEOUT, state.store.queue_length()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(unready(format!("the store does not answer: {e}"))),
        Err(_) => return Err(unready(format!("the store did not answer within {READY_STORE_TIMEOUT:?}"))),
    }
    let loaded = state.plugins.list();
    let has = |name: &str| loaded.iter().any(|p| p.name == name);
    for policy in [&state.config.retry_policy, &state.config.priority_policy] {
        if !has(policy) {
            return Err(unready(format!("policy {policy} is not loaded")));
        }
    }
    if !loaded.iter().any(|p| p.world == crate::plugins::World::Provider) {
        return Err(unready("no provider is loaded".into()));
    }
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// `GET /metrics`: Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = OK, description = "Every metric, in Prometheus' text format", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> Result<impl axum::response::IntoResponse, problem::Problem> {
    queue_status::refresh_gauges(&state).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()))
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = OK, description = "The process is up")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
