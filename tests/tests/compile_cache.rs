//! Compiled components are cached on disk by content hash and engine, so a
//! restart loads them instead of compiling again, and a damaged artifact is
//! recompiled rather than trusted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use scribe_host::metrics::Metrics;
use scribe_host::plugins::types::{RetryDecision, RetryInput};
use scribe_host::plugins::{builtin_bytes, content_hash, Plugins, ProviderError};
use scribe_tests::TestHost;

fn artifacts(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(dir.join("cache/components"))
        .expect("the cache directory exists")
        .map(|e| e.expect("entry"))
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            (e.file_name().to_string_lossy().into_owned(), (meta.len(), meta.modified().expect("mtime")))
        })
        .collect()
}

#[tokio::test]
async fn a_restart_reuses_the_cached_artifacts_and_a_damaged_one_is_recompiled() {
    let host = TestHost::start("", &[]).await;
    let before = artifacts(host.data_dir());
    let retry_hash = content_hash(builtin_bytes("retry-backoff").expect("shipped"));
    let policy_artifact = before
        .keys()
        .find(|name| name.starts_with(&format!("{retry_hash}-policy-")) && name.ends_with(".cwasm"))
        .expect("retry-backoff's compiled artifact is cached, named by content hash and engine")
        .clone();

    let restarted = Plugins::start(&host.config, Metrics::new()).await.expect("restart");
    assert_eq!(artifacts(host.data_dir()), before, "a restart rewrote no artifact: nothing was recompiled");
    drop(restarted);

    let path = host.data_dir().join("cache/components").join(&policy_artifact);
    std::fs::write(&path, b"damaged").expect("damaging the artifact");
    let recovered = Plugins::start(&host.config, Metrics::new()).await.expect("starts despite a damaged cache");
    assert_eq!(std::fs::metadata(&path).expect("rewritten").len(), before[&policy_artifact].0, "recompiled and cached again");
    let input = RetryInput { attempt: 8, error: ProviderError::Transient("x".into()), elapsed_ms: 0 };
    assert_eq!(recovered.decide_retry(&input).await, RetryDecision::GiveUp);
    assert_eq!(recovered.metrics().policy_fallbacks.with_label_values(&["retry"]).get(), 0, "the recompiled policy answered");
}
