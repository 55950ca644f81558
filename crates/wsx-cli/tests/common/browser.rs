//! What the headless-Chromium tests need: the repository's root, whether
//! this is CI (where a missing browser fails the test instead of skipping
//! it), and Node with Chromium and playwright-core installed
//! (scripts/install-browser).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("which").arg(program).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Node, if Chromium and playwright-core are installed too.
pub fn prerequisites() -> Result<PathBuf, String> {
    let node = which("node").ok_or("`node` is not on PATH")?;
    let chromium = std::env::var_os("WSX_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    let modules = repo_root().join("tests/browser/node_modules");
    if !modules.join("playwright-core/package.json").is_file() {
        return Err(format!("playwright-core is not installed in {}", modules.display()));
    }
    Ok(node)
}
