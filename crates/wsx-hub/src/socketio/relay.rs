//! The relay: the events with which Socket.IO clients use rooms with no
//! server code (what `wsx serve --socketio` serves on `/`).

use super::namespace::Namespace;
use super::payload::Payload;
use serde_json::{json, Value};

/// A namespace whose clients join rooms and publish to them:
///
/// | the client emits | the server |
/// | --- | --- |
/// | `join(room, ack?)` | puts it in `room`; acks `true`, or `{"error": ...}` |
/// | `leave(room, ack?)` | takes it out; acks `true` |
/// | `publish(room, event, ...args, ack?)` | emits `event` with `args` (binary too) to everyone in `room` but the sender, on every node; acks `true` |
/// | `whoami(ack)` | acks `{"id": ..., "rooms": [...]}` (sorted) |
///
/// The room names are the hub's (a `wsx-hub.v1` client in room `r` of the
/// same hub gets the events published to `r`, and the other way round).
/// When the hub forbids client publishing ([`crate::HubBuilder::client_publish`]),
/// `publish` acks `{"error":"forbidden"}`.
///
/// ```
/// use wsx_hub::socketio::{relay, SocketIo};
/// let io = SocketIo::builder().namespace("/", relay()).build();
/// # drop(io);
/// ```
pub fn relay() -> Namespace {
    Namespace::new()
        .on("join", |socket, msg| async move {
            let joined = match msg.data::<String>() {
                Ok(room) => socket.join(&room).await.map_err(|e| e.to_string()),
                Err(_) => Err("join(room): room must be a string".to_owned()),
            };
            msg.ack(answer(joined));
            Ok(())
        })
        .on("leave", |socket, msg| async move {
            let left = match msg.data::<String>() {
                Ok(room) => socket.leave(&room).await.map_err(|e| e.to_string()),
                Err(_) => Err("leave(room): room must be a string".to_owned()),
            };
            msg.ack(answer(left));
            Ok(())
        })
        .on("publish", |socket, msg| async move {
            let (room, event) = match (msg.payload().values().first(), msg.payload().values().get(1)) {
                (Some(Value::String(r)), Some(Value::String(e))) => (r.clone(), e.clone()),
                _ => {
                    msg.ack(json!({"error": "publish(room, event, ...args): room and event must be strings"}));
                    return Ok(());
                }
            };
            if !socket.io.hub.inner.s.client_publish {
                msg.ack(json!({"error": "forbidden"}));
                return Ok(());
            }
            // The arguments go on as they came (no copy); the ack after.
            let ack = msg.acker();
            let args: Payload = msg.into_payload().skip(2);
            socket.to(&room).emit(&event, args);
            if let Some(ack) = ack {
                ack.send(json!(true).into());
            }
            Ok(())
        })
        .on("whoami", |socket, msg| async move {
            let mut rooms = socket.rooms();
            rooms.sort();
            msg.ack(json!({"id": socket.id(), "rooms": rooms}));
            Ok(())
        })
}

/// `true`, or `{"error": ...}`.
fn answer(r: Result<(), String>) -> Value {
    match r {
        Ok(()) => json!(true),
        Err(e) => json!({"error": e}),
    }
}
