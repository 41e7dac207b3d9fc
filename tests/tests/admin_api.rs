//! The admin plugin routes over real HTTP: auth, listing, uploads that
//! publish, and uploads that are refused with problem JSON while the
//! serving version stays.

use reqwest::StatusCode;
use scribe_host::plugins::builtin_bytes;
use scribe_host::server::{self, Running};
use scribe_tests::{guest, test_config};
use scribe_tests::problem;
use serde_json::Value;

const KEY: &str = "admin-secret";

async fn serve(env: &[(&str, &str)]) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path(), "", env);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    (server::start_on(config, listener).await.expect("server starts"), dir)
}


#[tokio::test]
async fn admin_routes_refuse_everything_without_an_admin_key_configured() {
    let (server, _dir) = serve(&[]).await;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let response = client.get(format!("{base}/admin/plugins")).bearer_auth("anything").send().await.unwrap();
    assert!(problem(response, StatusCode::FORBIDDEN).await.contains("ADMIN_API_KEY"));
    let response = client.get(format!("{base}/nowhere")).send().await.unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn list_needs_the_key_and_shows_the_design_fields() {
    let (server, _dir) = serve(&[("ADMIN_API_KEY", KEY)]).await;
    let url = format!("http://{}/admin/plugins", server.addr);
    let client = reqwest::Client::new();
    let missing = client.get(&url).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, StatusCode::UNAUTHORIZED).await;
    problem(client.get(&url).bearer_auth("wrong").send().await.unwrap(), StatusCode::UNAUTHORIZED).await;

    let list: Vec<Value> = client.get(&url).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    let retry = list.iter().find(|p| p["name"] == "retry-backoff").expect("the shipped retry policy is listed");
    assert_eq!(retry["world"], "retry-policy");
    assert_eq!(retry["source"], "built-in");
    assert_eq!(retry["version"], "0.1.0");
    assert_eq!(retry["content_hash"].as_str().unwrap().len(), 64);
    for field in ["loaded_at", "calls", "errors"] {
        assert!(retry.get(field).is_some(), "{field} is listed");
    }
    assert!(list.iter().any(|p| p["name"] == "priority-fair" && p["world"] == "priority-policy"));
}

#[tokio::test]
async fn uploads_publish_persist_and_refuse_bad_components() {
    let (server, dir) = serve(&[("ADMIN_API_KEY", KEY), ("SCRIBE_MAX_PLUGIN_BYTES", "1000000")]).await;
    let base = format!("http://{}/admin/plugins", server.addr);
    let client = reqwest::Client::new();
    let put = |name: &str, body: Vec<u8>| client.put(format!("{base}/{name}")).bearer_auth(KEY).body(body).send();

    let keyless = client.put(format!("{base}/echo")).body(guest("echo-v1").to_vec()).send().await.unwrap();
    problem(keyless, StatusCode::UNAUTHORIZED).await;
    assert!(server.plugins.get("echo").is_none(), "nothing was installed without the key");
    let wrong_method = client.post(format!("{base}/echo")).bearer_auth(KEY).send().await.unwrap();
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;

    let created = put("echo", guest("echo-v1").to_vec()).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!((created["changed"].as_bool(), created["source"].as_str()), (Some(true), Some("upload")));
    let hash = created["content_hash"].as_str().unwrap().to_string();
    let on_disk = std::fs::read(dir.path().join("plugins/echo.wasm")).expect("the upload is kept in the plugin dir");
    assert_eq!(on_disk, guest("echo-v1"));

    let again = put("echo", guest("echo-v1").to_vec()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["changed"], false);

    let detail = problem(put("echo", b"\0asm garbage".to_vec()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(detail.contains("not a valid WebAssembly component"), "{detail}");
    let wrong_world = builtin_bytes("retry-backoff").unwrap().to_vec();
    let detail = problem(put("echo", wrong_world).await.unwrap(), StatusCode::CONFLICT).await;
    assert!(detail.contains("echo is a provider plugin"), "{detail}");
    problem(put("Bad.Name", guest("echo-v1").to_vec()).await.unwrap(), StatusCode::BAD_REQUEST).await;
    let detail = problem(put("echo", vec![0; 1_500_000]).await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(detail.contains("SCRIBE_MAX_PLUGIN_BYTES"), "{detail}");

    let list: Vec<Value> = client.get(&base).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
    let echo = list.iter().find(|p| p["name"] == "echo").expect("echo still listed");
    assert_eq!(echo["content_hash"], hash.as_str(), "the first upload still serves");
    let text = server.plugins.transcribe("echo", Default::default()).await.expect("echo serves").text;
    assert_eq!(text, "echo v1");
}
