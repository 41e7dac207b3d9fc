//! Operator routes: list the serving plugins, upload a new version, pause
//! and resume a provider.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::require_admin;
use super::body::read_limited;
use super::problem::Problem;
use super::AppState;
use crate::plugins::{InstallError, Installed, PluginSummary};

/// The admin plugin routes.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(upload))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

/// A provider's state after a pause or resume.
#[derive(Serialize, ToSchema)]
struct ProviderState {
    provider: String,
    paused: bool,
}

/// `POST /admin/providers/{name}/pause`: no new call of the provider
/// starts (running calls finish); its jobs wait in the queue.
#[utoipa::path(post, path = "/admin/providers/{name}/pause", tag = "admin", security(("admin_key" = [])),
    params(("name" = String, Path, description = "A loaded provider plugin")),
    responses((status = OK, body = ProviderState), (status = NOT_FOUND, description = "No such provider", body = Problem, content_type = "application/problem+json"),
              (status = UNAUTHORIZED, description = "No or a wrong admin key", body = Problem, content_type = "application/problem+json"),
              (status = FORBIDDEN, description = "No ADMIN_API_KEY is configured", body = Problem, content_type = "application/problem+json")))]
async fn pause(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<ProviderState>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    require_provider(&state, &name)?;
    set_held(&state, &name, true).await?;
    tracing::warn!(provider = %name, "provider paused by an operator");
    Ok(Json(ProviderState { paused: true, provider: name }))
}

/// `POST /admin/providers/{name}/resume`: calls start again (a retry-after
/// pause is lifted too); the scheduler is woken.
#[utoipa::path(post, path = "/admin/providers/{name}/resume", tag = "admin", security(("admin_key" = [])),
    params(("name" = String, Path, description = "A loaded provider plugin")),
    responses((status = OK, body = ProviderState), (status = NOT_FOUND, description = "No such provider", body = Problem, content_type = "application/problem+json"),
              (status = UNAUTHORIZED, description = "No or a wrong admin key", body = Problem, content_type = "application/problem+json"),
              (status = FORBIDDEN, description = "No ADMIN_API_KEY is configured", body = Problem, content_type = "application/problem+json")))]
async fn resume(State(state): State<Arc<AppState>>, Path(name): Path<String>, headers: HeaderMap) -> Result<Json<ProviderState>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    require_provider(&state, &name)?;
    set_held(&state, &name, false).await?;
    state.wake.wake();
    tracing::info!(provider = %name, "provider resumed by an operator");
    Ok(Json(ProviderState { paused: false, provider: name }))
}

/// Holds or releases `name` (for the whole fleet when its limits are).
async fn set_held(state: &AppState, name: &str, held: bool) -> Result<(), Problem> {
    let limits = crate::admission::provider_limits(&state.config, &state.plugins, name);
    state.admission.set_held(name, limits, held).await.map_err(super::jobs::store_problem)
}

fn require_provider(state: &AppState, name: &str) -> Result<(), Problem> {
    match state.plugins.provider_info(name) {
        Some(_) => Ok(()),
        None => Err(Problem::new(StatusCode::NOT_FOUND, format!("no provider {name:?} is loaded"))),
    }
}

/// `GET /admin/plugins`: every serving version.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", security(("admin_key" = [])),
    responses((status = OK, body = Vec<PluginSummary>), (status = UNAUTHORIZED, description = "No or a wrong admin key", body = Problem, content_type = "application/problem+json"),
              (status = FORBIDDEN, description = "No ADMIN_API_KEY is configured", body = Problem, content_type = "application/problem+json")))]
async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Vec<PluginSummary>>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    Ok(Json(state.plugins.list()))
}

/// The answer to an upload.
#[derive(Serialize, ToSchema)]
struct Uploaded {
    /// False when the same content already served.
    changed: bool,
    #[serde(flatten)]
    plugin: PluginSummary,
}

/// `PUT /admin/plugins/{name}`: the body is a component, validated like a
/// file drop and, once serving, written to the plugin directory.
#[utoipa::path(put, path = "/admin/plugins/{name}", tag = "admin", security(("admin_key" = [])),
    params(("name" = String, Path, description = "The plugin's name (the file name without .wasm)")),
    request_body(content = Vec<u8>, description = "A WebAssembly component (at most SCRIBE_MAX_PLUGIN_BYTES)", content_type = "application/wasm"),
    responses((status = CREATED, description = "Published: the next call uses it", body = Uploaded),
              (status = OK, description = "The same content already serves", body = Uploaded),
              (status = BAD_REQUEST, description = "A bad plugin name", body = Problem, content_type = "application/problem+json"),
              (status = CONFLICT, description = "It implements another world than the serving version", body = Problem, content_type = "application/problem+json"),
              (status = PAYLOAD_TOO_LARGE, body = Problem, content_type = "application/problem+json"),
              (status = UNPROCESSABLE_ENTITY, description = "It does not compile, link or pass its smoke call", body = Problem, content_type = "application/problem+json"),
              (status = UNAUTHORIZED, description = "No or a wrong admin key", body = Problem, content_type = "application/problem+json"),
              (status = FORBIDDEN, description = "No ADMIN_API_KEY is configured", body = Problem, content_type = "application/problem+json")))]
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
