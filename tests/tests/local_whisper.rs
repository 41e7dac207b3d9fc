//! The offline provider end to end: with no provider key, jobs go to
//! `local-whisper`, which transcribes real speech (the espeak-ng clips in
//! `examples/audio/`, against their reference texts) with the base model,
//! gives timed segments for a clip longer than one 30 s window, and refuses
//! a file it cannot decode without taking the host down.
//!
//! The model must be installed (`scribe models fetch base`; tests/run does
//! it): a missing model fails these tests, loudly.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use scribe_tests::api::{form, serve, Env};
use serde_json::Value;

/// The most word errors per reference word the base model may make on the
/// sample clips (the bar).
const MAX_WORD_ERROR_RATE: f64 = 0.10;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/audio")
}

/// A server whose default provider is `local-whisper` (no provider key).
async fn local_server() -> Env {
    let model_dir = scribe_host::config::Config::from_vars(Default::default()).expect("defaults").model_dir;
    let spec = scribe_host::models::spec("base").unwrap();
    assert!(
        scribe_host::models::present(spec, &model_dir),
        "the base model is not installed in {}: run `scribe models fetch base` (tests/run does)",
        model_dir.join(spec.name).display()
    );
    serve(&[("OPENAI_API_KEY", ""), ("SCRIBE_DISPATCH", "true")]).await
}

async fn submit(env: &Env, audio: &[u8], fields: &[(&str, &str)]) -> String {
    let response = env.submit(&env.ann, form(Some(audio), fields)).send().await.unwrap();
    let status = response.status();
    let job: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["provider"], "local-whisper", "the default provider without a key");
    job["id"].as_str().unwrap().to_string()
}

/// Waits for job `id` to end (the model takes seconds per clip); the job.
async fn ended(env: &Env, id: &str) -> Value {
    let read = || async { env.get(&env.ann, &format!("/v1/jobs/{id}")).await.json::<Value>().await.unwrap() };
    scribe_tests::wait_until(&format!("job {id} to end"), Duration::from_secs(600), || async {
        ["succeeded", "failed"].contains(&read().await["status"].as_str().unwrap_or_default())
    })
    .await;
    read().await
}

async fn transcript(env: &Env, id: &str) -> Value {
    env.get(&env.ann, &format!("/v1/jobs/{id}/transcript?format=verbose_json")).await.json().await.unwrap()
}

/// Lower case, no punctuation, numbers as words.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>())
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .flat_map(|w| match w.parse::<u32>() {
            Ok(n) => number_words(n),
            Err(_) => vec![w],
        })
        .collect()
}

/// `n` (< 1000) in words, so "9" and "nine" compare equal.
fn number_words(n: u32) -> Vec<String> {
    const SMALL: [&str; 20] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen",
        "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    ];
    const TENS: [&str; 10] = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    match n {
        0..=19 => vec![SMALL[n as usize].to_string()],
        20..=99 if n % 10 == 0 => vec![TENS[(n / 10) as usize].to_string()],
        20..=99 => vec![TENS[(n / 10) as usize].to_string(), SMALL[(n % 10) as usize].to_string()],
        100..=999 => {
            let mut out = vec![SMALL[(n / 100) as usize].to_string(), "hundred".to_string()];
            if n % 100 != 0 {
                out.extend(number_words(n % 100));
            }
            out
        }
        _ => vec![n.to_string()],
    }
}

/// Word-level edit distance.
fn word_errors(reference: &[String], heard: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, h) in heard.iter().enumerate() {
            let substitute = previous[j] + usize::from(r != h);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[heard.len()]
}

#[test]
fn word_error_rate_normalises_case_punctuation_and_numbers() {
    assert_eq!(words("Call me at 9 o'clock, please!"), words("call me at nine o'clock please"));
    assert_eq!(words("42"), ["forty", "two"]);
    let reference = words("the quick brown fox");
    assert_eq!(word_errors(&reference, &words("the quick round fox")), 1);
    assert_eq!(word_errors(&reference, &words("quick brown fox jumps")), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_clips_are_transcribed_within_the_word_error_bar() {
    let env = local_server().await;
    let mut jobs = Vec::new();
    for name in ["service", "weather", "library", "meeting"] {
        let audio = std::fs::read(samples().join(format!("{name}.wav"))).unwrap();
        let reference = std::fs::read_to_string(samples().join(format!("{name}.reference.txt"))).unwrap();
        jobs.push((name, submit(&env, &audio, &[]).await, reference));
    }
    let (mut errors, mut total) = (0, 0);
    for (name, id, reference) in &jobs {
        let job = ended(&env, id).await;
        assert_eq!(job["status"], "succeeded", "{name}: {job}");
        let heard = transcript(&env, id).await;
        let (reference, got) = (words(reference), words(heard["text"].as_str().unwrap()));
        let clip_errors = word_errors(&reference, &got);
        eprintln!("{name}: {clip_errors} errors in {} words: {:?}", reference.len(), heard["text"]);
        assert_eq!(heard["language"], "english", "{name}: the language is detected (verbose_json names it, as OpenAI does)");
        errors += clip_errors;
        total += reference.len();
    }
    // Loaded once per instance, kept warm between jobs, never more than the bound (the cores).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let warm = env.server.plugins.get("local-whisper").unwrap().warm_idle();
    assert!((1..=cores).contains(&warm), "{warm} idle instances kept (bound {cores})");
    let rate = errors as f64 / total as f64;
    eprintln!("word error rate over the sample clips: {:.1} % ({errors} / {total})", rate * 100.0);
    assert!(rate <= MAX_WORD_ERROR_RATE, "word error rate {:.1} % is over {:.0} %", rate * 100.0, MAX_WORD_ERROR_RATE * 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_clip_gets_increasing_segments_that_cover_it_and_bad_audio_fails_cleanly() {
    let env = local_server().await;
    // RIFF/WAVE magic (so the host takes it as WAV) with no fmt or data chunk.
    let mut broken = b"RIFF\x24\x10\x00\x00WAVEjunk".to_vec();
    broken.extend(std::iter::repeat_n(0x5a, 4096));
    let bad = submit(&env, &broken, &[]).await;
    let job = ended(&env, &bad).await;
    assert_eq!((job["status"].as_str(), job["attempts"].as_u64()), (Some("failed"), Some(1)), "not retried: {job}");
    assert_eq!(job["error"]["kind"], "invalid_input", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("WAV"), "says what is accepted: {job}");

    let audio = std::fs::read(samples().join("meeting.wav")).unwrap();
    let seconds = (audio.len() - 44) as f64 / (22_050.0 * 2.0);
    assert!(seconds > 45.0, "the clip spans more than one 30 s window: {seconds} s");
    let id = submit(&env, &audio, &[("language", "en"), ("response_format", "srt")]).await;
    assert_eq!(ended(&env, &id).await["status"], "succeeded", "the host stayed up after the bad file");
    let heard = transcript(&env, &id).await;
    let segments = heard["segments"].as_array().unwrap();
    assert!(segments.len() >= 4, "{heard}");
    let mut previous_end = 0.0;
    for segment in segments {
        let (start, end) = (segment["start"].as_f64().unwrap(), segment["end"].as_f64().unwrap());
        assert!(start >= previous_end - 0.01 && end > start, "segments move forward: {segment} after {previous_end}");
        previous_end = end;
    }
    let first_start = segments[0]["start"].as_f64().unwrap();
    assert!(first_start < 2.0, "the first segment starts near the beginning: {first_start}");
    assert!(previous_end > seconds - 4.0 && previous_end <= seconds + 0.5, "the last ends near the end ({previous_end} of {seconds} s)");
    assert!(heard["text"].as_str().unwrap().to_lowercase().contains("website"), "{heard}");
    let srt = env.get(&env.ann, &format!("/v1/jobs/{id}/transcript")).await.text().await.unwrap();
    assert!(srt.starts_with("1\n00:00:0"), "srt from the segments: {srt}");
}

#[tokio::test]
async fn a_missing_model_is_refused_at_submit_with_the_command_to_run() {
    let empty = tempfile::tempdir().unwrap();
    let env = serve(&[("OPENAI_API_KEY", ""), ("SCRIBE_MODEL_DIR", empty.path().to_str().unwrap())]).await;
    let response = env.submit(&env.ann, form(Some(&scribe_tests::wav(5, 400)), &[])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("run `scribe models fetch base`"), "{problem}");
    let response = env.submit(&env.ann, form(Some(&scribe_tests::wav(5, 400)), &[("model", "tiny.en")])).send().await.unwrap();
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("scribe models fetch tiny.en"), "{problem}");
}
