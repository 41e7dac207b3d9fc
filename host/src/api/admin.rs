//! Operator routes: list the serving plugins, upload a new version, pause
//! and resume a provider.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::auth::require_admin;
use super::body::read_limited;
use super::problem::Problem;
use super::AppState;
use crate::plugins::{InstallError, Installed, PluginSummary};

/// The admin plugin routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/plugins", get(list))
        .route("/admin/plugins/{name}", axum::routing::put(upload))
        .route("/admin/providers/{name}/pause", axum::routing::post(pause))
        .route("/admin/providers/{name}/resume", axum::routing::post(resume))
}

/// A provider's state after a pause or resume.
#[derive(Serialize)]
struct ProviderState {
    provider: String,
    paused: bool,
}

/// `POST /admin/providers/{name}/pause`: no new call of the provider
/// starts (running calls finish); its jobs wait in the queue.
async fn pause(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<ProviderState>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    require_provider(&state, &name)?;
    state.limiter.hold(&name);
    tracing::warn!(provider = %name, "provider paused by an operator");
    Ok(Json(ProviderState { paused: state.limiter.is_held(&name), provider: name }))
}

/// `POST /admin/providers/{name}/resume`: calls start again (a retry-after
/// pause is lifted too); the scheduler is woken.
async fn resume(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<ProviderState>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    require_provider(&state, &name)?;
    state.limiter.release(&name);
    state.wake.notify_one();
    tracing::info!(provider = %name, "provider resumed by an operator");
    Ok(Json(ProviderState { paused: state.limiter.is_held(&name), provider: name }))
}

fn require_provider(state: &AppState, name: &str) -> Result<(), Problem> {
    match state.plugins.provider_info(name) {
        Some(_) => Ok(()),
        None => Err(Problem::new(StatusCode::NOT_FOUND, format!("no provider {name:?} is loaded"))),
    }
}

/// `GET /admin/plugins`: every serving version.
async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Vec<PluginSummary>>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    Ok(Json(state.plugins.list()))
}

/// The answer to an upload.
#[derive(Serialize)]
struct Uploaded {
    /// False when the same content already served.
    changed: bool,
    #[serde(flatten)]
    plugin: PluginSummary,
}

/// `PUT /admin/plugins/{name}`: the body is a component, validated like a
/// file drop and, once serving, written to the plugin directory.
async fn upload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    let bytes = read_limited(body, state.config.max_plugin_bytes, "SCRIBE_MAX_PLUGIN_BYTES").await?;
    let installed = state.plugins.upload(&name, bytes).await.map_err(install_problem)?;
    let changed = matches!(installed, Installed::Published(_));
    let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Uploaded { changed, plugin: installed.loaded().summary() })))
}

fn install_problem(error: InstallError) -> Problem {
    let status = match &error {
        InstallError::InvalidName(_) => StatusCode::BAD_REQUEST,
        InstallError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InstallError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        InstallError::WorldMismatch { .. } => StatusCode::CONFLICT,
        InstallError::Compile(_)
        | InstallError::UnknownWorld
        | InstallError::Link(_)
        | InstallError::Smoke(_)
        | InstallError::Settings(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    Problem::new(status, format!("plugin refused, the serving version stays: {error}"))
}
