//! The component glue: the `provider` world's bindings and the exported
//! `transcriber`. It reads the model the host granted (a read-only
//! directory at `/ro`, one folder per model: `scribe models fetch`), keeps
//! it loaded for the life of the instance, and maps the core's errors onto
//! the provider errors the host and the retry policy act on.

guest_http::provider_bindings!();

use std::cell::RefCell;

use exports::scribe::plugin::transcriber::{Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript};
use guest_http::{Failure, Heard, HeardSegment};
use scribe::plugin::host::{self, LogLevel};

use crate::{Error, Whisper};

/// Where the host mounts the model directory it granted.
const MODEL_ROOT: &str = "/ro";
/// The model used when neither the job nor the settings name one.
const DEFAULT_MODEL: &str = "base";
/// The largest audio one call takes (WAV: about 13 minutes at 16 kHz mono).
const MAX_AUDIO_BYTES: u64 = 25 * 1024 * 1024;
/// Stop decoding this long before the deadline, so the answer gets out.
const DEADLINE_MARGIN_MS: u64 = 500;


thread_local! {
    /// The loaded model and its name. An instance the host keeps warm
    /// answers its next call without loading again; a fresh one loads.
    static LOADED: RefCell<Option<(String, Whisper)>> = const { RefCell::new(None) };
}

/// The plugin, exported through the `transcriber` interface.
struct LocalWhisper;

impl Guest for LocalWhisper {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "local-whisper".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            accepted_formats: vec!["wav".into()],
            max_audio_bytes: MAX_AUDIO_BYTES,
            in_process: true,
        }
    }

    fn transcribe(request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        transcribe(request).map(Transcript::from).map_err(ProviderError::from)
    }
}

fn transcribe(request: TranscribeRequest) -> Result<Heard, Failure> {
    if request.audio_format != "wav" {
        return Err(Failure::InvalidInput(format!(
            "local-whisper reads WAV audio only (PCM or float, any sample rate, mono or stereo), not {}",
            request.audio_format
        )));
    }
    let setting = host::config_get("model").map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
    let model = request.model.clone().or(setting).unwrap_or_else(|| DEFAULT_MODEL.to_string());
    if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_') || model.starts_with('.') {
        return Err(Failure::InvalidInput(format!("model {model:?} is not a model name (e.g. base, tiny.en)")));
    }
    let stop_at = host::now().saturating_add(request.deadline_ms.saturating_sub(DEADLINE_MARGIN_MS));
    let should_stop = move || host::now() >= stop_at;
    LOADED.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|(name, _)| *name != model) {
            *slot = None; // free the old weights before loading others
            *slot = Some((model.clone(), load(&model)?));
        }
        let (_, whisper) = slot.as_mut().expect("loaded above");
        let language = request.language.as_deref().map(str::trim).filter(|l| !l.is_empty());
        let started = host::now();
        let transcript = whisper.transcribe(&request.audio, language, Some(&should_stop)).map_err(failure)?;
        log_work(&transcript, host::now().saturating_sub(started));
        Ok(Heard {
            text: transcript.text,
            language: Some(transcript.language),
            duration: Some(transcript.duration),
            segments: transcript.segments.into_iter().map(|s| HeardSegment { start: s.start, end: s.end, text: s.text }).collect(),
        })
    })
}

/// Where a call's time went, in the host's log: the figures an operator
/// sizes the concurrency cap and deadline with.
fn log_work(t: &crate::Transcript, elapsed_ms: u64) {
    let s = &t.stats;
    host::log(
        LogLevel::Info,
        &format!(
            "transcribed {:.1} s of audio in {elapsed_ms} ms (real-time factor {:.2}): encoder {} ms over {} window(s), decoder {} ms over {} step(s), {} fallback(s)",
            t.duration,
            elapsed_ms as f64 / 1e3 / t.duration.max(1e-3),
            s.encoder_time.as_millis(),
            s.windows,
            s.decoder_time.as_millis(),
            s.decoder_steps,
            s.fallbacks
        ),
    );
}

/// Reads model `name` from the granted directory.
fn load(name: &str) -> Result<Whisper, Failure> {
    let dir = format!("{MODEL_ROOT}/{name}");
    let missing = |file: &str, e: std::io::Error| {
        Failure::Fatal(format!("model {name} is not installed ({dir}/{file}: {e}): run `scribe models fetch {name}` on the host"))
    };
    let started = host::now();
    let weights = std::fs::read(format!("{dir}/model.bin")).map_err(|e| missing("model.bin", e))?;
    let vocabulary = std::fs::read_to_string(format!("{dir}/vocabulary.txt")).map_err(|e| missing("vocabulary.txt", e))?;
    let config = std::fs::read_to_string(format!("{dir}/config.json")).ok();
    // Full 30 s windows, as Whisper was trained: encoding only the speech
    // plus 2 s (`trim_padding`) halved the time of short clips but garbled
    // some of the sample clips (a word error rate several times higher).
    let whisper = Whisper::load(&weights, &vocabulary, config.as_deref()).map_err(|e| Failure::Fatal(format!("model {name}: {e}")))?;
    host::log(LogLevel::Info, &format!("loaded model {name} in {} ms", host::now().saturating_sub(started)));
    Ok(whisper)
}

/// The core's errors as provider errors: bad audio is the job's fault; a
/// deadline stop would recur on a retry, like a broken model.
fn failure(error: Error) -> Failure {
    match error {
        Error::Audio(e) => Failure::InvalidInput(e.to_string()),
        Error::Decode(crate::decode::DecodeError::Stopped) => Failure::Fatal(
            "the audio takes longer to transcribe than this provider's deadline: raise [plugins.local-whisper] deadline_ms".into(),
        ),
        other => Failure::Fatal(other.to_string()),
    }
}

export!(LocalWhisper);
