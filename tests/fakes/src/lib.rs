//! Stand-ins for the outside world, for Scribe's tests and benches and for
//! trying Scribe without provider keys: a fake OpenAI transcription
//! service ([`openai`]) and a fake Replicate predictions API ([`replicate`]),
//! both following `provider-apis.md` to the letter, and
//! generated sample audio ([`wav`]).
//!
//! This crate depends on nothing of Scribe's, so the host can use it for
//! `scribe bench` (behind the `bench` feature, never in a default build)
//! and the end-to-end tests can use it without a dependency cycle.

pub mod openai;
pub mod replicate;

/// A small valid WAV file (16-bit mono, 8 kHz) of `samples` samples whose
/// values depend on `seed`, so each seed gives distinct audio.
pub fn wav(seed: u32, samples: usize) -> Vec<u8> {
    let data_len = (samples * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples as u32 {
        out.extend_from_slice(&(seed.wrapping_mul(31).wrapping_add(i.wrapping_mul(37)) as i16).to_le_bytes());
    }
    out
}
