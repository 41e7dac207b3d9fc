//! Transcripts over HTTP: a succeeded job's transcript in each of the five
//! formats, rendered from the one stored transcript (one provider call),
//! and the refusals for a job not done, another user's job, a bad format.

use reqwest::StatusCode;
use scribe_tests::api::{form, serve, serve_dispatching};
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};
use scribe_tests::problem;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_reads_in_every_format_from_one_call() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[]).await;
    let audio = scribe_tests::wav(7, 500);
    let fields = [("response_format", "srt"), ("language", "fr")];
    let job: Value = env.submit(&env.ann, form(Some(&audio), &fields)).send().await.unwrap().json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    env.job_reaching(&id, "succeeded").await;

    let text = transcript_text(&audio);
    let words: Vec<&str> = text.split(' ').collect();
    let (first, second) = words.split_at(words.len() / 2);
    let (first, second) = (first.join(" "), second.join(" "));
    let read = |format: &str| {
        let path = if format.is_empty() { format!("/v1/jobs/{id}/transcript") } else { format!("/v1/jobs/{id}/transcript?format={format}") };
        let env = &env;
        async move {
            let response = env.get(&env.ann, &path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
            (content_type, response.text().await.unwrap())
        }
    };
    let srt = format!("1\n00:00:00,000 --> 00:00:01,000\n{first}\n\n2\n00:00:01,000 --> 00:00:02,000\n{second}\n\n");
    assert_eq!(read("").await, ("text/plain; charset=utf-8".to_string(), srt.clone()), "the job's own format by default");
    assert_eq!(read("srt").await.1, srt);
    let vtt = format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{first}\n\n00:00:01.000 --> 00:00:02.000\n{second}\n\n");
    assert_eq!(read("vtt").await, ("text/vtt; charset=utf-8".to_string(), vtt));
    assert_eq!(read("text").await.1, format!("{text}\n"));
    let (content_type, json) = read("json").await;
    assert_eq!(content_type, "application/json");
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), serde_json::json!({ "text": text }));
    let verbose: Value = serde_json::from_str(&read("verbose_json").await.1).unwrap();
    assert_eq!(verbose["language"], "french");
    assert_eq!(verbose["duration"], 2.0);
    assert_eq!(verbose["text"], text.as_str());
    assert_eq!(verbose["segments"][1]["text"], format!(" {second}"));
    assert_eq!(fake.calls(), 1, "five formats, one provider call");

    problem(env.get(&env.bob, &format!("/v1/jobs/{id}/transcript")).await, StatusCode::NOT_FOUND).await;
    let detail = problem(env.get(&env.ann, &format!("/v1/jobs/{id}/transcript?format=docx")).await, StatusCode::BAD_REQUEST).await;
    assert!(detail.contains("docx") && detail.contains("verbose_json"), "{detail}");
}

#[tokio::test]
async fn a_job_not_yet_done_has_no_transcript() {
    let env = serve(&[]).await;
    let job: Value = env.submit(&env.ann, form(Some(&scribe_tests::wav(1, 100)), &[])).send().await.unwrap().json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let detail = problem(env.get(&env.ann, &format!("/v1/jobs/{id}/transcript")).await, StatusCode::CONFLICT).await;
    assert!(detail.contains("queued"), "{detail}");
    problem(env.get(&env.ann, "/v1/jobs/no-such-job/transcript").await, StatusCode::NOT_FOUND).await;
}
