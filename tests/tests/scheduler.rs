//! The scheduler against the fake OpenAI server, with jobs put straight
//! into the store: limits held, every user served early, retries bounded,
//! and a 429's retry-after honoured by the whole provider.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use scribe_host::audio::{AudioStore, LocalAudioStore};
use scribe_host::cache::TranscriptCache;
use scribe_host::admission::LocalAdmission;
use scribe_tests::provider_view::{calls_during_retry_after, max_per_window};
use scribe_host::metrics::Metrics;
use scribe_host::plugins::Plugins;
use scribe_host::scheduler::{Parts, Scheduler};
use scribe_host::store::{Inserted, JobSpec, JobStatus, NewJob, Store};
use scribe_tests::fake_openai::{FakeOpenAi, Scripted};
use scribe_tests::{test_config, wait_until};
use tokio::sync::Notify;

struct Engine {
    store: Arc<dyn Store>,
    audio: Arc<dyn AudioStore>,
    wake: Arc<scribe_host::wakeup::Wakeup>,
    stop: Arc<Notify>,
    fake: FakeOpenAi,
    _dir: tempfile::TempDir,
}

/// A scheduler over SQLite, the local audio store and the shipped
/// openai-whisper plugin pointed at a fake OpenAI.
async fn engine(env: &[(&str, &str)]) -> Engine {
    engine_with("", env).await
}

/// [`engine`] with `config_toml` as the config file.
async fn engine_with(config_toml: &str, env: &[(&str, &str)]) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start("sk-test").await;
    let base_url = fake.base_url();
    let mut vars = vec![("OPENAI_API_KEY", "sk-test"), ("OPENAI_BASE_URL", base_url.as_str())];
    vars.extend_from_slice(env);
    let config = Arc::new(test_config(dir.path(), config_toml, &vars));
    let plugins = Plugins::start(&config, Metrics::new()).await.unwrap();
    let store = scribe_host::store::open(&config).await.unwrap();
    let audio: Arc<dyn AudioStore> = Arc::new(LocalAudioStore::new(dir.path().join("audio")));
    let (wake, stop) = (scribe_host::wakeup::Wakeup::local(), Arc::new(Notify::new()));
    let cache = Arc::new(TranscriptCache::new(&config, Metrics::new()));
    let scheduler = Scheduler::new(Parts {
        config,
        store: store.clone(),
        audio: audio.clone(),
        plugins,
        admission: Arc::new(LocalAdmission::new(store.clone())),
        cache,
        wake: wake.clone(),
        job_events: tokio::sync::broadcast::channel(16).0,
        metrics: Metrics::new(),
        activity: Default::default(),
        owner: "test-instance".into(),
    });
    tokio::spawn(scheduler.run(stop.clone(), Duration::from_secs(5)));
    Engine { store, audio, wake, stop, fake, _dir: dir }
}

impl Engine {
    /// Submits `per_user` jobs for each of `users` users, interleaved the
    /// way a burst of clients would, and returns the job ids by user.
    async fn submit_burst(&self, users: usize, per_user: usize) -> BTreeMap<String, Vec<String>> {
        let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut user_ids = Vec::new();
        for u in 0..users {
            let name = format!("user{u}");
            user_ids.push(self.store.create_user(&name, &format!("hash{u}"), 0).await.unwrap().id);
        }
        let mut n: u32 = 0;
        for user in &user_ids {
            for _ in 0..per_user {
                let spec = self.spec_of_new_audio(n).await;
                let id = format!("job-{n:05}");
                let job = NewJob { id: id.clone(), user_id: user.clone(), spec, idempotency_key: None, now_ms: scribe_host::clock::now_ms(), cache_key: id.clone(), cached_transcript: None, audio_write: None };
                assert!(matches!(self.store.insert_job(job).await.unwrap(), Inserted::Created(_)));
                ids.entry(user.clone()).or_default().push(id);
                n += 1;
            }
        }
        self.wake.wake();
        ids
    }

    /// A job for openai-whisper on distinct audio number `n`, stored.
    async fn spec_of_new_audio(&self, n: u32) -> JobSpec {
        let bytes = Bytes::from(scribe_tests::wav(n, 64));
        let stored = self.audio.put(Box::pin(futures_util::stream::iter([Ok(bytes)])), 1 << 20).await.unwrap();
        JobSpec::with_default_options("openai-whisper", stored.sha256, "wav", stored.bytes)
    }

    /// Asserts that every job succeeded at its first attempt; each user's
    /// jobs' start times, in the user's line order.
    async fn starts_of_jobs_succeeded_once(&self, ids: &BTreeMap<String, Vec<String>>) -> Vec<Vec<i64>> {
        let mut per_user = Vec::new();
        for jobs in ids.values() {
            let mut starts = Vec::new();
            for id in jobs {
                let job = self.store.job_by_id(id).await.unwrap().unwrap();
                assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1), "{id}");
                starts.push(job.started_at_ms.unwrap());
            }
            per_user.push(starts);
        }
        per_user
    }

    async fn wait_all_terminal(&self, ids: &BTreeMap<String, Vec<String>>, timeout: Duration) {
        let all: Vec<String> = ids.values().flatten().cloned().collect();
        wait_until("every job to finish", timeout, || async {
            self.store.queue_length().await.unwrap() == 0
        })
        .await;
        for id in all {
            let job = self.store.job_by_id(&id).await.unwrap().unwrap();
            assert!(job.status.is_terminal(), "{id} is {:?}", job.status);
        }
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_holds_the_limits_serves_every_user_early_and_finishes_every_job_once() {
    let engine = engine(&[("MAX_CONCURRENT_TRANSCRIPTIONS", "3"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "1200")]).await;
    engine.fake.set_latency(Duration::from_millis(50));
    let ids = engine.submit_burst(5, 12).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(60)).await;

    let mut first_dispatch: Vec<(i64, String)> = Vec::new();
    for (user, jobs) in &ids {
        for id in jobs {
            let job = engine.store.job_by_id(id).await.unwrap().unwrap();
            assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1), "{id}");
            let transcript = engine.store.transcript(id).await.unwrap().expect("stored");
            assert!(transcript.contains("transcript of"), "{transcript}");
        }
        let first = engine.store.job_by_id(&jobs[0]).await.unwrap().unwrap().started_at_ms.unwrap();
        first_dispatch.push((first, user.clone()));
    }
    assert_eq!(engine.fake.calls(), 60, "each job called the provider once");
    assert!(engine.fake.max_in_flight() <= 3, "concurrency cap: {}", engine.fake.max_in_flight());
    let busiest = max_per_window(&engine.fake.arrivals(), Duration::from_secs(1));
    assert!(busiest <= 21, "rate limit (+1) in any 1 s window: {busiest}");
    // Every user's first job starts among the first dispatches: fairness.
    let mut starts: Vec<i64> = Vec::new();
    for jobs in ids.values() {
        for id in jobs {
            starts.push(engine.store.job_by_id(id).await.unwrap().unwrap().started_at_ms.unwrap());
        }
    }
    starts.sort();
    let fifth = starts[4];
    assert!(first_dispatch.iter().all(|(t, _)| *t <= fifth), "every user's first job is among the first 5 dispatches");
    engine.stop.notify_one();
}

/// With a burst allowance, the scheduler claims as many jobs at once as
/// slots and tokens allow (one commit for them all): the cap, fairness and
/// one call per job hold all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_claimed_together_keep_the_cap_and_fairness() {
    let engine = engine(&[
        ("MAX_CONCURRENT_TRANSCRIPTIONS", "6"),
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "60000"),
        ("TRANSCRIPTION_RATE_LIMIT_BURST", "1000"),
    ])
    .await;
    engine.fake.set_latency(Duration::from_millis(50));
    let ids = engine.submit_burst(5, 12).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(60)).await;

    let per_user = engine.starts_of_jobs_succeeded_once(&ids).await;
    let firsts: Vec<i64> = per_user.iter().map(|user| user[0]).collect();
    let mut starts: Vec<i64> = per_user.into_iter().flatten().collect();
    assert_eq!(engine.fake.calls(), 60, "each job called the provider once");
    let peak = engine.fake.max_in_flight();
    assert!((2..=6).contains(&peak), "calls ran side by side, within the cap of 6: {peak}");
    starts.sort();
    assert!(firsts.iter().all(|t| *t <= starts[4]), "every user's first job is among the first 5 dispatches");
    engine.stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_provider_until_its_retry_after_and_the_job_is_retried() {
    // One call at a time, so every call after the 429 is a new one.
    let engine = engine(&[("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "6000"), ("MAX_CONCURRENT_TRANSCRIPTIONS", "1")]).await;
    engine.fake.push_script(vec![Scripted::RateLimited { retry_after: Some(Duration::from_secs(1)) }, Scripted::Status500]);
    let ids = engine.submit_burst(1, 3).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    let requests = engine.fake.requests();
    assert_eq!(requests.len(), 5, "3 jobs, one 429 and one 500 retried once each");
    let arrivals = engine.fake.arrivals();
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1), "no call until the retry-after passed");
    let seen: HashSet<String> = ids.values().flatten().cloned().collect();
    for id in seen {
        let job = engine.store.job_by_id(&id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded, "{id}");
    }
    engine.stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_provider_refuses_fails_without_a_retry() {
    let engine = engine(&[]).await;
    engine.fake.push_script(vec![Scripted::Status(400)]);
    let ids = engine.submit_burst(1, 1).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(30)).await;
    let job = engine.store.job_by_id(&ids.values().next().unwrap()[0]).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 1));
    assert_eq!(job.error.map(|e| e.kind).as_deref(), Some("invalid_input"));
    assert_eq!(engine.fake.calls(), 1);
    engine.stop.notify_one();
}

/// A twin that succeeded after the job was queued, out of this cache's
/// sight (another instance, before a restart), spares the job its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_whose_twin_succeeded_meanwhile_takes_its_transcript_without_a_call() {
    let engine = engine(&[]).await;
    let user = engine.store.create_user("ann", "hash-ann", 0).await.unwrap().id;
    let spec = engine.spec_of_new_audio(7).await;
    let now = scribe_host::clock::now_ms();
    let job = |id: &str, transcript: Option<&str>| NewJob { id: id.into(), user_id: user.clone(), spec: spec.clone(), idempotency_key: None, now_ms: now, cache_key: "same".into(), cached_transcript: transcript.map(String::from), audio_write: None };
    // Queued (not woken yet), then its twin finishes elsewhere.
    assert!(matches!(engine.store.insert_job(job("queued", None)).await.unwrap(), Inserted::Created(j) if j.status == JobStatus::Queued));
    let twin = r#"{"text":"from the twin"}"#;
    assert!(matches!(engine.store.insert_job(job("twin", Some(twin))).await.unwrap(), Inserted::Created(j) if j.status == JobStatus::Succeeded));
    engine.wake.wake();
    wait_until("the queued job to finish", Duration::from_secs(30), || async {
        engine.store.job_by_id("queued").await.unwrap().unwrap().status.is_terminal()
    })
    .await;
    let done = engine.store.job_by_id("queued").await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(engine.store.transcript("queued").await.unwrap().as_deref(), Some(twin));
    assert_eq!(engine.fake.calls(), 0, "no provider call");
    engine.stop.notify_one();
}

/// The brief's burst in scaled time: 10 users x 100 files, 1800/min,
/// 5 at a time, 50 ms per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_briefs_burst_in_scaled_time() {
    let engine = engine(&[("MAX_CONCURRENT_TRANSCRIPTIONS", "5"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "1800")]).await;
    engine.fake.set_latency(Duration::from_millis(50));
    let ids = engine.submit_burst(10, 100).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(120)).await;
    let per_user = engine.starts_of_jobs_succeeded_once(&ids).await;
    let firsts: Vec<i64> = per_user.iter().map(|user| *user.iter().min().unwrap()).collect();
    let mut starts: Vec<i64> = per_user.into_iter().flatten().collect();
    assert_eq!(engine.fake.calls(), 1000, "every job called the provider exactly once");
    assert!(engine.fake.max_in_flight() <= 5, "never more than 5 in flight: {}", engine.fake.max_in_flight());
    let busiest = max_per_window(&engine.fake.arrivals(), Duration::from_secs(1));
    assert!(busiest <= 31, "never more than the limit (+1) in any 1 s window: {busiest}");
    starts.sort();
    let tenth = starts[9];
    assert!(firsts.iter().all(|&t| t <= tenth), "every user's first job starts within the first 10 dispatches");
    engine.stop.notify_one();
}

/// 20 % of calls answered 500 and 10 % answered 429 with a retry-after:
/// every job still succeeds within the retry policy's attempts, the limits
/// hold, and after each 429 no new call starts before its retry-after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_within_the_policy_and_429s_pause_the_provider() {
    let engine = engine(&[("MAX_CONCURRENT_TRANSCRIPTIONS", "5"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "1800")]).await;
    let latency = Duration::from_millis(20);
    engine.fake.set_latency(latency);
    let retry_after = Duration::from_millis(1500);
    engine.fake.set_fault_rates(0.2, 0.1, retry_after, 7);
    let ids = engine.submit_burst(4, 15).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(120)).await;
    for id in ids.values().flatten() {
        let job = engine.store.job_by_id(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded, "{id}: {:?}", job.error);
        assert!(job.attempts <= 8, "{id}: {} attempts, over the policy's 8", job.attempts);
    }
    let requests = engine.fake.requests();
    let limited: Vec<Instant> = requests.iter().filter(|r| r.answered == Some(429)).map(|r| r.arrived).collect();
    let errors = requests.iter().filter(|r| r.answered == Some(500)).count();
    assert!(!limited.is_empty() && errors > 0, "the faults happened: {} 429s, {errors} 500s", limited.len());
    assert_eq!(requests.len(), 60 + limited.len() + errors, "one call per job plus one per fault");
    assert!(engine.fake.max_in_flight() <= 5);
    let busiest = max_per_window(&engine.fake.arrivals(), Duration::from_secs(1));
    assert!(busiest <= 31, "rate limit (+1) in any 1 s window: {busiest}");
    let early = calls_during_retry_after(&requests, latency, retry_after);
    assert!(early.is_empty(), "calls started during a 429's retry-after: {early:?}");
    engine.stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_max_concurrent_from_the_config_file_overrides_the_environment() {
    let toml = "[plugins.openai-whisper]\nmax_concurrent = 2\n";
    let engine = engine_with(toml, &[("MAX_CONCURRENT_TRANSCRIPTIONS", "10"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "60000")]).await;
    engine.fake.set_latency(Duration::from_millis(300));
    let ids = engine.submit_burst(2, 4).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    assert_eq!(engine.fake.calls(), 8);
    assert_eq!(engine.fake.max_in_flight(), 2, "the plugin's cap of 2, not the environment's 10");
    engine.stop.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_rate_limit_from_the_config_file_overrides_the_environment() {
    let toml = "[plugins.openai-whisper]\nrate_limit_per_minute = 300\n";
    let engine = engine_with(toml, &[("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "60000")]).await;
    let ids = engine.submit_burst(2, 5).await;
    engine.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    let mut arrivals = engine.fake.arrivals();
    arrivals.sort();
    assert_eq!(arrivals.len(), 10);
    // 300/min is one call every 200 ms: ten calls span at least 9 intervals
    // (less a little for timer tolerance); at 60000/min they would take ~10 ms.
    let span = arrivals[9].duration_since(arrivals[0]);
    assert!(span >= Duration::from_millis(1700), "ten calls in {span:?}");
    assert!(max_per_window(&arrivals, Duration::from_secs(1)) <= 6);
    engine.stop.notify_one();
}
