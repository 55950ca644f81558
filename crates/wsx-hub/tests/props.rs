//! Property tests of the wire protocol: every packet round-trips through
//! the encoder and the decoder, and no input makes the decoder panic.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use wsx_hub::protocol::*;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.:/\\-é€\n]{1,40}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn attachments() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from), 0..4)
}

fn id() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(0..=MAX_ID)
}

fn member() -> impl Strategy<Value = Member> {
    (name(), json_value()).prop_map(|(conn, meta)| Member { conn, meta })
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (name(), ".{0,20}").prop_map(|(code, message)| ErrorBody { code, message })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (any::<u32>(), name(), json_value()).prop_map(|(version, conn, meta)| Packet::Welcome(Welcome {
            version,
            conn,
            meta
        })),
        (name(), json_value(), id(), prop::option::of(name()), prop::option::of(name()), attachments(), any::<bool>())
            .prop_map(|(event, data, id, room, from, attachments, spread)| {
                // `spread` says that `data` is an argument list: only arrays are.
                let spread = spread && data.is_array();
                Packet::Event(EventPacket { event, data, id, room, from, attachments, spread })
            }),
        (name(), name(), json_value(), id(), any::<bool>(), attachments()).prop_map(
            |(room, event, data, id, echo, attachments)| Packet::Publish(PublishPacket {
                room,
                event,
                data,
                id,
                echo,
                attachments
            })
        ),
        (0..=MAX_ID, prop_oneof![json_value().prop_map(Ok), error_body().prop_map(Err)])
            .prop_map(|(id, result)| Packet::Ack(AckPacket { id, result })),
        (name(), id()).prop_map(|(room, id)| Packet::Join(RoomRequest { room, id })),
        (name(), id()).prop_map(|(room, id)| Packet::Leave(RoomRequest { room, id })),
        (name(), prop::option::of(name()), prop::option::of(1..=MAX_PAGE), 0..=MAX_ID)
            .prop_map(|(room, after, limit, id)| Packet::Members(MembersRequest { room, after, limit, id })),
        (
            name(),
            any::<u64>(),
            prop::option::of((prop::collection::vec(member(), 0..4), prop::collection::vec(member(), 0..4)))
        )
            .prop_map(|(room, count, diff)| Packet::Presence(PresencePacket {
                room,
                count,
                diff: diff.map(|(joins, leaves)| PresenceDiff { joins, leaves })
            })),
        (id(), error_body()).prop_map(|(id, error)| Packet::Error(ErrorPacket { id, error })),
    ]
}

fn type_name() -> impl Strategy<Value = String> {
    let known = ["event", "ack", "join", "leave", "members", "publish", "presence", "welcome", "error"];
    prop_oneof![prop::sample::select(known.to_vec()).prop_map(String::from), ".{0,8}"]
}

fn field_name() -> impl Strategy<Value = String> {
    let known = [
        "id",
        "room",
        "event",
        "data",
        "error",
        "count",
        "joins",
        "leaves",
        "after",
        "limit",
        "attachments",
        "v",
        "conn",
        "echo",
    ];
    prop::sample::select(known.to_vec()).prop_map(String::from)
}

fn decode(w: Wire) -> Result<Packet, DecodeError> {
    match w {
        Wire::Text(s) => decode_text(&s),
        Wire::Binary(b) => decode_binary(b),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn packets_round_trip(p in packet()) {
        prop_assert_eq!(decode(encode(&p)), Ok(p));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_binary(Bytes::from(bytes.clone()));
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = decode_text(s);
        }
    }

    /// Envelopes with a valid header and mangled lengths or trailing bytes.
    #[test]
    fn mangled_envelopes_never_panic(p in packet(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        if let Wire::Binary(b) = encode(&p) {
            let mut v = b.to_vec();
            let i = cut.index(v.len());
            v[i] ^= flip;
            let _ = decode_binary(Bytes::from(v.clone()));
            v.truncate(i);
            let _ = decode_binary(Bytes::from(v));
        }
    }

    /// JSON objects with random fields of the right names.
    #[test]
    fn random_objects_never_panic(t in type_name(), fields in prop::collection::btree_map(field_name(), json_value(), 0..6)) {
        let mut o: serde_json::Map<String, Value> = fields.into_iter().collect();
        o.insert("t".into(), json!(t));
        let _ = decode_text(&Value::Object(o).to_string());
    }
}
