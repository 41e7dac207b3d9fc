//! Builds the wasm guests the tests load: the hostile and echo guests in
//! `tests/guests`, and the plugin template in `examples/plugin-template`
//! both ways a plugin author would build it (`cargo build --target
//! wasm32-wasip2` and `cargo component build`).

#[path = "../host/build/guests.rs"]
mod guests;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace");
    guests::rerun_if_any_file_changes(&root.join("wit"));
    let mut artifacts = guests::Guests {
        workspace: &root.join("tests/guests"),
        subcommand: &["build"],
        target: "wasm32-wasip2",
        label: "test-guests",
    }
    .build();
    let template = root.join("examples/plugin-template");
    for (subcommand, target, label) in [
        (&["build"][..], "wasm32-wasip2", "template-wasip2"),
        (&["component", "build"][..], "wasm32-wasip1", "template-component"),
    ] {
        let built = guests::Guests { workspace: &template, subcommand, target, label }.build();
        artifacts.extend(built.into_iter().map(|mut a| {
            a.name = format!("{}-{label}", a.name);
            a
        }));
    }
    guests::write_table("test_guests.rs", "GUESTS", &artifacts);
}
