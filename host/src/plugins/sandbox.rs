//! What a plugin call can reach: the per-call store state, the outbound
//! HTTP allow-list, the `host` interface and the memory cap.
//!
//! Everything a guest could touch outside its own memory goes through this
//! module, so the grants are decided in one place: WASI is linked for every
//! plugin (Rust guests import it even when pure) but nothing is granted: no
//! preopened directories, no environment, no sockets. Providers additionally
//! get `wasi:http/outgoing-handler`, filtered by [`OutboundPolicy`], the
//! `host` interface, and the one directory the operator granted them
//! (`read_only_dir`: a local model's weights), read-only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{provider as provider_bindings, LogLevel};
use super::registry::Resolved;
use crate::config::READ_ONLY_DIR_GUEST_PATH;

/// Longest log line a plugin can write; the rest is cut.
pub const MAX_LOG_LINE_BYTES: usize = 2048;
/// Log lines one call can write; the rest are dropped.
pub const MAX_LOG_LINES_PER_CALL: u32 = 100;

/// Who is calling out of the sandbox, for logs and errors.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Plugin name.
    pub plugin: Arc<str>,
    /// Version label (declared version and hash prefix).
    pub version: Arc<str>,
}

/// The state of one plugin call's `Store`.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    pub(crate) memory: MemoryCap,
    identity: Identity,
    config: Arc<BTreeMap<String, String>>,
    log_lines: u32,
    /// When the call's deadline passes; checked at every epoch tick.
    pub(crate) deadline: Instant,
    /// The deadline's length, for the error that reports it.
    pub(crate) deadline_ms: u64,
}

/// What a call's first outbound request waits for before it leaves (see
/// [`super::Plugins::transcribe_paced`]).
pub type FirstRequestWait = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl StoreState {
    /// A fresh state granting nothing but what `grants` names: its hosts,
    /// its config, its read-only directory, under its memory cap.
    pub(crate) fn new(identity: Identity, grants: &Resolved, deadline: std::time::Duration, client: super::outbound::Outbound) -> Self {
        Self {
            wasi: wasi_ctx(&identity, grants.read_only_dir.as_deref()),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: OutboundPolicy {
                allowed_hosts: grants.allowed_hosts.clone(),
                identity: identity.clone(),
                client,
                first_request_wait: None,
            },
            memory: MemoryCap::new(grants.memory_mb),
            identity,
            config: grants.config.clone(),
            log_lines: 0,
            deadline_ms: deadline.as_millis() as u64,
            deadline: Instant::now() + deadline,
        }
    }
}

/// WASI granting nothing but `read_only_dir` (if any and it exists),
/// preopened read-only at [`READ_ONLY_DIR_GUEST_PATH`].
fn wasi_ctx(identity: &Identity, read_only_dir: Option<&std::path::Path>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    if let Some(dir) = read_only_dir.filter(|d| d.is_dir()) {
        if let Err(error) = builder.preopened_dir(dir, READ_ONLY_DIR_GUEST_PATH, FsPerms::ReadOnly) {
            tracing::warn!(plugin = %identity.plugin, dir = %dir.display(), %error, "cannot grant the read-only directory");
        }
    }
    builder.build()
}

impl StoreState {
    /// Readies a kept store for its next call: a new deadline, a fresh
    /// log budget.
    pub(crate) fn begin_call(&mut self, deadline: std::time::Duration) {
        self.deadline_ms = deadline.as_millis() as u64;
        self.deadline = Instant::now() + deadline;
        self.log_lines = 0;
    }

    /// Holds this call's first outbound request until `wait` completes;
    /// `None` lets it leave at once.
    pub(crate) fn hold_first_request(&mut self, wait: Option<FirstRequestWait>) {
        self.outbound.first_request_wait = wait;
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

/// Builds the linker for providers: WASI (nothing granted), filtered
/// outbound HTTP, and the `host` interface.
pub fn provider_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = policy_linker(engine)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    provider_bindings::scribe::plugin::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    provider_bindings::scribe::plugin::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Builds the linker for policies: WASI with nothing granted.
pub fn policy_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

impl provider_bindings::scribe::plugin::types::Host for StoreState {}

impl provider_bindings::scribe::plugin::host::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let message = truncate_utf8(&message, MAX_LOG_LINE_BYTES);
        let (plugin, version) = (&*self.identity.plugin, &*self.identity.version);
        match level {
            LogLevel::Debug => tracing::debug!(plugin, version, "{message}"),
            LogLevel::Info => tracing::info!(plugin, version, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, version, "{message}"),
            LogLevel::Error => tracing::error!(plugin, version, "{message}"),
        }
        if self.log_lines == MAX_LOG_LINES_PER_CALL {
            tracing::warn!(plugin, version, "log line limit reached; further lines of this call are dropped");
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn now(&mut self) -> u64 {
        crate::clock::now_ms() as u64
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The outbound HTTP gate: a request leaves only for a granted host.
struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    identity: Identity,
    /// Where a granted request is sent.
    client: super::outbound::Outbound,
    /// What the call's next request waits for, taken by the first one.
    first_request_wait: Option<FirstRequestWait>,
}

impl OutboundPolicy {
    fn allows(&self, uri: &hyper::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        self.allowed_hosts.iter().any(|grant| grant_matches(grant, &host, port))
    }
}

/// A grant is `host` (any port) or `host:port`; `[v6]:port` for IPv6.
pub(crate) fn grant_matches(grant: &str, host: &str, port: u16) -> bool {
    let grant = grant.to_ascii_lowercase();
    if let Some((g_host, g_port)) = grant.rsplit_once(':').filter(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok()) {
        let g_host = g_host.trim_start_matches('[').trim_end_matches(']');
        return g_host == host && g_port.parse::<u16>() == Ok(port);
    }
    grant.trim_start_matches('[').trim_end_matches(']') == host
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> super::outbound::SendFuture {
        if !self.allows(request.uri()) {
            tracing::warn!(
                plugin = &*self.identity.plugin,
                version = &*self.identity.version,
                uri = %request.uri(),
                "outbound request denied: host not in allowed_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The guest learns of a failure from the response; nothing waits
        // on the request body's own outcome.
        drop(fut);
        match self.first_request_wait.take() {
            None => self.client.send(request, options),
            // wasmtime-wasi-http runs this future in a task of its own, so
            // the guest goes on (writing the body into its pipe) meanwhile.
            Some(wait) => {
                let client = self.client.clone();
                Box::new(async move {
                    wait.await;
                    Box::into_pin(client.send(request, options)).await
                })
            }
        }
    }
}

/// `StoreLimits` with `trap_on_grow_failure`, remembering whether the cap
/// was hit so the failure can be reported as what it was.
pub(crate) struct MemoryCap {
    limits: StoreLimits,
    pub(crate) hit: bool,
}

impl MemoryCap {
    fn new(memory_mb: u64) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size((memory_mb * 1024 * 1024) as usize)
            .trap_on_grow_failure(true)
            .build();
        Self { limits, hit: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let result = self.limits.memory_growing(current, desired, maximum);
        if !matches!(result, Ok(true)) {
            self.hit = true;
        }
        result
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::grant_matches;

    #[test]
    fn grants_match_host_and_optional_port() {
        assert!(grant_matches("api.openai.com", "api.openai.com", 443));
        assert!(grant_matches("API.openai.com", "api.openai.com", 8443));
        assert!(grant_matches("127.0.0.1:4000", "127.0.0.1", 4000));
        assert!(!grant_matches("127.0.0.1:4000", "127.0.0.1", 4001));
        assert!(!grant_matches("openai.com", "api.openai.com", 443));
        assert!(grant_matches("[::1]:80", "::1", 80));
        assert!(grant_matches("::1", "::1", 80));
    }
}
