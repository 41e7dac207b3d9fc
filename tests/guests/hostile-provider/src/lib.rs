//! A provider that misbehaves on purpose, so the host's tests can prove that
//! one bad plugin cannot hurt the process or other jobs.
//!
//! The misbehaviour is chosen by the `mode` setting (`[plugins.NAME.config]`
//! in the host's config file), read at `transcribe` time so that one build
//! serves every test:
//!
//! | `mode`      | what `transcribe` does                                    |
//! | ----------- | --------------------------------------------------------- |
//! | `loop`      | spins forever: the CPU deadline must stop it              |
//! | `alloc`     | allocates and touches 1 MiB after 1 MiB, keeping it all: the memory cap must stop it |
//! | `panic`     | panics (a trap, with `panic = "abort"`)                   |
//! | `huge`      | answers a text of `huge_bytes` bytes (default 16 MiB)     |
//! | `log-flood` | calls the host's `log` 100,000 times with long lines, then answers |
//! | otherwise   | answers `ok`                                              |

wit_bindgen::generate!({
    world: "provider",
    // Relative to this crate's manifest: the host's own contract.
    path: "../../../wit",
    // The world imports wasi:http (and through it wasi:io and wasi:clocks):
    // generate those bindings too. This guest never calls them, so the built
    // component does not import them.
    generate_all,
});

use exports::scribe::plugin::transcriber::{
    Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript,
};
use scribe::plugin::host::{self, LogLevel};

/// One MiB: the step in which `alloc` mode grows its memory.
const MIB: usize = 1024 * 1024;

/// The size of `huge` mode's answer when `huge_bytes` is unset or not a number.
const DEFAULT_HUGE_BYTES: usize = 16 * MIB;

/// How many lines `log-flood` mode logs: far more than the host lets one call log.
const LOG_FLOOD_LINES: u32 = 100_000;

/// The length of each `log-flood` line: longer than the host keeps of a line.
const LOG_FLOOD_LINE_BYTES: usize = 3000;

/// The exported component; the host sees it through the `transcriber` interface.
struct HostileProvider;

impl Guest for HostileProvider {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "hostile-provider".into(),
            version: "1.0.0".into(),
            accepted_formats: vec!["wav".into()],
            max_audio_bytes: 26_214_400,
            in_process: false,
        }
    }

    fn transcribe(_request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        match host::config_get("mode").as_deref() {
            Some("loop") => spin_forever(),
            Some("alloc") => grow_forever(),
            Some("panic") => panic!("hostile-provider: panic mode"),
            Some("huge") => {
                let size = host::config_get("huge_bytes")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(DEFAULT_HUGE_BYTES);
                Ok(transcript("a".repeat(size)))
            }
            Some("log-flood") => {
                // Longer than the host keeps of one line, built once so the
                // time goes into the host calls, not into formatting.
                let line = "flood ".repeat(LOG_FLOOD_LINE_BYTES / 6);
                for _ in 0..LOG_FLOOD_LINES {
                    host::log(LogLevel::Info, &line);
                }
                Ok(transcript("ok".into()))
            }
            _ => Ok(transcript("ok".into())),
        }
    }
}

/// Burns CPU forever. `black_box` keeps the optimiser from proving the loop
/// useless and removing it (an empty infinite loop is also undefined
/// behaviour in LLVM's eyes, which could turn it into anything).
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB after 1 MiB forever, writing to every page so the memory
/// is really committed, and keeps every chunk so nothing can be reused.
fn grow_forever() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        kept.push(std::hint::black_box(chunk));
    }
}

/// A transcript with only a text, as the simple modes answer.
fn transcript(text: String) -> Transcript {
    Transcript {
        text,
        language: None,
        duration: None,
        segments: Vec::new(),
    }
}

export!(HostileProvider);
