//! The store contract, run against both backends (SQLite in a temporary
//! directory, PostgreSQL in a database of its own per test): every
//! transition is guarded, so no job is claimed or finished twice, and a
//! worker that lost its lease changes nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use scribe_host::plugins::types::Priority;
use scribe_host::store::{Head, Inserted, JobError, JobSpec, JobStatus, NewJob, PostgresStore, SqliteStore, Store, StoreError};
use scribe_tests::postgres::TestDatabase;

/// What keeps a test's database alive (and removes it afterwards).
enum Keep {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Database(#[allow(dead_code)] TestDatabase),
}

async fn sqlite() -> (Arc<dyn Store>, Keep) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("scribe.db").display());
    let store = SqliteStore::open(&url, 8, Duration::from_secs(5)).await.expect("opens and migrates");
    (Arc::new(store), Keep::Dir(dir))
}

async fn postgres() -> (Arc<dyn Store>, Keep) {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(&database.url, 8, Duration::from_secs(5)).await.expect("connects and migrates");
    (Arc::new(store), Keep::Database(database))
}

/// Each contract test, once per backend (on two worker threads, so the
/// racing test races).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let (store, _keep) = super::sqlite().await; super::$name(store).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let (store, _keep) = super::postgres().await; super::$name(store).await })*
        }
    };
}

on_both_backends!(
    users_are_unique_by_name_and_found_by_key_hash,
    a_succeeded_twins_transcript_finishes_a_job_at_insert_or_comes_with_its_claim,
    an_idempotency_key_returns_the_first_job,
    a_job_is_claimed_once_and_finished_once_by_its_lease_owner,
    a_retry_waits_in_the_store_until_run_at,
    an_expired_lease_puts_the_job_back_and_the_old_owner_can_no_longer_finish_it,
    heads_offer_each_users_best_ready_job_with_their_counts,
    only_the_owner_sees_and_cancels_and_only_a_queued_job_is_canceled,
    racing_workers_claim_every_job_exactly_once,
    claims_made_together_take_only_ready_queued_jobs_each_for_its_owner,
    open_job_figures_follow_every_transition,
);

fn spec(priority: Priority) -> JobSpec {
    JobSpec {
        provider: "openai-whisper".into(),
        priority,
        audio_sha256: "ab".repeat(32),
        audio_format: "wav".into(),
        audio_bytes: 1234,
        language: Some("en".into()),
        prompt: None,
        temperature: Some(0.5),
        model: None,
        response_format: "json".into(),
    }
}

async fn submit(store: &dyn Store, id: &str, user: &str, priority: Priority, now: i64) -> String {
    let job = NewJob { id: id.into(), user_id: user.into(), spec: spec(priority), idempotency_key: None, now_ms: now, cache_key: format!("key-{id}"), cached_transcript: None, audio_write: None };
    match store.insert_job(job).await.expect("insert") {
        Inserted::Created(job) => job.id,
        Inserted::Existing(_) => panic!("no idempotency key, yet an existing job"),
    }
}

async fn users(store: &dyn Store, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        ids.push(store.create_user(name, &format!("hash-{name}"), 1).await.expect("user").id);
    }
    ids
}

fn oops() -> JobError {
    JobError { kind: "transient".into(), message: "503".into() }
}

async fn users_are_unique_by_name_and_found_by_key_hash(store: Arc<dyn Store>) {
    let ann = store.create_user("ann", "h1", 10).await.unwrap();
    assert!(matches!(store.create_user("ann", "h2", 11).await, Err(StoreError::UserExists(name)) if name == "ann"));
    assert_eq!(store.user_by_key_hash("h1").await.unwrap(), Some(ann.clone()));
    assert_eq!(store.user_by_key_hash("nope").await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap(), vec![ann]);
}

async fn a_succeeded_twins_transcript_finishes_a_job_at_insert_or_comes_with_its_claim(store: Arc<dyn Store>) {
    let [ann, bob] = users(&*store, &["ann", "bob"]).await.try_into().unwrap();
    let hi = r#"{"text":"hi"}"#;
    let twin = |id: &str, user: &str, audio: &str| NewJob { id: id.into(), user_id: user.into(), spec: JobSpec { audio_sha256: audio.repeat(32), ..spec(Priority::Normal) }, idempotency_key: None, now_ms: 5, cache_key: "k".into(), cached_transcript: None, audio_write: None };
    let claim = |id: &str| {
        let store = store.clone();
        let id = id.to_string();
        async move { store.claim_many(&[(id.clone(), format!("w-{id}"))], 6, 100).await.unwrap().pop().expect("claimed") }
    };
    for (id, audio) in [("j0", "ab"), ("j1", "ab"), ("j9", "cd")] {
        let Inserted::Created(job) = store.insert_job(twin(id, &ann, audio)).await.unwrap() else { panic!("created") };
        assert_eq!(job.status, JobStatus::Queued, "{id}: no twin has succeeded yet");
    }
    assert_eq!(claim("j1").await.twin_transcript, None, "a queued twin (j0) gives no transcript");
    assert!(store.succeed("j1", "w-j1", hi, 7).await.unwrap());
    let later = claim("j0").await;
    assert_eq!((later.job.id.as_str(), later.twin_transcript.as_deref()), ("j0", Some(hi)), "a twin that succeeded since comes with the claim");
    assert_eq!(claim("j9").await.twin_transcript, None, "the same key under other audio is no twin");

    // A transcript from the caller (the cache's memory) finishes the job at once.
    let open = store.queue_length().await.unwrap();
    let hit = NewJob { cached_transcript: Some(hi.into()), now_ms: 9, ..twin("j2", &ann, "ef") };
    let Inserted::Created(job) = store.insert_job(hit).await.unwrap() else { panic!("created") };
    assert_eq!((job.status, job.attempts, job.started_at_ms, job.finished_at_ms), (JobStatus::Succeeded, 0, Some(9), Some(9)));
    assert_eq!(store.transcript("j2").await.unwrap().as_deref(), Some(hi));
    assert_eq!(store.queue_length().await.unwrap(), open, "a cached job never queues");

    // Without one, the insert finds a succeeded twin's itself.
    let Inserted::Created(job) = store.insert_job(twin("j3", &bob, "ab")).await.unwrap() else { panic!("created") };
    assert_eq!((job.status, job.started_at_ms, job.finished_at_ms), (JobStatus::Succeeded, Some(5), Some(5)), "found by the insert");
    assert_eq!(store.transcript("j3").await.unwrap().as_deref(), Some(hi));
    let Inserted::Created(job) = store.insert_job(twin("j4", &bob, "cd")).await.unwrap() else { panic!("created") };
    assert_eq!(job.status, JobStatus::Queued, "the same key under other audio is no twin, nor a twin that has not succeeded (j9)");
    assert_eq!(store.queue_length().await.unwrap(), open + 1);
}

async fn an_idempotency_key_returns_the_first_job(store: Arc<dyn Store>) {
    let [ann, bob] = users(&*store, &["ann", "bob"]).await.try_into().unwrap();
    let new = |id: &str, user: &str| NewJob {
        id: id.into(),
        user_id: user.into(),
        spec: spec(Priority::Normal),
        idempotency_key: Some("k1".into()),
        now_ms: 5,
        cache_key: "same-audio".into(),
        cached_transcript: None,
        audio_write: None,
    };
    let Inserted::Created(first) = store.insert_job(new("j1", &ann)).await.unwrap() else { panic!("created") };
    assert_eq!(first.status, JobStatus::Queued);
    assert_eq!(first.spec, spec(Priority::Normal));
    assert_eq!(store.insert_job(new("j2", &ann)).await.unwrap(), Inserted::Existing(first));
    assert!(matches!(store.insert_job(new("j3", &bob)).await.unwrap(), Inserted::Created(_)), "keys are per user");
    assert_eq!(store.queue_length().await.unwrap(), 2);
}

async fn a_job_is_claimed_once_and_finished_once_by_its_lease_owner(store: Arc<dyn Store>) {
    let [ann] = users(&*store, &["ann"]).await.try_into().unwrap();
    let id = submit(&*store, "j1", &ann, Priority::Normal, 100).await;
    assert!(store.claim(&id, "w1", 99, 1000).await.unwrap().is_none(), "not before run_at");
    let claimed = store.claim(&id, "w1", 100, 1000).await.unwrap().expect("claimed");
    assert_eq!((claimed.status, claimed.attempts, claimed.started_at_ms), (JobStatus::Running, 1, Some(100)));
    assert!(store.claim(&id, "w2", 100, 1000).await.unwrap().is_none(), "a running job is not claimed again");
    assert!(!store.succeed(&id, "w2", "{}", 200).await.unwrap(), "only the lease owner finishes");
    assert!(store.succeed(&id, "w1", "{\"text\":\"hi\"}", 200).await.unwrap());
    assert!(!store.succeed(&id, "w1", "{}", 300).await.unwrap(), "a job is never finished twice");
    assert!(!store.fail(&id, "w1", &oops(), 300).await.unwrap());
    let job = store.job(&ann, &id).await.unwrap().unwrap();
    assert_eq!((job.status, job.finished_at_ms), (JobStatus::Succeeded, Some(200)));
    assert_eq!(store.transcript(&id).await.unwrap().as_deref(), Some("{\"text\":\"hi\"}"));
    assert_eq!(store.queue_length().await.unwrap(), 0);
}

async fn a_retry_waits_in_the_store_until_run_at(store: Arc<dyn Store>) {
    let [ann] = users(&*store, &["ann"]).await.try_into().unwrap();
    let id = submit(&*store, "j1", &ann, Priority::Normal, 0).await;
    store.claim(&id, "w1", 10, 1000).await.unwrap().expect("claimed");
    assert!(store.retry_later(&id, "w1", 500, &oops()).await.unwrap());
    assert_eq!(store.next_run_at(10).await.unwrap(), Some(500));
    assert!(store.heads("openai-whisper", 499, 1).await.unwrap().is_empty(), "not ready before run_at");
    assert!(store.claim(&id, "w1", 499, 1000).await.unwrap().is_none());
    let again = store.claim(&id, "w2", 500, 2000).await.unwrap().expect("claimed at run_at");
    assert_eq!(again.attempts, 2);
    assert_eq!(again.error, Some(oops()), "the last error is kept");
    assert!(store.fail(&id, "w2", &oops(), 600).await.unwrap());
    assert_eq!(store.job(&ann, &id).await.unwrap().unwrap().status, JobStatus::Failed);
}

async fn an_expired_lease_puts_the_job_back_and_the_old_owner_can_no_longer_finish_it(store: Arc<dyn Store>) {
    let [ann] = users(&*store, &["ann"]).await.try_into().unwrap();
    let id = submit(&*store, "j1", &ann, Priority::Normal, 0).await;
    store.claim(&id, "dead", 0, 100).await.unwrap().expect("claimed");
    assert!(store.renew_lease(&id, "dead", 150).await.unwrap());
    assert_eq!(store.requeue_expired(150).await.unwrap(), 0, "not expired yet");
    assert_eq!(store.requeue_expired(151).await.unwrap(), 1);
    assert!(!store.renew_lease(&id, "dead", 500).await.unwrap(), "the lease is gone");
    let job = store.claim(&id, "alive", 151, 1000).await.unwrap().expect("claimed again");
    assert_eq!(job.attempts, 2, "the lost attempt counts");
    assert!(!store.succeed(&id, "dead", "{}", 200).await.unwrap(), "the old owner's late answer changes nothing");
    assert!(store.succeed(&id, "alive", "{}", 200).await.unwrap());
}

async fn heads_offer_each_users_best_ready_job_with_their_counts(store: Arc<dyn Store>) {
    let [ann, bob] = users(&*store, &["ann", "bob"]).await.try_into().unwrap();
    submit(&*store, "a1", &ann, Priority::Normal, 1).await;
    submit(&*store, "a2", &ann, Priority::High, 2).await;
    submit(&*store, "a3", &ann, Priority::High, 3).await;
    submit(&*store, "b1", &bob, Priority::Low, 1).await;
    submit(&*store, "b2", &bob, Priority::Low, 2).await;
    store.claim("b1", "w", 10, 1000).await.unwrap().expect("claimed");
    let heads = store.heads("openai-whisper", 10, 1).await.unwrap();
    // Where the store keeps each user's last dispatch (PostgreSQL, for a
    // fleet), it is the time of the user's last claim.
    for head in &heads {
        let kept = head.user_last_dispatch_ms;
        assert!(kept.is_none() || (head.user_id == bob && kept == Some(10)), "{head:?}");
    }
    let heads: Vec<Head> = heads.into_iter().map(|h| Head { user_last_dispatch_ms: None, ..h }).collect();
    let expect = |job: &str, user: &str, priority, created, running, queued| Head {
        job_id: job.into(),
        user_id: user.into(),
        priority,
        created_at_ms: created,
        user_running: running,
        user_queued: queued,
        user_last_dispatch_ms: None,
    };
    let mut expected = vec![expect("a2", &ann, Priority::High, 2, 0, 3), expect("b2", &bob, Priority::Low, 2, 1, 1)];
    expected.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(heads, expected, "grouped by user");
    // Deeper: each user's line in order, no further than asked.
    let lines = store.heads("openai-whisper", 10, 2).await.unwrap();
    let ids: Vec<(&str, &str)> = lines.iter().map(|h| (h.user_id.as_str(), h.job_id.as_str())).collect();
    let mut expected = vec![(ann.as_str(), "a2"), (ann.as_str(), "a3"), (bob.as_str(), "b2")];
    expected.sort_by_key(|(user, _)| user.to_string());
    assert_eq!(ids, expected);
    assert!(lines.iter().all(|h| h.user_queued == if h.user_id == ann { 3 } else { 1 }));
    assert!(store.heads("other", 10, 1).await.unwrap().is_empty());
    assert_eq!(store.ready_providers(10).await.unwrap(), vec!["openai-whisper".to_string()]);
}

async fn only_the_owner_sees_and_cancels_and_only_a_queued_job_is_canceled(store: Arc<dyn Store>) {
    let [ann, bob] = users(&*store, &["ann", "bob"]).await.try_into().unwrap();
    let queued = submit(&*store, "j1", &ann, Priority::Normal, 0).await;
    let running = submit(&*store, "j2", &ann, Priority::Normal, 1).await;
    store.claim(&running, "w", 5, 1000).await.unwrap().expect("claimed");
    assert!(store.job(&bob, &queued).await.unwrap().is_none());
    assert!(store.cancel_job(&bob, &queued, 9).await.unwrap().is_none());
    let (job, changed) = store.cancel_job(&ann, &queued, 9).await.unwrap().unwrap();
    assert_eq!((job.status, changed), (JobStatus::Canceled, true));
    let (job, changed) = store.cancel_job(&ann, &queued, 10).await.unwrap().unwrap();
    assert_eq!((job.status, changed, job.finished_at_ms), (JobStatus::Canceled, false, Some(9)), "a second cancel changes nothing");
    let (job, changed) = store.cancel_job(&ann, &running, 9).await.unwrap().unwrap();
    assert_eq!((job.status, changed), (JobStatus::Running, false));
    let listed: Vec<String> = store.list_jobs(&ann, 10, 0).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(listed, vec![running.clone(), queued.clone()], "newest first");
    assert_eq!(store.list_jobs(&ann, 1, 1).await.unwrap()[0].id, queued);
}

async fn racing_workers_claim_every_job_exactly_once(store: Arc<dyn Store>) {
    let [ann] = users(&*store, &["ann"]).await.try_into().unwrap();
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(submit(&*store, &format!("j{i:03}"), &ann, Priority::Normal, 0).await);
    }
    let ids = Arc::new(ids);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for id in ids.iter() {
                    if store.claim(id, &format!("w{w}"), 1, 10_000).await.unwrap().is_some() {
                        mine.push(id.clone());
                    }
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id), "claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

async fn claims_made_together_take_only_ready_queued_jobs_each_for_its_owner(store: Arc<dyn Store>) {
    let [ann] = users(&*store, &["ann"]).await.try_into().unwrap();
    for id in ["a", "b", "c", "d"] {
        submit(&*store, id, &ann, Priority::Normal, 10).await;
    }
    store.claim("b", "other#0", 11, 100).await.unwrap().expect("b claimed alone first");
    assert!(store.retry_later("b", "other#0", 1_000, &oops()).await.unwrap(), "b waits until 1000");
    store.claim("c", "other#1", 11, 100).await.unwrap().expect("c running elsewhere");
    let wanted: Vec<(String, String)> =
        [("a", "me#1"), ("b", "me#2"), ("c", "me#3"), ("d", "me#4"), ("none", "me#5")].iter().map(|(j, o)| (j.to_string(), o.to_string())).collect();
    let mut claimed: Vec<_> = store.claim_many(&wanted, 20, 500).await.unwrap().into_iter().map(|c| c.job).collect();
    claimed.sort_by(|x, y| x.id.cmp(&y.id));
    let seen: Vec<(&str, JobStatus, Option<&str>, Option<i64>, u32)> =
        claimed.iter().map(|j| (j.id.as_str(), j.status, j.lease_owner.as_deref(), j.lease_until_ms, j.attempts)).collect();
    assert_eq!(
        seen,
        [("a", JobStatus::Running, Some("me#1"), Some(500), 1), ("d", JobStatus::Running, Some("me#4"), Some(500), 1)],
        "b is not due yet, c is someone else's, none does not exist"
    );
    assert!(store.claim_many(&wanted, 21, 500).await.unwrap().is_empty(), "nothing is claimed twice");
    assert!(store.claim_many(&[], 21, 500).await.unwrap().is_empty());
    assert!(store.succeed("a", "me#1", "{}", 30).await.unwrap(), "each job's owner is its own");
    assert!(!store.succeed("d", "me#1", "{}", 30).await.unwrap());
}

/// The figures of open jobs (queue length, per provider and status, users
/// with open jobs, each user's counts in the heads) after each kind of
/// transition: what the queue limit, queue status and priority policy see.
async fn open_job_figures_follow_every_transition(store: Arc<dyn Store>) {
    let [ann, bob] = users(&*store, &["ann", "bob"]).await.try_into().unwrap();
    let figures = |store: Arc<dyn Store>| async move {
        let mut open: Vec<(String, JobStatus, u64)> =
            store.open_jobs().await.unwrap().into_iter().map(|o| (o.provider, o.status, o.count)).collect();
        open.sort_by_key(|(p, s, _)| (p.clone(), s.as_str()));
        let mut users = store.users_with_open_jobs().await.unwrap();
        users.sort();
        (store.queue_length().await.unwrap(), open, users)
    };
    let queued_and_running = |store: Arc<dyn Store>, now: i64| async move {
        let mut counts: Vec<(String, u32, u32)> =
            store.heads("openai-whisper", now, 1).await.unwrap().into_iter().map(|h| (h.user_id, h.user_queued, h.user_running)).collect();
        counts.sort();
        counts
    };
    let whisper = |status, n| ("openai-whisper".to_string(), status, n);
    for (i, user) in [&ann, &ann, &ann, &ann, &bob].into_iter().enumerate() {
        submit(&*store, &format!("j{i}"), user, Priority::Normal, 10).await;
    }
    let mut both = vec![ann.clone(), bob.clone()];
    both.sort();
    assert_eq!(figures(store.clone()).await, (5, vec![whisper(JobStatus::Queued, 5)], both.clone()));

    store.claim("j0", "w#0", 20, 1_000).await.unwrap().expect("claimed");
    store.claim("j1", "w#1", 20, 1_000).await.unwrap().expect("claimed");
    assert!(store.retry_later("j1", "w#1", 5_000, &oops()).await.unwrap(), "j1 waits until 5000");
    store.cancel_job(&ann, "j2", 30).await.unwrap().expect("canceled");
    let expected = vec![whisper(JobStatus::Queued, 3), whisper(JobStatus::Running, 1)];
    assert_eq!(figures(store.clone()).await, (4, expected, both.clone()));
    let mut counts = vec![(ann.clone(), 1, 1), (bob.clone(), 1, 0)];
    counts.sort();
    assert_eq!(queued_and_running(store.clone(), 40).await, counts, "ann's retry is not ready at 40");
    let mut counts = vec![(ann.clone(), 2, 1), (bob.clone(), 1, 0)];
    counts.sort();
    assert_eq!(queued_and_running(store.clone(), 5_000).await, counts, "and is at 5000");

    store.claim("j3", "w#3", 40, 100).await.unwrap().expect("claimed");
    assert_eq!(store.requeue_expired(101).await.unwrap(), 1, "j3's lease ran out");
    assert!(store.succeed("j0", "w#0", "{}", 50).await.unwrap());
    store.claim("j4", "w#4", 50, 1_000).await.unwrap().expect("claimed");
    assert!(store.fail("j4", "w#4", &oops(), 60).await.unwrap());
    assert_eq!(figures(store.clone()).await, (2, vec![whisper(JobStatus::Queued, 2)], vec![ann.clone()]));
    assert_eq!(queued_and_running(store.clone(), 200).await, vec![(ann.clone(), 1, 0)]);

    for (id, owner) in [("j1", "w#5"), ("j3", "w#6")] {
        store.claim(id, owner, 6_000, 9_000).await.unwrap().expect("claimed");
        assert!(store.succeed(id, owner, "{}", 6_001).await.unwrap());
    }
    assert_eq!(figures(store.clone()).await, (0, vec![], vec![]));
    assert!(store.ready_providers(7_000).await.unwrap().is_empty());
    assert!(store.heads("openai-whisper", 7_000, 1).await.unwrap().is_empty());
}

/// A database that already holds open jobs when the counts of open jobs
/// arrive (migration 0009) starts with them counted: an upgrade with a
/// queue keeps its queue length, and its users' counts.
#[tokio::test]
async fn an_upgraded_sqlite_database_counts_the_jobs_it_already_holds() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("migrations");
    std::fs::create_dir(&earlier).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/migrations/sqlite");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0009" {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
        }
    }
    let db = dir.path().join("scribe.db");
    let url = format!("sqlite://{}", db.display());
    {
        use sqlx::{ConnectOptions, Connection};
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut connection = options.create_if_missing(true).connect().await.unwrap();
        sqlx::migrate::Migrator::new(earlier.as_path()).await.unwrap().run(&mut connection).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO users (id, name, key_hash, created_at) VALUES ('ann', 'ann', 'h1', 1), ('bob', 'bob', 'h2', 1); \
             INSERT INTO jobs (id, user_id, status, provider, priority, audio_sha256, audio_format, audio_bytes, \
               response_format, run_at, created_at, lease_owner, lease_until) VALUES \
             ('a1', 'ann', 'queued', 'openai-whisper', 1, 'x', 'wav', 1, 'json', 0, 1, NULL, NULL), \
             ('a2', 'ann', 'queued', 'openai-whisper', 1, 'x', 'wav', 1, 'json', 0, 2, NULL, NULL), \
             ('b1', 'bob', 'running', 'openai-whisper', 1, 'x', 'wav', 1, 'json', 0, 3, 'w#1', 99), \
             ('b2', 'bob', 'succeeded', 'openai-whisper', 1, 'x', 'wav', 1, 'json', 0, 4, NULL, NULL); \
             UPDATE jobs SET idempotency_key = 'k1' WHERE id = 'b2';",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
    }
    let store = SqliteStore::open(&url, 2, Duration::from_secs(5)).await.expect("migrates the rest");
    assert_eq!(store.queue_length().await.unwrap(), 3);
    let counts: Vec<(String, u32, u32)> =
        store.heads("openai-whisper", 10, 1).await.unwrap().into_iter().map(|h| (h.user_id, h.user_queued, h.user_running)).collect();
    assert_eq!(counts, vec![("ann".to_string(), 2, 0)]);
    assert!(store.succeed("b1", "w#1", "{}", 20).await.unwrap());
    assert_eq!(store.queue_length().await.unwrap(), 2, "the counted running job leaves its count");
    assert_eq!(store.job_by_id("a1").await.unwrap().map(|j| j.created_at_ms), Some(1), "the rebuilt table kept its jobs");
    assert!(store.audio_in_use("x", 0).await.unwrap());
    let again = NewJob { id: "b3".into(), user_id: "bob".into(), spec: spec(Priority::Normal), idempotency_key: Some("k1".into()), now_ms: 30, cache_key: "c".into(), cached_transcript: None, audio_write: None };
    let Inserted::Existing(first) = store.insert_job(again).await.unwrap() else { panic!("an Idempotency-Key from before the upgrade still finds its job") };
    assert_eq!(first.id, "b2");
}
