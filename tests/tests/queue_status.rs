//! The queue-status document mid-run: every field of the brief, a number,
//! with the values the run implies; the admin form's key check and detail.

use std::time::Duration;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve_dispatching};
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::{problem, wait_until};
use serde_json::Value;

const ADMIN: &str = "admin-secret-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_every_field_with_the_runs_values() {
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(1500));
    let env = serve_dispatching(&fake, "", &[("MAX_CONCURRENT_TRANSCRIPTIONS", "2"), ("ADMIN_API_KEY", ADMIN)]).await;
    for seed in 0..6u32 {
        let key = if seed % 2 == 0 { &env.ann } else { &env.bob };
        let response = env.submit(key, form(Some(&scribe_tests::wav(60 + seed, 300)), &[])).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    wait_until("two calls in flight", Duration::from_secs(30), || async { fake.in_flight() == 2 }).await;

    let status: Value = env.client.get(format!("{}/api/queue-status", env.base)).send().await.unwrap().json().await.unwrap();
    let keys: Vec<&str> = status.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["cache", "database", "queue", "system"], "the public form has the brief's sections only");
    for (section, fields) in [
        ("queue", &["queueLength", "processing", "maxConcurrent", "requestsThisMinute", "rateLimitPerMinute"][..]),
        ("system", &["averageResponseTime", "errorRate", "requestsPerMinute", "memoryUsage", "activeUsers"][..]),
        ("database", &["current", "max", "utilization"][..]),
        ("cache", &["hits", "misses", "hitRate"][..]),
    ] {
        for field in fields {
            assert!(status[section][field].is_number(), "{section}.{field} is a number: {status}");
        }
    }
    let q = &status["queue"];
    assert_eq!((q["processing"].as_u64(), q["queueLength"].as_u64()), (Some(2), Some(4)), "{status}");
    assert_eq!(q["maxConcurrent"], 2, "the cap the processing count runs against");
    assert_eq!(q["requestsThisMinute"], 2);
    assert_eq!(q["rateLimitPerMinute"], 6000);
    let s = &status["system"];
    assert_eq!((s["requestsPerMinute"].as_u64(), s["activeUsers"].as_u64()), (Some(6), Some(2)));
    assert!(s["memoryUsage"].as_u64().unwrap() > 1_000_000, "{s}");
    assert_eq!(status["database"]["max"], 20);
    assert!(!status.to_string().contains("user"), "no user names or ids in the public form");

    problem(env.client.post(format!("{}/api/queue-status", env.base)).bearer_auth("wrong").send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let admin: Value =
        env.client.post(format!("{}/api/queue-status", env.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let provider = &admin["providers"]["openai-whisper"];
    assert_eq!((provider["maxConcurrent"].as_u64(), provider["running"].as_u64(), provider["paused"].as_bool()), (Some(2), Some(2), Some(false)));
    assert!(admin["plugins"].as_array().is_some_and(|p| p.iter().any(|p| p["name"] == "openai-whisper")));
    let users = &admin["users"];
    for name in ["ann", "bob"] {
        let open = users[name]["queued"].as_u64().unwrap() + users[name]["running"].as_u64().unwrap();
        assert_eq!(open, 3, "{name}'s three jobs are queued or running: {users}");
    }

    wait_until("every job done", Duration::from_secs(60), || async { fake.calls() == 6 && fake.in_flight() == 0 }).await;
    wait_until("the queue to drain", Duration::from_secs(10), || async {
        let s: Value = env.client.get(format!("{}/api/queue-status", env.base)).send().await.unwrap().json().await.unwrap();
        s["queue"]["processing"] == 0 && s["cache"]["misses"] == 6
    })
    .await;
    let done: Value = env.client.get(format!("{}/api/queue-status", env.base)).send().await.unwrap().json().await.unwrap();
    assert!(done["system"]["averageResponseTime"].as_f64().unwrap() >= 1500.0, "{done}");
    assert_eq!(done["system"]["errorRate"], 0.0);
    assert_eq!((done["cache"]["hits"].as_u64(), done["cache"]["hitRate"].as_f64()), (Some(0), Some(0.0)));
    let admin: Value =
        env.client.post(format!("{}/api/queue-status", env.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    for name in ["ann", "bob"] {
        let user = &admin["users"][name];
        assert_eq!((user["queued"].as_u64(), user["running"].as_u64(), user["succeeded"].as_u64()), (Some(0), Some(0), Some(3)), "{name}'s progress: {user}");
    }
}
