//! The shipped policies, called through their real components, and the
//! built-in fallback when the active policy is broken or missing.

use scribe_host::plugins::types::{Candidate, Priority, RetryDecision, RetryInput};
use scribe_host::plugins::{ProviderError, Source};
use scribe_tests::{guest, TestHost};

fn failed(attempt: u32, error: ProviderError) -> RetryInput {
    RetryInput { attempt, error, elapsed_ms: 1000 }
}

fn transient() -> ProviderError {
    ProviderError::Transient("503".into())
}

/// Draws `n` decisions and returns the delays, failing on a give-up.
async fn delays(host: &TestHost, input: &RetryInput, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        match host.plugins.decide_retry(input).await {
            RetryDecision::RetryIn(ms) => out.push(ms),
            RetryDecision::GiveUp => panic!("unexpected give-up for {input:?}"),
        }
    }
    out
}

fn assert_no_fallback(host: &TestHost, policy: &str) {
    let fallbacks = host.plugins.metrics().policy_fallbacks.with_label_values(&[policy]).get();
    assert_eq!(fallbacks, 0, "the component answered, not the built-in fallback");
}

#[tokio::test]
async fn retry_backoff_jitters_within_the_exponential_ceiling() {
    let host = TestHost::start("", &[]).await;
    for (attempt, ceiling) in [(1, 500), (3, 2000), (7, 30_000)] {
        let drawn = delays(&host, &failed(attempt, transient()), 200).await;
        assert!(drawn.iter().all(|&ms| ms <= ceiling), "attempt {attempt}: {drawn:?} over {ceiling}");
        let distinct: std::collections::BTreeSet<_> = drawn.iter().collect();
        assert!(distinct.len() > 50, "full jitter spreads the delays: {} distinct", distinct.len());
    }
    assert_no_fallback(&host, "retry");
    let calls = host.plugins.list().into_iter().find(|p| p.name == "retry-backoff").expect("listed").calls;
    assert!(calls >= 600, "the component was called: {calls}");
}

#[tokio::test]
async fn retry_backoff_honours_a_longer_retry_after_and_gives_up_when_it_should() {
    let host = TestHost::start("", &[]).await;
    let limited = failed(1, ProviderError::RateLimited(Some(90_000)));
    assert_eq!(delays(&host, &limited, 20).await, vec![90_000; 20], "a retry-after longer than the backoff wins");
    let short = delays(&host, &failed(3, ProviderError::RateLimited(Some(1))), 50).await;
    assert!(short.iter().all(|&ms| (1..=2000).contains(&ms)), "{short:?}");
    for error in [
        ProviderError::InvalidInput("bad".into()),
        ProviderError::Unauthorized("key".into()),
        ProviderError::Fatal("quota".into()),
    ] {
        assert_eq!(host.plugins.decide_retry(&failed(1, error.clone())).await, RetryDecision::GiveUp, "{error}");
    }
    assert_eq!(host.plugins.decide_retry(&failed(8, transient())).await, RetryDecision::GiveUp, "8 attempts by default");
    assert!(matches!(host.plugins.decide_retry(&failed(7, transient())).await, RetryDecision::RetryIn(_)));
    assert_no_fallback(&host, "retry");
}

#[tokio::test]
async fn retry_backoff_reads_its_config_entries() {
    let toml = "[plugins.retry-backoff.config]\nmax_attempts = \"3\"\nbase_ms = \"100\"\ncap_ms = \"150\"\n";
    let host = TestHost::start(toml, &[]).await;
    assert_eq!(host.plugins.decide_retry(&failed(3, transient())).await, RetryDecision::GiveUp);
    let drawn = delays(&host, &failed(2, transient()), 200).await;
    assert!(drawn.iter().all(|&ms| ms <= 150), "cap_ms caps the delay: {drawn:?}");
    assert!(drawn.iter().any(|&ms| ms > 100), "base 100 doubles on attempt 2: {drawn:?}");
    assert_no_fallback(&host, "retry");
}

fn candidate(user: &str, priority: Priority, running: u32, last: Option<u64>, submitted: u64) -> Candidate {
    Candidate {
        job_id: format!("job-{user}"),
        user: user.to_string(),
        priority,
        submitted_at_ms: submitted,
        user_running: running,
        user_queued: 10,
        user_last_dispatch_ms: last,
    }
}

#[tokio::test]
async fn priority_fair_orders_class_then_fewest_running_then_least_recently_served() {
    let host = TestHost::start("", &[]).await;
    let candidates = [
        candidate("ann", Priority::Normal, 0, Some(5_000), 1),
        candidate("bob", Priority::Low, 0, None, 0),
        candidate("cat", Priority::Normal, 0, None, 9),
        candidate("dan", Priority::High, 4, Some(9_000), 5),
        candidate("eve", Priority::Normal, 1, None, 0),
        candidate("fay", Priority::Normal, 0, Some(1_000), 2),
    ];
    let order: Vec<&str> = host.plugins.rank(&candidates).await.into_iter().map(|i| candidates[i].user.as_str()).collect();
    assert_eq!(order, ["dan", "cat", "fay", "ann", "eve", "bob"]);
    assert_no_fallback(&host, "priority");
}

#[tokio::test]
async fn a_broken_retry_policy_falls_back_to_the_default_and_is_counted() {
    for (mode, failure) in [("panic", "trap"), ("loop", "fuel"), ("sleep", "hung")] {
        let toml = format!("[plugins.retry-backoff.config]\nmode = \"{mode}\"\n");
        let host = TestHost::start(&toml, &[]).await;
        // hostile-retry passes its smoke call (attempt 1) and breaks on
        // every later attempt, the way a buggy policy would.
        let installed = host.plugins.install("retry-backoff", guest("hostile-retry").to_vec(), Source::File).await;
        assert!(installed.is_ok(), "{mode}: the replacement publishes: {:?}", installed.err());
        let decision = host.plugins.decide_retry(&failed(2, transient())).await;
        assert!(matches!(decision, RetryDecision::RetryIn(ms) if ms <= 1000), "{mode}: the default decided: {decision:?}");
        assert_eq!(host.plugins.metrics().policy_fallbacks.with_label_values(&["retry"]).get(), 1, "{mode}: counted");
        let failures = host.plugins.metrics().plugin_failures.with_label_values(&["retry-backoff", failure]).get();
        assert_eq!(failures, 1, "{mode}: the failure is counted by kind");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_world_policy_falls_back_too() {
    let host = TestHost::start("", &[("SCRIBE_RETRY_POLICY", "nope"), ("SCRIBE_PRIORITY_POLICY", "retry-backoff")]).await;
    assert_eq!(host.plugins.decide_retry(&failed(1, ProviderError::Fatal("x".into()))).await, RetryDecision::GiveUp);
    let candidates = [candidate("a", Priority::Low, 0, None, 0), candidate("b", Priority::High, 0, None, 0)];
    assert_eq!(host.plugins.rank(&candidates).await, vec![1, 0], "the built-in fair ranking decided");
    let fallbacks = &host.plugins.metrics().policy_fallbacks;
    assert_eq!((fallbacks.with_label_values(&["retry"]).get(), fallbacks.with_label_values(&["priority"]).get()), (1, 1));
}
