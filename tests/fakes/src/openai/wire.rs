//! The fake's side of the wire: reading a transcription request the way
//! OpenAI does (auth, multipart form, validation) and writing its answers
//! in OpenAI's shapes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;

/// What the form held.
#[derive(Default)]
struct Form {
    fields: Vec<(String, String)>,
    file: Option<(RecordedFile, bytes::Bytes)>,
}

/// An error answer: status and OpenAI's envelope.
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>, kind: &'static str) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, message: message.into(), kind, param: None, code: None }
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

pub(super) async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let arrived = Instant::now();
    shared.calls.fetch_add(1, Ordering::SeqCst);
    shared.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(peer);
    let _in_flight = InFlight::enter(&shared);
    shared.script().arrivals.push(arrived);

    let header_text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = header_text(header::AUTHORIZATION);
    let content_type = header_text(header::CONTENT_TYPE);
    // Read the whole body first, whatever the verdict, so the client never
    // sees its upload cut short.
    let form = read_form(form, &headers).await;
    let verdict = check_auth(&shared.api_key, authorization.as_deref())
        .and_then(|()| form.as_ref().map_err(|e| ApiError::new(e.status.as_u16(), e.message.clone(), e.kind)))
        .and_then(|form| validate(form).map(|()| form));

    let (answer, latency) = {
        let mut script = shared.script();
        let answer = match &verdict {
            Ok(_) => Some(next_answer(&mut script)),
            Err(_) => None,
        };
        let (fields, file) = match &form {
            Ok(form) => (form.fields.clone(), form.file.as_ref().map(|(f, _)| f.clone())),
            Err(_) => (Vec::new(), None),
        };
        let answered = match (&answer, &verdict) {
            (Some(answer), _) => answer.status(),
            (None, Err(e)) => Some(e.status.as_u16()),
            (None, Ok(_)) => unreachable!("an accepted request has an answer"),
        };
        script.requests.push(RecordedRequest { arrived, authorization, content_type, fields, file, answered });
        (answer, script.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let request_id = format!("req_{:032x}", shared.next_request_id.fetch_add(1, Ordering::SeqCst));
    let mut response = match (verdict, answer) {
        (Err(error), _) => error_response(&error, &[]),
        (Ok(form), Some(answer)) => answer_response(form, answer).await,
        (Ok(_), None) => unreachable!("an accepted request has an answer"),
    };
    let headers = response.headers_mut();
    headers.insert("x-request-id", HeaderValue::from_str(&request_id).expect("ascii"));
    headers.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    headers.insert("openai-processing-ms", HeaderValue::from(latency.as_millis() as u64));
    response
}

/// The next answer: the script first, then the fault rates, then `Ok`.
pub(super) fn next_answer(script: &mut Script) -> Scripted {
    if let Some(answer) = script.queue.pop_front() {
        return answer;
    }
    let Some(faults) = script.faults.as_mut() else { return Scripted::Ok };
    let draw: f64 = faults.rng.random();
    if draw < faults.error_500 {
        Scripted::Status500
    } else if draw < faults.error_500 + faults.rate_limited {
        Scripted::RateLimited { retry_after: Some(faults.retry_after) }
    } else {
        Scripted::Ok
    }
}

fn check_auth(api_key: &str, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = authorization else {
        return Err(ApiError::new(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
        ));
    };
    match value.strip_prefix("Bearer ") {
        Some(key) if key == api_key => Ok(()),
        given => Err(ApiError::new(
            401,
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask(given.unwrap_or(value))
            ),
            "invalid_request_error",
        )
        .code("invalid_api_key")),
    }
}

/// `sk-abc...wxyz` -> `sk-a*********wxyz`, as OpenAI shows a wrong key.
pub(super) fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

async fn read_form(form: Result<Multipart, MultipartRejection>, headers: &HeaderMap) -> Result<Form, ApiError> {
    let mut multipart = form.map_err(|_| {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        ApiError::new(400, format!("Invalid Content-Type header ({content_type}), expected multipart/form-data."), "invalid_request_error")
    })?;
    let too_large = || {
        let read = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let read = read.unwrap_or(MAX_CONTENT_BYTES as u64 + 1);
        ApiError::new(413, format!("Maximum content size limit ({MAX_CONTENT_BYTES}) exceeded ({read} bytes read)"), "server_error")
    };
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(400, format!("Could not parse multipart form: {}", e.body_text()), "invalid_request_error")
        }
    };
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        if name == "file" && form.file.is_none() {
            let bytes = field.bytes().await.map_err(unreadable)?;
            let file = RecordedFile { filename, content_type, len: bytes.len(), sha256: hex::encode(Sha256::digest(&bytes)) };
            form.file = Some((file, bytes));
        } else {
            let bytes = field.bytes().await.map_err(unreadable)?;
            form.fields.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(form)
}

/// The checks OpenAI makes on the form (§1.2, §1.4).
fn validate(form: &Form) -> Result<(), ApiError> {
    let field = |name: &str| form.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let Some((file, _)) = &form.file else {
        return Err(ApiError::new(400, "Missing required parameter: 'file'.", "invalid_request_error").param("file"));
    };
    let extension = file.filename.as_deref().and_then(|f| f.rsplit_once('.')).map(|(_, ext)| ext.to_ascii_lowercase());
    if !extension.is_some_and(|ext| SUPPORTED_FORMATS.contains(&ext.as_str())) {
        let list = SUPPORTED_FORMATS.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(", ");
        return Err(ApiError::new(400, format!("Invalid file format. Supported formats: [{list}]"), "invalid_request_error"));
    }
    if field("model").is_none_or(|m| m.trim().is_empty()) {
        return Err(ApiError::new(400, "you must provide a model parameter", "invalid_request_error").param("model"));
    }
    if let Some(t) = field("temperature") {
        if !t.trim().parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t)) {
            return Err(ApiError::new(400, format!("Invalid temperature {t:?}: expected a number between 0 and 1."), "invalid_request_error").param("temperature"));
        }
    }
    let format = field("response_format").unwrap_or("json");
    if !["json", "text", "srt", "vtt", "verbose_json"].contains(&format) {
        return Err(ApiError::new(400, format!("Invalid value for 'response_format': '{format}'."), "invalid_request_error").param("response_format"));
    }
    Ok(())
}

async fn answer_response(form: &Form, answer: Scripted) -> Response {
    match answer {
        Scripted::Ok => success(form, StatusCode::OK),
        Scripted::Status(status) if (200..300).contains(&status) => success(form, StatusCode::from_u16(status).expect("2xx")),
        Scripted::Status500 => error_response(
            &ApiError::new(500, "The server had an error while processing your request. Sorry about that!", "server_error"),
            &[],
        ),
        Scripted::RateLimited { retry_after } => {
            let mut headers = Vec::new();
            if let Some(wait) = retry_after {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.push(("retry-after", secs.max(1).to_string()));
                if wait.subsec_nanos() > 0 {
                    headers.push(("retry-after-ms", format!("{}", wait.as_secs_f64() * 1000.0)));
                }
            }
            error_response(&rate_limit_error(), &headers)
        }
        Scripted::RateLimitedMs(ms) => error_response(&rate_limit_error(), &[("retry-after-ms", format!("{ms}"))]),
        Scripted::RateLimitedUntil(at) => error_response(&rate_limit_error(), &[("retry-after", httpdate::fmt_http_date(at))]),
        Scripted::InsufficientQuota => error_response(
            &ApiError::new(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
            )
            .code("insufficient_quota"),
            &[],
        ),
        Scripted::Hang => std::future::pending().await,
        Scripted::Status(status) => {
            let kind = if status >= 500 { "server_error" } else { "invalid_request_error" };
            error_response(&ApiError::new(status, format!("Scripted status {status} from the fake OpenAI server."), kind), &[])
        }
    }
}

fn rate_limit_error() -> ApiError {
    ApiError::new(
        429,
        "Rate limit reached for whisper-1 in organization org-fake on requests per min (RPM): Limit 50, Used 50, Requested 1. Please try again in 1.2s.",
        "requests",
    )
    .code("rate_limit_exceeded")
}

fn error_response(error: &ApiError, headers: &[(&'static str, String)]) -> Response {
    let mut response = (error.status, axum::Json(error.body())).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, HeaderValue::from_str(value).expect("header values are ascii"));
    }
    response
}

/// A transcription in the requested `response_format`.
fn success(form: &Form, status: StatusCode) -> Response {
    let (_, audio) = form.file.as_ref().expect("validated");
    let text = transcript_text(audio);
    let language = form.fields.iter().find(|(n, _)| n == "language").map(|(_, v)| v.as_str()).unwrap_or("en");
    let format = form.fields.iter().find(|(n, _)| n == "response_format").map(|(_, v)| v.as_str()).unwrap_or("json");
    let usage = json!({"type": "duration", "seconds": 1});
    match format {
        "text" => (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response(),
        "srt" => (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n")).into_response(),
        "vtt" => (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n")).into_response(),
        "verbose_json" => {
            // Two segments (the text's words halved), a second each.
            let words: Vec<&str> = text.split(' ').collect();
            let (first, second) = words.split_at(words.len() / 2);
            let segment = |id: u32, words: &[&str]| {
                json!({
                    "id": id, "seek": 0, "start": f64::from(id), "end": f64::from(id + 1), "text": format!(" {}", words.join(" ")),
                    "tokens": [50364 + id], "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.0, "no_speech_prob": 0.01,
                })
            };
            let body = json!({
                "task": "transcribe", "language": language_name(language), "duration": 2.0, "text": text,
                "segments": [segment(0, first), segment(1, second)], "usage": usage,
            });
            (status, axum::Json(body)).into_response()
        }
        _ => (status, axum::Json(json!({"text": text, "usage": usage}))).into_response(),
    }
}

/// `verbose_json` names the language in full, lowercase (§1.3).
fn language_name(code: &str) -> &str {
    whisper_languages::name_of(code).unwrap_or(code)
}

/// Anything but the transcription endpoint: OpenAI's 404 envelope.
pub(super) async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(&ApiError::new(404, format!("Invalid URL ({method} {})", uri.path()), "invalid_request_error"), &[])
}

