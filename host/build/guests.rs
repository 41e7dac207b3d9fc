//! Builds a cargo workspace of wasm guests from a build script.
//!
//! Shared by `host/build.rs` (the shipped plugins) and `tests/build.rs`
//! (the test guests and the plugin template), so both build guests the same
//! way: a nested cargo with its own target directory next to the outer one
//! (shared by debug and release builds, so guests compile once), without
//! the outer build's rustflags, its output sent to stderr (a build script's
//! stdout is read by cargo), and a clear message when the wasm target is
//! missing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One workspace (or standalone crate) to build.
pub struct Guests<'a> {
    /// Directory holding the workspace's `Cargo.toml`.
    pub workspace: &'a Path,
    /// The cargo subcommand: `["build"]` or `["component", "build"]`.
    pub subcommand: &'a [&'a str],
    /// The target triple the artifacts land under.
    pub target: &'a str,
    /// A name for the nested target directory.
    pub label: &'a str,
}

/// A built component: its crate name (with '-') and its path.
pub struct Artifact {
    /// The crate name, e.g. `retry-backoff`.
    pub name: String,
    /// Where the `.wasm` file was copied (inside `OUT_DIR`).
    pub path: PathBuf,
}

impl Guests<'_> {
    /// Builds in release mode and copies every `.wasm` artifact into
    /// `OUT_DIR/<label>/`. Panics (failing the outer build) with the reason.
    pub fn build(&self) -> Vec<Artifact> {
        rerun_if_any_file_changes(self.workspace);
        match self.subcommand.first() {
            Some(&"component") => require_cargo_component(),
            _ => require_target(self.target),
        }
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
        let target_dir = shared_target_dir(&out_dir).join("wasm-guests").join(self.label);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(self.workspace)
            .args(self.subcommand)
            .args(["--release", "--workspace", "--manifest-path"])
            .arg(self.workspace.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .stdout(Stdio::from(std::io::stderr()));
        if self.subcommand.first() == Some(&"build") {
            command.args(["--target", self.target]);
        }
        // Stale artifacts of renamed or removed crates must not be embedded:
        // remove them all, and cargo relinks what the workspace still has.
        let release_dir = target_dir.join(self.target).join("release");
        for old in std::fs::read_dir(&release_dir).into_iter().flatten().flatten() {
            if old.path().extension().is_some_and(|e| e == "wasm") {
                let _ = std::fs::remove_file(old.path());
            }
        }
        let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", self.label));
        assert!(status.success(), "building the wasm guests in {} failed (see above)", self.workspace.display());
        self.collect(&release_dir, &out_dir.join(self.label))
    }

    fn collect(&self, from: &Path, to: &Path) -> Vec<Artifact> {
        std::fs::create_dir_all(to).expect("creating the artifact directory");
        let mut artifacts: Vec<Artifact> = std::fs::read_dir(from)
            .unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
            .map(|path| {
                let file = path.file_name().expect("a file").to_owned();
                let dest = to.join(&file);
                std::fs::copy(&path, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
                let stem = Path::new(&file).file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
                Artifact { name: stem.replace('_', "-"), path: dest }
            })
            .collect();
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        artifacts
    }
}

/// Asks cargo to rerun the build script when any file under `dir` changes
/// (every file is named: a directory alone is not reliably rescanned),
/// skipping `target/` and hidden entries.
pub fn rerun_if_any_file_changes(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rerun_if_any_file_changes(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The outer build's target directory (the ancestor of `OUT_DIR` holding
/// cargo's `CACHEDIR.TAG`), so nested builds are shared across profiles.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or(out_dir)
        .to_path_buf()
}

/// Fails with the command to run when the Rust target is not installed.
fn require_target(target: &str) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("running rustc");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let installed = Path::new(&sysroot).join("lib/rustlib").join(target).exists();
    assert!(installed, "the Rust target {target} is not installed; run: rustup target add {target}");
}

/// Fails with the command to run when cargo-component is not installed.
fn require_cargo_component() {
    let found = Command::new("cargo-component").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "cargo-component is not installed; run: cargo install cargo-component --locked");
}

/// Writes `const NAME: &[(&str, &[u8])]` listing the artifacts, for
/// `include!` in the crate.
pub fn write_table(file: &str, const_name: &str, artifacts: &[Artifact]) {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut code = format!("/// Generated by the build script.\npub const {const_name}: &[(&str, &[u8])] = &[\n");
    for a in artifacts {
        code.push_str(&format!("    ({:?}, include_bytes!({:?})),\n", a.name, a.path.display().to_string()));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join(file), code).expect("writing the generated table");
}
