//! Random bytes into a server and a client `Connection` (driven with
//! `Connection::receive`: the `Reader::receive` + `Writer::perform` that
//! `wsx` runs), in chunks the fuzzer picks, with the local side sending, fragmenting, pinging and
//! closing in between and the transport taking the output in pieces.
//!
//! Checked: no panic; the messages and the error are the same as when the
//! bytes are fed whole; every message is within the limits; the buffers
//! stay within what the limits allow; a failure queues a close frame with
//! the error's code; everything written is well-formed, and a peer of the
//! other role reads it without error and gets exactly the messages sent.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::io::IoSlice;
use wsx_fuzz::*;
use wsx_proto::deflate::DeflateParams;
use wsx_proto::{CloseFrame, CloseState, Config, Connection, Message, Mode, ProtocolError, Role, SendError};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Feed the next 1..=512 bytes of `data`.
    Feed(u16),
    /// Send a whole message of `len` bytes.
    Send {
        text: bool,
        len: u16,
    },
    /// Send one fragment.
    Fragment {
        text: bool,
        len: u16,
        fin: bool,
    },
    Ping(u8),
    Pong(u8),
    /// Close with this code (0: no code) and a reason of `reason` bytes.
    Close {
        code: u16,
        reason: u8,
    },
    /// The transport accepts this many bytes.
    Write(u16),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    limits: Limits,
    /// Read in `Mode::Streaming` (messages in pieces) instead of `Mode::Whole`.
    streaming: bool,
    deflate: Option<DeflateIn>,
    ops: Vec<Op>,
    /// The bytes received: the rest of the input, as is.
    data: &'a [u8],
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| b'a' + ((i + seed as usize) % 26) as u8).collect::<Vec<u8>>().into()
}

/// Write up to `n` queued bytes into `out`, as a transport would.
fn write_some(conn: &mut Connection, n: usize, out: &mut Vec<u8>) {
    let mut taken = 0;
    {
        let mut slices = [IoSlice::new(&[]); 8];
        let k = conn.writer.write_chunks(&mut slices);
        for s in &slices[..k] {
            let m = (n - taken).min(s.len());
            out.extend_from_slice(&s[..m]);
            taken += m;
            if taken == n {
                break;
            }
        }
    }
    conn.writer.advance_write(taken);
}

fn run(role: Role, input: &Input<'_>) {
    let config: Config = input.limits.config();
    // Compression level 0 or 1: the compressor is the slowest part of a run
    // and this target is about framing (the `inflate` target covers more).
    let params = input.deflate.map(|d| d.params()).map(|p| DeflateParams { level: p.level.min(1), ..p });
    let data = input.data;

    // Reference: everything at once.
    let mut whole = Connection::with_deflate(role, &config, params.as_ref());
    whole.reader.feed(data);
    let mut expected = Vec::new();
    drain(&mut whole, &config, &mut expected);
    assert!(whole.reader.buffer_capacity() <= buffer_bound(&config, data.len()));

    // The same bytes in pieces, with sends in between.
    let mut conn = Connection::with_deflate(role, &config, params.as_ref());
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut failed = false;
    // The close code the output must carry, once known.
    let mut failure_code: Option<u16> = None;
    let mut sent: Vec<Message> = Vec::new();
    let mut fragments: Option<(bool, Vec<u8>)> = None;
    let mut reading = Reading { config: config.clone(), streaming: input.streaming, partial: None };
    for op in &input.ops {
        let open = conn.writer.close_state() == CloseState::Open;
        match *op {
            Op::Feed(n) => feed(
                &mut conn,
                &mut reading,
                data,
                &mut at,
                1 + n as usize % 512,
                &mut events,
                &mut failed,
                &mut failure_code,
            ),
            Op::Send { text, len } => {
                let p = payload(len as usize % 2048, 1);
                let m = if text { Message::text(String::from_utf8(p.to_vec()).unwrap()) } else { Message::Binary(p) };
                let r = conn.writer.send(m.clone());
                match r {
                    Ok(()) => {
                        assert!(open && fragments.is_none());
                        sent.push(m);
                    }
                    Err(SendError::Closed) => assert!(!open),
                    Err(SendError::FragmentOrder) => assert!(fragments.is_some()),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Fragment { text, len, fin } => {
                let p = payload(len as usize % 2048, 2);
                match conn.writer.send_fragment(text, p.clone(), fin) {
                    Ok(()) => {
                        assert!(open);
                        let (t, mut acc) = fragments.take().unwrap_or((text, Vec::new()));
                        acc.extend_from_slice(&p);
                        if fin {
                            sent.push(if t {
                                Message::text(String::from_utf8(acc).unwrap())
                            } else {
                                Message::binary(acc)
                            });
                        } else {
                            fragments = Some((t, acc));
                        }
                    }
                    Err(SendError::Closed) => assert!(!open),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Ping(n) | Op::Pong(n) => {
                let p = payload(n as usize, 3);
                let m = if matches!(op, Op::Ping(_)) { Message::Ping(p) } else { Message::Pong(p) };
                match conn.writer.send(m) {
                    Ok(()) => assert!(open && n as usize <= 125),
                    Err(SendError::Closed) => assert!(!open),
                    Err(SendError::ControlPayloadTooLong(l)) => assert!(l > 125 && open),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Close { code, reason } => {
                let frame = (code != 0).then(|| CloseFrame::new(code, "r".repeat(reason as usize)));
                match conn.writer.close(frame.clone()) {
                    Ok(()) => assert!(open),
                    Err(SendError::Closed) => assert!(!open),
                    Err(SendError::InvalidCloseCode(c)) => assert!(!frame.unwrap().code.is_sendable() && c == code),
                    Err(SendError::ReasonTooLong(l)) => assert!(l > 123),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Write(n) => write_some(&mut conn, n as usize, &mut out),
        }
    }
    while at < data.len() {
        feed(&mut conn, &mut reading, data, &mut at, 4096, &mut events, &mut failed, &mut failure_code);
    }
    assert!(
        same_events(&events, &expected, input.streaming),
        "chunked input gave other events than whole input: {events:?} {expected:?}"
    );

    // The transport ends.
    conn.reader.end_of_stream();
    let eof = conn.receive(Mode::Whole);
    match conn.writer.close_state() {
        CloseState::Closed | CloseState::Failed => {}
        s => panic!("state {s:?} after end of stream"),
    }
    assert!(matches!(eof, Ok(None) | Err(ProtocolError::AbnormalClosure)), "{eof:?}");
    assert!(conn.reader.is_done());
    out.extend_from_slice(&conn.writer.take_output());
    assert!(conn.writer.should_close_transport());

    let compression = params.is_some();
    let mut state = OutState::default();
    check_output(role, compression, &out, &mut state);
    if let Some(code) = failure_code {
        assert_eq!(state.close, Some(Some(code)), "the failure's close frame");
    }

    // A peer reads all of it without error and gets what was sent.
    let mut peer = Connection::with_deflate(opposite(role), &Config::default(), params.as_ref());
    peer.reader.feed(&out);
    let mut got = Vec::new();
    assert!(!drain(&mut peer, &Config::default(), &mut got), "the peer failed on our output: {got:?}");
    let data_msgs: Vec<Message> = got
        .into_iter()
        .filter_map(|e| match e {
            Event::Msg(m @ (Message::Text(_) | Message::Binary(_))) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(data_msgs, sent);
}

/// Feed the next `n` bytes of `data` and take every message; record the
/// failure's close code when the connection was open when it failed.
/// How messages are read.
struct Reading {
    /// The connection's config.
    config: Config,
    streaming: bool,
    /// The chunks of a message so far, when streaming.
    partial: Option<(bool, Vec<u8>)>,
}

#[allow(clippy::too_many_arguments)]
fn feed(
    conn: &mut Connection,
    reading: &mut Reading,
    data: &[u8],
    at: &mut usize,
    n: usize,
    events: &mut Vec<Event>,
    failed: &mut bool,
    code: &mut Option<u16>,
) {
    let end = (*at + n).min(data.len());
    // As the I/O layer does: reserve what the reader asks for, then read.
    let hint = conn.reader.read_hint();
    assert!((4096..=1 << 20).contains(&hint), "read hint {hint}");
    let buf = conn.reader.read_buf();
    if buf.capacity() - buf.len() < hint {
        buf.reserve(hint);
    }
    conn.reader.feed(&data[*at..end]);
    let before = conn.writer.close_state();
    let failing = !*failed
        && if reading.streaming {
            drain_chunks(conn, &reading.config, events, &mut reading.partial)
        } else {
            drain(conn, &reading.config, events)
        };
    if failing {
        *failed = true;
        if let (CloseState::Open, Some(Event::Err(e))) = (before, events.last()) {
            *code = Some(e.close_code().into());
        }
    }
    let bound = buffer_bound(&reading.config, end - *at);
    let held = conn.reader.buffer_capacity();
    assert!(held <= bound, "the reader holds {held} bytes, over {bound}");
    *at = end;
}

fuzz_target!(|input: Input<'_>| {
    run(Role::Server, &input);
    run(Role::Client, &input);
});
