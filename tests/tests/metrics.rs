//! `GET /metrics` after a scripted run: the counters, gauges and the call
//! histogram have exactly the values the run implies (each job finished
//! once, retries and cache hits counted), and `promtool` finds nothing to
//! fix in the live output or in the shipped alert rules.


use reqwest::StatusCode;
use scribe_tests::api::{form, serve_dispatching, Env};
use scribe_tests::fake_openai::{FakeOpenAi, Scripted};
use serde_json::Value;

const ADMIN: &str = "admin-secret-key";

async fn submit(env: &Env, seed: u32) -> String {
    let job: Value = env.submit(&env.ann, form(Some(&scribe_tests::wav(seed, 300)), &[])).send().await.unwrap().json().await.unwrap();
    job["id"].as_str().unwrap().to_string()
}

async fn until_status(env: &Env, id: &str, status: &str) {
    env.job_reaching(id, status).await;
}

/// The value of the sample `series` (name and labels as Prometheus prints
/// them) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_counters_match_a_scripted_run() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[("ADMIN_API_KEY", ADMIN), ("SCRIBE_RETRY_POLICY", "retry-backoff")]).await;
    fake.push_script(vec![Scripted::Status(400), Scripted::Status(500)]);
    until_status(&env, &submit(&env, 1).await, "failed").await; // refused: no retry
    until_status(&env, &submit(&env, 2).await, "succeeded").await; // 500, retried, then ok
    until_status(&env, &submit(&env, 3).await, "succeeded").await;
    until_status(&env, &submit(&env, 3).await, "succeeded").await; // the same audio: a cache hit
    let pause = format!("{}/admin/providers/openai-whisper/pause", env.base);
    assert_eq!(env.client.post(pause).bearer_auth(ADMIN).send().await.unwrap().status(), StatusCode::OK);
    let queued = submit(&env, 4).await;
    assert_eq!(env.delete(&env.ann, &queued).await.status(), StatusCode::OK);
    assert_eq!(env.delete(&env.ann, &queued).await.status(), StatusCode::OK, "a second cancel counts nothing");

    let response = env.client.get(format!("{}/metrics", env.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let p = "provider=\"openai-whisper\"";
    assert_eq!(sample(&text, &format!("scribe_jobs_submitted_total{{{p}}}")), 5.0);
    assert_eq!(sample(&text, &format!("scribe_jobs_finished_total{{outcome=\"succeeded\",{p}}}")), 3.0);
    assert_eq!(sample(&text, &format!("scribe_jobs_finished_total{{outcome=\"failed\",{p}}}")), 1.0);
    assert_eq!(sample(&text, &format!("scribe_jobs_finished_total{{outcome=\"canceled\",{p}}}")), 1.0);
    assert_eq!(sample(&text, &format!("scribe_job_retries_total{{{p}}}")), 1.0);
    assert_eq!(sample(&text, "scribe_cache_hits_total"), 1.0);
    assert_eq!(sample(&text, "scribe_cache_misses_total"), 4.0, "one per provider call: 1 + 2 + 1");
    assert_eq!(fake.calls(), 4);
    assert_eq!(sample(&text, &format!("scribe_provider_call_duration_seconds_count{{{p}}}")), 4.0, "one observation per call");
    assert_eq!(sample(&text, &format!("scribe_queue_jobs{{{p},status=\"queued\"}}")), 0.0, "the canceled job left the queue");
    assert_eq!(sample(&text, "scribe_db_pool_max_connections"), 20.0);
    let acquires = sample(&text, "scribe_db_pool_acquire_duration_seconds_count");
    assert!(acquires >= 5.0, "every job read waited for a connection, and was timed: {acquires}");
    assert_eq!(sample(&text, "scribe_db_pool_acquire_duration_seconds_bucket{le=\"+Inf\"}"), acquires);
    assert!(sample(&text, "scribe_process_resident_memory_bytes") > 1e6);
    let http = "scribe_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/jobs\",status=\"202\"}";
    assert_eq!(sample(&text, http), 5.0, "requests are labelled by route pattern");
    let finished = format!("scribe_job_duration_seconds_count{{outcome=\"succeeded\",{p}}}");
    assert_eq!(sample(&text, &finished), 3.0);
    assert_eq!(sample(&text, &format!("scribe_provider_max_concurrent{{{p}}}")), 5.0);
    assert_eq!(sample(&text, &format!("scribe_provider_calls_last_minute{{{p}}}")), 4.0);
    assert_eq!(sample(&text, &format!("scribe_provider_rate_limit_per_minute{{{p}}}")), 6000.0);
    assert_eq!(sample(&text, "scribe_active_users"), 1.0, "ann submitted");
    promtool(&["check", "metrics"], Some(&text));
}

/// Runs `promtool ARGS` (with `stdin`), asserting it finds nothing to fix.
fn promtool(args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (bash tests/run installs it from the Debian prometheus package)");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{said}");
    assert!(!said.contains("WARNING") && !said.contains("should"), "promtool {args:?} has advice:\n{said}");
}

#[test]
fn the_shipped_alert_rules_and_scrape_config_pass_promtool() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/prometheus");
    promtool(&["check", "rules", &format!("{examples}/alerts.yml")], None);
    promtool(&["check", "config", &format!("{examples}/prometheus.yml")], None);
}
