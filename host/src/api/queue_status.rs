//! `GET /api/queue-status` (public) and `POST /api/queue-status` (admin):
//! the brief's queue-status document, field for field (camelCase, all
//! numbers). `queue.*` speaks of the default provider; per-minute figures
//! are over the last 60 s of this instance, active users over 5 minutes
//! (a job queued or running, or a submit); job counts come from the store,
//! so on PostgreSQL they are the fleet's. The public form names no user
//! and no job; the admin form adds per-user (progress over
//! [`PROGRESS_WINDOW_MS`]), per-provider and per-plugin detail, and which
//! instance answered.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::auth::require_admin;
use super::intake::default_provider;
use super::jobs::store_problem;
use super::problem::Problem;
use super::AppState;
use crate::store::JobStatus;

/// The admin form's per-user progress counts the jobs queued or running
/// and those that finished within this window (an hour: longer than the
/// brief's whole batch of 1,000 jobs takes).
pub const PROGRESS_WINDOW_MS: i64 = 60 * 60 * 1000;

/// The queue-status routes.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(public, admin))
}

#[utoipa::path(get, path = "/api/queue-status", tag = "operations",
    responses((status = OK, description = "queue {queueLength, processing, maxConcurrent, requestsThisMinute, rateLimitPerMinute}, \
system {averageResponseTime, errorRate, requestsPerMinute, memoryUsage, activeUsers}, database {current, max, utilization}, \
cache {hits, misses, hitRate}: all numbers", body = Object)))]
async fn public(State(state): State<Arc<AppState>>) -> Result<Json<Value>, Problem> {
    Ok(Json(document(&state).await?.0))
}

/// The admin form takes no body or an empty JSON object.
#[utoipa::path(post, path = "/api/queue-status", tag = "operations", security(("admin_key" = [])),
    responses((status = OK, description = "The public document plus providers, users (progress over the last hour) and plugins", body = Object),
              (status = UNAUTHORIZED, description = "No or a wrong admin key", body = Problem, content_type = "application/problem+json")))]
async fn admin(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    require_admin(&headers, state.config.admin_api_key.as_deref())?;
    let (mut doc, detail) = document(&state).await?;
    doc["providers"] = detail;
    let mut users = serde_json::Map::new();
    let since = crate::clock::now_ms() - PROGRESS_WINDOW_MS;
    for (name, status, count) in state.store.jobs_by_user(since).await.map_err(store_problem)? {
        let entry = users
            .entry(name)
            .or_insert_with(|| json!({ "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0 }));
        entry[status.as_str()] = json!(count);
    }
    doc["users"] = Value::Object(users);
    doc["plugins"] = serde_json::to_value(state.plugins.list()).unwrap_or(Value::Null);
    doc["instance"] = Value::String(state.instance.clone());
    doc["instances"] = json!(alive_instances(&state).await?);
    Ok(Json(doc))
}

/// The public document, and the per-provider detail.
async fn document(state: &AppState) -> Result<(Value, Value), Problem> {
    let open = state.store.open_jobs().await.map_err(store_problem)?;
    let count = |provider: &str, status: JobStatus| -> u64 {
        open.iter().filter(|o| o.provider == provider && o.status == status).map(|o| o.count).sum()
    };
    let recent = state.activity.recent(Instant::now());
    let active_users = active_users(state, &recent).await?;
    let default = default_provider(state);
    let limits = crate::admission::provider_limits(&state.config, &state.plugins, default);
    let pool = state.store.pool_usage();
    let (hits, misses) = (state.metrics.cache_hits.get(), state.metrics.cache_misses.get());
    let ratio = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    let doc = json!({
        "queue": {
            "queueLength": count(default, JobStatus::Queued),
            "processing": count(default, JobStatus::Running),
            "maxConcurrent": limits.max_concurrent,
            "requestsThisMinute": recent.calls_started.get(default).copied().unwrap_or(0),
            "rateLimitPerMinute": limits.rate.map_or(0, |r| r.per_minute),
        },
        "system": {
            "averageResponseTime": recent.average_call_ms,
            "errorRate": recent.error_rate,
            "requestsPerMinute": recent.submits,
            "memoryUsage": crate::process::resident_memory_bytes(),
            "activeUsers": active_users,
        },
        "database": {
            "current": pool.in_use,
            "max": pool.max,
            "utilization": ratio(f64::from(pool.in_use), f64::from(pool.max)),
        },
        "cache": { "hits": hits, "misses": misses, "hitRate": ratio(hits as f64, (hits + misses) as f64) },
    });
    let mut providers: Vec<String> = open.iter().map(|o| o.provider.clone()).collect();
    providers.extend(state.plugins.list().into_iter().filter(|p| p.world == crate::plugins::World::Provider).map(|p| p.name));
    providers.sort();
    providers.dedup();
    let mut detail = serde_json::Map::new();
    for p in providers {
        let limits = crate::admission::provider_limits(&state.config, &state.plugins, &p);
        let paused = state.admission.is_held(&p, limits).await.map_err(store_problem)?;
        let value = json!({
                "queued": count(&p, JobStatus::Queued),
                "running": count(&p, JobStatus::Running),
                "maxConcurrent": limits.max_concurrent,
                "rateLimitPerMinute": limits.rate.map_or(0, |r| r.per_minute),
                "callsThisMinute": recent.calls_started.get(&p).copied().unwrap_or(0),
                "paused": paused,
                "fleetWide": limits.fleet_wide,
            });
        detail.insert(p, value);
    }
    Ok((doc, Value::Object(detail)))
}

/// The instances alive: the fleet's on PostgreSQL (by heartbeat), else
/// this one.
pub(super) async fn alive_instances(state: &AppState) -> Result<Vec<String>, Problem> {
    match &state.presence {
        Some(presence) => presence.alive().await.map_err(|e| store_problem(e.into())),
        None => Ok(vec![state.instance.clone()]),
    }
}

/// Users with a job queued or running, or a submit in the activity window.
async fn active_users(state: &AppState, recent: &crate::activity::Recent) -> Result<usize, Problem> {
    let mut users: std::collections::HashSet<String> =
        state.store.users_with_open_jobs().await.map_err(store_problem)?.into_iter().collect();
    users.extend(recent.users.iter().cloned());
    Ok(users.len())
}

/// Sets the gauges a scrape reads from the current state: jobs queued and
/// running, the pool, memory.
pub(super) async fn refresh_gauges(state: &AppState) -> Result<(), Problem> {
    let open = state.store.open_jobs().await.map_err(store_problem)?;
    let metrics = &state.metrics;
    metrics.queue_jobs.reset();
    // Every loaded provider shows both series, at 0 when empty, so alerts
    // and graphs see "none" rather than "no data".
    for plugin in state.plugins.list().into_iter().filter(|p| p.world == crate::plugins::World::Provider) {
        for status in [JobStatus::Queued, JobStatus::Running] {
            metrics.queue_jobs.with_label_values(&[&plugin.name, status.as_str()]).set(0);
        }
    }
    let recent = state.activity.recent(Instant::now());
    for plugin in state.plugins.list().into_iter().filter(|p| p.world == crate::plugins::World::Provider) {
        let name = plugin.name.as_str();
        let limits = crate::admission::provider_limits(&state.config, &state.plugins, name);
        metrics.calls_in_flight.with_label_values(&[name]).set(i64::from(state.admission.in_flight(name)));
        metrics.max_concurrent.with_label_values(&[name]).set(i64::from(limits.max_concurrent));
        metrics.calls_last_minute.with_label_values(&[name]).set(recent.calls_started.get(name).copied().unwrap_or(0) as i64);
        metrics.rate_limit_per_minute.with_label_values(&[name]).set(limits.rate.map_or(0, |r| i64::from(r.per_minute)));
    }
    metrics.active_users.set(active_users(state, &recent).await? as i64);
    metrics.fleet_instances.set(alive_instances(state).await?.len() as i64);
    for o in &open {
        metrics.queue_jobs.with_label_values(&[&o.provider, o.status.as_str()]).set(o.count as i64);
    }
    let pool = state.store.pool_usage();
    metrics.db_pool_connections.with_label_values(&["in_use"]).set(i64::from(pool.in_use));
    metrics.db_pool_connections.with_label_values(&["idle"]).set(i64::from(pool.idle));
    metrics.db_pool_max.set(i64::from(pool.max));
    metrics.resident_memory.set(crate::process::resident_memory_bytes() as i64);
    if let Some(limit) = crate::process::memory_limit_bytes(state.config.memory_limit_mb) {
        metrics.memory_limit.set(limit as i64);
    }
    Ok(())
}
