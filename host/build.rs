//! Compiles the shipped plugins (`plugins/*`) for `wasm32-wasip2` and embeds
//! them as the built-in versions (see `src/plugins/builtin.rs`).

#[path = "build/guests.rs"]
mod guests;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ sits in the workspace");
    guests::rerun_if_any_file_changes(&root.join("wit"));
    guests::rerun_if_any_file_changes(Path::new("build"));
    // sqlx::migrate! embeds these: a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let artifacts = guests::Guests {
        workspace: &root.join("plugins"),
        subcommand: &["build"],
        target: "wasm32-wasip2",
        label: "plugins",
    }
    .build();
    guests::write_table("built_in_plugins.rs", "BUILT_IN", &artifacts);
}
