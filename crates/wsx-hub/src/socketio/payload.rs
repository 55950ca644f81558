//! What an event carries: its arguments (JSON values) and binary
//! attachments, referenced from the arguments by placeholders
//! (`{"_placeholder":true,"num":N}`), as Socket.IO puts them on the wire.

use crate::error::HandlerError;
use crate::protocol::EventPacket;
use bytes::Bytes;
use serde_json::{json, Value};

/// The arguments of an event or an ack, and its binary attachments.
///
/// ```
/// use wsx_hub::socketio::Payload;
/// use serde_json::json;
/// let one = Payload::from(json!({"text": "hi"}));                 // one argument
/// let two = Payload::args(vec![json!(1), json!("two")]);          // two arguments
/// let file = Payload::from(json!("a.png")).binary(vec![0u8, 1, 2]); // a name, then the bytes
/// assert_eq!(one.len(), 1);
/// assert_eq!(two.len(), 2);
/// assert_eq!(file.attachments().len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub(crate) args: Vec<Value>,
    pub(crate) attachments: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn none() -> Self {
        Self::default()
    }

    /// One argument: `value` as JSON.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Point { x: i32, y: i32 }
    /// let p = wsx_hub::socketio::Payload::of(&Point { x: 1, y: 2 }).unwrap();
    /// assert_eq!(p.values()[0], serde_json::json!({"x": 1, "y": 2}));
    /// ```
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::from(serde_json::to_value(value)?))
    }

    /// These arguments, in order.
    pub fn args(args: Vec<Value>) -> Self {
        Self { args, attachments: Vec::new() }
    }

    /// The arguments and attachments as they came (placeholders in the
    /// arguments refer to the attachments by index).
    pub fn with_attachments(args: Vec<Value>, attachments: Vec<Bytes>) -> Self {
        Self { args, attachments }
    }

    /// One more argument.
    pub fn arg(mut self, value: Value) -> Self {
        self.args.push(value);
        self
    }

    /// One more argument: these bytes (a `Buffer` / `ArrayBuffer` for the
    /// client).
    pub fn binary(mut self, bytes: impl Into<Bytes>) -> Self {
        let num = self.attachments.len();
        self.attachments.push(bytes.into());
        self.args.push(json!({"_placeholder": true, "num": num}));
        self
    }

    /// Without its first `n` arguments (the attachments stay: the
    /// placeholders left still refer to them).
    ///
    /// ```
    /// use wsx_hub::socketio::Payload;
    /// use serde_json::json;
    /// let p = Payload::args(vec![json!("room"), json!("event")]).binary(vec![7u8]).skip(2);
    /// assert_eq!(p.len(), 1);
    /// assert_eq!(p.binary_at(0).map(|b| b.to_vec()), Some(vec![7]));
    /// ```
    pub fn skip(mut self, n: usize) -> Self {
        self.args.drain(..n.min(self.args.len()));
        self
    }

    /// The arguments.
    pub fn values(&self) -> &[Value] {
        &self.args
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there is no argument.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `i` as a typed value.
    pub fn get<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, HandlerError> {
        let v = self.args.get(i).cloned().unwrap_or(Value::Null);
        Ok(serde_json::from_value(v)?)
    }

    /// The bytes that argument `i` stands for, when it is a placeholder.
    pub fn binary_at(&self, i: usize) -> Option<&Bytes> {
        placeholder_num(self.args.get(i)?).and_then(|n| self.attachments.get(n))
    }

    /// As a hub event named `name`: one argument is the event's data, any
    /// other number is an array with `spread` set (PROTOCOL.md, "Socket.IO").
    pub(crate) fn into_event(self, name: &str) -> EventPacket {
        let mut p = EventPacket::new(name, Value::Null);
        p.attachments = self.attachments;
        if self.args.len() == 1 {
            p.data = self.args.into_iter().next().unwrap_or(Value::Null);
        } else {
            p.data = Value::Array(self.args);
            p.spread = true;
        }
        p
    }

    /// The arguments of a hub event, the reverse of
    /// [`Payload::into_event`]. Attachments that no placeholder refers to
    /// (a `wsx-hub.v1` client's) become arguments of their own, after the
    /// others.
    pub(crate) fn from_event(p: &EventPacket) -> Self {
        let mut args = match (&p.data, p.spread) {
            (Value::Array(a), true) => a.clone(),
            (v, _) => vec![v.clone()],
        };
        let mut referenced = vec![false; p.attachments.len()];
        for a in &args {
            mark_placeholders(a, &mut referenced);
        }
        for (num, r) in referenced.iter().enumerate() {
            if !r {
                args.push(json!({"_placeholder": true, "num": num}));
            }
        }
        Self { args, attachments: p.attachments.clone() }
    }
}

impl From<Value> for Payload {
    /// One argument.
    fn from(v: Value) -> Self {
        Self { args: vec![v], attachments: Vec::new() }
    }
}

impl From<Vec<Value>> for Payload {
    /// These arguments.
    fn from(args: Vec<Value>) -> Self {
        Self::args(args)
    }
}

impl From<()> for Payload {
    /// No arguments.
    fn from(_: ()) -> Self {
        Self::none()
    }
}

fn placeholder_num(v: &Value) -> Option<usize> {
    let o = v.as_object()?;
    if o.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    usize::try_from(o.get("num")?.as_u64()?).ok()
}

fn mark_placeholders(v: &Value, referenced: &mut [bool]) {
    if let Some(n) = placeholder_num(v) {
        if let Some(r) = referenced.get_mut(n) {
            *r = true;
        }
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| mark_placeholders(x, referenced)),
        Value::Object(o) => o.values().for_each(|x| mark_placeholders(x, referenced)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_argument_is_the_hub_data_others_are_spread() {
        let one = Payload::from(json!({"a": 1})).into_event("e");
        assert_eq!((one.data.clone(), one.spread), (json!({"a": 1}), false));
        assert_eq!(Payload::from_event(&one).args, vec![json!({"a": 1})]);
        // An array as the one argument stays one argument.
        let arr = Payload::from(json!([1, 2])).into_event("e");
        assert!(!arr.spread);
        assert_eq!(Payload::from_event(&arr).args, vec![json!([1, 2])]);
        for args in [vec![], vec![json!(1), json!("2")], vec![Value::Null, Value::Null]] {
            let p = Payload::args(args.clone()).into_event("e");
            assert!(p.spread);
            assert_eq!(Payload::from_event(&p).args, args);
        }
    }

    #[test]
    fn unreferenced_attachments_become_arguments() {
        let mut p = EventPacket::new("file", json!({"name": "a"}));
        p.attachments = vec![Bytes::from_static(b"xy")];
        let back = Payload::from_event(&p);
        assert_eq!(back.args, vec![json!({"name": "a"}), json!({"_placeholder": true, "num": 0})]);
        assert_eq!(back.binary_at(1).map(|b| &b[..]), Some(&b"xy"[..]));
        let referenced = Payload::from(json!("a")).binary(vec![1u8]).into_event("f");
        assert_eq!(Payload::from_event(&referenced).args.len(), 2);
    }
}
