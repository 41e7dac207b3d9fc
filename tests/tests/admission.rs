//! The fleet's limits in PostgreSQL (a database of its own per test):
//! schedulers and workers of several instances racing for one provider's
//! last slot or next token never over-grant, and a pause or hold set through one
//! instance holds for all.

use std::sync::Arc;
use std::time::Duration;

use scribe_host::admission::{Admission, Admit, FleetAdmission, Lease, ProviderLimits, Token};
use scribe_host::limiter::Rate;
use scribe_host::plugins::types::Priority;
use scribe_host::store::{JobSpec, NewJob, PostgresStore, Store};
use scribe_tests::postgres::TestDatabase;

const PROVIDER: &str = "openai-whisper";

/// Three instances' admissions (each with a pool of its own) on one
/// database holding `jobs` queued jobs.
async fn fleet(database: &TestDatabase, jobs: usize) -> Vec<Arc<FleetAdmission>> {
    let mut admissions = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(PostgresStore::open(&database.url, 8, Duration::from_secs(5)).await.expect("store"));
        admissions.push(Arc::new(FleetAdmission::new(store)));
    }
    let store = PostgresStore::open(&database.url, 2, Duration::from_secs(5)).await.expect("store");
    let user = store.create_user("ann", "hash", 1).await.expect("user").id;
    for i in 0..jobs {
        let spec = JobSpec {
            provider: PROVIDER.into(),
            priority: Priority::Normal,
            audio_sha256: "ab".repeat(32),
            audio_format: "wav".into(),
            audio_bytes: 1,
            language: None,
            prompt: None,
            temperature: None,
            model: None,
            response_format: "json".into(),
        };
        let job = NewJob { id: format!("j{i:03}"), user_id: user.clone(), spec, idempotency_key: None, now_ms: 1, cache_key: format!("k{i}"), cached_transcript: None, audio_write: None };
        store.insert_job(job).await.expect("insert");
    }
    admissions
}

/// Every instance tries every job at once; the ones claimed.
async fn race(admissions: &[Arc<FleetAdmission>], jobs: usize, limits: ProviderLimits) -> Vec<Admit> {
    let mut attempts = tokio::task::JoinSet::new();
    for (i, admission) in admissions.iter().enumerate() {
        for j in 0..jobs {
            let admission = admission.clone();
            attempts.spawn(async move {
                let owner = format!("instance-{i}");
                let lease = Lease { owner: &owner, until_ms: scribe_host::clock::now_ms() + 60_000 };
                admission.claim(PROVIDER, limits, &format!("j{j:03}"), lease).await.expect("no database error")
            });
        }
    }
    let mut admitted = Vec::new();
    while let Some(attempt) = attempts.join_next().await {
        admitted.push(attempt.expect("attempt ran"));
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_never_take_more_than_the_fleets_slots() {
    let database = TestDatabase::create().await;
    let admissions = fleet(&database, 20).await;
    let limits = ProviderLimits { max_concurrent: 3, rate: None, fleet_wide: true };
    let outcomes = race(&admissions, 20, limits).await;
    let admitted = outcomes.iter().filter(|o| matches!(o, Admit::Admitted(_))).count();
    assert_eq!(admitted, 3, "exactly the cap, across three instances trying 20 jobs each");
    assert_eq!(admissions[0].free_slots(PROVIDER, limits).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_share_one_rate() {
    let database = TestDatabase::create().await;
    let admissions = fleet(&database, 10).await;
    let limits = ProviderLimits { max_concurrent: 100, rate: Some(Rate { per_minute: 60, burst: 1 }), fleet_wide: true };
    let outcomes = race(&admissions, 10, limits).await;
    let tokens: Vec<Token> = outcomes
        .iter()
        .filter_map(|o| match o {
            Admit::Admitted(admitted) => Some(admitted.token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 1, "one token a second for the whole fleet");
    let Token::CallAt(call_at) = tokens[0] else { panic!("a fleet claim takes its token: {:?}", tokens[0]) };
    let offset = call_at.saturating_duration_since(tokio::time::Instant::now());
    assert!(offset <= scribe_host::admission::fleet::CALL_OFFSET, "the call starts at its slot plus the offset: {offset:?}");
    let waits = outcomes.iter().filter_map(|o| match o {
        Admit::Wait(at) => Some(at.saturating_duration_since(tokio::time::Instant::now())),
        _ => None,
    });
    assert!(waits.into_iter().all(|w| w <= Duration::from_secs(1)), "the others wait for the next token, at most a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_or_hold_set_through_one_instance_holds_for_all() {
    let database = TestDatabase::create().await;
    let admissions = fleet(&database, 2).await;
    let limits = ProviderLimits { max_concurrent: 5, rate: None, fleet_wide: true };
    let lease = Lease { owner: "instance-1", until_ms: scribe_host::clock::now_ms() + 60_000 };

    admissions[0].pause(PROVIDER, limits, Duration::from_secs(30)).await.unwrap();
    let paused = admissions[1].claim(PROVIDER, limits, "j000", lease).await.unwrap();
    let Admit::Wait(until) = paused else { panic!("another instance claimed during a retry-after pause") };
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    assert!(left > Duration::from_secs(25) && left <= Duration::from_secs(30), "until the pause ends: {left:?}");

    admissions[0].set_held(PROVIDER, limits, true).await.unwrap();
    assert!(admissions[2].is_held(PROVIDER, limits).await.unwrap(), "every instance sees the hold");
    admissions[2].set_held(PROVIDER, limits, false).await.unwrap();
    assert!(!admissions[1].is_held(PROVIDER, limits).await.unwrap());
    let resumed = admissions[1].claim(PROVIDER, limits, "j000", lease).await.unwrap();
    assert!(matches!(resumed, Admit::Admitted(_)), "a resume also ends the retry-after pause");
}
