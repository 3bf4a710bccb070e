//! Runs `specs/tools/verify_bundle.py`, the bundle verifier written in Python from `specs/`
//! alone, so tests can hold the Rust chain and the specification to the same bytes.
//!
//! A missing `python3` or a missing Python package is a test failure with the command that
//! installs it (`tests/run` does), never a skip. This module only runs the script; judging its
//! answer is the test's business.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `specs/tools/` of this workspace.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("specs/tools")
}

/// Panics with a readable message unless `python3` and every package of
/// `specs/tools/requirements.txt` the verifier imports are installed.
pub fn require_python() {
    let req = tools_dir().join("requirements.txt");
    let probe = Command::new("python3")
        .args([
            "-c",
            "import cryptography.hazmat.primitives.asymmetric.ed25519",
        ])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 is needed to run specs/tools/verify_bundle.py and could not be started ({e}); \
             install Python 3.8+ and `python3 -m pip install -r {}` (tests/run does both)",
            req.display()
        ),
        Ok(o) if !o.status.success() => panic!(
            "the Python package `cryptography` needed by specs/tools/verify_bundle.py is missing: \
             run `python3 -m pip install -r {}` (tests/run does this); python said: {}",
            req.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) => {}
    }
}

/// `python3 specs/tools/verify_bundle.py GENESIS BUNDLE` (assertions enabled: never `-O`).
/// When `BUNDLE`'s directory holds a `bundle.json`, the script also compares its result with
/// that file's `report`.
pub fn verify_bundle(genesis: &Path, bundle: &Path) -> Output {
    require_python();
    Command::new("python3")
        .arg(tools_dir().join("verify_bundle.py"))
        .arg(genesis)
        .arg(bundle)
        .env_remove("PYTHONOPTIMIZE")
        .output()
        .expect("run python3 specs/tools/verify_bundle.py")
}
