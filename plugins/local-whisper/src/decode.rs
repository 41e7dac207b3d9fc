//! Greedy decoding with timestamps and Whisper's long-form (30 s window) loop.
//!
//! This mirrors `whisper.transcribe` / `whisper.decoding` closely enough that results are
//! comparable with the reference implementation:
//! - language detection from the first window when no language is given;
//! - prompt `<|startofprev|> previous tokens <|sot|><|lang|><|transcribe|>` (timestamps on);
//! - logit rules: suppress blank at the start, suppress the configured tokens and every
//!   non-timestamp special token, and the timestamp rules (pairs, monotonic, the first
//!   token is a timestamp no later than 1 s, timestamps win when their total probability
//!   beats any single text token);
//! - windows advance to the last complete timestamp pair (or the window end);
//! - no-speech skipping and temperature fallback when a window repeats itself or its
//!   average log-probability is too low. Whisper's gzip compression-ratio test is replaced by
//!   a direct repetition detector (no zlib needed), which also cuts the loop short.

use crate::mel::{LogMel, N_FRAMES};
use crate::model::{argmax, log_softmax, DecoderState, ModelError, WhisperModel};
use crate::tokens::{SpecialTokens, Vocabulary};

/// Errors raised while decoding.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The network failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The requested language has no token in this vocabulary.
    #[error("unknown language `{0}` (use an ISO-639-1 code such as `en`, `de`, `fr`)")]
    UnknownLanguage(String),
    /// An English-only model was asked for another language.
    #[error("this model is English-only; language `{0}` cannot be transcribed")]
    EnglishOnly(String),
    /// The caller's stop callback asked us to stop (deadline or cancellation).
    #[error("transcription stopped by the caller (deadline reached or cancelled)")]
    Stopped,
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Tunable decoding parameters; `Default` gives Whisper's defaults.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Language code (`en`, `de`, ...); `None` detects it from the first window.
    pub language: Option<String>,
    /// Translate to English instead of transcribing.
    pub translate: bool,
    /// Maximum sampled tokens per window (Whisper: `n_text_ctx / 2` = 224).
    pub max_tokens_per_window: usize,
    /// Use the self-attention KV cache (disable only to measure its effect).
    pub kv_cache: bool,
    /// Prompt each window with the previous windows' tokens, as Whisper does by default.
    pub condition_on_previous_text: bool,
    /// Temperatures tried in order; the first is normally 0 (greedy).
    pub temperatures: Vec<f32>,
    /// Fall back to the next temperature when the average log-probability is below this.
    pub logprob_threshold: Option<f32>,
    /// Skip a window as silence when the no-speech probability is above this (and the
    /// average log-probability is below `logprob_threshold`).
    pub no_speech_threshold: Option<f32>,
    /// Latest allowed first timestamp of a window, in seconds.
    pub max_initial_timestamp: f32,
    /// Detect and cut repetition loops (see `repetition_cut`).
    pub repetition_guard: bool,
    /// Encode only the real frames of a partial (last or only) window plus this many frames
    /// of padding, instead of the full 30 s. `None` (the default) encodes 30 s exactly like
    /// Whisper. The encoder's cost is fixed per window, so for short clips this is the
    /// largest speed lever (whisper.cpp's `audio_ctx`), at some risk to accuracy because the
    /// model was trained on full windows.
    pub trim_padding: Option<usize>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            language: None,
            translate: false,
            max_tokens_per_window: 224,
            kv_cache: true,
            condition_on_previous_text: true,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            max_initial_timestamp: 1.0,
            repetition_guard: true,
            trim_padding: None,
        }
    }
}

/// One transcribed segment with absolute times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start time.
    pub start: f64,
    /// End time.
    pub end: f64,
    /// Text, trimmed.
    pub text: String,
    /// Text and timestamp token ids of the segment (for callers that want word-level work).
    pub tokens: Vec<u32>,
    /// Average log-probability of the window the segment came from.
    pub avg_logprob: f32,
    /// Probability that the window holds no speech.
    pub no_speech_prob: f32,
    /// Temperature that produced the window.
    pub temperature: f32,
}

/// Counters describing how much work a transcription took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodeStats {
    /// 30 s windows run through the encoder.
    pub windows: usize,
    /// Decoder steps (tokens sampled, over all attempts).
    pub decoder_steps: usize,
    /// Windows decoded again at a higher temperature.
    pub fallbacks: usize,
    /// Windows skipped as silence.
    pub skipped_silent: usize,
    /// Windows in which a repetition loop was cut.
    pub repetitions_cut: usize,
    /// Time spent in the encoder (all windows).
    pub encoder_time: std::time::Duration,
    /// Time spent decoding (cross-attention set-up, language detection, every decoder step).
    pub decoder_time: std::time::Duration,
}

/// Result of the long-form loop (the crate root wraps it into `Transcript`).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Segments in time order.
    pub segments: Vec<Segment>,
    /// Language code used (ISO-639-1 where Whisper's code differs: `jv`); `en` when no
    /// window was decoded (empty audio) and none was given.
    pub language: String,
    /// Probability of the detected language (`None` when it was given).
    pub language_probability: Option<f32>,
    /// Work counters.
    pub stats: DecodeStats,
}

/// Token sets the logit rules need; built once per model.
#[derive(Debug, Clone)]
pub struct LogitRules {
    /// Special token ids.
    pub special: SpecialTokens,
    /// Always suppressed (config `suppress_ids` plus every non-timestamp special but eot).
    pub suppress: Vec<u32>,
    /// Suppressed at the first sampled position (config `suppress_ids_begin`: blank and eot).
    pub suppress_begin: Vec<u32>,
    /// Number of ids that exist in the vocabulary (logits beyond are ignored).
    pub vocab_len: usize,
}

impl LogitRules {
    /// Build the rules from the vocabulary and optional `config.json` suppress lists.
    /// Without them, Whisper's defaults are approximated from the vocabulary itself.
    pub fn new(vocab: &Vocabulary, suppress_ids: Option<Vec<u32>>, suppress_begin: Option<Vec<u32>>) -> Self {
        let s = vocab.special.clone();
        let mut suppress = suppress_ids.unwrap_or_else(|| default_non_speech(vocab));
        // Every special token between sot and the timestamps (languages, task tokens,
        // no-speech, ...) must never be sampled in a transcript; eot stays allowed.
        suppress.extend(s.sot..s.timestamp_begin);
        suppress.retain(|&t| t != s.eot);
        suppress.sort_unstable();
        suppress.dedup();
        let suppress_begin = suppress_begin.unwrap_or_else(|| {
            let blank = (0..vocab.len() as u32).find(|&i| vocab.token(i) == Some("Ġ"));
            blank.into_iter().chain([s.eot]).collect()
        });
        LogitRules { special: s, suppress, suppress_begin, vocab_len: vocab.len() }
    }

    /// Apply the suppression and timestamp rules to raw `logits` given the tokens sampled so
    /// far in this window (`sampled`, prompt excluded). `max_initial` is the index of the
    /// latest allowed first timestamp (50 for 1.0 s).
    pub fn apply(&self, logits: &mut [f32], sampled: &[u32], max_initial: Option<u32>) {
        let s = &self.special;
        let ninf = f32::NEG_INFINITY;
        let n = logits.len();
        for l in logits.iter_mut().skip(self.vocab_len) {
            *l = ninf;
        }
        if sampled.is_empty() {
            for &t in &self.suppress_begin {
                if (t as usize) < n {
                    logits[t as usize] = ninf;
                }
            }
        }
        for &t in &self.suppress {
            if (t as usize) < n {
                logits[t as usize] = ninf;
            }
        }
        let tb = s.timestamp_begin as usize;
        let eot = s.eot as usize;
        logits[s.no_timestamps as usize] = ninf;
        let last_ts = sampled.last().is_some_and(|&t| s.is_timestamp(t));
        let penult_ts = sampled.len() < 2 || s.is_timestamp(sampled[sampled.len() - 2]);
        if last_ts {
            if penult_ts {
                // A closed pair (or a lone opening one): text must follow.
                logits[tb..].iter_mut().for_each(|l| *l = ninf);
            } else {
                // Text then a timestamp: the next one must be a timestamp (or eot).
                logits[..eot].iter_mut().for_each(|l| *l = ninf);
            }
        }
        if let Some(&last) = sampled.iter().rev().find(|&&t| s.is_timestamp(t)) {
            // Timestamps never decrease, and a segment has non-zero length.
            let upto = if last_ts && !penult_ts { last } else { last + 1 } as usize;
            logits[tb..upto.min(n)].iter_mut().for_each(|l| *l = ninf);
        }
        if sampled.is_empty() {
            // A window starts with a timestamp, no later than `max_initial`.
            logits[..tb].iter_mut().for_each(|l| *l = ninf);
            if let Some(mi) = max_initial {
                let last_allowed = tb + mi as usize;
                logits[(last_allowed + 1).min(n)..].iter_mut().for_each(|l| *l = ninf);
            }
        }
        // If the timestamps together are likelier than any single text token, force one.
        let lp = log_softmax(logits);
        let ts_lse = {
            let m = lp[tb..].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                m
            } else {
                m + (lp[tb..].iter().map(|&x| ((x - m) as f64).exp()).sum::<f64>()).ln() as f32
            }
        };
        let max_text = lp[..tb].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if ts_lse > max_text {
            logits[..tb].iter_mut().for_each(|l| *l = ninf);
        }
    }
}

/// Whisper's non-speech symbol list, found by exact single-token lookup (we have no BPE
/// encoder); only used when no `config.json` provides `suppress_ids`.
fn default_non_speech(vocab: &Vocabulary) -> Vec<u32> {
    let symbols: Vec<String> = "\" # ( ) * + / : ; < = > @ [ \\ ] ^ _ ` { | } ~ 「 」 『 』 << >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪ ♩ ♪ ♫ ♬ ♭ ♮ ♯"
        .split(' ')
        .flat_map(|s| [s.to_string(), format!(" {s}")])
        .chain([" -".to_string(), " '".to_string()])
        .collect();
    (0..vocab.special.eot).filter(|&i| symbols.contains(&vocab.decode(&[i]))).collect()
}

/// If the text tokens of `tokens` end in a loop (the same n-gram of 1..=32 tokens repeated
/// at least 3 times and covering at least 24 tokens), return the index at which to cut so
/// that one copy remains. Timestamps are ignored when comparing, because hallucination
/// loops usually repeat the same text with advancing timestamps.
pub fn repetition_cut(tokens: &[u32], timestamp_begin: u32) -> Option<usize> {
    let text: Vec<(usize, u32)> = tokens.iter().cloned().enumerate().filter(|&(_, t)| t < timestamp_begin).collect();
    let n = text.len();
    for p in 1..=32.min(n / 3) {
        let mut r = 1;
        while (r + 1) * p <= n && (0..p).all(|k| text[n - 1 - k].1 == text[n - 1 - k - r * p].1) {
            r += 1;
        }
        if r >= 3 && r * p >= 24 {
            return Some(text[n - (r - 1) * p].0);
        }
    }
    None
}

/// Output of decoding one window at one temperature.
#[derive(Debug, Clone)]
struct WindowResult {
    tokens: Vec<u32>,
    avg_logprob: f32,
    no_speech_prob: f32,
    temperature: f32,
    repetitive: bool,
}

/// Small deterministic generator for temperature sampling (no `rand` dependency needed).
struct XorShift(u64);

impl XorShift {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Stateful long-form decoder borrowing the model and the rules.
pub struct Transcriber<'a> {
    /// The network.
    pub model: &'a WhisperModel,
    /// The vocabulary (for segment text).
    pub vocab: &'a Vocabulary,
    /// Logit rules.
    pub rules: &'a LogitRules,
    /// Options.
    pub opts: &'a DecodeOptions,
    /// Returns true when the caller wants us to stop (checked every decoder step).
    pub should_stop: Option<&'a dyn Fn() -> bool>,
    stats: DecodeStats,
}

impl<'a> Transcriber<'a> {
    /// Bundle what the loop needs.
    pub fn new(
        model: &'a WhisperModel,
        vocab: &'a Vocabulary,
        rules: &'a LogitRules,
        opts: &'a DecodeOptions,
        should_stop: Option<&'a dyn Fn() -> bool>,
    ) -> Self {
        Transcriber { model, vocab, rules, opts, should_stop, stats: DecodeStats::default() }
    }

    fn check_stop(&self) -> Result<()> {
        match self.should_stop {
            Some(f) if f() => Err(DecodeError::Stopped),
            _ => Ok(()),
        }
    }

    /// Probabilities over language tokens after `<|sot|>`: returns (token, probability) of
    /// the most likely language.
    pub fn detect_language(&mut self, st: &mut DecoderState) -> Result<(u32, f32)> {
        let s = &self.rules.special;
        st.reset();
        let h = self.model.decoder.forward(&[s.sot], st)?;
        let logits = self.model.decoder.logits(&h.get(0).map_err(ModelError::from)?)?;
        let langs: Vec<u32> = s.languages.iter().map(|(id, _)| *id).collect();
        let sub: Vec<f32> = langs.iter().map(|&id| logits[id as usize]).collect();
        let lp = log_softmax(&sub);
        let best = argmax(&lp);
        Ok((langs[best], lp[best].exp()))
    }

    fn decode_window(&mut self, st: &mut DecoderState, prompt: &[u32], sot_index: usize, temperature: f32, seed: u64) -> Result<WindowResult> {
        let dec = &self.model.decoder;
        let s = &self.rules.special;
        let max_initial = (self.opts.max_initial_timestamp / crate::tokens::TIME_PRECISION).round() as u32;
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        st.reset();
        let h = dec.forward(prompt, st)?;
        let n = prompt.len();
        let row = |i: usize| h.get(i).map_err(ModelError::from);
        let sot_logits = dec.logits(&row(sot_index)?)?;
        let no_speech_prob = match s.no_speech {
            Some(ns) => log_softmax(&sot_logits)[ns as usize].exp(),
            None => 0.0,
        };
        let mut logits = if sot_index == n - 1 { sot_logits } else { dec.logits(&row(n - 1)?)? };
        let mut sampled: Vec<u32> = Vec::new();
        let mut sum_lp = 0f64;
        let mut repetitive = false;
        loop {
            self.check_stop()?;
            self.rules.apply(&mut logits, &sampled, Some(max_initial));
            let lp = log_softmax(&logits);
            let next = if temperature > 0.0 {
                let probs: Vec<f32> = lp.iter().map(|&l| (l / temperature).exp()).collect();
                let total: f32 = probs.iter().sum();
                let mut u = rng.next_f32() * total;
                let mut pick = argmax(&lp);
                for (i, p) in probs.iter().enumerate() {
                    if *p > 0.0 {
                        if u < *p {
                            pick = i;
                            break;
                        }
                        u -= p;
                    }
                }
                pick as u32
            } else {
                argmax(&lp) as u32
            };
            sum_lp += lp[next as usize] as f64;
            self.stats.decoder_steps += 1;
            if next == s.eot {
                break;
            }
            sampled.push(next);
            if self.opts.repetition_guard {
                if let Some(cut) = repetition_cut(&sampled, s.timestamp_begin) {
                    sampled.truncate(cut);
                    repetitive = true;
                    break;
                }
            }
            if sampled.len() >= self.opts.max_tokens_per_window || n + sampled.len() >= dec.n_ctx() {
                break;
            }
            let h = if self.opts.kv_cache {
                dec.forward(&[next], st)?
            } else {
                // Reference behaviour without a self-attention cache: re-run the whole prefix.
                st.reset();
                let all: Vec<u32> = prompt.iter().chain(&sampled).cloned().collect();
                let h = dec.forward(&all, st)?;
                h.narrow(0, all.len() - 1, 1).map_err(ModelError::from)?
            };
            logits = dec.logits(&h.get(0).map_err(ModelError::from)?)?;
        }
        let avg_logprob = (sum_lp / (sampled.len() + 1) as f64) as f32;
        Ok(WindowResult { tokens: sampled, avg_logprob, no_speech_prob, temperature, repetitive })
    }

    fn decode_with_fallback(&mut self, st: &mut DecoderState, prompt: &[u32], sot_index: usize, seed: u64) -> Result<WindowResult> {
        let mut best: Option<WindowResult> = None;
        let temps = if self.opts.temperatures.is_empty() { vec![0.0] } else { self.opts.temperatures.clone() };
        for (i, &t) in temps.iter().enumerate() {
            if i > 0 {
                self.stats.fallbacks += 1;
            }
            let r = self.decode_window(st, prompt, sot_index, t, seed + i as u64)?;
            if r.repetitive {
                self.stats.repetitions_cut += 1;
            }
            let low_lp = self.opts.logprob_threshold.is_some_and(|th| r.avg_logprob < th);
            let silent = self.opts.no_speech_threshold.is_some_and(|th| r.no_speech_prob > th);
            let needs_fallback = (r.repetitive || low_lp) && !silent;
            if !needs_fallback {
                return Ok(r);
            }
            if best.as_ref().is_none_or(|b| r.avg_logprob > b.avg_logprob) {
                best = Some(r);
            }
        }
        Ok(best.expect("at least one temperature"))
    }

    /// Transcribe a full log-mel spectrogram (`content_frames` real frames followed by at
    /// least 30 s of padding frames, as produced from padded audio).
    pub fn run(&mut self, mel: &LogMel, content_frames: usize) -> Result<Decoded> {
        let s = self.rules.special.clone();
        let multilingual = s.is_multilingual();
        let model = self.model;
        let n_mels = mel.n_mels;
        let input_stride = N_FRAMES / model.config.n_audio_ctx.max(1); // mel frames per audio position (2)
        let frame_secs = crate::mel::HOP_LENGTH as f64 / crate::mel::SAMPLE_RATE as f64;
        let mut language: Option<(u32, Option<f32>)> = None;
        if let Some(code) = &self.opts.language {
            if multilingual {
                let id = s.language_token(code).ok_or_else(|| DecodeError::UnknownLanguage(code.clone()))?;
                language = Some((id, None));
            } else if !code.eq_ignore_ascii_case("en") {
                return Err(DecodeError::EnglishOnly(code.clone()));
            }
        }
        let mut segments: Vec<Segment> = Vec::new();
        let mut all_tokens: Vec<u32> = Vec::new();
        let mut prompt_reset_since = 0;
        let mut seek = 0usize;
        while seek < content_frames {
            self.check_stop()?;
            let segment_size = N_FRAMES.min(content_frames - seek);
            let time_offset = seek as f64 * frame_secs;
            let mut window = mel.window(seek, segment_size);
            if let Some(pad) = self.opts.trim_padding {
                // Whole audio positions only (2 frames each), never more than the full window.
                let frames = ((segment_size + pad).div_ceil(input_stride) * input_stride).min(N_FRAMES);
                if frames < N_FRAMES {
                    window = (0..n_mels).flat_map(|m| window[m * N_FRAMES..m * N_FRAMES + frames].to_vec()).collect();
                }
            }
            let encoding = std::time::Instant::now();
            let audio = model.encoder.forward(&window, n_mels)?;
            self.stats.encoder_time += encoding.elapsed();
            self.stats.windows += 1;
            let decoding = std::time::Instant::now();
            let mut st = model.decoder.start(&audio)?;
            if multilingual && language.is_none() {
                let (id, p) = self.detect_language(&mut st)?;
                language = Some((id, Some(p)));
            }
            // Prompt: previous tokens (at most n_ctx/2 - 1), then the start-of-transcript sequence.
            let mut prompt = Vec::new();
            if self.opts.condition_on_previous_text {
                if let Some(prev) = s.sot_prev {
                    let hist = &all_tokens[prompt_reset_since..];
                    if !hist.is_empty() {
                        let keep = (model.decoder.n_ctx() / 2).saturating_sub(1);
                        prompt.push(prev);
                        prompt.extend_from_slice(&hist[hist.len().saturating_sub(keep)..]);
                    }
                }
            }
            let sot_index = prompt.len();
            prompt.push(s.sot);
            if multilingual {
                prompt.push(language.expect("set above").0);
                prompt.push(if self.opts.translate { s.translate } else { s.transcribe });
            }
            let r = self.decode_with_fallback(&mut st, &prompt, sot_index, seek as u64)?;
            self.stats.decoder_time += decoding.elapsed();
            if let Some(th) = self.opts.no_speech_threshold {
                let lp_ok = self.opts.logprob_threshold.is_some_and(|lt| r.avg_logprob > lt);
                if r.no_speech_prob > th && !lp_ok {
                    self.stats.skipped_silent += 1;
                    seek += segment_size;
                    continue;
                }
            }
            let (found, advance) = split_segments(&r.tokens, &s, segment_size, input_stride);
            for (a, b, toks) in found {
                let text = self.vocab.decode(&toks).trim().to_string();
                let start = time_offset + a as f64;
                let end = time_offset + b as f64;
                if text.is_empty() || end <= start {
                    continue;
                }
                segments.push(Segment {
                    start,
                    end,
                    text,
                    tokens: toks,
                    avg_logprob: r.avg_logprob,
                    no_speech_prob: r.no_speech_prob,
                    temperature: r.temperature,
                });
            }
            all_tokens.extend_from_slice(&r.tokens);
            if !self.opts.condition_on_previous_text || r.temperature > 0.5 {
                prompt_reset_since = all_tokens.len();
            }
            seek += advance.max(1);
        }
        let (lang_id, lang_p) = match language {
            Some((id, p)) => (Some(id), p),
            None => (None, None),
        };
        let code = lang_id.and_then(|id| s.language_code(id)).unwrap_or("en").to_string();
        Ok(Decoded { segments, language: code, language_probability: lang_p, stats: self.stats.clone() })
    }
}

/// Split one window's sampled tokens into `(start s, end s, tokens)` segments relative to
/// the window, and return how many mel frames to advance: to the last complete timestamp
/// pair, or the whole window when the window ends with a single timestamp or has no pairs.
pub fn split_segments(tokens: &[u32], s: &SpecialTokens, segment_size: usize, input_stride: usize) -> (Vec<(f32, f32, Vec<u32>)>, usize) {
    let is_ts: Vec<bool> = tokens.iter().map(|&t| s.is_timestamp(t)).collect();
    let n = tokens.len();
    let single_ending = n >= 2 && !is_ts[n - 2] && is_ts[n - 1];
    let consecutive: Vec<usize> = (1..n).filter(|&i| is_ts[i - 1] && is_ts[i]).collect();
    let mut out = Vec::new();
    let segment_secs = segment_size as f32 * crate::mel::HOP_LENGTH as f32 / crate::mel::SAMPLE_RATE as f32;
    if !consecutive.is_empty() {
        let mut slices = consecutive.clone();
        if single_ending {
            slices.push(n);
        }
        let mut last = 0;
        for &cur in &slices {
            let sl = &tokens[last..cur];
            if sl.len() >= 2 && s.is_timestamp(sl[0]) && s.is_timestamp(sl[sl.len() - 1]) {
                out.push((s.timestamp_seconds(sl[0]), s.timestamp_seconds(sl[sl.len() - 1]), sl.to_vec()));
            }
            last = cur;
        }
        let advance = if single_ending {
            segment_size
        } else {
            let pos = (tokens[last - 1] - s.timestamp_begin) as usize;
            pos * input_stride
        };
        (out, advance.min(segment_size))
    } else {
        let mut dur = segment_secs;
        if let Some(&t) = tokens.iter().rev().find(|&&t| s.is_timestamp(t)) {
            if t != s.timestamp_begin {
                dur = s.timestamp_seconds(t);
            }
        }
        let start = tokens.first().filter(|&&t| s.is_timestamp(t)).map(|&t| s.timestamp_seconds(t)).unwrap_or(0.0);
        if !tokens.is_empty() {
            out.push((start.min(dur), dur, tokens.to_vec()));
        }
        (out, segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tests::synthetic_vocab;

    fn setup() -> (Vocabulary, LogitRules) {
        let v = Vocabulary::from_text(&synthetic_vocab()).unwrap();
        let r = LogitRules::new(&v, Some(vec![1, 2]), Some(vec![220, v.special.eot]));
        (v, r)
    }

    fn flat(r: &LogitRules) -> Vec<f32> {
        vec![0.0; r.vocab_len]
    }

    #[test]
    fn first_token_is_an_early_timestamp() {
        let (_, r) = setup();
        let tb = r.special.timestamp_begin as usize;
        let mut l = flat(&r);
        l[2425] = 10.0; // a text token that would win without the rules
        r.apply(&mut l, &[], Some(50));
        assert_eq!(argmax(&l), tb); // all allowed timestamps tie; the first wins
        assert!(l[..tb].iter().all(|x| *x == f32::NEG_INFINITY));
        assert!(l[tb + 50].is_finite() && l[tb + 51] == f32::NEG_INFINITY);
    }

    #[test]
    fn timestamps_come_in_pairs_and_increase() {
        let (_, r) = setup();
        let tb = r.special.timestamp_begin;
        // After an opening timestamp, text must follow.
        let mut l = flat(&r);
        r.apply(&mut l, &[tb + 5], Some(50));
        assert!(l[tb as usize..].iter().all(|x| *x == f32::NEG_INFINITY));
        assert!(l[2425].is_finite());
        // After text following a timestamp, timestamps must be > the opening one.
        let mut l = flat(&r);
        l[(tb + 3) as usize] = 50.0;
        r.apply(&mut l, &[tb + 5, 2425], Some(50));
        assert_eq!(l[(tb + 3) as usize], f32::NEG_INFINITY);
        assert_eq!(l[(tb + 5) as usize], f32::NEG_INFINITY);
        assert!(l[(tb + 6) as usize].is_finite());
        // After "ts text ts" the next must be a timestamp (the same value allowed) or eot.
        let mut l = flat(&r);
        l[r.special.eot as usize] = 30.0; // so the timestamp-mass rule does not hide eot
        r.apply(&mut l, &[tb + 5, 2425, tb + 9], Some(50));
        assert!(l[..r.special.eot as usize].iter().all(|x| *x == f32::NEG_INFINITY));
        assert!(l[r.special.eot as usize].is_finite());
        assert!(l[(tb + 9) as usize].is_finite() && l[(tb + 8) as usize] == f32::NEG_INFINITY);
        // After a closed pair "ts ts", text follows again.
        let mut l = flat(&r);
        r.apply(&mut l, &[tb + 5, 2425, tb + 9, tb + 9], Some(50));
        assert!(l[tb as usize..].iter().all(|x| *x == f32::NEG_INFINITY));
    }

    #[test]
    fn specials_and_blank_are_suppressed() {
        let (_, r) = setup();
        let s = &r.special;
        let mut l = flat(&r);
        l[1002] = 20.0; // text clearly likelier than timestamps, so only the suppress lists act
        r.apply(&mut l, &[s.timestamp_begin, 2425], None);
        for t in [s.sot, s.transcribe, s.translate, s.no_timestamps, s.language_token("en").unwrap(), 1, 2] {
            assert_eq!(l[t as usize], f32::NEG_INFINITY, "token {t}");
        }
        assert!(l[s.eot as usize].is_finite());
        let mut l = flat(&r);
        r.apply(&mut l, &[], None);
        assert_eq!(l[220], f32::NEG_INFINITY);
        assert_eq!(l[s.eot as usize], f32::NEG_INFINITY);
    }

    #[test]
    fn timestamp_mass_beats_single_text_token() {
        let (_, r) = setup();
        let tb = r.special.timestamp_begin as usize;
        let mut l = vec![-10.0; r.vocab_len];
        l[2425] = 3.0;
        // Many moderately likely timestamps: their total beats the text token.
        for x in &mut l[tb + 10..tb + 60] {
            *x = 1.0;
        }
        r.apply(&mut l, &[tb as u32, 2425], None);
        assert_eq!(l[2425], f32::NEG_INFINITY);
        assert!(argmax(&l) >= tb);
    }

    #[test]
    fn splits_segments_and_seeks_to_last_pair() {
        let (v, r) = setup();
        let s = &v.special;
        let tb = s.timestamp_begin;
        // <0.00> Hello <1.00><1.00> world <2.50> : ends with a single timestamp -> seek whole window.
        let toks = [tb, 2425, tb + 50, tb + 50, 1002, 1003, tb + 125];
        let (segs, adv) = split_segments(&toks, s, 3000, 2);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].0, segs[0].1), (0.0, 1.0));
        assert!((segs[1].1 - 2.5).abs() < 1e-6);
        assert_eq!(adv, 3000);
        // ... and with an unfinished last segment: seek to the last complete timestamp (1.0 s = 100 frames).
        let toks = [tb, 2425, tb + 50, tb + 50, 1002, 1003];
        let (segs, adv) = split_segments(&toks, s, 3000, 2);
        assert_eq!(segs.len(), 1);
        assert_eq!(adv, 100);
        // No pairs: one segment over the window.
        let toks = [tb, 2425, 1002];
        let (segs, adv) = split_segments(&toks, s, 1200, 2);
        assert_eq!(segs.len(), 1);
        assert!((segs[0].1 - 12.0).abs() < 1e-6);
        assert_eq!(adv, 1200);
        let _ = r;
    }

    #[test]
    fn repetition_is_cut_to_one_copy() {
        let tb = 50364;
        let mut t = vec![5, 6];
        for i in 0..10 {
            t.extend_from_slice(&[tb + i * 10, 100, 101, 102, tb + i * 10 + 5]);
        }
        let cut = repetition_cut(&t, tb).expect("loop detected");
        // One copy of the 3-token phrase survives.
        let kept: Vec<u32> = t[..cut].iter().cloned().filter(|&x| x < tb).collect();
        assert_eq!(kept, vec![5, 6, 100, 101, 102]);
        assert_eq!(repetition_cut(&[1, 2, 3, 1, 2, 3, 1, 2, 3], tb), None); // short repeats are speech
    }
}
