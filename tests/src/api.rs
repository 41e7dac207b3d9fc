//! An API-level test server: an in-process Scribe with two users, and
//! the requests the jobs-API tests send it.

use reqwest::StatusCode;
use scribe_host::clock::now_ms;
use scribe_host::server::{self, Running};
use scribe_host::users;
use serde_json::Value;

use crate::test_config;

/// An API-only server (`SCRIBE_DISPATCH=false`: jobs stay as submitted, so
/// the API's answers can be checked state by state) with
/// `OPENAI_API_KEY=sk-test` (so `openai-whisper` is the default provider)
/// plus `env`, and two users' keys.
pub struct Env {
    /// The running server.
    pub server: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Ann's API key.
    pub ann: String,
    /// Bob's API key.
    pub bob: String,
    /// A client for the requests.
    pub client: reqwest::Client,
    vars: Vec<(String, String)>,
    config_toml: String,
    dir: tempfile::TempDir,
}

/// Starts an [`Env`] (see there) with `env` on top of its defaults; an
/// empty value unsets a default.
pub async fn serve(env: &[(&str, &str)]) -> Env {
    serve_with("", env).await
}

/// [`serve`] with `config_toml` as the config file.
pub async fn serve_with(config_toml: &str, env: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vars: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (name, default) in [("OPENAI_API_KEY", "sk-test"), ("SCRIBE_DISPATCH", "false")] {
        if !vars.iter().any(|(k, _)| k == name) {
            vars.push((name.into(), default.into()));
        }
    }
    vars.retain(|(_, v)| !v.is_empty());
    let server = start(dir.path(), config_toml, &vars).await;
    let (_, ann) = users::add(&*server.store, "ann", now_ms()).await.expect("ann");
    let (_, bob) = users::add(&*server.store, "bob", now_ms()).await.expect("bob");
    let base = format!("http://{}", server.addr);
    Env { server, base, ann, bob, client: reqwest::Client::new(), vars, config_toml: config_toml.to_string(), dir }
}

async fn start(dir: &std::path::Path, config_toml: &str, vars: &[(String, String)]) -> Running {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = test_config(dir, config_toml, &vars);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    server::start_on(config, listener).await.expect("server starts")
}

impl Env {
    /// Another instance beside this one: the same data directory (so the
    /// same audio) and settings, `env` on top (an empty value unsets one);
    /// it creates no users (with a shared database they exist already).
    pub async fn another_instance(&self, env: &[(&str, &str)]) -> Running {
        let mut vars = self.vars.clone();
        for (name, value) in env {
            vars.retain(|(k, _)| k != name);
            vars.push((name.to_string(), value.to_string()));
        }
        vars.retain(|(_, v)| !v.is_empty());
        start(self.dir.path(), &self.config_toml, &vars).await
    }

    /// Shuts the server down and starts it again on the same data
    /// directory and settings (a new address; users and jobs kept).
    pub async fn restart(self) -> Env {
        let Env { server, ann, bob, client, vars, config_toml, dir, .. } = self;
        server.shutdown().await.expect("shutdown");
        let server = start(dir.path(), &config_toml, &vars).await;
        let base = format!("http://{}", server.addr);
        Env { server, base, ann, bob, client, vars, config_toml, dir }
    }
}

/// An [`Env`] that runs its jobs (`SCRIBE_DISPATCH=true`) on the
/// `openai-whisper` plugin pointed at `fake`, at 6000 calls a minute, with
/// `config_toml` and `env` on top.
pub async fn serve_dispatching(fake: &crate::fake_openai::FakeOpenAi, config_toml: &str, env: &[(&str, &str)]) -> Env {
    let base_url = fake.base_url();
    let mut vars = vec![("SCRIBE_DISPATCH", "true"), ("OPENAI_BASE_URL", base_url.as_str()), ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "6000")];
    vars.extend_from_slice(env);
    serve_with(config_toml, &vars).await
}

/// A WAV file of `samples` samples (seed 0).
pub fn wav(samples: usize) -> Vec<u8> {
    crate::wav(0, samples)
}

/// The multipart boundary [`form`] uses.
pub const BOUNDARY: &str = "scribe-test-boundary-7f3a";

/// A multipart body: `file` (if given) first, then the text fields.
pub fn form(file: Option<&[u8]>, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Env {
    /// A multipart submit by `key` with `body` (see [`form`]).
    pub fn submit(&self, key: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(key)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body)
    }

    /// `GET path` as `key`.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("GET")
    }

    /// Waits (up to 30 s) until Ann's job `id` has `status`; the job then.
    pub async fn job_reaching(&self, id: &str, status: &str) -> Value {
        let path = format!("/v1/jobs/{id}");
        crate::wait_until(&format!("job {id} to be {status}"), std::time::Duration::from_secs(30), || async {
            self.get(&self.ann, &path).await.json::<Value>().await.expect("job JSON")["status"] == status
        })
        .await;
        self.get(&self.ann, &path).await.json().await.expect("job JSON")
    }

    /// `DELETE /v1/jobs/{id}` as `key`.
    pub async fn delete(&self, key: &str, id: &str) -> reqwest::Response {
        self.client.delete(format!("{}/v1/jobs/{id}", self.base)).bearer_auth(key).send().await.expect("DELETE")
    }

    /// The server still serves, and `job` is as it was.
    pub async fn still_serving_with(&self, job: &Value) {
        let health = self.client.get(format!("{}/healthz", self.base)).send().await.expect("healthz");
        assert_eq!(health.status(), StatusCode::OK);
        let id = job["id"].as_str().unwrap();
        let now: Value = self.get(&self.ann, &format!("/v1/jobs/{id}")).await.json().await.unwrap();
        assert_eq!(&now, job, "the accepted job is unchanged");
    }
}


