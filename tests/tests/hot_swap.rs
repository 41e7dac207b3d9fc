//! Replacing a plugin file while calls run: no call fails, each gets the
//! old or the new version, calls started after the swap get the new one,
//! and a corrupt file or a file of the wrong world leaves the new version
//! serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scribe_host::plugins::types::TranscribeRequest;
use scribe_host::plugins::{builtin_bytes, Installed, Source};
use scribe_tests::{drop_plugin, guest, wait_until, TestHost};

const WAIT: Duration = Duration::from_secs(30);

fn request() -> TranscribeRequest {
    TranscribeRequest { audio: vec![1, 2, 3], audio_format: "wav".into(), ..Default::default() }
}

fn version_of(host: &TestHost, name: &str) -> Option<String> {
    host.plugins.get(name).map(|l| l.version.clone())
}

fn refused(host: &TestHost, name: &str) -> u64 {
    host.plugins.metrics().plugin_loads.with_label_values(&[name, "refused"]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_fails_no_call_and_bad_files_leave_the_new_version_serving() {
    let host = Arc::new(TestHost::start("", &[]).await);
    let _watcher = host.plugins.watch().expect("watching");
    let dir = host.plugin_dir();
    drop_plugin(&dir, "echo", guest("echo-v1"));
    wait_until("echo v1 to load", WAIT, || async { version_of(&host, "echo").as_deref() == Some("1.0.0") }).await;

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (host, stop, calls, results) = (host.clone(), stop.clone(), calls.clone(), results.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let transcript = host.plugins.transcribe("echo", request()).await.expect("no call fails during a swap");
                    results.lock().unwrap().push((started, transcript.text));
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let calls_reach = |n: usize| {
        let calls = calls.clone();
        move || {
            let calls = calls.clone();
            async move { calls.load(Ordering::Relaxed) >= n }
        }
    };
    wait_until("calls on v1", WAIT, calls_reach(200)).await;

    drop_plugin(&dir, "echo", guest("echo-v2"));
    wait_until("echo v2 to publish", WAIT, || async { version_of(&host, "echo").as_deref() == Some("2.0.0") }).await;
    let published = Instant::now();
    let before = calls.load(Ordering::Relaxed);
    wait_until("calls on v2", WAIT, calls_reach(before + 200)).await;

    drop_plugin(&dir, "echo", b"\0asm this is not a component");
    wait_until("the corrupt file to be refused", WAIT, || async { refused(&host, "echo") == 1 }).await;
    let policy = builtin_bytes("retry-backoff").expect("shipped");
    drop_plugin(&dir, "echo", policy);
    wait_until("the wrong-world file to be refused", WAIT, || async { refused(&host, "echo") == 2 }).await;
    let before = calls.load(Ordering::Relaxed);
    wait_until("calls after the refusals", WAIT, calls_reach(before + 200)).await;

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker finished without a failed call");
    }
    let results = results.lock().unwrap();
    assert!(results.iter().all(|(_, text)| text == "echo v1" || text == "echo v2"));
    assert!(results.iter().any(|(_, text)| text == "echo v1"), "some calls ran on v1");
    let late: Vec<_> = results.iter().filter(|(started, _)| *started >= published).collect();
    assert!(late.len() >= 400);
    assert!(late.iter().all(|(_, text)| text == "echo v2"), "every call started after the swap got v2");
    assert_eq!(version_of(&host, "echo").as_deref(), Some("2.0.0"), "v2 still serves after the bad files");
}

#[tokio::test]
async fn the_same_content_changes_nothing() {
    let host = TestHost::start("", &[]).await;
    let first = host.plugins.install("echo", guest("echo-v1").to_vec(), Source::File).await.expect("loads");
    let again = host.plugins.install("echo", guest("echo-v1").to_vec(), Source::File).await.expect("accepted");
    assert!(matches!(first, Installed::Published(_)));
    match again {
        Installed::Unchanged(loaded) => assert_eq!(loaded.loaded_at, first.loaded().loaded_at),
        Installed::Published(_) => panic!("the same content was published again"),
    }
}

#[tokio::test]
async fn a_restart_loads_files_from_the_plugin_dir_over_the_built_ins() {
    let host = TestHost::start("", &[]).await;
    drop_plugin(&host.plugin_dir(), "echo", guest("echo-v2"));
    let config = host.config.clone();
    let restarted = scribe_host::plugins::Plugins::start(&config, scribe_host::metrics::Metrics::new()).await.expect("starts");
    assert_eq!(restarted.get("echo").map(|l| l.version.clone()).as_deref(), Some("2.0.0"));
    let text = restarted.transcribe("echo", request()).await.expect("serves").text;
    assert_eq!(text, "echo v2");
}
