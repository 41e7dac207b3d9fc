//! RIFF WAVE decoding and resampling to the 16 kHz mono signal Whisper expects.
//!
//! Only WAV is accepted because it can be decoded without codec libraries (which would
//! not build for wasm); callers are expected to convert other formats before upload.
//!
//! Supported: PCM integer samples of 8 (unsigned), 16, 24 and 32 bits, IEEE float 32 (and
//! 64) bits, `WAVE_FORMAT_EXTENSIBLE` wrapping either; any sample rate; any channel count
//! (channels are averaged). Unknown chunks (`LIST`, `fact`, `bext`, ...) are skipped,
//! honouring the pad byte after odd-sized chunks. A `data` chunk whose declared size runs
//! past the end of the input (as written by streaming encoders) is read up to the end.
//!
//! Resampling uses a windowed-sinc (Blackman-windowed, 32 zero crossings per side)
//! interpolator whose cutoff is set to the lower of the two Nyquist frequencies, so
//! downsampling (e.g. 44.1 kHz -> 16 kHz) is low-pass filtered and does not alias.

/// The only rate the Whisper front end accepts.
pub const TARGET_RATE: u32 = 16_000;

/// Errors raised while decoding audio.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WavError {
    /// The input is not a RIFF/WAVE file at all.
    #[error(
        "unsupported audio format: expected a RIFF WAVE file (.wav, PCM 8/16/24/32-bit or \
         32-bit float); convert other formats (mp3, ogg, m4a, ...) to WAV first"
    )]
    NotWav,
    /// The file is WAV but uses a sample encoding we do not decode (e.g. ADPCM, mu-law).
    #[error(
        "unsupported WAV encoding: format tag {format_tag:#06x}, {bits} bits per sample \
         (accepted: PCM 8/16/24/32-bit integer or 32/64-bit IEEE float)"
    )]
    UnsupportedEncoding {
        /// `wFormatTag` (or the sub-format tag for extensible files).
        format_tag: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// Header fields are inconsistent or a required chunk is missing.
    #[error("malformed WAV file: {0}")]
    Malformed(&'static str),
}

/// Decoded audio: interleaving removed and channels averaged.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Sample rate of `samples` in Hz.
    pub sample_rate: u32,
    /// Channel count of the source file (before averaging), for diagnostics.
    pub source_channels: u16,
}

impl Audio {
    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Decode a WAV file into mono samples at the file's own rate.
pub fn decode(bytes: &[u8]) -> Result<Audio, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None; // tag, channels, rate, block_align, bits
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(WavError::Malformed("fmt chunk shorter than 16 bytes"));
                }
                let mut tag = u16_at(body, 0);
                let channels = u16_at(body, 2);
                let rate = u32_at(body, 4);
                let align = u16_at(body, 12);
                let bits = u16_at(body, 14);
                if tag == 0xFFFE {
                    // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
                    if body.len() < 26 {
                        return Err(WavError::Malformed("extensible fmt chunk too short"));
                    }
                    tag = u16_at(body, 24);
                }
                fmt = Some((tag, channels, rate, align, bits));
            }
            b"data" => {
                data = Some(body);
                if fmt.is_some() {
                    break;
                }
            }
            _ => {}
        }
        // Chunks are word aligned: an odd size is followed by one pad byte.
        pos = body_start.saturating_add(size).saturating_add(size & 1);
    }
    let (tag, channels, rate, align, bits) = fmt.ok_or(WavError::Malformed("no fmt chunk"))?;
    let data = data.ok_or(WavError::Malformed("no data chunk"))?;
    if channels == 0 || rate == 0 {
        return Err(WavError::Malformed("zero channels or zero sample rate"));
    }
    let bytes_per = match (tag, bits) {
        (1, 8) => 1,
        (1, 16) => 2,
        (1, 24) => 3,
        (1, 32) | (3, 32) => 4,
        (3, 64) => 8,
        _ => return Err(WavError::UnsupportedEncoding { format_tag: tag, bits }),
    };
    let frame = (bytes_per * channels as usize).max(align as usize);
    let decode_one = |s: &[u8]| -> f32 {
        match (tag, bytes_per) {
            (1, 1) => (s[0] as f32 - 128.0) / 128.0,
            (1, 2) => i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0,
            (1, 3) => ((i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32) / 8_388_608.0,
            (1, 4) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
            (3, 4) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            _ => f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as f32,
        }
    };
    let n_frames = data.len() / frame;
    let inv = 1.0 / channels as f32;
    let mut samples = Vec::with_capacity(n_frames);
    for f in data.chunks_exact(frame) {
        let mut acc = 0.0f32;
        for c in 0..channels as usize {
            acc += decode_one(&f[c * bytes_per..(c + 1) * bytes_per]);
        }
        let v = acc * inv;
        // NaN or huge floats would poison the log-mel; clamp to the valid range.
        samples.push(if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 });
    }
    Ok(Audio { samples, sample_rate: rate, source_channels: channels })
}

/// Windowed-sinc kernel value at distance `d` input samples (see the module docs).
fn kernel(d: f64, cutoff: f64, half_width: f64) -> f64 {
    if d.abs() >= half_width {
        return 0.0;
    }
    let arg = d * cutoff;
    let sinc = if arg.abs() < 1e-12 {
        1.0
    } else {
        let p = std::f64::consts::PI * arg;
        p.sin() / p
    };
    // Blackman window over [-half_width, half_width].
    let w = std::f64::consts::PI * d / half_width;
    let win = 0.42 + 0.5 * w.cos() + 0.08 * (2.0 * w).cos();
    sinc * cutoff * win
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resample with a Blackman-windowed sinc interpolator (see the module docs).
///
/// For rational ratios with at most 4096 distinct phases (every common rate pair) the filter
/// taps are precomputed per phase (polyphase), so the cost is one multiply-add per tap:
/// about 90 per output sample from 44.1 kHz, negligible next to the model. Other ratios
/// evaluate the kernel directly, which is slower but still correct.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    const ZEROS: f64 = 32.0;
    let g = gcd(from as u64, to as u64);
    let (up, down) = (to as u64 / g, from as u64 / g);
    let ratio = to as f64 / from as f64;
    // Cutoff relative to the input rate: below the output Nyquist when downsampling.
    let cutoff = ratio.min(1.0) * 0.97;
    let half_width = ZEROS / cutoff; // in input samples
    let reach = half_width.ceil() as i64;
    let taps = (2 * reach + 1) as usize;
    let out_len = ((input.len() as u64 * up) / down) as usize;
    let n = input.len() as i64;
    let mut out = Vec::with_capacity(out_len);
    let bank: Option<Vec<f32>> = (up <= 4096).then(|| {
        let mut b = Vec::with_capacity(up as usize * taps);
        for p in 0..up {
            let frac = p as f64 / up as f64;
            for k in -reach..=reach {
                b.push(kernel(k as f64 - frac, cutoff, half_width) as f32);
            }
        }
        b
    });
    for j in 0..out_len as u64 {
        let base = (j * down / up) as i64;
        let phase = j * down % up;
        let mut acc = 0.0f32;
        match &bank {
            Some(b) => {
                let w = &b[phase as usize * taps..(phase as usize + 1) * taps];
                let lo = (base - reach).max(0);
                let hi = (base + reach).min(n - 1);
                let xs = &input[lo as usize..=hi as usize];
                let ws = &w[(lo - (base - reach)) as usize..];
                for (x, k) in xs.iter().zip(ws) {
                    acc += x * k;
                }
            }
            None => {
                let t = j as f64 * down as f64 / up as f64;
                for i in (base - reach).max(0)..=(base + reach).min(n - 1) {
                    acc += input[i as usize] * kernel(i as f64 - t, cutoff, half_width) as f32;
                }
            }
        }
        out.push(acc);
    }
    out
}

/// Decode a WAV file and return 16 kHz mono samples plus the original duration.
pub fn decode_16k_mono(bytes: &[u8]) -> Result<(Vec<f32>, f64), WavError> {
    let audio = decode(bytes)?;
    let duration = audio.duration();
    Ok((resample(&audio.samples, audio.sample_rate, TARGET_RATE), duration))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a WAV file with the given raw sample bytes, optionally with extra chunks.
    pub(crate) fn make_wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8], extra: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = vec![];
        body.extend_from_slice(b"WAVE");
        for (id, b) in extra {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(b.len() as u32).to_le_bytes());
            body.extend_from_slice(b);
            if b.len() % 2 == 1 {
                body.push(0);
            }
        }
        body.extend_from_slice(b"fmt ");
        body.extend_from_slice(&16u32.to_le_bytes());
        body.extend_from_slice(&tag.to_le_bytes());
        body.extend_from_slice(&channels.to_le_bytes());
        body.extend_from_slice(&rate.to_le_bytes());
        let align = channels * bits / 8;
        body.extend_from_slice(&(rate * align as u32).to_le_bytes());
        body.extend_from_slice(&align.to_le_bytes());
        body.extend_from_slice(&bits.to_le_bytes());
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    /// A 16-bit mono WAV of the given samples.
    pub(crate) fn wav16(samples: &[f32], rate: u32) -> Vec<u8> {
        let d: Vec<u8> = samples.iter().flat_map(|s| ((s * 32767.0) as i16).to_le_bytes()).collect();
        make_wav(1, 1, rate, 16, &d, &[])
    }

    #[test]
    fn decodes_16bit_mono() {
        let a = decode(&wav16(&[0.0, 0.5, -0.5], 16000)).unwrap();
        assert_eq!(a.sample_rate, 16000);
        assert_eq!(a.samples.len(), 3);
        assert!((a.samples[1] - 0.5).abs() < 1e-3 && (a.samples[2] + 0.5).abs() < 1e-3);
    }

    #[test]
    fn decodes_8bit_unsigned() {
        let a = decode(&make_wav(1, 1, 8000, 8, &[128, 255, 0], &[])).unwrap();
        assert_eq!(a.samples[0], 0.0);
        assert!(a.samples[1] > 0.98 && a.samples[2] == -1.0);
    }

    #[test]
    fn decodes_24bit_and_float() {
        // 24-bit -0.5 is 0xC00000.
        let a = decode(&make_wav(1, 1, 16000, 24, &[0, 0, 0xC0, 0, 0, 0x40], &[])).unwrap();
        assert_eq!(a.samples, vec![-0.5, 0.5]);
        let f: Vec<u8> = [0.25f32, -0.75].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = decode(&make_wav(3, 1, 16000, 32, &f, &[])).unwrap();
        assert_eq!(a.samples, vec![0.25, -0.75]);
    }

    #[test]
    fn averages_stereo() {
        let d: Vec<u8> = [16384i16, 0, -16384, -16384].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = decode(&make_wav(1, 2, 16000, 16, &d, &[])).unwrap();
        assert_eq!(a.source_channels, 2);
        assert_eq!(a.samples, vec![0.25, -0.5]);
    }

    #[test]
    fn skips_extra_chunks_with_odd_padding() {
        let d: Vec<u8> = [1000i16, -1000].iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = make_wav(1, 1, 16000, 16, &d, &[(b"LIST", b"INFOabc"), (b"junk", b"")]);
        let a = decode(&w).unwrap();
        assert_eq!(a.samples.len(), 2);
        assert!((a.samples[0] - 1000.0 / 32768.0).abs() < 1e-6);
    }

    #[test]
    fn refuses_non_wav_naming_the_format() {
        let e = decode(b"ID3\x03\x00\x00\x00\x00\x00\x00 mp3 bytes").unwrap_err();
        assert_eq!(e, WavError::NotWav);
        assert!(e.to_string().contains("RIFF WAVE"));
        let e = decode(&make_wav(2, 1, 8000, 4, &[0; 8], &[])).unwrap_err();
        assert!(matches!(e, WavError::UnsupportedEncoding { format_tag: 2, bits: 4 }));
    }

    #[test]
    fn resamples_44k1_stereo_sine_to_16k() {
        // A 1 kHz tone at 44.1 kHz stereo must come out as a 1 kHz tone at 16 kHz.
        let n = 44100;
        let d: Vec<u8> = (0..n)
            .flat_map(|i| {
                let v = ((2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44100.0).sin() * 16000.0) as i16;
                [v.to_le_bytes(), v.to_le_bytes()].concat()
            })
            .collect();
        let (s, dur) = decode_16k_mono(&make_wav(1, 2, 44100, 16, &d, &[])).unwrap();
        assert!((dur - 1.0).abs() < 1e-9);
        assert_eq!(s.len(), 16000);
        // Compare against the ideal signal away from the edges.
        let amp = 16000.0 / 32768.0;
        let err: f32 = (1000..15000)
            .map(|i| (s[i] - amp * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin()).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn downsampling_removes_content_above_nyquist() {
        // 12 kHz at 48 kHz is above 8 kHz and must be filtered, not folded to 4 kHz.
        let x: Vec<f32> = (0..48000).map(|i| (2.0 * std::f32::consts::PI * 12000.0 * i as f32 / 48000.0).sin() * 0.5).collect();
        let y = resample(&x, 48000, 16000);
        let rms = (y[1000..15000].iter().map(|v| v * v).sum::<f32>() / 14000.0).sqrt();
        assert!(rms < 0.01, "alias rms {rms}");
    }
}
