//! [`Refused`]: what a server said when it refused an opening handshake.

use bytes::Bytes;
use http::Response;

/// The server's answer to an opening handshake that it refused: a status
/// other than 101, the headers, and the start of the body (at most 4 KiB),
/// where servers often say why (e.g. which subprotocol to offer).
///
/// ```no_run
/// # async fn run() {
/// match wsx::connect("ws://127.0.0.1:9001/hub").await {
///     Err(wsx::Error::Refused(r)) => eprintln!("{} says: {}", r.status(), r.body_line().unwrap_or("")),
///     Err(e) => eprintln!("{e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Refused {
    pub(crate) response: Response<Bytes>,
}

impl Refused {
    /// The status the server answered with.
    pub fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    /// The whole response: status, headers, the start of the body.
    pub fn response(&self) -> &Response<Bytes> {
        &self.response
    }

    /// The first non-blank line of the body, if it starts with text (at
    /// most 200 characters).
    pub fn body_line(&self) -> Option<&str> {
        let body = self.response.body();
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default(),
        };
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Some(match line.char_indices().nth(200) {
            Some((i, _)) => &line[..i],
            None => line,
        })
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server answered {} instead of 101 Switching Protocols", self.status())?;
        match self.body_line() {
            Some(line) => write!(f, ": {line}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Refused {}
