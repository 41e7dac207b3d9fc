//! The dashboard at `GET /` in a real (headless) Chromium: the numbers it
//! shows are `/api/queue-status`'s, they follow the jobs as they finish,
//! and its pause/resume buttons act on the provider.

use std::time::Duration;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve_dispatching, Env};
use scribe_tests::browser::Browser;
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::wait_until;
use serde_json::Value;

const ADMIN: &str = "dashboard-admin-key";
const PROVIDER: &str = "openai-whisper";

/// The text of every plain number on the page's cards, by `data-field`.
const CARD_TEXTS: &str = "Object.fromEntries([...document.querySelectorAll('section.cards [data-field]')]\
    .map(e => [e.dataset.field, e.dataset.format ? null : e.textContent]))";

async fn queue_status(env: &Env) -> Value {
    env.client.post(format!("{}/api/queue-status", env.base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
}

/// What the cards must show for `status`: every plain number but the
/// database connections in use, which the page's own polls move.
fn expected_cards(status: &Value) -> serde_json::Map<String, Value> {
    let mut expected = serde_json::Map::new();
    for field in [
        "queue.queueLength",
        "queue.processing",
        "queue.maxConcurrent",
        "queue.requestsThisMinute",
        "queue.rateLimitPerMinute",
        "system.requestsPerMinute",
        "system.activeUsers",
        "database.max",
        "cache.hits",
        "cache.misses",
    ] {
        let value = field.split('.').fold(status, |v, k| &v[k]);
        assert!(value.is_number(), "{field} is a number: {status}");
        expected.insert(field.to_string(), Value::String(value.to_string()));
    }
    expected
}

/// Waits until every card in `expected` shows its value.
async fn wait_for_cards(page: &mut Browser, what: &str, expected: &serde_json::Map<String, Value>) {
    let check = format!(
        "(() => {{ const shown = {CARD_TEXTS}; const want = {}; return Object.keys(want).every(k => shown[k] === want[k]); }})()",
        Value::Object(expected.clone())
    );
    page.wait_for(what, &check, CARD_TEXTS, Duration::from_secs(20)).await;
}

fn field(name: &str) -> String {
    format!("document.querySelector('[data-field=\"{name}\"]')?.textContent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_queue_status_follows_the_jobs_and_pauses_the_provider() {
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(100));
    let env = serve_dispatching(&fake, "", &[("MAX_CONCURRENT_TRANSCRIPTIONS", "2"), ("ADMIN_API_KEY", ADMIN)]).await;
    let pause = env.client.post(format!("{}/admin/providers/{PROVIDER}/pause", env.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(pause.status(), StatusCode::OK);
    for seed in 0..8u32 {
        let key = if seed % 2 == 0 { &env.ann } else { &env.bob };
        let response = env.submit(key, form(Some(&scribe_tests::wav(700 + seed, 300)), &[])).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    // Paused: the queue holds still, so the page and the API must agree.
    let mut page = Browser::open(&format!("{}/#key={ADMIN}", env.base)).await;
    let before = queue_status(&env).await;
    assert_eq!((before["queue"]["queueLength"].as_u64(), before["queue"]["processing"].as_u64()), (Some(8), Some(0)), "{before}");
    wait_for_cards(&mut page, "the page to show the paused queue", &expected_cards(&before)).await;
    let admin_detail = format!(
        "[{}, {}, {}, {}]",
        field(&format!("providers.{PROVIDER}.state")),
        field("users.ann.queued"),
        field("users.bob.queued"),
        field(&format!("plugins.{PROVIDER}.version")),
    );
    let version = before["plugins"].as_array().unwrap().iter().find(|p| p["name"] == PROVIDER).unwrap()["version"].clone();
    assert_eq!(page.eval(&admin_detail).await, serde_json::json!(["paused", "4", "4", version]), "the admin detail, with the key from the URL");
    assert_eq!(page.eval("location.hash").await, "", "the key leaves the address bar");
    assert_eq!(fake.calls(), 0, "nothing reached the paused provider");

    // The page's Resume button: every job runs, and the page follows.
    page.eval(&format!("document.querySelector('tr[data-provider=\"{PROVIDER}\"] button.resume').click()")).await;
    wait_until("all eight calls", Duration::from_secs(30), || async { fake.calls() == 8 && fake.in_flight() == 0 }).await;
    wait_until("the queue to drain", Duration::from_secs(10), || async {
        let s = queue_status(&env).await;
        s["queue"]["queueLength"] == 0 && s["queue"]["processing"] == 0 && s["cache"]["misses"] == 8
    })
    .await;
    let after = queue_status(&env).await;
    assert_eq!(after["queue"]["requestsThisMinute"], 8);
    wait_for_cards(&mut page, "the page to show the drained queue", &expected_cards(&after)).await;
    let progress = format!("[{}, {}]", field("users.ann.succeeded"), field("users.bob.succeeded"));
    page.wait_for("every user's progress", &format!("JSON.stringify({progress}) === '[\"4\",\"4\"]'"), &progress, Duration::from_secs(10)).await;
    assert_eq!(page.eval("document.querySelector('#chart-calls polyline').getAttribute('points').split(' ').length > 1").await, true);

    // The page's Pause button pauses the provider for everyone.
    page.eval(&format!("document.querySelector('tr[data-provider=\"{PROVIDER}\"] button.pause').click()")).await;
    wait_until("the provider paused", Duration::from_secs(10), || async { queue_status(&env).await["providers"][PROVIDER]["paused"] == true }).await;
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let env = scribe_tests::api::serve(&[]).await;
    let response = env.client.get(format!("{}/", env.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(page.contains("/api/queue-status"));
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src=\""), "nothing loaded from elsewhere");
}
