//! A headless Chromium driven over the DevTools protocol, for the
//! dashboard test: it loads a page, evaluates JavaScript in it (reading
//! the DOM, clicking buttons) and waits for conditions.
//!
//! Debian's `chromium` (tests/run installs it), or the binary named by
//! `SCRIBE_TEST_CHROMIUM`. A machine without it fails the test with a
//! message saying so, never skips it.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A Chromium with one page open.
pub struct Browser {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium headless (`--headless --no-sandbox --disable-gpu`)
    /// on `url` and connects to that page.
    pub async fn open(url: &str) -> Browser {
        let binary = std::env::var("SCRIBE_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(&binary)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): install Debian's chromium (tests/run does) or set SCRIBE_TEST_CHROMIUM"));
        let devtools = devtools_address(&mut child).await;
        let page_ws = page_target(&devtools, url).await;
        let (page, _) = tokio_tungstenite::connect_async(page_ws.as_str()).await.expect("connect to the page");
        Browser { child, page, next_id: 1, _profile: profile }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value; a JavaScript exception fails the test.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true, "awaitPromise": true },
        });
        self.page.send(Message::text(request.to_string())).await.expect("send to the page");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.page.next())
                .await
                .expect("the page answers")
                .expect("the page's socket stays open")
                .expect("a DevTools message");
            let Message::Text(text) = message else { continue };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] != id {
                continue; // an event
            }
            let result = &reply["result"];
            assert!(result["exceptionDetails"].is_null(), "{expression} threw: {}", result["exceptionDetails"]);
            return result["result"]["value"].clone();
        }
    }

    /// Waits until `expression` evaluates to `true` in the page; on timeout
    /// fails the test with `what` and what `show` evaluates to then.
    pub async fn wait_for(&mut self, what: &str, expression: &str, show: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.eval(expression).await != Value::Bool(true) {
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out waiting for {what}; the page shows {}", self.eval(show).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Reads Chromium's "DevTools listening on ws://HOST:PORT/..." line and
/// returns `HOST:PORT`.
async fn devtools_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://") {
                return Ok(rest.split('/').next().unwrap_or_default().to_string());
            }
            seen.push(line);
        }
        Err(seen.join("\n"))
    })
    .await
    .expect("Chromium announces its DevTools port within 30 s");
    let address = found.unwrap_or_else(|output| panic!("Chromium exited without a DevTools port:\n{output}"));
    // Keep draining stderr so Chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    address
}

/// The DevTools socket of the page showing `url`.
async fn page_target(devtools: &str, url: &str) -> String {
    let list = format!("http://{devtools}/json/list");
    let origin = url.split('#').next().unwrap_or(url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let targets: Value = reqwest::get(&list).await.expect("DevTools target list").json().await.expect("target JSON");
        let page = targets.as_array().into_iter().flatten().find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(origin)));
        if let Some(ws) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
            return ws.to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no page target for {url} in {targets}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
