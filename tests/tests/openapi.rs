//! `GET /openapi.json`: the document covers design.md's whole HTTP
//! surface, every operation in it is a route the server serves, and its
//! job schema has the fields a real job answer has.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve};
use serde_json::Value;

/// design.md's HTTP surface, plus the document itself.
const SURFACE: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/api/queue-status"),
    ("post", "/api/queue-status"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("delete", "/v1/jobs/{id}"),
    ("get", "/v1/jobs/{id}/transcript"),
    ("post", "/v1/audio/transcriptions"),
    ("get", "/admin/plugins"),
    ("put", "/admin/plugins/{name}"),
    ("post", "/admin/providers/{name}/pause"),
    ("post", "/admin/providers/{name}/resume"),
];

#[tokio::test]
async fn the_document_describes_every_route_the_server_serves() {
    let env = serve(&[]).await;
    let response = env.client.get(format!("{}/openapi.json", env.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Scribe");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str())) {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = SURFACE.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected, "the document covers the whole surface, and nothing else");

    // Every documented operation reaches a handler (never the router's
    // "no such route" or "method not allowed" answers).
    for (method, path) in &documented {
        let url = format!("{}{}", env.base, path.replace("{id}", "0000").replace("{name}", "openai-whisper"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = env.client.request(method.clone(), &url).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
        assert!(!body.contains("no such route"), "{method} {path} is documented but not served: {body}");
    }

    // Security: user routes name the user key, admin routes the admin key.
    let security = |method: &str, path: &str| doc["paths"][path][method]["security"][0].as_object().unwrap().keys().next().cloned();
    assert_eq!(security("get", "/v1/jobs/{id}").as_deref(), Some("user_key"));
    assert_eq!(security("put", "/admin/plugins/{name}").as_deref(), Some("admin_key"));
    assert!(doc["components"]["securitySchemes"]["admin_key"]["scheme"] == "bearer");

    // The job schema lists exactly the fields of a real job answer.
    let submitted: Value = env.submit(&env.ann, form(Some(&scribe_tests::wav(1, 200)), &[])).send().await.unwrap().json().await.unwrap();
    let answered: BTreeSet<&str> = submitted.as_object().unwrap().keys().map(String::as_str).collect();
    let schema: BTreeSet<&str> = doc["components"]["schemas"]["JobView"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(schema, answered);
}
