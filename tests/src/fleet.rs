//! A fleet of in-process Scribe instances on one PostgreSQL database, each
//! with a data directory of its own (so audio can only travel through the
//! database), all running jobs on `openai-whisper` pointed at one fake.

use std::time::Duration;

use scribe_host::clock::now_ms;
use scribe_host::server::{self, Running};
use scribe_host::store::{Job, Store};
use scribe_host::users;
use serde_json::Value;

use crate::fake_openai::FakeOpenAi;
use crate::test_config;

/// One instance of a [`Fleet`].
pub struct Instance {
    /// The running server.
    pub server: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: tempfile::TempDir,
}

/// Instances on one database.
pub struct Fleet {
    /// The instances, in start order.
    pub instances: Vec<Instance>,
    /// A client for the requests.
    pub client: reqwest::Client,
}

impl Fleet {
    /// Starts `size` dispatching instances on `database_url` with
    /// `OPENAI_API_KEY=sk-test`, `OPENAI_BASE_URL` at `fake`, and `env` on
    /// top.
    pub async fn start(size: usize, database_url: &str, fake: &FakeOpenAi, env: &[(&str, &str)]) -> Fleet {
        let base_url = fake.base_url();
        let mut vars = vec![
            ("DATABASE_URL", database_url),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", base_url.as_str()),
            ("SCRIBE_DISPATCH", "true"),
            ("SCRIBE_MAX_QUEUE_LENGTH", "100000"),
        ];
        vars.extend_from_slice(env);
        let mut instances = Vec::new();
        for _ in 0..size {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = test_config(dir.path(), "", &vars);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let server = server::start_on(config, listener).await.expect("an instance starts");
            let base = format!("http://{}", server.addr);
            instances.push(Instance { server, base, _dir: dir });
        }
        Fleet { instances, client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client") }
    }

    /// The fleet's store (any instance's: they share the database).
    pub fn store(&self) -> &dyn Store {
        &*self.instances[0].server.store
    }

    /// Adds users `user0`..; their API keys.
    pub async fn add_users(&self, count: usize) -> Vec<String> {
        let mut keys = Vec::new();
        for u in 0..count {
            keys.push(users::add(self.store(), &format!("user{u}"), now_ms()).await.expect("user").1);
        }
        keys
    }

    /// Submits `audio` to instance `index` as the user with `key`; the job id.
    pub async fn submit(&self, index: usize, key: &str, audio: Vec<u8>) -> String {
        let base = &self.instances[index % self.instances.len()].base;
        let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(audio).file_name("a.wav"));
        let response = self.client.post(format!("{base}/v1/jobs")).bearer_auth(key).multipart(form).send().await.expect("submit");
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "submit to {base}");
        response.json::<Value>().await.expect("job JSON")["id"].as_str().expect("id").to_string()
    }

    /// Waits until no job is queued or running, then reads `ids`' jobs.
    pub async fn jobs_when_idle(&self, ids: &[String], timeout: Duration) -> Vec<Job> {
        crate::wait_until("every job to end", timeout, || async { self.store().queue_length().await.is_ok_and(|n| n == 0) }).await;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(self.store().job_by_id(id).await.expect("read").expect("the job exists"));
        }
        jobs
    }

    /// Stops every instance cleanly.
    pub async fn shutdown(self) {
        for instance in self.instances {
            instance.server.shutdown().await.expect("an instance stops");
        }
    }
}
