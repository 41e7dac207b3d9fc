// The body of the `echo-v1` and `echo-v2` providers. Each crate defines
// `VERSION` and `TEXT`, then `include!`s this file, so the two versions
// differ in nothing but those two constants: a hot-swap test that sees
// "echo v2" knows the new file, and only it, is serving.
//
// (An included file cannot carry inner `//!` docs; each crate's lib.rs has them.)

wit_bindgen::generate!({
    world: "provider",
    // Relative to the including crate's manifest (tests/guests/echo-vN).
    path: "../../../wit",
    // The world imports wasi:http (and through it wasi:io and wasi:clocks):
    // generate those bindings too. This guest never calls them, so the built
    // component does not import them.
    generate_all,
});

use exports::scribe::plugin::transcriber::{
    Guest, ProviderError, ProviderInfo, TranscribeRequest, Transcript,
};

/// The exported component; the host sees it through the `transcriber` interface.
struct Echo;

impl Guest for Echo {
    fn info() -> ProviderInfo {
        ProviderInfo {
            name: "echo".into(),
            version: VERSION.into(),
            accepted_formats: vec!["wav".into()],
            max_audio_bytes: 26_214_400,
            in_process: false,
        }
    }

    fn transcribe(_request: TranscribeRequest) -> Result<Transcript, ProviderError> {
        Ok(Transcript {
            text: TEXT.into(),
            language: Some("en".into()),
            duration: None,
            segments: Vec::new(),
        })
    }
}

export!(Echo);
