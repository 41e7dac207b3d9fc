//! Whisper's log-mel spectrogram front end, reimplemented single-threaded.
//!
//! candle's `pcm_to_mel` spawns threads (not available in our wasm sandbox), so this module
//! reproduces `whisper.audio.log_mel_spectrogram` step by step: reflect-padded centred STFT
//! with a periodic Hann window (n_fft 400, hop 160), power spectrum without the last frame,
//! Slaney-normalised mel filterbank identical to `librosa.filters.mel(sr=16000, n_fft=400)`,
//! `log10(max(x, 1e-10))`, clamp to `max - 8`, then `(x + 4) / 4`.
//! The FFT is `rustfft` (pure Rust, no threads, builds for wasm32).

use std::sync::Arc;

use rustfft::{num_complex::Complex, Fft, FftPlanner};

/// Sample rate the front end assumes.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s model window.
pub const N_FRAMES: usize = 3000;
/// Samples in one 30 s model window.
pub const N_SAMPLES: usize = SAMPLE_RATE * 30;

/// A log-mel spectrogram stored mel-major (`data[m * n_frames + t]`), the layout the
/// encoder's first convolution takes as `(1, n_mels, n_frames)`.
#[derive(Debug, Clone)]
pub struct LogMel {
    /// Normalised log-mel values.
    pub data: Vec<f32>,
    /// Number of mel bins.
    pub n_mels: usize,
    /// Number of frames.
    pub n_frames: usize,
}

impl LogMel {
    /// Frames `[start, start + len)` padded with zeros (or trimmed) to `N_FRAMES`, as
    /// Whisper's `pad_or_trim` does for each 30 s window. Zero is the padding value in
    /// normalised log-mel space, exactly like the reference implementation.
    pub fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.n_mels * N_FRAMES];
        let start = start.min(self.n_frames);
        let len = len.min(N_FRAMES).min(self.n_frames - start);
        for m in 0..self.n_mels {
            let src = &self.data[m * self.n_frames + start..m * self.n_frames + start + len];
            out[m * N_FRAMES..m * N_FRAMES + len].copy_from_slice(src);
        }
        out
    }
}

/// One sparse row of the mel filterbank: the non-zero weights start at FFT bin `start`.
#[derive(Debug, Clone)]
struct Filter {
    start: usize,
    weights: Vec<f32>,
}

/// Reusable front end: the FFT plan, window and filterbank are built once per model.
pub struct MelFrontend {
    n_mels: usize,
    window: Vec<f32>,
    filters: Vec<Filter>,
    fft: Arc<dyn Fft<f32>>,
}

impl std::fmt::Debug for MelFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelFrontend").field("n_mels", &self.n_mels).finish()
    }
}

// Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz,
// logarithmic above. `hz_to_mel` and `mel_to_hz` are each other's inverse.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    (6.4f64).ln() / 27.0
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= MIN_LOG_HZ {
        MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / log_step()
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (m - MIN_LOG_MEL)).exp()
    } else {
        m * F_SP
    }
}

/// The dense `(n_mels, N_FFT / 2 + 1)` filterbank of `librosa.filters.mel(sr=16000,
/// n_fft=400, n_mels)`, with Slaney area normalisation. Public so tests and tools can
/// compare it with reference values.
pub fn mel_filterbank(n_mels: usize) -> Vec<Vec<f64>> {
    let n_bins = N_FFT / 2 + 1;
    let fmax = SAMPLE_RATE as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * fmax / (n_bins - 1) as f64).collect();
    let (mmin, mmax) = (hz_to_mel(0.0), hz_to_mel(fmax));
    let mel_f: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64)).collect();
    (0..n_mels)
        .map(|i| {
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
                    let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

impl MelFrontend {
    /// Build the front end for `n_mels` bins (80 for all models but large-v3, which uses 128).
    pub fn new(n_mels: usize) -> Self {
        let window = (0..N_FFT)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        let filters = mel_filterbank(n_mels)
            .into_iter()
            .map(|row| {
                let start = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w > 0.0).map(|e| e + 1).unwrap_or(start);
                Filter { start, weights: row[start..end].iter().map(|&w| w as f32).collect() }
            })
            .collect();
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        MelFrontend { n_mels, window, filters, fft }
    }

    /// Number of mel bins produced.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Log-mel spectrogram of 16 kHz mono samples; `samples.len() / 160` frames.
    ///
    /// Callers wanting Whisper's long-form behaviour append `N_SAMPLES` zeros first (see
    /// `transcribe`), because the `max - 8` clamp is taken over the whole spectrogram.
    pub fn log_mel(&self, samples: &[f32]) -> LogMel {
        let n_frames = samples.len() / HOP_LENGTH;
        let pad = N_FFT / 2;
        // Reflect padding (torch.stft(center=True, pad_mode="reflect")): mirror without the edge sample.
        let len = samples.len();
        let at = |i: isize| -> f32 {
            if len == 0 {
                return 0.0;
            }
            let n = len as isize;
            let mut i = i;
            // Repeated reflection keeps very short inputs defined.
            loop {
                if i < 0 {
                    i = -i;
                } else if i >= n {
                    i = 2 * (n - 1) - i;
                } else {
                    break;
                }
                if n == 1 {
                    return samples[0];
                }
            }
            samples[i as usize]
        };
        let n_bins = N_FFT / 2 + 1;
        let mut data = vec![0f32; self.n_mels * n_frames];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut scratch = vec![Complex::new(0f32, 0f32); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0f32; n_bins];
        for t in 0..n_frames {
            let begin = (t * HOP_LENGTH) as isize - pad as isize;
            if begin >= 0 && begin as usize + N_FFT <= len {
                let frame = &samples[begin as usize..begin as usize + N_FFT];
                for ((b, &x), &w) in buf.iter_mut().zip(frame).zip(&self.window) {
                    *b = Complex::new(x * w, 0.0);
                }
            } else {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = Complex::new(at(begin + k as isize) * self.window[k], 0.0);
                }
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (p, c) in power.iter_mut().zip(&buf[..n_bins]) {
                *p = c.norm_sqr();
            }
            for (m, f) in self.filters.iter().enumerate() {
                let s: f32 = f.weights.iter().zip(&power[f.start..]).map(|(w, p)| w * p).sum();
                data[m * n_frames + t] = s.max(1e-10).log10();
            }
        }
        let max = data.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        for v in data.iter_mut() {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        LogMel { data, n_mels: self.n_mels, n_frames }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_matches_librosa_reference_points() {
        // Values from librosa.filters.mel(sr=16000, n_fft=400, n_mels=80).
        let fb = mel_filterbank(80);
        assert_eq!(fb.len(), 80);
        assert_eq!(fb[0].len(), 201);
        assert!((fb[0][1] - 0.024_862_594).abs() < 1e-6, "{}", fb[0][1]);
        assert!(fb[0][0].abs() < 1e-12 && fb[0][2].abs() < 1e-12);
        // Slaney normalisation: every filter has the same area in Hz (2 / bandwidth * bandwidth / 2 = 1).
        for row in &fb {
            let area: f64 = row.iter().sum::<f64>() * 40.0;
            assert!(area > 0.5 && area < 1.5, "area {area}");
        }
    }

    #[test]
    fn sine_energy_lands_in_the_right_bin() {
        // 1 kHz lies in the mel filter whose centre is nearest to 1 kHz.
        let fe = MelFrontend::new(80);
        let x: Vec<f32> =
            (0..SAMPLE_RATE).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5).collect();
        let mel = fe.log_mel(&x);
        assert_eq!(mel.n_frames, 100);
        let t = 50;
        let col: Vec<f32> = (0..80).map(|m| mel.data[m * mel.n_frames + t]).collect();
        let best = col.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let fb = mel_filterbank(80);
        let expected = (0..80).max_by(|&a, &b| fb[a][25].total_cmp(&fb[b][25])).unwrap(); // bin 25 = 1000 Hz
        assert_eq!(best, expected);
        // The floor is max - 8 in log10 units, i.e. 2.0 below the peak after (x + 4) / 4.
        let min = col.iter().cloned().fold(f32::INFINITY, f32::min);
        assert!((col[best] - min - 2.0).abs() < 1e-4, "{} {}", col[best], min);
    }

    #[test]
    fn window_pads_with_zeros() {
        let mel = LogMel { data: (0..2 * 5).map(|v| v as f32 + 1.0).collect(), n_mels: 2, n_frames: 5 };
        let w = mel.window(3, 3000);
        assert_eq!(w.len(), 2 * N_FRAMES);
        assert_eq!(&w[..3], &[4.0, 5.0, 0.0]);
        assert_eq!(&w[N_FRAMES..N_FRAMES + 3], &[9.0, 10.0, 0.0]);
    }
}
