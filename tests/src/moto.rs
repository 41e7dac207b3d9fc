//! An S3-compatible server on 127.0.0.1 for the bucket audio store's tests:
//! moto's standalone server (PyPI `moto[server]`), from the venv `tests/run`
//! prepares beside the Python it names in `SCRIBE_TEST_PYTHON`. It keeps
//! everything in memory and is killed when dropped.

use std::time::Duration;

use tokio::process::{Child, Command};

/// A running moto server with one bucket.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created for the test.
    pub bucket: String,
    _child: Child,
}

impl S3Server {
    /// Starts moto on a free port and creates a bucket.
    pub async fn start() -> S3Server {
        let python = std::env::var("SCRIBE_TEST_PYTHON")
            .expect("SCRIBE_TEST_PYTHON names the venv with moto[server]: run the tests with `bash tests/run`");
        let moto = std::path::Path::new(&python).with_file_name("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", moto.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        crate::wait_until("moto to listen", Duration::from_secs(60), || async {
            client.get(format!("{endpoint}/")).send().await.is_ok()
        })
        .await;
        let bucket = "scribe-audio".to_string();
        let created = client.put(format!("{endpoint}/{bucket}")).send().await.expect("create the bucket");
        assert!(created.status().is_success(), "creating the bucket: {}", created.status());
        S3Server { endpoint, bucket, _child: child }
    }

    /// The `AWS_*` settings that point a client at this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
