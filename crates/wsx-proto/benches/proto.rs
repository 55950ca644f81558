//! Micro benchmarks of the hot functions: masking, UTF-8 validation, frame
//! encode and decode. Run: `cargo bench -p wsx-proto --bench proto`. The
//! masking loops and the UTF-8 validator are internals, reached through the
//! hidden `wsx_proto::fuzzing` module (the dev-dependency turns it on).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wsx_proto::fuzzing::{apply_mask, apply_mask_naive, apply_mask_portable, Utf8Validator};
use wsx_proto::{Config, Connection, Gather, Incoming, Message, Mode, Role, Utf8Bytes};

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [64usize, 1024, 16 << 10, 1 << 20] {
        let mut buf = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("wide", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box([1, 2, 3, 4])))
        });
        g.bench_with_input(BenchmarkId::new("portable", size), &size, |b, _| {
            b.iter(|| apply_mask_portable(black_box(&mut buf), black_box([1, 2, 3, 4]), 0))
        });
        if size <= 16 << 10 {
            g.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
                b.iter(|| apply_mask_naive(black_box(&mut buf), black_box([1, 2, 3, 4]), 0))
            });
        }
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii = "hello world, this is ascii text. ".repeat(2000);
    let mixed = "κόσμε 𝄞 naïve café — ".repeat(2000);
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(BenchmarkId::new("validator", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(text.as_bytes())).unwrap();
                v.finish().unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("std", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(text.as_bytes())).unwrap())
        });
    }
    let s = Utf8Bytes::from(mixed.as_str());
    g.throughput(Throughput::Bytes(s.len() as u64));
    g.bench_function("as_str/unchecked", |b| b.iter(|| black_box(&s).as_str().len()));
    g.bench_function("as_str/checked", |b| b.iter(|| std::str::from_utf8(black_box(&s).as_bytes()).unwrap().len()));
    g.finish();
}

/// A 16 KiB request head read whole, and read one byte per call (a
/// slowloris peer): the second costs one scan of each byte, not one scan of
/// the whole buffer per byte.
fn handshake(c: &mut Criterion) {
    use wsx_proto::handshake::HeadReader;
    let mut head = String::from("GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n");
    while head.len() < 16 << 10 {
        // 1 KiB header lines: 16 of them, well under the 128-line limit.
        head.push_str(&format!("X-Filler: {}\r\n", "a".repeat(1000)));
    }
    head.push_str("\r\n");
    let bytes = head.as_bytes();
    let max = 32 << 10;
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("head/whole/16KiB", |b| b.iter(|| HeadReader::new(max).request(bytes).unwrap().unwrap()));
    g.bench_function("head/byte_by_byte/16KiB", |b| {
        b.iter(|| {
            let mut reader = HeadReader::new(max);
            (1..=bytes.len()).find_map(|n| reader.request(&bytes[..n]).unwrap()).unwrap()
        })
    });
    g.finish();
}

/// What a connection in `role` writes for `n` binary messages of `payload`.
fn written(role: Role, payload: &Bytes, n: usize) -> Vec<u8> {
    let mut conn = Connection::new(role, &Config::default());
    for _ in 0..n {
        conn.writer.send(Message::Binary(payload.clone())).unwrap();
    }
    conn.writer.take_output()
}

/// Drop what `conn` has queued, as if it were written.
fn discard_output(conn: &mut Connection) {
    let n = conn.writer.buffered_amount();
    conn.writer.advance_write(n);
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    for size in [16usize, 1024, 64 << 10] {
        let payload = Bytes::from(vec![b'x'; size]);
        // Encode: server (no mask) and client (mask while copying).
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, &Config::default());
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new(format!("encode/{role:?}"), size), |b| {
                b.iter(|| {
                    conn.writer.send(Message::Binary(payload.clone())).unwrap();
                    discard_output(&mut conn);
                })
            });
        }
        // Decode: 64 masked frames fed at once to a server.
        let wire = written(Role::Client, &payload, 64);
        g.throughput(Throughput::Bytes(64 * size as u64));
        g.bench_function(BenchmarkId::new("decode/64-masked", size), |b| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server, &Config::default());
                server.reader.feed(black_box(&wire));
                let mut n = 0;
                while let Some(Incoming::Message(m)) = server.receive(Mode::Whole).unwrap() {
                    n += m.len();
                }
                assert_eq!(n, 64 * size);
            })
        });
    }
    g.finish();
}

/// The sans-I/O part of one pipelined round trip, per burst of 16 small
/// messages (the peer benchmark's scenario (b)): the server parses 16
/// masked frames as chunks, regroups them and queues the echoes; the client
/// queues 16 messages (masking) and parses the 16 echoes.
fn echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo");
    let payload = Bytes::from(vec![b'x'; 20]);
    let wire = written(Role::Client, &payload, 16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("server/16x20B", |b| {
        let mut server = Connection::new(Role::Server, &Config::default());
        let mut gather = Gather::default();
        b.iter(|| {
            server.reader.read_buf().extend_from_slice(black_box(&wire));
            while let Some(Incoming::Chunk(c)) = server.receive(Mode::Streaming).unwrap() {
                if let Some(out) = gather.push(c) {
                    server.writer.send(out.into_message()).unwrap();
                }
            }
            discard_output(&mut server);
        })
    });
    let echoes = written(Role::Server, &payload, 16);
    g.bench_function("client/16x20B", |b| {
        let mut client = Connection::new(Role::Client, &Config::default());
        b.iter(|| {
            for _ in 0..16 {
                client.writer.send(Message::Binary(payload.clone())).unwrap();
            }
            discard_output(&mut client);
            client.reader.read_buf().extend_from_slice(black_box(&echoes));
            let mut got = 0;
            while let Some(Incoming::Chunk(c)) = client.receive(Mode::Streaming).unwrap() {
                got += c.data.len();
            }
            assert_eq!(got, 16 * 20);
        })
    });
    g.finish();
}

fn deflate(c: &mut Criterion) {
    use wsx_proto::deflate::DeflateParams;
    let mut g = c.benchmark_group("deflate");
    // JSON-like text: what WebSocket applications mostly send.
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < 64 << 10 {
        text.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"event\":\"price\",\"value\":{}.{:02},\"tags\":[\"a\",\"b\"]}}\n",
            i % 97,
            (i * 7919) % 10000,
            i % 100
        ));
        i += 1;
    }
    let payload = Bytes::from(text);
    // With context takeover the connection's own state is zlib-rs, or stock
    // zlib once a memLevel bounds it (the memory presets).
    for (name, nct, mem_level) in [
        ("context-takeover", false, None),
        ("context-takeover-memlevel-8", false, Some(8)),
        ("no-context-takeover", true, None),
    ] {
        let params = DeflateParams {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 0,
            level: 6,
            mem_level,
        };
        let mut server = Connection::with_deflate(Role::Server, &Config::default(), Some(&params));
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(BenchmarkId::new("compress-64KiB-json", name), |b| {
            b.iter(|| {
                server.writer.send(Message::Binary(payload.clone())).unwrap();
                let n = server.writer.buffered_amount();
                server.writer.advance_write(n);
            })
        });
        // Decompress: a client inflating messages the server compressed.
        let mut sender = Connection::with_deflate(Role::Server, &Config::default(), Some(&params));
        let mut wire = Vec::new();
        for _ in 0..16 {
            sender.writer.send(Message::Binary(payload.clone())).unwrap();
            wire.extend_from_slice(&sender.writer.take_output());
        }
        g.throughput(Throughput::Bytes(16 * payload.len() as u64));
        g.bench_function(BenchmarkId::new("decompress-16x64KiB-json", name), |b| {
            b.iter(|| {
                let mut client = Connection::with_deflate(Role::Client, &Config::default(), Some(&params));
                client.reader.feed(black_box(&wire));
                let mut n = 0;
                while let Some(Incoming::Message(m)) = client.receive(Mode::Whole).unwrap() {
                    n += m.len();
                }
                assert_eq!(n, 16 * payload.len());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, masking, utf8, frames, echo, deflate, handshake);
criterion_main!(benches);
