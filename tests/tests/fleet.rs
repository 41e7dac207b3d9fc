//! Several instances on one PostgreSQL database (a database of its own per
//! test): what one instance accepts, another runs.

use reqwest::StatusCode;
use scribe_tests::api::{form, serve};
use scribe_tests::fake_openai::FakeOpenAi;
use scribe_tests::postgres::TestDatabase;
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
