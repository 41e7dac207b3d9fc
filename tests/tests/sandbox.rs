//! Each hostile guest in its own test: the sandbox stops it with the right
//! typed error, and the same runtime then serves a normal call.

use scribe_host::plugins::types::TranscribeRequest;
use scribe_host::plugins::{
    CallError, PluginError, PluginErrorKind, ProviderError, Source, MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES,
};
use scribe_tests::{guest, hanging_server, slow_text_server, text_server, TestHost};

fn request() -> TranscribeRequest {
    TranscribeRequest { audio: b"RIFF....WAVE".to_vec(), audio_format: "wav".into(), ..Default::default() }
}

/// A host with the hostile provider (in `mode`, with extra settings) as
/// `hostile` and the echo provider as `echo`.
async fn host_with_hostile(mode: &str, settings: &str) -> TestHost {
    let toml = format!("[plugins.hostile]\n{settings}\n[plugins.hostile.config]\nmode = \"{mode}\"\nhuge_bytes = \"2097152\"\n");
    let host = TestHost::start(&toml, &[]).await;
    host.plugins.install("hostile", guest("hostile-provider").to_vec(), Source::File).await.expect("hostile loads");
    host.plugins.install("echo", guest("echo-v1").to_vec(), Source::File).await.expect("echo loads");
    host
}

async fn hostile_error(host: &TestHost) -> PluginError {
    match host.plugins.transcribe("hostile", request()).await {
        Err(CallError::Plugin(e)) => e,
        other => panic!("expected the sandbox to stop the call, got {other:?}"),
    }
}

async fn assert_still_serves(host: &TestHost) {
    let transcript = host.plugins.transcribe("echo", request()).await.expect("a normal call succeeds afterwards");
    assert_eq!(transcript.text, "echo v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_by_the_deadline_while_other_calls_go_on() {
    let host = host_with_hostile("loop", "deadline_ms = 300").await;
    let looping = host.plugins.transcribe("hostile", request());
    let others = async {
        for _ in 0..20 {
            assert_still_serves(&host).await;
        }
    };
    let (looped, ()) = tokio::join!(looping, others);
    match looped {
        Err(CallError::Plugin(e)) => {
            assert!(matches!(e.kind, PluginErrorKind::Timeout { deadline_ms: 300 }), "{e}");
            assert_eq!(e.plugin, "hostile");
            assert!(e.version.starts_with("1.0.0 ("), "the error names the version: {e}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn memory_bomb_is_stopped_by_the_cap() {
    let host = host_with_hostile("alloc", "memory_mb = 32").await;
    let e = hostile_error(&host).await;
    assert!(matches!(e.kind, PluginErrorKind::MemoryExceeded { memory_mb: 32 }), "{e}");
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn panic_becomes_a_trap_naming_the_plugin() {
    let host = host_with_hostile("panic", "").await;
    let e = hostile_error(&host).await;
    assert!(matches!(e.kind, PluginErrorKind::Trap(_)), "{e}");
    assert!(e.to_string().starts_with("plugin hostile 1.0.0"), "{e}");
    let failures = host.plugins.metrics().plugin_failures.with_label_values(&["hostile", "trap"]).get();
    assert_eq!(failures, 1, "the trap is counted");
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn huge_output_is_refused_at_the_output_cap() {
    let host = host_with_hostile("huge", "max_output_bytes = 1048576\nmemory_mb = 64").await;
    let e = hostile_error(&host).await;
    match &e.kind {
        PluginErrorKind::InvalidOutput(message) => assert!(message.contains("2097152 bytes"), "{message}"),
        other => panic!("expected invalid output, got {other}"),
    }
    assert_still_serves(&host).await;
}

#[tokio::test]
async fn log_flood_is_bounded_and_the_call_completes() {
    let host = host_with_hostile("log-flood", "deadline_ms = 10000").await;
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt().with_writer(log.clone()).with_ansi(false).finish();
    let transcript = {
        let _guard = tracing::subscriber::set_default(subscriber);
        host.plugins.transcribe("hostile", request()).await.expect("flooding the log is not fatal")
    };
    assert_eq!(transcript.text, "ok");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let flood: Vec<&str> = text.lines().filter(|l| l.contains("flood flood")).collect();
    assert_eq!(flood.len(), MAX_LOG_LINES_PER_CALL as usize, "only the first lines of a call are kept");
    assert!(flood.iter().all(|l| l.matches("flood").count() * 6 <= MAX_LOG_LINE_BYTES + 6), "long lines are cut");
    assert!(flood[0].contains("plugin=\"hostile\"") || flood[0].contains("plugin=hostile"), "tagged: {}", flood[0]);
    assert!(text.contains("log line limit reached"));
    assert_still_serves(&host).await;
}

/// A log sink the test can read.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_calls_than_pool_slots_wait_instead_of_failing() {
    // Each call holds its instance while the service takes 200 ms, so twice
    // the pool's slots are in flight at once.
    let addr = slow_text_server(std::time::Duration::from_millis(200)).await;
    let toml = format!("[plugins.slow]\nallowed_hosts = [\"{addr}\"]\n[plugins.slow.config]\nurl = \"http://{addr}/\"\n");
    let host = TestHost::start(&toml, &[]).await;
    host.plugins.install("slow", guest("plugin-template-template-wasip2").to_vec(), Source::File).await.expect("loads");
    let slots = scribe_host::plugins::Kind::Provider.limits().pool_instances as usize;
    let plugins = host.plugins.clone();
    let calls: Vec<_> = (0..slots * 2)
        .map(|_| {
            let plugins = plugins.clone();
            tokio::spawn(async move { plugins.transcribe("slow", request()).await })
        })
        .collect();
    for call in calls {
        let transcript = call.await.expect("task").expect("every call succeeds");
        assert_eq!(transcript.text, "heard 12 bytes");
    }
}

#[tokio::test]
async fn request_to_a_host_not_granted_is_denied_and_reported_as_a_provider_error() {
    let addr = text_server().await;
    let url = format!("http://{addr}/");
    let toml = format!(
        "[plugins.ungranted.config]\nurl = \"{url}\"\n\
         [plugins.granted]\nallowed_hosts = [\"{addr}\"]\n[plugins.granted.config]\nurl = \"{url}\"\n"
    );
    let host = TestHost::start(&toml, &[]).await;
    let template = guest("plugin-template-template-wasip2");
    host.plugins.install("ungranted", template.to_vec(), Source::File).await.expect("loads");
    host.plugins.install("granted", template.to_vec(), Source::File).await.expect("loads");

    match host.plugins.transcribe("ungranted", request()).await {
        Err(CallError::Provider(ProviderError::Fatal(message))) => assert!(message.contains("denied"), "{message}"),
        other => panic!("expected the provider to report the denial, got {other:?}"),
    }
    let transcript = host.plugins.transcribe("granted", request()).await.expect("the granted host answers");
    assert_eq!(transcript.text, "heard 12 bytes");
}

#[tokio::test]
async fn a_provider_waiting_on_a_hung_service_is_stopped_after_its_deadline() {
    let addr = hanging_server().await;
    let toml = format!("[plugins.stuck]\nallowed_hosts = [\"{addr}\"]\ndeadline_ms = 300\n[plugins.stuck.config]\nurl = \"http://{addr}/\"\n");
    let host = TestHost::start(&toml, &[]).await;
    host.plugins.install("stuck", guest("plugin-template-template-wasip2").to_vec(), Source::File).await.expect("loads");
    host.plugins.install("echo", guest("echo-v1").to_vec(), Source::File).await.expect("loads");
    match host.plugins.transcribe("stuck", request()).await {
        Err(CallError::Plugin(e)) => assert!(matches!(e.kind, PluginErrorKind::Hung { waited_ms: 600 }), "{e}"),
        other => panic!("expected the host to stop the waiting call, got {other:?}"),
    }
    assert_still_serves(&host).await;
}
