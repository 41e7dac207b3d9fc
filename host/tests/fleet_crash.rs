//! Instance failure in a fleet: three `scribe serve` processes, each with a
//! data directory of its own, on one PostgreSQL database. One is killed
//! with SIGKILL while it runs jobs: the others take its jobs over once
//! their leases expire, and every accepted job finishes exactly once. Then
//! the whole fleet is killed mid-run and started again: nothing is lost.

mod support;

use std::time::{Duration, Instant};

use scribe_host::store::{JobStatus, PostgresStore, Store};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use scribe_tests::postgres::TestDatabase;
use scribe_tests::{wait_until, wav};
use serde_json::Value;
use support::{add_user, serve, submit, Scribe};

const JOBS: u32 = 60;
const LEASE: Duration = Duration::from_secs(2);
const ADMIN: &str = "admin-secret";

/// The lease owner name an instance goes by (its admin queue status).
async fn instance_id(client: &reqwest::Client, scribe: &Scribe) -> String {
    let response = client.post(format!("{}/api/queue-status", scribe.base)).bearer_auth(ADMIN).send().await.expect("status");
    let status: Value = response.json().await.expect("JSON");
    status["instance"].as_str().expect("the instance's id").to_string()
}

/// Jobs running under a lease of `owner`'s (its claims are `owner#n`).
async fn running_under(database: &str, owner: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(database).await.expect("connect");
    let ids = sqlx::query_scalar("SELECT id FROM jobs WHERE status = 'running' AND split_part(lease_owner, '#', 1) = $1")
        .bind(owner)
        .fetch_all(&pool)
        .await
        .expect("read");
    pool.close().await;
    ids
}

/// Every job in `ids` (submitted with seeds `first_seed..`) succeeded with
/// its own transcript after at most two attempts; how many took two.
async fn all_succeeded_once(store: &dyn Store, ids: &[String], first_seed: u32) -> u64 {
    let mut reruns = 0;
    for (i, id) in ids.iter().enumerate() {
        let job = store.job_by_id(id).await.expect("read").expect("no job lost");
        assert_eq!(job.status, JobStatus::Succeeded, "{id}: {:?}", job.error);
        assert!((1..=2).contains(&job.attempts), "job {id}: {} attempts", job.attempts);
        reruns += u64::from(job.attempts == 2);
        let transcript = store.transcript(id).await.expect("read").expect("a stored transcript");
        assert!(transcript.contains(&transcript_text(&wav(first_seed + i as u32, 800))), "job {id}: {transcript}");
    }
    reruns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_jobs_finish_on_the_others_and_a_killed_fleet_restarts() {
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(300));
    let openai = fake.base_url();
    let client = reqwest::Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let env = [("DATABASE_URL", database.url.as_str()), ("ADMIN_API_KEY", ADMIN)];
    let start = |i: usize, run: &'static str| serve(dirs[i].path(), &openai, &env, run);

    let mut fleet = vec![start(0, "a").await, start(1, "a").await, start(2, "a").await];
    let key = add_user(dirs[0].path(), &openai, &env, "ann").await;
    let victim = instance_id(&client, &fleet[0]).await;
    let mut ids = Vec::new();
    for seed in 0..JOBS {
        ids.push(submit(&client, &fleet[seed as usize % 3].base, &key, seed).await);
    }
    wait_until("the first instance running jobs", Duration::from_secs(60), || async {
        !running_under(&database.url, &victim).await.is_empty()
    })
    .await;
    fleet[0].child.kill().await.expect("SIGKILL");
    let killed_at = Instant::now();
    let orphans = running_under(&database.url, &victim).await;
    let store = PostgresStore::open(&database.url, 2, Duration::from_secs(5)).await.expect("the database opens alongside");
    for id in &orphans {
        wait_until("the killed instance's jobs to finish on the others", LEASE + Duration::from_secs(10), || async {
            store.job_by_id(id).await.ok().flatten().is_some_and(|j| j.status == JobStatus::Succeeded)
        })
        .await;
    }
    let takeover = killed_at.elapsed();
    eprintln!("takeover: the killed instance's {} running jobs finished {takeover:?} after the kill", orphans.len());
    assert!(takeover <= LEASE + Duration::from_secs(5), "taken over within the lease plus a few seconds: {takeover:?}");
    wait_until("every job to end", Duration::from_secs(60), || async { store.queue_length().await.is_ok_and(|n| n == 0) }).await;
    let reruns = all_succeeded_once(&store, &ids, 0).await;
    assert!(reruns >= orphans.len() as u64, "the killed instance's jobs ran again");
    assert!(fake.calls() <= u64::from(JOBS) + reruns, "{} calls for {JOBS} jobs, {reruns} rerun", fake.calls());

    // The whole fleet killed mid-run, then started again.
    let mut batch = Vec::new();
    for seed in JOBS..2 * JOBS {
        batch.push(submit(&client, &fleet[1 + seed as usize % 2].base, &key, seed).await);
    }
    let calls_before = fake.calls();
    wait_until("the second batch under way", Duration::from_secs(60), || async { fake.calls() >= calls_before + 5 }).await;
    for scribe in &mut fleet[1..] {
        scribe.child.kill().await.expect("SIGKILL");
    }
    let done_at_kill = batch.len() as u64 - store.queue_length().await.expect("count");
    assert!(done_at_kill < u64::from(JOBS), "the kill came mid-run ({done_at_kill} done)");
    let restarted = vec![start(0, "b").await, start(1, "b").await, start(2, "b").await];
    wait_until("every job to end after the restart", Duration::from_secs(60), || async {
        store.queue_length().await.is_ok_and(|n| n == 0)
    })
    .await;
    all_succeeded_once(&store, &batch, JOBS).await;
    drop(restarted);
}
