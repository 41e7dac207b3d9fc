//! The fake's HTTP handlers: what Replicate receives and answers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Received, Run, Scripted, Shared};
use crate::openai::transcript_text;

/// `{"detail": ...}` with `status`.
fn problem(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({ "detail": detail }))).into_response()
}

/// 429 `{"detail": "Request was throttled..."}` with `Retry-After` if given.
fn throttled(retry_after: Option<String>) -> Response {
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "Request was throttled. Your rate limit resets in ~30s.");
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&value).expect("ascii"));
    }
    response
}

/// Records the request and checks its token; the refusal if it has none.
fn admit(shared: &Shared, method: &str, path: &str, headers: &HeaderMap, json: Value) -> Result<(), Response> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = text(header::AUTHORIZATION);
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut state = shared.state();
    state.received.push(Received { method: method.into(), path: path.into(), authorization: authorization.clone(), prefer, json });
    let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("Token ")));
    if token != Some(state.token.as_str()) {
        return Err(problem(StatusCode::UNAUTHORIZED, "Invalid token."));
    }
    Ok(())
}

/// `Prefer: wait` or `wait=N` (1..=60): how long to hold a create; `Err`
/// for a value the spec's regex refuses.
fn prefer_wait(headers: &HeaderMap) -> Result<Option<Duration>, Response> {
    let Some(value) = headers.get("prefer").and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let secs = match value.trim() {
        "wait" => 60,
        other => match other.strip_prefix("wait=").and_then(|n| n.parse::<u64>().ok()).filter(|n| (1..=60).contains(n)) {
            Some(n) => n,
            None => return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "Prefer: must match ^wait(=([1-9]|[1-9][0-9]|60))?$")),
        },
    };
    Ok(Some(Duration::from_secs(secs)))
}

/// `POST /v1/predictions`.
pub(super) async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(refusal) = admit(&shared, "POST", "/v1/predictions", &headers, json.clone()) {
        return refusal;
    }
    let scripted = shared.state().script.pop_front().unwrap_or(Scripted::Ok);
    let fails_with = match scripted {
        Scripted::Ok => None,
        Scripted::Failed(error) => Some(error),
        Scripted::Throttled(retry_after) => return throttled(retry_after.map(|secs| secs.to_string())),
        Scripted::ThrottledUntil(at) => return throttled(Some(httpdate::fmt_http_date(at))),
        Scripted::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return problem(status, &format!("Scripted status {} from the fake Replicate server.", status.as_u16()));
        }
    };
    let wait = match prefer_wait(&headers) {
        Ok(wait) => wait,
        Err(refusal) => return refusal,
    };
    let Some(version) = json.get("version").and_then(Value::as_str).map(str::to_string) else {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "- version: This field is required.");
    };
    let input = json.get("input").cloned().unwrap_or(Value::Null);
    let audio = match input.get("audio").and_then(Value::as_str).map(|a| resolve_audio(&shared, a)) {
        Some(Ok(audio)) => audio,
        Some(Err(detail)) => return problem(StatusCode::UNPROCESSABLE_ENTITY, &detail),
        None => return problem(StatusCode::UNPROCESSABLE_ENTITY, "- input.audio: This field is required."),
    };
    let id = {
        let mut state = shared.state();
        let id = format!("fakepred{:06}", state.next_id);
        state.next_id += 1;
        let run = Run { created: Instant::now(), version, input, audio, fails_with, canceled: false };
        state.predictions.insert(id.clone(), run);
        id
    };
    if let Some(wait) = wait {
        let run_time = shared.state().run_time;
        tokio::time::sleep(run_time.min(wait)).await;
    }
    let (status, body) = prediction_json(&shared, &id).expect("just created");
    let code = if wait.is_some() && !is_terminal(&status) { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    let mut response = (code, axum::Json(body)).into_response();
    let location = format!("{}/v1/predictions/{id}", shared.base_url);
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii"));
    response
}

/// The bytes an `audio` input names: a data URI or a file this fake holds.
fn resolve_audio(shared: &Shared, audio: &str) -> Result<Vec<u8>, String> {
    if let Some(rest) = audio.strip_prefix("data:") {
        let (_, data) = rest.split_once(";base64,").ok_or("- input.audio: a data URI must be base64")?;
        return base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| format!("- input.audio: bad base64: {e}"));
    }
    let files = format!("{}/v1/files/", shared.base_url);
    match audio.strip_prefix(&files) {
        Some(id) => shared.state().files.get(id).cloned().ok_or_else(|| format!("- input.audio: no file {id}")),
        None => Err("- input.audio: Does not match format 'uri' (this fake takes data URIs and its own file URLs)".into()),
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

/// A prediction as Replicate shows it (§2.4), and its status.
fn prediction_json(shared: &Shared, id: &str) -> Option<(String, Value)> {
    let state = shared.state();
    let run = state.predictions.get(id)?;
    let elapsed = run.created.elapsed();
    let status = if run.canceled {
        "canceled"
    } else if elapsed < state.run_time / 2 {
        "starting"
    } else if elapsed < state.run_time {
        "processing"
    } else if run.fails_with.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    let output = (status == "succeeded").then(|| whisper_output(run));
    let error = if status == "failed" { json!(run.fails_with) } else { Value::Null };
    let created_at = SystemTime::now() - elapsed;
    let time = |t: SystemTime| humantime::format_rfc3339_micros(t).to_string();
    let done = is_terminal(status);
    let base = &shared.base_url;
    let body = json!({
        "id": id, "model": "openai/whisper", "version": run.version, "input": run.input, "output": output,
        "logs": "", "error": error, "status": status, "source": "api", "data_removed": false,
        "created_at": time(created_at),
        "started_at": if status == "starting" { Value::Null } else { json!(time(created_at)) },
        "completed_at": if done { json!(time(SystemTime::now())) } else { Value::Null },
        "urls": {
            "get": format!("{base}/v1/predictions/{id}"),
            "cancel": format!("{base}/v1/predictions/{id}/cancel"),
            "web": format!("{base}/p/{id}"),
        },
        "metrics": if done { json!({"predict_time": elapsed.as_secs_f64(), "total_time": elapsed.as_secs_f64()}) } else { json!({}) },
    });
    Some((status.to_string(), body))
}

/// `openai/whisper`'s output (§2.9): two segments (the text's words
/// halved, a second each), the language as a full name.
fn whisper_output(run: &Run) -> Value {
    let text = transcript_text(&run.audio);
    let words: Vec<&str> = text.split(' ').collect();
    let (first, second) = words.split_at(words.len() / 2);
    let segment = |id: u32, words: &[&str]| {
        json!({"id": id, "seek": 0, "start": f64::from(id), "end": f64::from(id + 1), "text": format!(" {}", words.join(" ")),
               "tokens": [50364 + id], "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.0, "no_speech_prob": 0.01})
    };
    let code = run.input.get("language").and_then(Value::as_str).filter(|l| *l != "auto").unwrap_or("en");
    json!({
        "transcription": text,
        "segments": [segment(0, first), segment(1, second)],
        "detected_language": whisper_languages::name_of(code).unwrap_or(code),
        "translation": null, "txt_file": null, "srt_file": null,
    })
}

/// `GET /v1/predictions/{id}`.
pub(super) async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(refusal) = admit(&shared, "GET", &format!("/v1/predictions/{id}"), &headers, Value::Null) {
        return refusal;
    }
    match prediction_json(&shared, &id) {
        Some((_, body)) => axum::Json(body).into_response(),
        None => problem(StatusCode::NOT_FOUND, "Not found."),
    }
}

/// `POST /v1/predictions/{id}/cancel`.
pub(super) async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(refusal) = admit(&shared, "POST", &format!("/v1/predictions/{id}/cancel"), &headers, Value::Null) {
        return refusal;
    }
    let Some((status, _)) = prediction_json(&shared, &id) else { return problem(StatusCode::NOT_FOUND, "Not found.") };
    if !is_terminal(&status) {
        if let Some(run) = shared.state().predictions.get_mut(&id) {
            run.canceled = true;
        }
    }
    let (_, body) = prediction_json(&shared, &id).expect("exists");
    axum::Json(body).into_response()
}

/// `POST /v1/files`: multipart `content` (required), `filename`, `type`,
/// `metadata`; 201 with the file object.
pub(super) async fn upload(State(shared): State<Arc<Shared>>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Err(refusal) = admit(&shared, "POST", "/v1/files", &headers, Value::Null) {
        return refusal;
    }
    let (mut content, mut name, mut content_type) = (None, None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or("") {
            "content" => {
                name = name.or_else(|| field.file_name().map(str::to_string));
                content_type = field.content_type().map(str::to_string);
                content = field.bytes().await.ok();
            }
            "filename" => name = field.text().await.ok(),
            _ => {}
        }
    }
    let Some(content) = content else { return problem(StatusCode::BAD_REQUEST, "content: a file is required") };
    let id = {
        let mut state = shared.state();
        let id = format!("fakefile{:06}", state.next_id);
        state.next_id += 1;
        state.files.insert(id.clone(), content.to_vec());
        id
    };
    let sha = hex::encode(Sha256::digest(&content));
    let body = json!({
        "id": id, "name": name.unwrap_or_else(|| "file".into()), "content_type": content_type.unwrap_or_else(|| "application/octet-stream".into()),
        "size": content.len(), "etag": sha, "checksums": {"sha256": sha}, "metadata": {},
        "created_at": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        "expires_at": humantime::format_rfc3339_micros(SystemTime::now() + Duration::from_secs(86_400)).to_string(),
        "urls": {"get": format!("{}/v1/files/{id}", shared.base_url)},
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Any other route.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    problem(StatusCode::NOT_FOUND, &format!("Not found: {method} {}", uri.path()))
}
