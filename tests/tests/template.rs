//! The plugin template loads into the runtime whichever way its author
//! built it, so the host links everything a `cargo component` guest imports.

use scribe_host::plugins::types::TranscribeRequest;
use scribe_host::plugins::{Source, World};
use scribe_tests::{guest, text_server, TestHost};

#[tokio::test]
async fn both_template_builds_load_and_transcribe_through_a_granted_host() {
    let addr = text_server().await;
    let mut toml = String::new();
    for name in ["tpl-wasip2", "tpl-component"] {
        toml.push_str(&format!(
            "[plugins.{name}]\nallowed_hosts = [\"{addr}\"]\n[plugins.{name}.config]\nurl = \"http://{addr}/\"\n"
        ));
    }
    let host = TestHost::start(&toml, &[]).await;
    for (name, build) in [("tpl-wasip2", "plugin-template-template-wasip2"), ("tpl-component", "plugin-template-template-component")] {
        host.plugins.install(name, guest(build).to_vec(), Source::File).await.unwrap_or_else(|e| panic!("{build}: {e}"));
        assert_eq!(host.plugins.get(name).unwrap().world, World::Provider);
        let request = TranscribeRequest { audio: vec![7; 1000], audio_format: "wav".into(), ..Default::default() };
        let transcript = host.plugins.transcribe(name, request).await.unwrap_or_else(|e| panic!("{build}: {e}"));
        assert_eq!(transcript.text, "heard 1000 bytes", "{build}");
    }
}
