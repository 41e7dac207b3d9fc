//! Transcript formats: every response format is rendered from the one
//! stored [`Transcript`], so a job (or a cache hit) can be read in any of
//! them without calling the provider again.
//!
//! The shapes follow OpenAI's (provider-apis.md §1.3): `json` is
//! `{"text"}`; `verbose_json` adds `task`, `language` (the full lowercase
//! name), `duration` and `segments` with OpenAI's segment fields (the ones
//! a provider does not report are zero); `text` is the text; `srt` numbers
//! its cues from 1 with `HH:MM:SS,mmm`, `vtt` starts with `WEBVTT` and
//! uses `HH:MM:SS.mmm`. A transcript without segments becomes one cue over
//! its whole duration. Subtitle timestamps are a few lines of arithmetic,
//! so no subtitle crate is used.

use std::fmt::Write;

use serde_json::json;

use crate::plugins::types::Transcript;

/// A response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"text": ...}`
    Json,
    /// The text alone.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// OpenAI's `verbose_json`.
    VerboseJson,
}

/// Every format's name, as the API spells it.
pub const NAMES: &[&str] = &["json", "text", "srt", "vtt", "verbose_json"];

impl Format {
    /// The format named `name` (one of [`NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "json" => Some(Format::Json),
            "text" => Some(Format::Text),
            "srt" => Some(Format::Srt),
            "vtt" => Some(Format::Vtt),
            "verbose_json" => Some(Format::VerboseJson),
            _ => None,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::VerboseJson => "application/json",
            Format::Text | Format::Srt => "text/plain; charset=utf-8",
            Format::Vtt => "text/vtt; charset=utf-8",
        }
    }
}

/// `transcript` in `format`.
pub fn render(transcript: &Transcript, format: Format) -> String {
    match format {
        Format::Json => json!({ "text": transcript.text }).to_string(),
        Format::Text => format!("{}\n", transcript.text),
        Format::Srt => subtitles(transcript, Subtitles::Srt),
        Format::Vtt => subtitles(transcript, Subtitles::Vtt),
        Format::VerboseJson => verbose_json(transcript),
    }
}

fn verbose_json(transcript: &Transcript) -> String {
    let language = transcript
        .language
        .as_deref()
        .map(|code| whisper_languages::name_of(code).unwrap_or(code).to_string());
    let segments: Vec<serde_json::Value> = transcript
        .segments
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({
                "id": id, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0,
            })
        })
        .collect();
    json!({
        "task": "transcribe",
        "language": language.unwrap_or_default(),
        "duration": duration(transcript),
        "text": transcript.text,
        "segments": segments,
    })
    .to_string()
}

/// The transcript's duration: as reported, else the end of its last
/// segment, else 0.
fn duration(transcript: &Transcript) -> f64 {
    transcript.duration.or_else(|| transcript.segments.last().map(|s| s.end)).unwrap_or(0.0)
}

#[derive(Clone, Copy)]
enum Subtitles {
    Srt,
    Vtt,
}

fn subtitles(transcript: &Transcript, kind: Subtitles) -> String {
    let cues: Vec<(f64, f64, &str)> = if transcript.segments.is_empty() {
        vec![(0.0, duration(transcript), transcript.text.as_str())]
    } else {
        transcript.segments.iter().map(|s| (s.start, s.end, s.text.as_str())).collect()
    };
    let mut out = String::new();
    if let Subtitles::Vtt = kind {
        out.push_str("WEBVTT\n\n");
    }
    for (index, (start, end, text)) in cues.into_iter().enumerate() {
        let separator = match kind {
            Subtitles::Srt => {
                let _ = writeln!(out, "{}", index + 1);
                ','
            }
            Subtitles::Vtt => '.',
        };
        let _ = writeln!(out, "{} --> {}", timestamp(start, separator), timestamp(end, separator));
        let _ = writeln!(out, "{}\n", text.trim());
    }
    out
}

/// `HH:MM:SS<separator>mmm`, rounded to the millisecond; negative or
/// non-finite times count as 0.
fn timestamp(seconds: f64, separator: char) -> String {
    let ms = if seconds.is_finite() && seconds > 0.0 { (seconds * 1000.0).round() as u64 } else { 0 };
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::types::Segment;

    fn sample() -> Transcript {
        Transcript {
            text: "The beach. It was.".into(),
            language: Some("en".into()),
            duration: Some(3725.5),
            segments: vec![
                Segment { start: 0.0, end: 3.32, text: " The beach.".into() },
                Segment { start: 3661.0024, end: 3725.5, text: " It was.".into() },
            ],
        }
    }

    #[test]
    fn srt_numbers_cues_with_comma_milliseconds() {
        assert_eq!(
            render(&sample(), Format::Srt),
            "1\n00:00:00,000 --> 00:00:03,320\nThe beach.\n\n2\n01:01:01,002 --> 01:02:05,500\nIt was.\n\n"
        );
    }

    #[test]
    fn vtt_has_its_header_and_dot_milliseconds() {
        assert_eq!(
            render(&sample(), Format::Vtt),
            "WEBVTT\n\n00:00:00.000 --> 00:00:03.320\nThe beach.\n\n01:01:01.002 --> 01:02:05.500\nIt was.\n\n"
        );
    }

    #[test]
    fn json_text_and_verbose_json_carry_openais_fields() {
        let t = sample();
        assert_eq!(render(&t, Format::Json), r#"{"text":"The beach. It was."}"#);
        assert_eq!(render(&t, Format::Text), "The beach. It was.\n");
        let v: serde_json::Value = serde_json::from_str(&render(&t, Format::VerboseJson)).unwrap();
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["language"], "english");
        assert_eq!(v["duration"], 3725.5);
        assert_eq!(v["segments"][1]["id"], 1);
        assert_eq!(v["segments"][1]["text"], " It was.");
        for field in ["seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"] {
            assert!(v["segments"][0].get(field).is_some(), "{field}");
        }
    }

    #[test]
    fn a_transcript_without_segments_is_one_cue_over_its_duration() {
        let t = Transcript { text: "Hi.".into(), language: None, duration: Some(1.5), segments: vec![] };
        assert_eq!(render(&t, Format::Srt), "1\n00:00:00,000 --> 00:00:01,500\nHi.\n\n");
        let v: serde_json::Value = serde_json::from_str(&render(&t, Format::VerboseJson)).unwrap();
        assert_eq!((v["language"].as_str(), v["segments"].as_array().map(Vec::len)), (Some(""), Some(0)));
    }

    #[test]
    fn every_name_parses_and_nothing_else() {
        for name in NAMES {
            assert!(Format::parse(name).is_some(), "{name}");
        }
        assert_eq!(Format::parse("docx"), None);
    }
}
