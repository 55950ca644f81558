//! Where the randomness of a connection comes from: the masking keys of a
//! client (RFC 6455 §5.3) and the nonce of its opening handshake (§4.1).
//! By default both come from a CSPRNG and differ from run to run; given a
//! seed (`Config::with_rng_seed`) or a key (`ClientHandshake::new_with_key`),
//! a run writes the same bytes every time, so it can be replayed.

mod common;

use bytes::Bytes;
use wsx_proto::handshake::{Accept, ClientHandshake, HeadReader, UpgradeRequest};
use wsx_proto::{CloseFrame, Config, Connection, Incoming, Message, Mode, Role};

/// What a client made with `config` writes for a fixed script of sends:
/// messages, fragments, a ping and a close.
fn client_output(config: &Config) -> Vec<u8> {
    let mut c = Connection::new(Role::Client, config);
    c.writer.send(Message::text("hello")).unwrap();
    c.writer.send(Message::binary(vec![7u8; 3000])).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"frag"), false).unwrap();
    c.writer.send(Message::ping("p")).unwrap();
    c.writer.send_fragment(true, Bytes::from_static(b"ment"), true).unwrap();
    c.writer.close(Some(CloseFrame::new(1000, "bye"))).unwrap();
    c.writer.take_output()
}

/// The masking keys of the frames in `wire` (client frames, all masked).
fn masking_keys(mut wire: &[u8]) -> Vec<[u8; 4]> {
    let mut keys = Vec::new();
    while !wire.is_empty() {
        let h = common::header(wire);
        keys.push(h.mask.expect("a client masks every frame (§5.2)"));
        wire = &wire[h.len + h.payload_len..];
    }
    keys
}

#[test]
fn the_same_seed_writes_the_same_bytes() {
    let seeded = Config::default().with_rng_seed(42);
    let a = client_output(&seeded);
    let b = client_output(&seeded);
    assert_eq!(a, b, "two runs with one seed differ");
    assert_ne!(a, client_output(&Config::default().with_rng_seed(43)), "another seed, the same keys");
    // §5.3: still a fresh key for every frame (six frames here).
    let keys = masking_keys(&a);
    assert_eq!(keys.len(), 6);
    assert!(keys.windows(2).all(|w| w[0] != w[1]), "{keys:?}");
    // And the bytes are a valid stream: a server reads what was sent.
    let mut server = Connection::new(Role::Server, &Config::default());
    server.reader.feed(&a);
    let mut got = Vec::new();
    while let Some(i) = server.receive(Mode::Whole).unwrap() {
        got.push(i.into_message());
    }
    assert_eq!(
        got,
        [
            Message::text("hello"),
            Message::binary(vec![7u8; 3000]),
            Message::ping("p"),
            Message::text("fragment"),
            Message::Close(Some(CloseFrame::new(1000, "bye")))
        ]
    );
}

#[test]
fn by_default_masking_keys_differ_between_runs() {
    // §5.3 / §10.3: keys from the CSPRNG, unpredictable: two runs of the same
    // sends differ (six 32-bit keys alike by chance: about 2^-192).
    assert_ne!(client_output(&Config::default()), client_output(&Config::default()));
}

#[test]
fn a_seed_changes_nothing_for_a_server() {
    // A server never masks (§5.1): its output is the same with or without
    // a seed.
    let send = |config: &Config| {
        let mut s = Connection::new(Role::Server, config);
        s.writer.send(Message::text("same")).unwrap();
        s.writer.take_output()
    };
    assert_eq!(send(&Config::default()), send(&Config::default().with_rng_seed(1)));
}

#[test]
fn handshake_nonce_is_random_unless_given() {
    let request = || http::Request::get("ws://example.com/chat").body(()).unwrap();
    let key_of = |bytes: &[u8]| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let line = text.lines().find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-key:")).unwrap();
        line.to_owned()
    };
    // §4.1: "a nonce ... randomly selected" for each connection.
    let (a, _) = ClientHandshake::new(request()).unwrap();
    let (b, _) = ClientHandshake::new(request()).unwrap();
    assert_ne!(key_of(&a), key_of(&b));
    // Given by the caller: the same key, the same bytes, and the response
    // check expects that key's accept value (§4.2.2).
    let (c, hs_c) = ClientHandshake::new_with_key(request(), [1; 16]).unwrap();
    let (d, _) = ClientHandshake::new_with_key(request(), [1; 16]).unwrap();
    assert_eq!(c, d);
    // A server's answer to that request carries the key's accept value.
    let (sent, _) = HeadReader::new(16 << 10).request(&c).unwrap().unwrap();
    let upgrade = UpgradeRequest::from_request(sent).unwrap();
    assert_eq!(upgrade.key(), "AQEBAQEBAQEBAQEBAQEBAQ==");
    let response = upgrade.accept(&Accept::new(), None).unwrap();
    assert!(hs_c.check_response(&response).is_ok());
}

#[test]
fn the_received_stream_does_not_depend_on_the_seed() {
    // The seed is the sender's: a receiver reads a seeded client's frames
    // like any other.
    let mut client = Connection::new(Role::Client, &Config::default().with_rng_seed(9));
    client.writer.send(Message::text("x")).unwrap();
    let mut server = Connection::new(Role::Server, &Config::default().with_rng_seed(9));
    server.reader.feed(&client.writer.take_output());
    assert_eq!(server.receive(Mode::Whole), Ok(Some(Incoming::Message(Message::text("x")))));
}
