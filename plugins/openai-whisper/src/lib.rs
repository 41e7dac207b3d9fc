//! `openai-whisper`: Scribe's OpenAI provider, as a component of world
//! `scribe:plugin/provider`.
//!
//! One transcription is one multipart `POST {base_url}/v1/audio/transcriptions`
//! with the API key as a bearer token and `response_format=json`; the answer's
//! `text` becomes the transcript. What matters most to the host is how a
//! failure is reported: the host pauses the provider on `rate-limited`, the
//! retry policy retries `transient`, and the job's owner reads the message, so
//! every failure is mapped to one `provider-error` kind with OpenAI's own
//! explanation in it (see `/work/shared/provider-apis.md` §1.5-1.6).
//!
//! Settings (`[plugins.openai-whisper.config]`, read through `config-get`):
//! `api_key` (the host maps `OPENAI_API_KEY` in), `base_url` (default
//! `https://api.openai.com`; `OPENAI_BASE_URL` sets it and grants its host),
//! `model` (default `whisper-1`; a job's own model wins).
//!
//! The crate is split so that everything but the I/O is plain Rust that
//! builds and is unit tested on the host target (`cargo test -p
//! openai-whisper`): [`settings`] (endpoint, model, timeouts), [`errors`] (status and headers to an error kind) and
//! [`reply`] (the success body). The bindings exist only when building for wasm
//! (`component`); the HTTP request itself is `guest-http`'s.

pub mod errors;
pub mod reply;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod component;
