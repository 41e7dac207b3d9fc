//! Scribe: a self-hosted transcription job gateway whose providers and
//! retry/priority policies are WebAssembly components.
//!
//! Layers import downwards only (see ARCHITECTURE.md):
//!
//! - `main.rs` (the CLI) and [`server`] (wiring) on top; [`client`] (`scribe
//!   submit`, `scribe status`) talks to a server over HTTP only; [`demo`]
//!   (`scribe demo`) starts a server and points the client at it;
//! - [`api`]: the HTTP surface (one file per route family);
//! - [`bench`]: the `scribe bench` measurements;
//! - [`scheduler`]: dispatch under the limits, retries, leases: the only
//!   caller of provider plugins and policies;
//! - [`cache`]: transcripts by (audio, provider, model, language, prompt,
//!   temperature), in memory and in the store, one provider call per key;
//! - [`plugins`]: the plugin runtime (engines, sandbox, registry, hot swap);
//!   it knows nothing of jobs, users or storage;
//! - [`admission`]: a job starts only within its provider's limits, held
//!   in-process or, for a fleet, in PostgreSQL; [`instances`]: a fleet's
//!   heartbeats;
//! - [`store`] (users and jobs, durably), [`users`] (API keys), [`limiter`]
//!   (rate per provider: the GCRA) and [`gate`] (concurrency per provider);
//! - [`audio`]: uploads stored by sha256 behind the `AudioStore` trait
//!   (a directory, or PostgreSQL in a fleet), audio recognised by its bytes,
//!   and `audio_url` downloads that cannot reach internal addresses;
//! - [`retention`]: removes audio no job needs any more (uses `store` and
//!   `audio`);
//! - [`wakeup`]: waking the schedulers (in-process, and across instances
//!   with PostgreSQL's LISTEN/NOTIFY);
//! - [`activity`]: the last minutes' events behind the queue-status figures;
//! - [`formats`]: transcripts rendered as json, text, srt, vtt, verbose_json;
//! - [`models`]: `scribe models fetch`, the offline models for `local-whisper`;
//! - [`config`], [`metrics`], [`process`], [`clock`] and [`files`] at the bottom, importing none of the above.

pub mod activity;
pub mod admission;
pub mod api;
pub mod audio;
pub mod bench;
pub mod cache;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod files;
pub mod formats;
pub mod gate;
pub mod instances;
pub mod limiter;
pub mod metrics;
pub mod models;
pub mod plugins;
pub mod process;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod users;
pub mod wakeup;
