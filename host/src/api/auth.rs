//! Who may call what: the admin key check, in constant time.

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::Problem;

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
