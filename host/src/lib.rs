//! Scribe: a self-hosted transcription job gateway whose providers and
//! retry/priority policies are WebAssembly components.
//!
//! Layers import downwards only (see ARCHITECTURE.md):
//!
//! - `main.rs` (the CLI) and [`server`] (wiring) on top;
//! - [`api`]: the HTTP surface (one file per route family);
//! - [`bench`]: the `scribe bench` measurements;
//! - [`plugins`]: the plugin runtime (engines, sandbox, registry, hot swap);
//!   it knows nothing of jobs, users or storage;
//! - [`config`] and [`metrics`] at the bottom, importing none of the above.

pub mod api;
pub mod bench;
pub mod config;
pub mod metrics;
pub mod plugins;
pub mod server;
