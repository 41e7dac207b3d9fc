//! Recognising audio by its first bytes.
//!
//! The declared content type and file name of an upload are whatever the
//! client says; the magic bytes are what the file is. Recognising the format
//! here refuses a wrong file at submit, with a message that says what it
//! looks like, instead of a provider error minutes later.

use super::AudioError;

/// How many leading bytes [`sniff`] can use (it works with fewer). An ID3
/// tag in front of FLAC is looked past only when the tag ends within them.
pub const HEAD_LEN: usize = 4096;

/// The formats accepted, as named in refusals.
pub const ACCEPTED: &str = "WAV, MP3, FLAC, Ogg, WebM, M4A/MP4";

/// An accepted audio container, recognised by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// RIFF/WAVE.
    Wav,
    /// MPEG audio (layer I-III), with or without an ID3v2 tag.
    Mp3,
    /// Native FLAC.
    Flac,
    /// Ogg (Vorbis, Opus, FLAC in Ogg).
    Ogg,
    /// WebM / Matroska (EBML).
    Webm,
    /// ISO base media file: M4A, MP4.
    M4a,
}

impl AudioFormat {
    /// The usual file extension, without the dot (providers such as
    /// OpenAI's look at the file name of a multipart part).
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Flac => "flac",
            AudioFormat::Ogg => "ogg",
            AudioFormat::Webm => "webm",
            AudioFormat::M4a => "m4a",
        }
    }

    /// The media type to declare when sending the audio on.
    pub fn mime(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Ogg => "audio/ogg",
            AudioFormat::Webm => "audio/webm",
            AudioFormat::M4a => "audio/mp4",
        }
    }
}

/// Recognises the format of a file from its first bytes (up to
/// [`HEAD_LEN`]; fewer when the file is shorter). Anything else is
/// [`AudioError::NotAudio`], whose detail says what the bytes look like.
pub fn sniff(head: &[u8]) -> Result<AudioFormat, AudioError> {
    if let Some(format) = recognise(head) {
        return Ok(format);
    }
    Err(AudioError::NotAudio { detail: describe(head) })
}

fn recognise(head: &[u8]) -> Option<AudioFormat> {
    if head.len() >= 12 && (&head[..4] == b"RIFF" || &head[..4] == b"RF64") && &head[8..12] == b"WAVE" {
        return Some(AudioFormat::Wav);
    }
    if head.starts_with(b"fLaC") {
        return Some(AudioFormat::Flac);
    }
    if head.starts_with(b"ID3") {
        // Some taggers put an ID3v2 tag in front of FLAC too.
        if let Some(after) = after_id3(head) {
            if after.starts_with(b"fLaC") {
                return Some(AudioFormat::Flac);
            }
        }
        return Some(AudioFormat::Mp3);
    }
    if is_mpeg_audio_frame(head) {
        return Some(AudioFormat::Mp3);
    }
    if head.starts_with(b"OggS") {
        return Some(AudioFormat::Ogg);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(AudioFormat::Webm);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" && !is_image_brand(&head[8..12]) {
        return Some(AudioFormat::M4a);
    }
    None
}

/// The bytes after an ID3v2 tag, if the tag ends within `head`.
fn after_id3(head: &[u8]) -> Option<&[u8]> {
    let header = head.get(..10)?;
    // The size is "syncsafe": four 7-bit bytes; the flags' bit 4 adds a
    // 10-byte footer.
    if header[6..10].iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let size = header[6..10].iter().fold(0usize, |acc, &b| (acc << 7) | usize::from(b));
    let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
    head.get(10 + size + footer..)
}

/// An MPEG audio frame header: 11 sync bits, a valid version, layer,
/// bitrate index and sample rate index.
fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    let [a, b, c, ..] = *head else { return false };
    let sync = a == 0xFF && b & 0xE0 == 0xE0;
    let version_ok = (b >> 3) & 0b11 != 0b01;
    let layer_ok = (b >> 1) & 0b11 != 0b00;
    let bitrate_ok = c >> 4 != 0b1111;
    let rate_ok = (c >> 2) & 0b11 != 0b11;
    sync && version_ok && layer_ok && bitrate_ok && rate_ok
}

/// Major brands of ISO base media files that are still images.
fn is_image_brand(brand: &[u8]) -> bool {
    matches!(brand, b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" | b"avif" | b"avis")
}

/// What a file that is not accepted audio looks like, for the refusal.
fn describe(head: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (b"\x89PNG", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (or a document built on one)"),
        (b"\x1F\x8B", "gzip-compressed data"),
        (b"\x7FELF", "an ELF executable"),
        (b"\0asm", "a WebAssembly module"),
    ];
    if let Some((_, what)) = known.iter().find(|(magic, _)| head.starts_with(magic)) {
        return format!("it looks like {what}");
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" {
        return format!(
            "it is a RIFF file of type {:?}, not WAVE",
            String::from_utf8_lossy(&head[8..12])
        );
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return "it looks like a HEIF/AVIF image".to_owned();
    }
    if let [0xFF, b, ..] = *head {
        if b & 0xF6 == 0xF0 {
            return "it looks like raw AAC (ADTS); put it in an M4A container".to_owned();
        }
    }
    if let Some(text) = as_text(head) {
        let start: String = text.chars().take(24).collect();
        return format!("it looks like text (starting {start:?})");
    }
    let shown = &head[..head.len().min(8)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    format!("it is not a known audio format (it starts with the bytes {})", hex.join(" "))
}

/// `head` as text, if it is UTF-8 (a character cut at the end allowed)
/// without control characters other than whitespace.
fn as_text(head: &[u8]) -> Option<&str> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let printable = text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0C'));
    (printable && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(head: &[u8]) -> String {
        match sniff(head) {
            Err(AudioError::NotAudio { detail }) => detail,
            other => panic!("expected NotAudio, got {other:?}"),
        }
    }

    #[test]
    fn wav() {
        assert_eq!(sniff(b"RIFF\x24\x08\0\0WAVEfmt ").unwrap(), AudioFormat::Wav);
        assert_eq!(sniff(b"RF64\xff\xff\xff\xffWAVEds64").unwrap(), AudioFormat::Wav);
    }

    #[test]
    fn mp3_with_id3_and_bare_frames() {
        assert_eq!(sniff(b"ID3\x04\0\0\0\0\0\x10rest").unwrap(), AudioFormat::Mp3);
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz.
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64, 0, 0]).unwrap(), AudioFormat::Mp3);
        // MPEG-2 layer III, 64 kbit/s, 22.05 kHz.
        assert_eq!(sniff(&[0xFF, 0xF3, 0x80, 0xC4]).unwrap(), AudioFormat::Mp3);
    }

    #[test]
    fn mp3_frame_with_invalid_fields_is_refused() {
        // Reserved version (01).
        assert!(sniff(&[0xFF, 0xEB, 0x90, 0x64]).is_err());
        // Bitrate index 1111.
        assert!(sniff(&[0xFF, 0xFB, 0xF0, 0x64]).is_err());
        // Sample rate index 11.
        assert!(sniff(&[0xFF, 0xFB, 0x9C, 0x64]).is_err());
        // Too short to judge.
        assert!(sniff(&[0xFF, 0xFB]).is_err());
    }

    #[test]
    fn flac_bare_and_behind_id3() {
        assert_eq!(sniff(b"fLaC\0\0\0\x22").unwrap(), AudioFormat::Flac);
        let mut tagged = b"ID3\x03\0\0\0\0\0\x04abcd".to_vec();
        tagged.extend_from_slice(b"fLaC\0\0\0\x22");
        assert_eq!(sniff(&tagged).unwrap(), AudioFormat::Flac);
        // A tag longer than the head: the frames after it are not seen.
        assert_eq!(sniff(b"ID3\x03\0\0\0\0\x7f\x7fabcd").unwrap(), AudioFormat::Mp3);
    }

    #[test]
    fn ogg_webm_m4a() {
        assert_eq!(sniff(b"OggS\0\x02\0\0").unwrap(), AudioFormat::Ogg);
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86]).unwrap(), AudioFormat::Webm);
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0").unwrap(), AudioFormat::M4a);
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\x02\0").unwrap(), AudioFormat::M4a);
    }

    #[test]
    fn extensions_and_mimes() {
        let all = [
            AudioFormat::Wav,
            AudioFormat::Mp3,
            AudioFormat::Flac,
            AudioFormat::Ogg,
            AudioFormat::Webm,
            AudioFormat::M4a,
        ];
        let exts: Vec<_> = all.iter().map(|f| f.extension()).collect();
        assert_eq!(exts, ["wav", "mp3", "flac", "ogg", "webm", "m4a"]);
        assert!(all.iter().all(|f| f.mime().starts_with("audio/")));
    }

    #[test]
    fn text_is_refused_as_text() {
        let d = detail(b"hello, this is not audio\n");
        assert!(d.contains("looks like text"), "{d}");
        assert!(d.contains("hello"), "{d}");
        assert!(detail("{\"é\": 1}".as_bytes()).contains("text"));
        // A multi-byte character cut at the end of the head is still text.
        assert!(detail(&"añb".as_bytes()[..2]).contains("text"));
    }

    #[test]
    fn known_non_audio_is_named() {
        assert!(detail(b"\x89PNG\r\n\x1a\n\0\0").contains("PNG"));
        assert!(detail(b"PK\x03\x04\x14\0\0\0").contains("ZIP"));
        assert!(detail(b"\xFF\xD8\xFF\xE0\0\x10JFIF").contains("JPEG"));
        assert!(detail(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3").contains("PDF"));
        assert!(detail(b"RIFF\0\0\0\0WEBPVP8 ").contains("\"WEBP\""));
        assert!(detail(b"\0\0\0\x1cftypheic\0\0\0\0").contains("HEIF"));
        assert!(detail(&[0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F]).contains("AAC"));
    }

    #[test]
    fn unknown_binary_shows_its_first_bytes() {
        let d = detail(&[0, 1, 2, 0xAB, 0xCD, 5, 6, 7, 8, 9]);
        assert!(d.contains("00 01 02 ab cd 05 06 07"), "{d}");
        assert!(!d.contains("08"), "{d}");
    }

    #[test]
    fn refusal_names_the_accepted_formats() {
        let message = sniff(b"just text").unwrap_err().to_string();
        assert!(message.contains("looks like text"), "{message}");
        assert!(message.contains(ACCEPTED), "{message}");
    }
}
