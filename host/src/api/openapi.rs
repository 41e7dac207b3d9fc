//! `GET /openapi.json`: the OpenAPI 3.1 document of the whole HTTP surface.
//!
//! The paths come from each handler's `#[utoipa::path]` as the router
//! registers it ([`super::router`]); this module adds only what is not a
//! route: the title, the two bearer-key schemes and the tags.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

/// The security scheme of a user's API key (`scribe users add`); the
/// handlers' `security(...)` name it by this literal.
pub const USER_KEY: &str = "user_key";
/// The security scheme of the operator's `ADMIN_API_KEY` (likewise).
pub const ADMIN_KEY: &str = "admin_key";

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(title = "Scribe", description = "A self-hosted transcription job gateway: jobs, an OpenAI-compatible route, queue status and operator routes."),
    modifiers(&BearerKeys),
    tags(
        (name = "jobs", description = "A user's transcription jobs (Authorization: Bearer USER_KEY)."),
        (name = "openai", description = "The OpenAI-compatible transcription route (OpenAI's error shape)."),
        (name = "operations", description = "Health, readiness, metrics, queue status and the dashboard."),
        (name = "admin", description = "Operator routes (Authorization: Bearer ADMIN_API_KEY)."),
    )
)]
pub struct ApiDoc;

/// Adds the two bearer-key security schemes.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [(USER_KEY, "A user's API key, printed by `scribe users add NAME`."), (ADMIN_KEY, "The operator's ADMIN_API_KEY.")] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = OK, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn document(Extension(api): Extension<Arc<Document>>) -> Json<Document> {
    Json(api.as_ref().clone())
}
