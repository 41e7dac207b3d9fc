//! A `multipart/form-data` body with text fields and one file part (OpenAI's transcription endpoint, Replicate's files API),
//! built by hand.
//!
//! Built by hand because it is small and because of memory: the audio can be
//! 25 MiB and already sits in the guest's memory once, so the body is
//! produced as a `head` (the text fields and the file part's headers) and a
//! `tail` (the closing delimiter), and the caller streams `head`, the audio
//! and `tail` without ever copying the audio into one buffer. The file part
//! therefore comes last.
//!
//! The boundary must not occur in any part (RFC 2046 §5.1.1). With no random
//! source worth importing, it is chosen deterministically and checked
//! against every value and the audio; a clash just moves to the next
//! candidate.

/// The file part of a form.
#[derive(Debug, Clone, Copy)]
pub struct FilePart<'a> {
    /// The form field's name (`file`).
    pub field: &'a str,
    /// The file name sent with it; OpenAI reads the format from its extension.
    pub filename: &'a str,
    /// The part's `Content-Type`.
    pub content_type: &'a str,
    /// The file's bytes (only searched for the boundary here; the caller
    /// sends them between [`Body::head`] and [`Body::tail`]).
    pub bytes: &'a [u8],
}

/// A form body, less the file's bytes: send `head`, the file, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The request's `Content-Type` header, with the boundary.
    pub content_type: String,
    /// The text fields, then the file part's delimiter and headers.
    pub head: Vec<u8>,
    /// The end of the file part and the closing delimiter.
    pub tail: Vec<u8>,
}

impl Body {
    /// The request's `Content-Length` for a file of `file_len` bytes.
    pub fn content_length(&self, file_len: usize) -> u64 {
        (self.head.len() + file_len + self.tail.len()) as u64
    }
}

/// The boundary candidates start from this; a clash appends a counter.
const BOUNDARY_BASE: &str = "ScribeFormBoundary-8q3Zx7LmP2vK";

/// Builds the body for the text `fields` (in order) followed by `file`.
pub fn build(fields: &[(&str, &str)], file: &FilePart<'_>) -> Body {
    let mut contents: Vec<&[u8]> = fields.iter().map(|(_, value)| value.as_bytes()).collect();
    contents.push(file.bytes);
    let boundary = choose_boundary(&contents);

    let mut head = Vec::with_capacity(256 + fields.iter().map(|(n, v)| n.len() + v.len() + 80).sum::<usize>());
    for (name, value) in fields {
        head.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n", quote(name)).as_bytes());
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            quote(file.field),
            quote(file.filename),
            file.content_type,
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    Body { content_type: format!("multipart/form-data; boundary={boundary}"), head, tail }
}

/// The first boundary candidate that occurs in none of `contents`.
pub fn choose_boundary(contents: &[&[u8]]) -> String {
    (0u64..)
        .map(|n| if n == 0 { BOUNDARY_BASE.to_string() } else { format!("{BOUNDARY_BASE}-{n}") })
        .find(|candidate| contents.iter().all(|c| !contains(c, candidate.as_bytes())))
        .expect("some candidate is absent from finite contents")
}

/// Whether `needle` occurs in `haystack`. Compares only where the first
/// byte matches, which keeps a 25 MiB scan cheap.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return true };
    if haystack.len() < needle.len() {
        return false;
    }
    let last_start = haystack.len() - needle.len();
    haystack[..=last_start]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == first && &haystack[i + 1..i + needle.len()] == rest)
}

/// Makes a name safe inside a quoted header parameter, the way browsers do
/// (`"` and line breaks percent-encoded).
fn quote(name: &str) -> String {
    name.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

/// The file name to send for audio of `format` (an extension such as
/// `wav`): `audio.wav`. OpenAI infers the format from the extension; a
/// format that is not plain letters and digits becomes `bin`.
pub fn file_name(format: &str) -> String {
    let format = format.trim().to_ascii_lowercase();
    let ok = !format.is_empty() && format.len() <= 8 && format.bytes().all(|b| b.is_ascii_alphanumeric());
    format!("audio.{}", if ok { format.as_str() } else { "bin" })
}

/// The part `Content-Type` for audio of `format` (an extension).
pub fn audio_mime(format: &str) -> &'static str {
    match format.trim().to_ascii_lowercase().as_str() {
        "flac" => "audio/flac",
        "m4a" | "mp4" => "audio/mp4",
        "mp3" | "mpeg" | "mpga" => "audio/mpeg",
        "oga" | "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "webm" => "audio/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &Body, file: &[u8]) -> Vec<u8> {
        [&body.head[..], file, &body.tail[..]].concat()
    }

    #[test]
    fn builds_text_fields_then_the_file() {
        let audio = b"RIFF....WAVE";
        let file = FilePart { field: "file", filename: "audio.wav", content_type: "audio/wav", bytes: audio };
        let body = build(&[("model", "whisper-1"), ("response_format", "json")], &file);
        let b = BOUNDARY_BASE;
        assert_eq!(body.content_type, format!("multipart/form-data; boundary={b}"));
        let expected = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\njson\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\n\
             RIFF....WAVE\r\n--{b}--\r\n"
        );
        assert_eq!(String::from_utf8(whole(&body, audio)).unwrap(), expected);
        assert_eq!(body.content_length(audio.len()), expected.len() as u64);
    }

    #[test]
    fn the_boundary_never_occurs_in_a_part() {
        let clash0 = format!("xx{BOUNDARY_BASE}yy");
        let clash1 = format!("{BOUNDARY_BASE}-1");
        // The audio holds the first two candidates, a field the third one.
        let audio = format!("{clash0}{clash1}").into_bytes();
        let file = FilePart { field: "file", filename: "a.mp3", content_type: "audio/mpeg", bytes: &audio };
        let prompt = format!("say {BOUNDARY_BASE}-2 please");
        let body = build(&[("prompt", &prompt)], &file);
        let boundary = body.content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        assert_eq!(boundary, format!("{BOUNDARY_BASE}-3"));
        assert!(!contains(&audio, boundary.as_bytes()));
        assert!(!contains(prompt.as_bytes(), boundary.as_bytes()));
    }

    #[test]
    fn contains_finds_needles_at_every_position() {
        assert!(contains(b"abcdef", b"abc"));
        assert!(contains(b"abcdef", b"def"));
        assert!(contains(b"abcdef", b"cd"));
        assert!(!contains(b"abcdef", b"dex"));
        assert!(!contains(b"ab", b"abc"));
        assert!(contains(b"", b""));
        assert!(!contains(b"", b"a"));
    }

    #[test]
    fn names_are_quoted_safely() {
        let file = FilePart { field: "file", filename: "a\"b\r\n.wav", content_type: "audio/wav", bytes: b"" };
        let body = build(&[], &file);
        let head = String::from_utf8(body.head).unwrap();
        assert!(head.contains("filename=\"a%22b%0D%0A.wav\""), "{head}");
    }

    #[test]
    fn file_names_and_types_follow_the_format() {
        assert_eq!(file_name("wav"), "audio.wav");
        assert_eq!(file_name("MP3"), "audio.mp3");
        assert_eq!(file_name("../x"), "audio.bin");
        assert_eq!(file_name(""), "audio.bin");
        for (format, mime) in [
            ("flac", "audio/flac"),
            ("m4a", "audio/mp4"),
            ("mp3", "audio/mpeg"),
            ("mp4", "audio/mp4"),
            ("mpeg", "audio/mpeg"),
            ("mpga", "audio/mpeg"),
            ("oga", "audio/ogg"),
            ("ogg", "audio/ogg"),
            ("wav", "audio/wav"),
            ("webm", "audio/webm"),
            ("aiff", "application/octet-stream"),
        ] {
            assert_eq!(audio_mime(format), mime, "{format}");
        }
    }
}
