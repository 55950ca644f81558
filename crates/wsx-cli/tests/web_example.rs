//! The `wsx::web` example of the README and of the module's docs, run
//! against `wsx serve` as they say; and a subprotocol that plain `wsx
//! serve` does not select, which fails with an `error` event that says so.

mod common;

use common::serve;
use std::time::Duration;
use wsx::web::{Event, WebSocket};

async fn events(ws: &WebSocket) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), ws.next_event()).await.unwrap() {
        if matches!(event, Event::Open) {
            ws.send("hello").unwrap();
        }
        if matches!(event, Event::Message(_)) {
            ws.close(Some(1000), Some("bye")).unwrap();
        }
        seen.push(event);
    }
    seen
}

#[tokio::test]
async fn the_web_example_works_against_wsx_serve() {
    let server = serve(&[]);
    let ws = WebSocket::new(&server.url, &[]).unwrap();
    let seen = events(&ws).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], Event::Open);
    assert!(matches!(&seen[1], Event::Message(m) if m.data().as_text() == Some("hello")), "{seen:?}");
    assert!(matches!(&seen[2], Event::Close(c) if c.code() == 1000 && c.was_clean()), "{seen:?}");

    // With --subprotocol chat, the server selects what the client offers.
    let chat = serve(&["--subprotocol", "chat"]);
    let ws = WebSocket::new(&chat.url, &["chat"]).unwrap();
    let seen = events(&ws).await;
    assert_eq!(seen.first(), Some(&Event::Open), "{seen:?}");
    assert_eq!(ws.protocol(), "chat");
}

#[tokio::test]
async fn a_subprotocol_wsx_serve_does_not_select_says_so_in_the_error_event() {
    let server = serve(&[]);
    let ws = WebSocket::new(&server.url, &["chat"]).unwrap();
    let seen = events(&ws).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    match &seen[0] {
        Event::Error(e) => assert_eq!(e.message(), "the server selected none of the subprotocols offered (chat)"),
        other => panic!("expected error, got {other:?}"),
    }
    assert!(matches!(&seen[1], Event::Close(c) if c.code() == 1006 && !c.was_clean()), "{seen:?}");
}
