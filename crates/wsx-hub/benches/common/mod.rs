//! What the fan-out benches share: the open-files limit, the subscribers'
//! tally, reading the next message, reading numbers from events, and what
//! `/proc` says about a process ([`proc`]).
#![allow(dead_code)]

pub mod proc;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use wsx::{MaybeTlsStream, Message, WebSocket};

pub type Error = String;
pub type Ws = WebSocket<MaybeTlsStream>;

/// Raise the soft limit of open files to the hard limit (the servers, the
/// benches' children, inherit it); fail if it stays below `needed`.
pub fn raise_nofile(needed: u64) -> Result<(), Error> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).map_err(|e| format!("cannot raise RLIMIT_NOFILE: {e}"))?;
    if limit < needed {
        return Err(format!(
            "{needed} open files are needed but RLIMIT_NOFILE allows {limit} (raise the hard limit, or use fewer --subscribers)"
        ));
    }
    Ok(())
}

/// Microseconds as milliseconds, for tables.
pub fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one subscriber saw.
pub struct Tally {
    /// Bit `i`: event `i` arrived.
    seen: Vec<u64>,
    pub distinct: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    last: Option<u64>,
}

impl Tally {
    pub fn new(messages: u64) -> Self {
        Tally { seen: vec![0; messages.div_ceil(64) as usize], distinct: 0, duplicates: 0, out_of_order: 0, last: None }
    }

    pub fn record(&mut self, seq: u64) {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        match self.seen.get_mut(word) {
            Some(w) if *w & bit != 0 => self.duplicates += 1,
            Some(w) => {
                *w |= bit;
                self.distinct += 1;
            }
            // A sequence number never published.
            None => self.duplicates += 1,
        }
        if self.last.is_some_and(|l| seq < l) {
            self.out_of_order += 1;
        }
        self.last = Some(self.last.map_or(seq, |l| l.max(seq)));
    }
}

/// A number after `key` in `s` (the publishers write their fields first,
/// and the servers relay them as they came, so a plain search finds them
/// without parsing the event).
pub fn field(s: &str, key: &str) -> Option<u64> {
    let at = s.find(key)? + key.len();
    let digits = s[at..].bytes().take_while(u8::is_ascii_digit).count();
    s[at..at + digits].parse().ok()
}

/// The next message (not a close frame), at most `limit` away.
pub async fn next_message(ws: &mut Ws, what: &str, limit: Duration) -> Result<Message, Error> {
    let m = tokio::time::timeout(limit, ws.recv())
        .await
        .map_err(|_| format!("no {what} within {} s", limit.as_secs()))?
        .ok_or_else(|| format!("closed before {what}"))?
        .map_err(|e| format!("before {what}: {e}"))?;
    match m {
        Message::Close(f) => Err(format!("closed by the server before {what}: {}", close_reason(f.as_ref()))),
        m => Ok(m),
    }
}

pub fn close_reason(f: Option<&wsx::CloseFrame>) -> String {
    f.map_or_else(|| "no code".into(), |f| format!("{} {:?}", u16::from(f.code), f.reason.as_str()))
}
