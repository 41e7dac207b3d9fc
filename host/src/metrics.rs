//! Prometheus metrics: every module records here, and this module imports
//! none of them, so anyone may count without creating a dependency cycle.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The process's metrics. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `scribe_plugin_calls_total{plugin,outcome}`: calls by outcome
    /// (`ok`, `provider_error`, `failed`).
    pub plugin_calls: IntCounterVec,
    /// `scribe_plugin_failures_total{plugin,kind}`: sandbox failures by kind
    /// (`trap`, `timeout`, `fuel`, `memory`, ...).
    pub plugin_failures: IntCounterVec,
    /// `scribe_policy_fallbacks_total{policy}`: decisions the built-in
    /// default made because the active policy failed or was missing.
    pub policy_fallbacks: IntCounterVec,
    /// `scribe_plugin_loads_total{plugin,outcome}`: versions published
    /// (`published`) or refused (`refused`).
    pub plugin_loads: IntCounterVec,
    /// `scribe_plugin_loaded_info{plugin,version,content_hash}`: 1 for the
    /// version serving each plugin.
    pub plugin_loaded: IntGaugeVec,
    /// `scribe_cache_hits_total`: jobs that finished without a provider
    /// call (their transcript was cached, stored, or being made by a twin).
    pub cache_hits: IntCounter,
    /// `scribe_cache_misses_total`: provider calls made through the cache.
    pub cache_misses: IntCounter,
    /// `scribe_jobs_submitted_total{provider}`: jobs accepted.
    pub jobs_submitted: IntCounterVec,
    /// `scribe_jobs_finished_total{provider,outcome}`: jobs that reached
    /// `succeeded`, `failed` or `canceled`, each counted once (when the
    /// guarded statement that ended it changed it).
    pub jobs_finished: IntCounterVec,
    /// `scribe_job_retries_total{provider}`: attempts put back for a retry.
    pub job_retries: IntCounterVec,
    /// `scribe_provider_call_duration_seconds{provider}`: provider calls,
    /// from the start of the plugin call to its answer.
    pub provider_call_seconds: HistogramVec,
    /// `scribe_queue_jobs{provider,status}`: jobs queued or running (set
    /// when scraped).
    pub queue_jobs: IntGaugeVec,
    /// `scribe_db_pool_connections{state}`: `in_use` and `idle` connections.
    pub db_pool_connections: IntGaugeVec,
    /// `scribe_db_pool_max_connections`: `DB_POOL_SIZE`.
    pub db_pool_max: IntGauge,
    /// `scribe_db_pool_acquire_duration_seconds`: how long reads waited
    /// for a pooled connection (a pool too small for the load shows here
    /// before requests time out after `DB_TIMEOUT`).
    pub db_pool_acquire_seconds: prometheus::Histogram,
    /// `scribe_process_resident_memory_bytes`.
    pub resident_memory: IntGauge,
    /// `scribe_job_duration_seconds{provider,outcome}`: submit to final status.
    pub job_seconds: HistogramVec,
    /// `scribe_http_request_duration_seconds{route,method,status}`.
    pub http_seconds: HistogramVec,
    /// `scribe_provider_calls_in_flight{provider}` (set when scraped).
    pub calls_in_flight: IntGaugeVec,
    /// `scribe_provider_max_concurrent{provider}`: the cap (set when scraped).
    pub max_concurrent: IntGaugeVec,
    /// `scribe_provider_calls_last_minute{provider}` (set when scraped).
    pub calls_last_minute: IntGaugeVec,
    /// `scribe_provider_rate_limit_per_minute{provider}` (set when scraped;
    /// 0: unlimited).
    pub rate_limit_per_minute: IntGaugeVec,
    /// `scribe_instance_info{instance}`: 1, labelled with the id of the
    /// instance answering (its lease owner name), so a fleet's series can
    /// be told apart.
    pub instance_info: IntGaugeVec,
    /// `scribe_fleet_instances`: instances alive (by heartbeat, on
    /// PostgreSQL; 1 on SQLite), set when scraped.
    pub fleet_instances: IntGauge,
    /// `scribe_active_users`: users with a job queued or running, or a
    /// submit in the last 5 minutes (set when scraped).
    pub active_users: IntGauge,
    /// `scribe_process_memory_limit_bytes`: the cgroup limit or
    /// `SCRIBE_MEMORY_LIMIT_MB` (0 when neither is known).
    pub memory_limit: IntGauge,
}

impl Metrics {
    /// Creates and registers every collector.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("scribe".into()), None).expect("valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let plugin_calls = counter("plugin_calls_total", "Plugin calls by outcome.", &["plugin", "outcome"]);
        let plugin_failures =
            counter("plugin_failures_total", "Plugin calls stopped by the sandbox, by kind.", &["plugin", "kind"]);
        let policy_fallbacks = counter(
            "policy_fallbacks_total",
            "Policy decisions made by the built-in default because the active policy failed.",
            &["policy"],
        );
        let plugin_loads = counter("plugin_loads_total", "Plugin versions published or refused.", &["plugin", "outcome"]);
        let plugin_loaded = IntGaugeVec::new(
            Opts::new("plugin_loaded_info", "The plugin version serving calls (value 1)."),
            &["plugin", "version", "content_hash"],
        )
        .expect("valid metric");
        registry.register(Box::new(plugin_loaded.clone())).expect("unique metric");
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let cache_hits = plain("cache_hits_total", "Jobs that finished without a provider call (cached transcript).");
        let cache_misses = plain("cache_misses_total", "Provider calls made through the transcript cache.");
        let jobs_submitted = counter("jobs_submitted_total", "Jobs accepted.", &["provider"]);
        let jobs_finished = counter(
            "jobs_finished_total",
            "Jobs that reached a final status (succeeded, failed, canceled), each once.",
            &["provider", "outcome"],
        );
        let job_retries = counter("job_retries_total", "Job attempts put back in the queue for a retry.", &["provider"]);
        let provider_call_seconds = HistogramVec::new(
            HistogramOpts::new("provider_call_duration_seconds", "Provider calls, from the plugin call to its answer.")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            &["provider"],
        )
        .expect("valid metric");
        registry.register(Box::new(provider_call_seconds.clone())).expect("unique metric");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let job_seconds = histogram(
            "job_duration_seconds",
            "Jobs from submit to final status.",
            &["provider", "outcome"],
            vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0],
        );
        let http_seconds = histogram(
            "http_request_duration_seconds",
            "HTTP requests, by route, method and status.",
            &["route", "method", "status"],
            vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0],
        );
        let calls_in_flight = gauge_vec("provider_calls_in_flight", "Provider calls in flight.", &["provider"]);
        let max_concurrent = gauge_vec("provider_max_concurrent", "The cap on a provider's calls in flight.", &["provider"]);
        let calls_last_minute = gauge_vec("provider_calls_last_minute", "Provider calls started in the last 60 s.", &["provider"]);
        let rate_limit_per_minute =
            gauge_vec("provider_rate_limit_per_minute", "A provider's calls-per-minute limit (0: none).", &["provider"]);
        let active_users = gauge("active_users", "Users with a job queued or running, or a submit in the last 5 minutes.");
        let instance_info = gauge_vec("instance_info", "1, labelled with the id of the Scribe instance answering.", &["instance"]);
        let fleet_instances = gauge("fleet_instances", "Scribe instances alive on this database (by heartbeat; 1 on SQLite).");
        let queue_jobs = gauge_vec("queue_jobs", "Jobs queued or running.", &["provider", "status"]);
        let db_pool_connections = gauge_vec("db_pool_connections", "Database connections by state.", &["state"]);
        let db_pool_max = gauge("db_pool_max_connections", "The most database connections (DB_POOL_SIZE).");
        let db_pool_acquire_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new("db_pool_acquire_duration_seconds", "Waits for a pooled database connection.")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(db_pool_acquire_seconds.clone())).expect("unique metric");
        let resident_memory = gauge("process_resident_memory_bytes", "Resident memory of the process.");
        let memory_limit = gauge("process_memory_limit_bytes", "The memory limit (cgroup, or SCRIBE_MEMORY_LIMIT_MB).");
        Self {
            instance_info,
            fleet_instances,
            registry,
            plugin_calls,
            plugin_failures,
            policy_fallbacks,
            plugin_loads,
            plugin_loaded,
            cache_hits,
            cache_misses,
            jobs_submitted,
            jobs_finished,
            job_retries,
            provider_call_seconds,
            queue_jobs,
            db_pool_connections,
            db_pool_max,
            db_pool_acquire_seconds,
            resident_memory,
            memory_limit,
            job_seconds,
            http_seconds,
            calls_in_flight,
            max_concurrent,
            calls_last_minute,
            rate_limit_per_minute,
            active_users,
        }
    }

    /// Counts a job that just reached a final `outcome` (`succeeded`,
    /// `failed`, `canceled`), `seconds` after it was submitted.
    pub fn job_finished(&self, provider: &str, outcome: &str, seconds: f64) {
        self.jobs_finished.with_label_values(&[provider, outcome]).inc();
        self.job_seconds.with_label_values(&[provider, outcome]).observe(seconds.max(0.0));
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding into a String only fails on invalid metric families,
        // which registration has already refused.
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut out);
        out
    }

    /// The registry, for the `/metrics` route.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
