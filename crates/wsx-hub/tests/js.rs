//! The browser client (`js/wsx-hub.js`) under Node, with the `ws` package
//! from `tests/interop/node` as its WebSocket. Skipped with a notice when
//! Node or `ws` is missing (`scripts/install-interop` installs them).

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use wsx_hub::{Event, HandlerError, Hub};

#[tokio::test]
async fn js_client_smoke() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("../../tests/interop/node/node_modules");
    let node_ok = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node_ok || !modules.join("ws").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "node or the ws package is missing: run scripts/install-interop (required under CI)"
        );
        eprintln!("NOTICE: node or the ws package is missing: skipping the JS client test (scripts/install-interop)");
        return;
    }
    let b = Hub::builder()
        .on("add", |_ctx, ev| async move {
            let (x, y): (i64, i64) = ev.json()?;
            Ok::<_, HandlerError>(json!(x + y))
        })
        .on("ask-me", |ctx, _ev| async move { Ok(ctx.request(Event::new("confirm", json!({"n": 1}))).await?) });
    let (_hub, addr) = start(b).await;
    let out = tokio::process::Command::new("node")
        .arg(root.join("js/test/smoke.mjs"))
        .arg(format!("ws://{addr}/"))
        .env("WS_MODULE_DIR", &modules)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.trim() == "ok", "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
