//! Whisper vocabulary: byte-level BPE *decoding* and the special token ids.
//!
//! Transcription only ever turns ids into text, so we need no BPE merges or encoder (and no
//! `tokenizers` crate, which does not build for wasm): `vocabulary.txt` from the
//! CTranslate2 export lists one token per line, line number = id, in GPT-2's byte-to-unicode
//! alphabet. Special ids are found by their literal names in that file, so multilingual
//! (51865 tokens) and English-only (51864 tokens) vocabularies both work.

use std::collections::HashMap;

/// Errors raised while reading `vocabulary.txt`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// A special token the decoder needs is not in the vocabulary.
    #[error("vocabulary.txt lacks the special token {0}")]
    MissingSpecial(&'static str),
    /// The vocabulary is far too small to be a Whisper vocabulary.
    #[error("vocabulary.txt has {0} entries; a Whisper vocabulary has about 51865")]
    TooSmall(usize),
}

/// Seconds per timestamp token step.
pub const TIME_PRECISION: f32 = 0.02;

/// Ids of Whisper's special tokens, looked up by name in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`: end of transcript; every id below it is text.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|startoflm|>`.
    pub sot_lm: Option<u32>,
    /// `<|startofprev|>`.
    pub sot_prev: Option<u32>,
    /// `<|nocaptions|>` / `<|nospeech|>`: its probability after `sot` is the no-speech probability.
    pub no_speech: Option<u32>,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`: the first timestamp token; `timestamp_begin + k` means `k * 0.02` s.
    pub timestamp_begin: u32,
    /// Language tokens in id order with their Whisper language code (`en`, `de`, ...).
    pub languages: Vec<(u32, String)>,
}

impl SpecialTokens {
    /// Whether the model is multilingual (has language tokens and takes `<|lang|><|task|>`).
    pub fn is_multilingual(&self) -> bool {
        // English-only vocabularies also list language tokens, but have eot at 50256.
        self.eot >= 50257 && !self.languages.is_empty()
    }

    /// Whether `id` is a timestamp token.
    pub fn is_timestamp(&self, id: u32) -> bool {
        id >= self.timestamp_begin
    }

    /// Seconds represented by a timestamp token (relative to its window).
    pub fn timestamp_seconds(&self, id: u32) -> f32 {
        (id - self.timestamp_begin) as f32 * TIME_PRECISION
    }

    /// Token id for a language code; accepts ISO-639-1 `jv` for Whisper's `jw`.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        let code = code.trim().to_ascii_lowercase();
        let code = if code == "jv" { "jw".to_string() } else { code };
        self.languages.iter().find(|(_, c)| *c == code).map(|(id, _)| *id)
    }

    /// The language code for a language token, with Whisper's `jw` reported as ISO `jv`.
    pub fn language_code(&self, id: u32) -> Option<&str> {
        self.languages.iter().find(|(i, _)| *i == id).map(|(_, c)| if c == "jw" { "jv" } else { c.as_str() })
    }
}

/// Decoder from token ids to text.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    tokens: Vec<String>,
    byte_of_char: HashMap<char, u8>,
    /// The special token ids.
    pub special: SpecialTokens,
}

/// GPT-2's reversible byte-to-unicode table: printable bytes map to themselves, the other
/// 68 bytes to code points from U+0100 upward, so every byte has a visible character.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut n = 0;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    table
}

impl Vocabulary {
    /// Parse `vocabulary.txt` (one token per line; line index = token id).
    pub fn from_text(text: &str) -> Result<Self, TokenError> {
        let mut tokens: Vec<String> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect();
        // A trailing newline yields one empty entry past the last id.
        if tokens.last().is_some_and(|t| t.is_empty()) && text.ends_with('\n') {
            tokens.pop();
        }
        if tokens.len() < 1000 {
            return Err(TokenError::TooSmall(tokens.len()));
        }
        let index: HashMap<&str, u32> =
            tokens.iter().enumerate().filter(|(_, t)| t.starts_with("<|")).map(|(i, t)| (t.as_str(), i as u32)).collect();
        let need = |name: &'static str| index.get(name).copied().ok_or(TokenError::MissingSpecial(name));
        let eot = need("<|endoftext|>")?;
        let sot = need("<|startoftranscript|>")?;
        let translate = need("<|translate|>")?;
        let transcribe = need("<|transcribe|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        let timestamp_begin = need("<|0.00|>")?;
        let opt = |name: &str| index.get(name).copied();
        let languages = (sot + 1..translate)
            .filter_map(|id| {
                let t = &tokens[id as usize];
                let code = t.strip_prefix("<|")?.strip_suffix("|>")?;
                code.chars().all(|c| c.is_ascii_lowercase()).then(|| (id, code.to_string()))
            })
            .collect();
        let special = SpecialTokens {
            eot,
            sot,
            translate,
            transcribe,
            sot_lm: opt("<|startoflm|>"),
            sot_prev: opt("<|startofprev|>"),
            no_speech: opt("<|nocaptions|>").or_else(|| opt("<|nospeech|>")),
            no_timestamps,
            timestamp_begin,
            languages,
        };
        let table = bytes_to_unicode();
        let byte_of_char = table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Vocabulary { tokens, byte_of_char, special })
    }

    /// Number of entries (ids `0..len`).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty (never true for a parsed vocabulary).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The raw token string for an id, as written in `vocabulary.txt`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    /// Decode text tokens to a string. Special and timestamp tokens (ids >= eot) are skipped;
    /// bytes are joined across tokens before UTF-8 decoding because one character may be
    /// split over several tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id >= self.special.eot {
                continue;
            }
            let Some(tok) = self.tokens.get(id as usize) else { continue };
            for c in tok.chars() {
                match self.byte_of_char.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => {
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic multilingual-shaped vocabulary: ids as in Whisper's multilingual files,
    /// with a few real entries placed at their real ids.
    pub(crate) fn synthetic_vocab() -> String {
        let mut v: Vec<String> = (0..50257).map(|i| format!("t{i}")).collect();
        v[2425] = "ĠHello".into();
        v[11] = ",".into();
        v[1002] = "Ġwor".into();
        v[1003] = "ld".into();
        // "é" (C3 A9) split over two tokens in byte-to-unicode form: Ã and ©.
        v[1004] = "Ã".into();
        v[1005] = "©".into();
        v.push("<|endoftext|>".into());
        v.push("<|startoftranscript|>".into());
        for c in ["en", "zh", "de"] {
            v.push(format!("<|{c}|>"));
        }
        for s in ["translate", "transcribe", "startoflm", "startofprev", "nocaptions", "notimestamps"] {
            v.push(format!("<|{s}|>"));
        }
        for i in 0..1501 {
            v.push(format!("<|{:.2}|>", i as f32 * 0.02));
        }
        v.join("\n") + "\n"
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        let mut all: Vec<char> = t.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn decodes_synthetic_ids() {
        let v = Vocabulary::from_text(&synthetic_vocab()).unwrap();
        assert_eq!(v.special.eot, 50257);
        assert_eq!(v.special.sot, 50258);
        assert_eq!(v.special.language_token("de"), Some(50261));
        assert_eq!(v.special.transcribe, 50263);
        assert_eq!(v.special.no_speech, Some(50266));
        assert_eq!(v.special.timestamp_begin, 50268);
        assert!(v.special.is_multilingual());
        assert_eq!(v.decode(&[2425, 11, 1002, 1003, 50257, 50268]), " Hello, world");
        assert_eq!(v.decode(&[1004, 1005]), "é");
    }

    /// The installed base model's folder: `$SCRIBE_MODEL_DIR/base`, else the
    /// default (`~/.cache/scribe/models/base`), where `scribe models fetch`
    /// puts it.
    fn base_model_dir() -> std::path::PathBuf {
        let models = std::env::var_os("SCRIBE_MODEL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
            cache.join("scribe").join("models")
        });
        models.join("base")
    }

    #[test]
    fn decodes_the_real_base_vocabulary() {
        let path = base_model_dir().join("vocabulary.txt");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run `scribe models fetch base` first (tests/run does)", path.display()));
        let v = Vocabulary::from_text(&text).unwrap();
        assert_eq!(v.len(), 51865);
        assert_eq!(v.token(2425), Some("ĠHello"));
        assert_eq!(v.decode(&[2425]), " Hello");
        let s = &v.special;
        assert_eq!((s.eot, s.sot, s.translate, s.transcribe), (50257, 50258, 50358, 50359));
        assert_eq!((s.no_speech, s.no_timestamps, s.timestamp_begin), (Some(50362), 50363, 50364));
        assert_eq!(s.languages.len(), 99);
        assert_eq!(s.language_token("en"), Some(50259));
        assert_eq!(s.language_code(50259), Some("en"));
        assert!((s.timestamp_seconds(50364 + 1500) - 30.0).abs() < 1e-6);
    }
}
