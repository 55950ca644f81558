//! examples/socketio-chat in headless Chromium: the example's page and the
//! official client's bundle (socket.io-client 4.8.4 `dist/socket.io.min.js`)
//! copied into a temporary directory, `wsx serve --socketio --static DIR`,
//! and `tests/browser/socketio-chat.js` driving two pages, with the server
//! killed and restarted on the same port twice (tests/common/restart.rs).
//!
//! Needs Chromium and `tests/browser/node_modules` (`scripts/install-browser`)
//! and the bundle in `tests/socketio/node/node_modules`
//! (`scripts/install-socketio`): without them the test prints a notice and
//! passes, except under CI (`CI` set), where it fails.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/restart.rs"]
mod restart;

use browser::{in_ci, prerequisites, repo_root};
use std::path::PathBuf;
use std::time::Duration;

/// The whole scenario, browser start included (it takes about 15 s).
const DEADLINE: Duration = Duration::from_secs(90);

/// The version the example asks for (examples/socketio-chat/fetch-client).
const CLIENT_VERSION: &str = "4.8.4";

/// socket.io-client's browser bundle, as scripts/install-socketio installs it.
fn bundle() -> Result<PathBuf, String> {
    let package = repo_root().join("tests/socketio/node/node_modules/socket.io-client");
    let manifest = std::fs::read_to_string(package.join("package.json")).unwrap_or_default();
    let version = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    let js = package.join("dist/socket.io.min.js");
    match version {
        Some(v) if v == CLIENT_VERSION && js.is_file() => Ok(js),
        Some(v) => Err(format!("socket.io-client {v}, not {CLIENT_VERSION}, is installed in {}", package.display())),
        None => Err(format!("socket.io-client is not installed in {}", package.display())),
    }
}

#[test]
fn socketio_chat_in_two_browser_pages_survives_server_restarts() {
    let ready = prerequisites().and_then(|_| bundle());
    let bundle = match ready {
        Ok(js) => js,
        Err(missing) => {
            assert!(
                !in_ci(),
                "the Socket.IO browser chat test cannot run: {missing} (scripts/install-browser, scripts/install-socketio; required under CI)"
            );
            eprintln!(
                "NOTICE: skipping the Socket.IO browser chat test: {missing} (scripts/install-browser, scripts/install-socketio)"
            );
            return;
        }
    };
    let dir = common::temp_dir("socketio-chat-browser");
    let site = dir.join("site");
    std::fs::create_dir(&site).unwrap();
    for file in ["index.html", "app.js"] {
        std::fs::copy(repo_root().join("examples/socketio-chat").join(file), site.join(file)).unwrap();
    }
    std::fs::copy(&bundle, site.join("socket.io.min.js")).unwrap();

    let args = ["--socketio".into(), "--static".into(), site.into_os_string()];
    let script = repo_root().join("tests/browser/socketio-chat.js");
    let steps = ["killed", "restarted", "killed", "restarted"];
    let run = restart::run(&script, &args, &dir, DEADLINE, &steps);
    eprintln!("{}(in {:?})", run.progress, run.elapsed);
    let _ = std::fs::remove_dir_all(&dir);
}
