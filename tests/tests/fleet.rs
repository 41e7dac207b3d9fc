//! Several instances on one PostgreSQL database (a database of its own per
//! test): what one instance accepts, another runs.

use std::time::Duration;

use reqwest::StatusCode;
use scribe_host::clock::now_ms;
use scribe_host::store::JobStatus;
use scribe_tests::api::{form, serve};
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::fleet::Fleet;
use scribe_tests::provider_view::{calls_during_retry_after, max_per_window};
use scribe_tests::postgres::TestDatabase;
use scribe_tests::proxy::Proxy;
use scribe_tests::{wait_until, wav};
use serde_json::Value;

/// A submit to an API-only instance wakes the scheduler of another
/// instance at once: the runner's slow poll and lease check are an hour
/// away, so only the notification can start the job within the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_on_one_instance_wakes_the_scheduler_on_another() {
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    let hour = "3600";
    // Instance A: accepts jobs, runs none.
    let api = serve(&[("DATABASE_URL", &database.url)]).await;
    // Instance B: same database and data directory (the audio), runs jobs.
    let base_url = fake.base_url();
    let runner = api
        .another_instance(&[
            ("OPENAI_BASE_URL", base_url.as_str()),
            ("SCRIBE_DISPATCH", "true"),
            ("SCRIBE_FLEET_POLL_SECONDS", hour),
            ("SCRIBE_LEASE_SECONDS", hour),
        ])
        .await;

    let audio = scribe_tests::wav(7, 400);
    let response = api.submit(&api.ann, form(Some(&audio), &[])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = api.job_reaching(&id, "succeeded").await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(fake.calls(), 1, "the runner called the provider once");
    runner.shutdown().await.expect("the runner stops");
}

/// Two instances on one database each say which one answers (admin queue
/// status, `scribe_instance_info`), and both count the fleet's queue: jobs
/// accepted by one are in the other's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_names_itself_and_counts_the_fleets_queue() {
    let database = TestDatabase::create().await;
    let admin = "admin-secret";
    let vars = [("DATABASE_URL", database.url.as_str()), ("ADMIN_API_KEY", admin)];
    let first = serve(&vars).await;
    let second = first.another_instance(&[]).await;
    let second_base = format!("http://{}", second.addr);

    for seed in 1..=2 {
        let response = first.submit(&first.ann, form(Some(&scribe_tests::wav(seed, 400)), &[])).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let status = |base: String| {
        let client = first.client.clone();
        async move {
            let response = client.post(format!("{base}/api/queue-status")).bearer_auth(admin).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let (a, b) = (status(first.base.clone()).await, status(second_base.clone()).await);
    assert_eq!(b["queue"]["queueLength"], 2, "the second instance counts jobs the first accepted: {b}");
    assert_eq!(a["queue"]["queueLength"], 2, "{a}");
    let (id_a, id_b) = (a["instance"].as_str().expect("instance named"), b["instance"].as_str().expect("instance named"));
    assert_ne!(id_a, id_b, "each instance names itself");
    for (base, id) in [(&first.base, id_a), (&second_base, id_b)] {
        let metrics = first.client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(&format!("scribe_instance_info{{instance=\"{id}\"}} 1")), "{id} in {base}/metrics");
    }
    second.shutdown().await.expect("the second instance stops");
}

/// Submits `per_user` distinct files for each of `keys`' users, the users
/// at once, each user's files spread over the fleet's instances; the ids.
async fn submit_burst(fleet: &Fleet, keys: &[String], per_user: usize) -> Vec<String> {
    let submits = keys.iter().enumerate().map(|(u, key)| async move {
        let mut ids = Vec::new();
        for i in 0..per_user {
            ids.push(fleet.submit(u + i, key, wav((u * per_user + i) as u32, 400)).await);
        }
        ids
    });
    futures_util::future::join_all(submits).await.into_iter().flatten().collect()
}

/// The brief's burst in scaled time on three instances with data
/// directories of their own (the audio travels through the database):
/// 10 users x 100 files, 1800/min, 5 at a time, 50 ms a call. The limits
/// hold for the fleet as for one instance, every job runs exactly once,
/// and the makespan stays within 1.05 of the bound max(N/R, N*L/C).
///
/// The 1,000 submits reach the fleet while an operator's pause holds the
/// provider, and the makespan counts from the resume: the bound assumes
/// every job is there at the start, and the test's own HTTP client, which
/// shares the 2 cores with the three instances, is no part of the fleet
/// (`scribe bench burst --instances 3` measures from the first submit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_cap_and_one_rate_through_the_briefs_burst() {
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    let latency = Duration::from_millis(50);
    fake.set_latency(latency);
    let limits = [("MAX_CONCURRENT_TRANSCRIPTIONS", "5"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "1800"), ("ADMIN_API_KEY", "admin")];
    let fleet = Fleet::start(3, &database.url, &fake, &limits).await;
    let keys = fleet.add_users(10).await;
    let admin = |instance: usize, action: &str| {
        let url = format!("{}/admin/providers/openai-whisper/{action}", fleet.instances[instance].base);
        fleet.client.post(url).bearer_auth("admin").send()
    };

    assert_eq!(admin(0, "pause").await.unwrap().status(), StatusCode::OK);
    let ids = submit_burst(&fleet, &keys, 100).await;
    assert_eq!(fake.calls(), 0, "nothing ran while the provider was paused");
    let start_ms = now_ms();
    assert_eq!(admin(2, "resume").await.unwrap().status(), StatusCode::OK);
    let jobs = fleet.jobs_when_idle(&ids, Duration::from_secs(180)).await;

    for job in &jobs {
        assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1), "{}: {:?}", job.id, job.error);
    }
    assert_eq!(fake.calls(), 1000, "every job called the provider exactly once");
    assert!(fake.max_in_flight() <= 5, "never more than 5 in flight over the fleet: {}", fake.max_in_flight());
    let busiest = max_per_window(&fake.arrivals(), Duration::from_secs(1));
    assert!(busiest <= 31, "never more than the limit (+1) in any 1 s window over the fleet: {busiest}");
    for (i, instance) in fleet.instances.iter().enumerate() {
        let ran = instance.server.metrics.jobs_finished.with_label_values(&["openai-whisper", "succeeded"]).get();
        assert!(ran > 0, "instance {i} ran jobs too");
    }
    let bound = (1000.0 / 30.0_f64).max(1000.0 * latency.as_secs_f64() / 5.0);
    let last_ms = jobs.iter().filter_map(|j| j.finished_at_ms).max().expect("finished");
    let makespan = (last_ms - start_ms) as f64 / 1e3;
    eprintln!("fleet of 3: makespan {makespan:.2} s, bound {bound:.2} s, ratio {:.4}", makespan / bound);
    assert!(makespan <= 1.05 * bound, "makespan {makespan:.2} s over 1.05 x the bound {bound:.2} s");
    fleet.shutdown().await;
}

/// A 429 with a retry-after seen by one instance pauses the provider for
/// the whole fleet: no instance starts a call until the retry-after has
/// passed; every job still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_seen_by_one_instance_pauses_the_provider_for_every_instance() {
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    let latency = Duration::from_millis(20);
    fake.set_latency(latency);
    let retry_after = Duration::from_millis(1500);
    fake.set_fault_rates(0.0, 0.1, retry_after, 11);
    let limits = [("MAX_CONCURRENT_TRANSCRIPTIONS", "5"), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "1800")];
    let fleet = Fleet::start(2, &database.url, &fake, &limits).await;
    let keys = fleet.add_users(3).await;
    let ids = submit_burst(&fleet, &keys, 15).await;
    let jobs = fleet.jobs_when_idle(&ids, Duration::from_secs(120)).await;

    assert!(jobs.iter().all(|j| j.status == JobStatus::Succeeded), "every job succeeds");
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r.answered == Some(429)), "some calls were answered 429");
    let early = calls_during_retry_after(&requests, latency, retry_after);
    assert!(early.is_empty(), "calls started on some instance during a 429's retry-after: {early:?}");
    fleet.shutdown().await;
}

/// An operator's pause through one instance holds the provider for the
/// fleet (another instance reports it paused), and a resume through that
/// other instance lets the jobs accepted meanwhile run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_pause_on_one_instance_holds_the_fleet() {
    let database = TestDatabase::create().await;
    let fake = FakeOpenAi::start("sk-test").await;
    let fleet = Fleet::start(2, &database.url, &fake, &[("ADMIN_API_KEY", "admin-secret")]).await;
    let keys = fleet.add_users(1).await;
    let (a, b) = (&fleet.instances[0].base, &fleet.instances[1].base);
    let admin = |url: String| fleet.client.post(url).bearer_auth("admin-secret").send();

    let paused = admin(format!("{a}/admin/providers/openai-whisper/pause")).await.unwrap();
    assert_eq!(paused.status(), StatusCode::OK);
    let id = fleet.submit(1, &keys[0], wav(1, 400)).await;
    let status: Value = admin(format!("{b}/api/queue-status")).await.unwrap().json().await.unwrap();
    assert_eq!(status["providers"]["openai-whisper"]["paused"], true, "the other instance sees the pause: {status}");
    assert_eq!(fleet.store().job_by_id(&id).await.unwrap().unwrap().status, JobStatus::Queued);

    let resumed = admin(format!("{b}/admin/providers/openai-whisper/resume")).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let jobs = fleet.jobs_when_idle(std::slice::from_ref(&id), Duration::from_secs(30)).await;
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    fleet.shutdown().await;
}

/// Waits until every instance's `/readyz` answers `status`.
async fn every_readyz_answers(fleet: &Fleet, status: StatusCode, what: &str) {
    for instance in &fleet.instances {
        let url = format!("{}/readyz", instance.base);
        wait_until(what, Duration::from_secs(30), || async {
            fleet.client.get(&url).send().await.is_ok_and(|r| r.status() == status)
        })
        .await;
    }
}

/// The database goes away mid-run (every connection reset, new ones
/// refused: a restart, as the instances see it) and comes back: `/readyz`
/// fails while it is gone, the instances recover without a restart of
/// their own, and every job finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_ride_out_a_database_outage() {
    let database = TestDatabase::create().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let (_, name) = database.url.rsplit_once('/').expect("a database name");
    let url = format!("postgres://postgres@{}/{name}", proxy.addr());
    let fake = FakeOpenAi::start("sk-test").await;
    fake.set_latency(Duration::from_millis(100));
    let limits = [("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "600"), ("DB_TIMEOUT", "1000")];
    let fleet = Fleet::start(2, &url, &fake, &limits).await;
    let keys = fleet.add_users(2).await;
    let ids = submit_burst(&fleet, &keys, 20).await;
    wait_until("some calls made", Duration::from_secs(30), || async { fake.calls() >= 5 }).await;

    proxy.cut();
    every_readyz_answers(&fleet, StatusCode::SERVICE_UNAVAILABLE, "/readyz to fail while the database is gone").await;
    let calls_during = fake.calls();
    proxy.restore();
    every_readyz_answers(&fleet, StatusCode::OK, "/readyz to pass again").await;
    let jobs = fleet.jobs_when_idle(&ids, Duration::from_secs(120)).await;
    assert!(calls_during < 40, "the outage came mid-run ({calls_during} calls)");
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Succeeded, "{}: {:?}", job.id, job.error);
    }
    fleet.shutdown().await;
}
