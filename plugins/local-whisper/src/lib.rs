//! Offline Whisper speech-to-text core for Scribe's local provider.
//!
//! Everything here works on bytes handed in by the caller (no filesystem, no network, no
//! threads of our own), so the same code runs natively and inside a wasm32-wasip2 component:
//!
//! - [`ct2`] reads the CTranslate2 `model.bin` (the only offline weights we have) into f32
//!   candle tensors;
//! - [`wav`] decodes RIFF WAVE and resamples to 16 kHz mono;
//! - [`mel`] computes Whisper's 80-bin log-mel spectrogram;
//! - [`tokens`] turns token ids back into text;
//! - [`model`] is the encoder/decoder network with a KV cache;
//! - [`decode`] is greedy decoding with timestamps and 30 s windowing.
//!
//! [`Whisper`] ties them together:
//!
//! ```no_run
//! # fn main() -> Result<(), local_whisper::Error> {
//! let model = std::fs::read("model.bin").unwrap();
//! let vocab = std::fs::read_to_string("vocabulary.txt").unwrap();
//! let mut w = local_whisper::Whisper::load(&model, &vocab, None)?;
//! drop(model); // the weights were copied (as f32) into the model
//! let t = w.transcribe(&std::fs::read("speech.wav").unwrap(), Some("en"), None)?;
//! println!("{} ({}, {:.1} s)", t.text, t.language, t.duration);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod ct2;
pub mod decode;
pub mod mel;
pub mod matmul;
pub mod model;
pub mod ops;
pub mod tokens;
pub mod wav;

#[cfg(target_arch = "wasm32")]
mod component;

pub use decode::{DecodeOptions, DecodeStats, Segment};


/// Every error the public API can return, one variant per stage so callers can map them to
/// user-facing statuses (bad input vs. bad model vs. deadline).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `model.bin` could not be read.
    #[error("model weights: {0}")]
    Weights(#[from] ct2::Ct2Error),
    /// `vocabulary.txt` could not be used.
    #[error("vocabulary: {0}")]
    Vocabulary(#[from] tokens::TokenError),
    /// `config.json` is not valid JSON or has wrongly typed fields.
    #[error("config.json: {0}")]
    Config(String),
    /// The audio is not a WAV file we can decode.
    #[error(transparent)]
    Audio(#[from] wav::WavError),
    /// The network failed.
    #[error("inference: {0}")]
    Model(#[from] model::ModelError),
    /// Decoding failed or was stopped.
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
}

/// The result of transcribing one file.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Full text (segments joined with spaces).
    pub text: String,
    /// Language code (ISO-639-1; Whisper's own code for `haw` and `yue`).
    pub language: String,
    /// Probability of the detected language; `None` when the caller named the language.
    pub language_probability: Option<f32>,
    /// Duration of the input audio in seconds.
    pub duration: f64,
    /// Timed segments.
    pub segments: Vec<Segment>,
    /// Work counters (windows, decoder steps, fallbacks).
    pub stats: DecodeStats,
}

/// Choices made when loading weights.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Keep the decoder's matrices as f16 (exact for f16 files) and use the f16
    /// matrix-vector kernel per token. `None` = on for wasm32 (where it measured faster and
    /// saves ~100 MB for base), off natively (candle's AVX2 gemm on f32 is faster there).
    pub half_decoder: Option<bool>,
}

/// A loaded model ready to transcribe; construct once and reuse (loading converts ~74 M
/// f16 weights for base and takes a noticeable fraction of a second).
#[derive(Debug)]
pub struct Whisper {
    model: model::WhisperModel,
    vocab: tokens::Vocabulary,
    rules: decode::LogitRules,
    mel: mel::MelFrontend,
    /// Decoding options used by [`Whisper::transcribe`]; the `language` field is
    /// overridden by its argument.
    pub options: DecodeOptions,
}

fn id_list(v: &serde_json::Value, key: &str) -> Result<Option<Vec<u32>>, Error> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().map(|n| n as u32).ok_or_else(|| Error::Config(format!("`{key}` must hold token ids"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(Error::Config(format!("`{key}` must be an array"))),
    }
}

impl Whisper {
    /// Load from the three files of a CTranslate2 Whisper export. `config_json` supplies the
    /// suppress lists (`suppress_ids`, `suppress_ids_begin`); without it Whisper's defaults
    /// are approximated from the vocabulary.
    pub fn load(model_bin: &[u8], vocabulary_txt: &str, config_json: Option<&str>) -> Result<Whisper, Error> {
        Self::load_with(model_bin, vocabulary_txt, config_json, LoadOptions::default())
    }

    /// [`Whisper::load`] with explicit [`LoadOptions`].
    pub fn load_with(model_bin: &[u8], vocabulary_txt: &str, config_json: Option<&str>, options: LoadOptions) -> Result<Whisper, Error> {
        let vocab = tokens::Vocabulary::from_text(vocabulary_txt)?;
        let (suppress, begin) = match config_json {
            Some(text) => {
                let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
                (id_list(&v, "suppress_ids")?, id_list(&v, "suppress_ids_begin")?)
            }
            None => (None, None),
        };
        let half = options.half_decoder.unwrap_or(cfg!(target_arch = "wasm32"));
        let keep_half: &dyn Fn(&str) -> bool = if half { &model::WhisperModel::half_decoder_filter } else { &|_| false };
        let parsed = ct2::Ct2Model::parse_with(model_bin, keep_half)?;
        let model = model::WhisperModel::new(&parsed)?;
        drop(parsed);
        if vocab.len() > model.config.n_vocab || vocab.special.timestamp_begin as usize >= model.config.n_vocab {
            return Err(Error::Config(format!(
                "vocabulary has {} tokens but the model only {}: files from different models?",
                vocab.len(),
                model.config.n_vocab
            )));
        }
        let rules = decode::LogitRules::new(&vocab, suppress, begin);
        let mel = mel::MelFrontend::new(model.config.n_mels);
        Ok(Whisper { model, vocab, rules, mel, options: DecodeOptions::default() })
    }

    /// Model hyper-parameters (derived from the weights).
    pub fn config(&self) -> &ct2::ModelConfig {
        &self.model.config
    }

    /// The network itself, for benchmarks and callers that drive decoding themselves.
    pub fn model(&self) -> &model::WhisperModel {
        &self.model
    }

    /// The vocabulary, e.g. to list supported languages.
    pub fn vocabulary(&self) -> &tokens::Vocabulary {
        &self.vocab
    }

    /// Whether the model can transcribe languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.vocab.special.is_multilingual()
    }

    /// Transcribe a WAV file. `language` is an ISO-639-1 code or `None` to detect it.
    /// `should_stop` is polled before every window and every decoder step; when it returns
    /// true the call ends with [`decode::DecodeError::Stopped`] (use it for deadlines).
    pub fn transcribe(&mut self, wav: &[u8], language: Option<&str>, should_stop: Option<&dyn Fn() -> bool>) -> Result<Transcript, Error> {
        let (samples, duration) = wav::decode_16k_mono(wav)?;
        self.transcribe_pcm(samples, duration, language, should_stop)
    }

    /// Transcribe 16 kHz mono samples in [-1, 1] (for callers that decode audio themselves).
    pub fn transcribe_pcm(
        &mut self,
        mut samples: Vec<f32>,
        duration: f64,
        language: Option<&str>,
        should_stop: Option<&dyn Fn() -> bool>,
    ) -> Result<Transcript, Error> {
        let content_frames = samples.len() / mel::HOP_LENGTH;
        // Whisper appends 30 s of silence so the last window is complete and the log-mel
        // clamp sees the same range as the reference implementation.
        samples.resize(samples.len() + mel::N_SAMPLES, 0.0);
        let mel = self.mel.log_mel(&samples);
        drop(samples);
        let mut opts = self.options.clone();
        opts.language = language.map(|l| l.to_string());
        let mut t = decode::Transcriber::new(&self.model, &self.vocab, &self.rules, &opts, should_stop);
        let d = t.run(&mel, content_frames)?;
        let mut segments = d.segments;
        for s in &mut segments {
            s.end = s.end.min(duration.max(s.start));
        }
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        Ok(Transcript {
            text,
            language: d.language,
            language_probability: d.language_probability,
            duration,
            segments,
            stats: d.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_vocabulary_is_refused() {
        let m = ct2::tests::tiny_model();
        let parsed = ct2::Ct2Model::parse(&m).unwrap();
        assert_eq!(parsed.config.n_mels, 4);
        let err = Whisper::load(&m, &tokens::tests::synthetic_vocab(), None).unwrap_err();
        // The tiny model has 20 tokens, far fewer than the vocabulary: refused clearly.
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn non_wav_is_refused_before_inference() {
        let e = wav::decode_16k_mono(b"OggS....").unwrap_err();
        assert!(Error::from(e).to_string().contains("RIFF WAVE"));
    }
}
