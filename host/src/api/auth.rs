//! Who may call what: the admin key check, in constant time, and the
//! user behind a jobs API request (its bearer key, looked up by hash).

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::Problem;
use crate::store::User;
use crate::users::Authenticator;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks that the request carries `ADMIN_API_KEY`. Unset, the admin API
/// refuses everything. Digests are compared so neither timing nor length
/// says anything about the key.
pub fn require_admin(headers: &HeaderMap, admin_key: Option<&str>) -> Result<(), Problem> {
    let Some(expected) = admin_key else {
        return Err(Problem::new(StatusCode::FORBIDDEN, "the admin API is disabled: set ADMIN_API_KEY to enable it"));
    };
    let unauthorized = || {
        Problem::new(StatusCode::UNAUTHORIZED, "this route needs Authorization: Bearer <ADMIN_API_KEY>")
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
    };
    let given = bearer(headers).ok_or_else(unauthorized)?;
    let equal: bool = Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into();
    if equal {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// The user whose API key the request carries (`Authorization: Bearer
/// KEY`). A missing or unknown key is 401 with `WWW-Authenticate: Bearer`;
/// the store failing is 500. Keys are looked up by their sha256, so the
/// comparison reveals nothing about stored keys.
pub async fn require_user(users: &Authenticator, headers: &HeaderMap) -> Result<User, Problem> {
    let unauthorized = |detail: &str| {
        Problem::new(StatusCode::UNAUTHORIZED, detail).with_header(header::WWW_AUTHENTICATE, "Bearer")
    };
    let key = bearer(headers)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| unauthorized("this route needs Authorization: Bearer <your API key>"))?;
    match users.user_for_key(key).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(unauthorized("unknown API key")),
        Err(error) => {
            tracing::error!(%error, "authenticating a request failed");
            Err(Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the store is not answering; try again"))
        }
    }
}
