//! Closing a connection from another task: a [`CloseHandle`] asks a
//! [`crate::WebSocket`] to start its closing handshake; the connection acts
//! on it the next time it is read (it wakes the reader for that).

use crate::{CloseCode, CloseFrame, Utf8Bytes};
use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use wsx_proto::MAX_REASON_LEN;

/// Asks a connection to close, from any task: the server's graceful
/// shutdown (1001), a slow consumer (1008), a kick by an administrator.
/// Cheap to clone. The connection sends the close frame and finishes the
/// closing handshake while it is being read (`recv`, the `Stream`, or a
/// [`crate::server::Pump`]); the reader sees the peer's close frame and then
/// the end, as for a close it started itself.
///
/// ```no_run
/// # async fn run(mut ws: wsx::WebSocket<tokio::net::TcpStream>) {
/// let handle = ws.close_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     handle.close(wsx::CloseCode::GoingAway, "session expired");
/// });
/// while let Some(msg) = ws.recv().await { /* ... */ }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct CloseHandle(Arc<Control>);

#[derive(Debug, Default)]
struct Control {
    /// A close was asked for (read on every poll of the connection).
    requested: AtomicBool,
    frame: Mutex<Option<CloseFrame>>,
    waker: AtomicWaker,
}

impl CloseHandle {
    /// Ask the connection to close with `code` and `reason` (cut to the 123
    /// bytes a close frame can carry, RFC 6455 §5.5, at a character
    /// boundary). The first request wins: returns whether this one was it.
    /// A code that may not be sent (1005, 1006, 1015, §7.4.1) is sent as
    /// 1000.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        let mut frame = self.0.frame.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.requested.load(Ordering::Acquire) {
            return false;
        }
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let code = if code.is_sendable() { code } else { CloseCode::Normal };
        *frame = Some(CloseFrame { code, reason: Utf8Bytes::from(&reason[..end]) });
        self.0.requested.store(true, Ordering::Release);
        drop(frame);
        self.0.waker.wake();
        true
    }

    /// Whether a close was asked for.
    #[inline]
    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::Acquire)
    }

    /// The close asked for, once (the connection takes it).
    pub(crate) fn take(&self) -> Option<CloseFrame> {
        if !self.0.requested.load(Ordering::Acquire) {
            return None;
        }
        self.0.frame.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Wake `waker` when a close is asked for.
    pub(crate) fn register(&self, waker: &Waker) {
        self.0.waker.register(waker);
    }

    /// Whether two handles ask the same connection.
    pub fn same(&self, other: &CloseHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_wins_and_is_taken_once() {
        let h = CloseHandle::default();
        assert!(h.take().is_none());
        assert!(h.close(CloseCode::GoingAway, "bye"));
        assert!(!h.close(CloseCode::PolicyViolation, "later"));
        let f = h.take().unwrap();
        assert_eq!((f.code, f.reason.as_str()), (CloseCode::GoingAway, "bye"));
        assert!(h.take().is_none());
        assert!(h.is_requested());
    }

    #[test]
    fn reasons_are_cut_to_a_close_frame_at_a_character_boundary() {
        let h = CloseHandle::default();
        h.close(CloseCode::Normal, &"é".repeat(100)); // 200 bytes
        let f = h.take().unwrap();
        assert_eq!(f.reason.len(), 122);
        let h = CloseHandle::default();
        h.close(CloseCode::Abnormal, "");
        assert_eq!(h.take().unwrap().code, CloseCode::Normal, "1006 is never sent");
    }
}
