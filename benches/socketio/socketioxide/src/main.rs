//! socketioxide serving the relay contract of the Socket.IO fan-out
//! benchmark (crates/wsx-hub/benches/socketio_fanout.rs), on namespace `/`:
//!
//! - `join(room, ack)`: join the room, `ack(true)`;
//! - `leave(room, ack)`: leave it, `ack(true)`;
//! - `publish(room, event, ...args[, ack])`: `socket.to(room).emit(event,
//!   ...args)` (everyone in the room but the sender), then `ack(true)` when
//!   the client asked for an ack.
//!
//! Usage: `bench-socketioxide PORT [THREADS]`: one server thread (a tokio
//! current_thread runtime, as Node's single thread) unless THREADS > 1.
//! Prints `listening PORT` once it listens; serves until killed.

use std::net::SocketAddr;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

/// All the arguments of an event, however many: deserialized as a tuple
/// (socketioxide hands a tuple every argument, anything else the first).
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Args(v))
            }
        }
        d.deserialize_tuple(usize::MAX, V)
    }
}

/// Arguments to emit, each one its own (a tuple to socketioxide; a `Vec`
/// would be one array argument).
struct Spread<'a>(&'a [Value]);

impl Serialize for Spread<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for v in self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

async fn on_connect(socket: SocketRef) {
    socket.on("join", |s: SocketRef, Data(Args(args)): Data<Args>, ack: AckSender| async move {
        let room = args.first().and_then(Value::as_str).map(str::to_owned);
        if let Some(r) = &room {
            s.join(r.clone());
        }
        let _ = ack.send(&room.is_some());
    });
    socket.on("leave", |s: SocketRef, Data(Args(args)): Data<Args>, ack: AckSender| async move {
        let room = args.first().and_then(Value::as_str).map(str::to_owned);
        if let Some(r) = &room {
            s.leave(r.clone());
        }
        let _ = ack.send(&room.is_some());
    });
    socket.on("publish", |s: SocketRef, Data(Args(args)): Data<Args>, ack: AckSender| async move {
        let ok = match (args.first().and_then(Value::as_str), args.get(1).and_then(Value::as_str)) {
            (Some(room), Some(event)) => s.to(room.to_owned()).emit(event, &Spread(&args[2..])).await.is_ok(),
            _ => false,
        };
        let _ = ack.send(&ok);
    });
}

async fn serve(port: u16) -> std::io::Result<()> {
    let (svc, io) = SocketIo::builder()
        // The default, 128 packets per socket, drops events under a burst;
        // Node's queue has no bound.
        .max_buffer_size(100_000)
        .build_svc();
    io.ns("/", on_connect);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening {}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let result = rt.and_then(|rt| rt.block_on(serve(port)));
    if let Err(e) = result {
        eprintln!("bench-socketioxide: {e}");
        std::process::exit(1);
    }
}
