//! Reading request bodies under a size limit.
//!
//! A body over its limit is still read, and discarded, up to twice the
//! limit before the 413 goes out: a client that is still sending when the
//! server answers would otherwise see a reset connection instead of the
//! answer.

use axum::body::Body;
use axum::http::StatusCode;
use futures_util::StreamExt;

use super::problem::Problem;

/// Reads `body` whole if it is at most `limit` bytes; otherwise drains up to
/// `2 * limit` and answers 413 naming the limit (`limit_name`).
pub async fn read_limited(body: Body, limit: u64, limit_name: &str) -> Result<Vec<u8>, Problem> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("reading the body failed: {e}")))?;
        seen += chunk.len() as u64;
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        } else if seen > limit.saturating_mul(2) {
            break;
        }
    }
    if seen > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {limit}-byte limit ({limit_name})"),
        ));
    }
    Ok(bytes)
}
