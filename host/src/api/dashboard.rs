//! `GET /`: the operator's dashboard, one self-contained page compiled into
//! the binary (no CDN, nothing to build). It polls `/api/queue-status`
//! (the admin form when the operator enters the admin key), so it shows
//! exactly what that document says and needs no route of its own.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// Only this origin's own inline script and style, and requests back to it:
/// the page cannot load anything from elsewhere.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'none'";

/// The dashboard route.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(page))
}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = OK, description = "The dashboard page", body = String, content_type = "text/html")))]
async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        PAGE,
    )
}
