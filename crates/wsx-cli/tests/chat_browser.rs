//! examples/chat in headless Chromium: `wsx serve --hub --static
//! examples/chat` and `tests/browser/chat.js` driving two pages, with the
//! server killed and restarted on the same port in the middle
//! (tests/common/restart.rs).
//!
//! Needs Chromium and `tests/browser/node_modules` (`scripts/install-browser`):
//! without them the test prints a notice and passes, except under CI (`CI`
//! set), where it fails.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/restart.rs"]
mod restart;

use browser::{in_ci, prerequisites, repo_root};
use std::time::Duration;

/// The whole scenario, browser start included.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn chat_in_two_browser_pages_survives_a_server_restart() {
    if let Err(missing) = prerequisites() {
        assert!(!in_ci(), "the browser chat test cannot run: {missing} (scripts/install-browser; required under CI)");
        eprintln!("NOTICE: skipping the browser chat test: {missing} (scripts/install-browser)");
        return;
    }
    let dir = common::temp_dir("chat-browser");
    let args = ["--hub".into(), "--static".into(), repo_root().join("examples/chat").into_os_string()];
    let run = restart::run(&repo_root().join("tests/browser/chat.js"), &args, &dir, DEADLINE, &["killed", "restarted"]);
    eprintln!("{}", run.progress);
    let _ = std::fs::remove_dir_all(&dir);
}
