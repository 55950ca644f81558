//! A binary envelope refused after its JSON header was read: the refusal
//! answers the header's request id (an `ack` with `error`), as for a text
//! frame; only an unreadable header gets an `error` packet without id.

mod common;

use common::*;
use wsx::Message;
use wsx_hub::protocol::{codes, Packet};
use wsx_hub::Hub;

/// An envelope: `header`, then each attachment with its length, then
/// `trailing` bytes.
fn envelope(header: &str, attachments: &[&[u8]], trailing: &[u8]) -> Message {
    let mut b = (header.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    for a in attachments {
        b.extend_from_slice(&(a.len() as u32).to_be_bytes());
        b.extend_from_slice(a);
    }
    b.extend_from_slice(trailing);
    Message::binary(b)
}

/// Send `msg`; the refusal's id and code.
async fn refusal_of(ws: &mut Ws, msg: Message) -> (Option<u64>, String) {
    ws.send(msg).await.unwrap();
    match next(ws).await {
        Packet::Ack(a) => (Some(a.id), a.result.expect_err("a refusal").code),
        Packet::Error(e) => (e.id, e.error.code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_envelopes_answer_their_request_id() {
    let (_hub, addr) = start(Hub::builder()).await;
    let (mut ws, _) = raw(addr).await;
    let cases: [(&str, Message); 6] = [
        ("a join inside an envelope", envelope(r#"{"t":"join","room":"r","id":11,"attachments":1}"#, &[b"x"], b"")),
        ("no attachment", envelope(r#"{"t":"event","event":"e","id":12,"attachments":0}"#, &[], b"")),
        ("65 attachments", envelope(r#"{"t":"event","event":"e","id":13,"attachments":65}"#, &[&b"x"[..]; 65], b"")),
        (
            "fewer attachments than announced",
            envelope(r#"{"t":"event","event":"e","id":14,"attachments":2}"#, &[b"x"], b""),
        ),
        (
            "an attachment cut short",
            envelope(r#"{"t":"event","event":"e","id":15,"attachments":1}"#, &[], b"\0\0\0\x09abc"),
        ),
        (
            "bytes after the last attachment",
            envelope(r#"{"t":"publish","room":"r","event":"e","id":16,"attachments":1}"#, &[b"x"], b"\0"),
        ),
    ];
    for (i, (case, msg)) in cases.into_iter().enumerate() {
        assert_eq!(refusal_of(&mut ws, msg).await, (Some(11 + i as u64), codes::BAD_FRAME.to_owned()), "{case}");
    }
    // An unknown type in a readable header: answered with its id too.
    let msg = envelope(r#"{"t":"teleport","id":17,"attachments":1}"#, &[b"x"], b"");
    assert_eq!(refusal_of(&mut ws, msg).await, (Some(17), codes::UNKNOWN_TYPE.to_owned()));
}

#[tokio::test]
async fn an_unreadable_header_gets_an_error_without_id() {
    let (_hub, addr) = start(Hub::builder()).await;
    let (mut ws, _) = raw(addr).await;
    // Cut short, not UTF-8, not JSON, an id out of range.
    let header = r#"{"t":"join","room":"r","id":18,"attachments":1}"#;
    let mut cut = (header.len() as u32 + 1).to_be_bytes().to_vec();
    cut.extend_from_slice(header.as_bytes());
    let mut not_utf8 = 4u32.to_be_bytes().to_vec();
    not_utf8.extend_from_slice(b"\"\xff\xfe\"");
    for msg in [
        Message::binary(cut),
        Message::binary(not_utf8),
        envelope(r#"{"t":"event","id":19,"#, &[b"x"], b""),
        envelope(r#"{"t":"event","event":"e","id":9007199254740992,"attachments":0}"#, &[], b""),
    ] {
        assert_eq!(refusal_of(&mut ws, msg).await, (None, codes::BAD_FRAME.to_owned()));
    }
}
