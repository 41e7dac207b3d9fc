//! `replicate`: Scribe's Replicate provider, as a component of world
//! `scribe:plugin/provider`, running `openai/whisper` predictions
//! (provider-apis.md §2).
//!
//! One transcription: small audio (up to 256 KiB) goes inline as a data
//! URI, larger audio is uploaded first (`POST /v1/files`, multipart
//! `content`) and passed by its `urls.get`; then `POST /v1/predictions`
//! with `Prefer: wait=N` (N within the call's deadline) and, while the
//! prediction is not done, `GET urls.get` every 0.5 s; when the deadline
//! comes near, `POST urls.cancel` and report a transient error, so no
//! prediction runs on (and bills) after Scribe gave up on it.
//!
//! Settings (`[plugins.replicate.config]`, read through `config-get`):
//! `api_token` (the host maps `REPLICATE_API_TOKEN` in), `base_url`
//! (default `https://api.replicate.com`; `REPLICATE_BASE_URL` sets it and
//! grants its host), `version` (the `openai/whisper` version; default
//! [`settings::DEFAULT_VERSION`]), `wait_secs` (the most `Prefer: wait`
//! may block a create, 1-60; default: 60 or what the deadline allows).
//!
//! Everything but the I/O is plain Rust, unit tested natively: [`settings`],
//! [`input`] (data URI, request body) and [`prediction`] (answers and
//! errors). The bindings exist only on wasm (`component`).

pub mod input;
pub mod prediction;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod component;
