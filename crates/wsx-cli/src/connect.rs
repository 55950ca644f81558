//! `wsx connect URL`: an interactive client in the spirit of wscat.
//!
//! Each stdin line goes out as a text (or, with `--binary`, binary)
//! message and every message received is printed on its own line. It works
//! the same in a pipe: at the end of stdin it sends close 1000, waits for the
//! server's close, and exits. `-x` sends messages given on the command line
//! instead, prints replies for `--wait` seconds, then closes. `--json`
//! prints one JSON object per event for scripts.

use crate::{io_phrase, seconds, status, Failure};
use base64::Engine;
use clap::{Args, ValueEnum};
use http::header::{HeaderName, HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use wsx::{CloseCode, CloseFrame, Message};

const EXIT_HELP: &str = "\
Exit status:
  0  the connection was closed cleanly (close handshake with 1000 or 1001, or no code)
  1  bad arguments
  2  could not connect (DNS, TCP, timeout, or the server refused the handshake)
  3  the connection ended abnormally (no close frame, a protocol error, an I/O
     error, or a close code other than 1000/1001)

Examples:
  wsx connect ws://127.0.0.1:9001/                 # type lines, see replies
  echo hello | wsx connect ws://127.0.0.1:9001/    # prints hello, exits 0
  wsx connect ws://127.0.0.1:9001/ -x one -x two --wait 1
  wsx connect ws://127.0.0.1:9001/ --json -H 'Authorization: Bearer t' --subprotocol chat";

/// How binary messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BinaryFormat {
    /// Lower-case hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Options of `wsx connect`.
#[derive(Args, Debug, Clone)]
#[command(after_help = EXIT_HELP)]
pub struct ConnectArgs {
    /// The server's URL: ws://host[:port]/path or wss://... (ws:// is assumed without a scheme).
    url: String,
    /// Add a request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Offer a subprotocol (repeatable, in order of preference).
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Send this Origin header (browsers always send one).
    #[arg(long)]
    origin: Option<String>,
    /// Send stdin lines (and -x messages) as binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// How to print received binary messages (and ping/pong payloads).
    #[arg(long, value_enum, default_value_t = BinaryFormat::Hex)]
    binary_format: BinaryFormat,
    /// Send a ping every SECS seconds.
    #[arg(long, value_name = "SECS")]
    ping_interval: Option<f64>,
    /// Send MSG once connected (repeatable, in order), print replies until
    /// --wait expires, then close and exit. Stdin is not read.
    #[arg(short = 'x', long = "execute", value_name = "MSG")]
    execute: Vec<String>,
    /// With -x: seconds to print replies before closing.
    #[arg(short = 'w', long, value_name = "SECS", default_value_t = 2.0)]
    wait: f64,
    /// Print one JSON object per line for each event (open, message, ping,
    /// pong, close, error), each with an RFC 3339 "time".
    #[arg(long)]
    json: bool,
    /// Print the handshake response: status line and headers.
    #[arg(long)]
    show_handshake: bool,
    /// Seconds allowed for the TCP connection and the opening handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Largest message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Do not offer permessage-deflate (offered by default, as browsers do).
    #[arg(long)]
    no_compression: bool,
    /// Connect through this proxy: http://[user:pass@]host:port (HTTP
    /// CONNECT) or socks5://[user:pass@]host:port.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Use the proxy that https_proxy / http_proxy / all_proxy / no_proxy
    /// name, as curl does.
    #[arg(long, conflicts_with = "proxy")]
    proxy_from_env: bool,
}

/// One line of input from stdin.
type Line = Vec<u8>;

/// Run `wsx connect`; returns the exit status.
pub fn run(args: ConnectArgs) -> Result<u8, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the runtime: {e}")))?;
    let printer = Printer::new(args.json, args.binary_format);
    rt.block_on(session(args, printer))
}

/// The URL with `ws://` added when it has no scheme.
fn normalize_url(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("ws://{url}")
    }
}

/// The handshake request: URL, headers, Origin, subprotocols.
fn build_request(url: &str, args: &ConnectArgs) -> Result<http::Request<()>, Failure> {
    let uri: http::Uri = url.parse().map_err(|e| Failure::error(format!("invalid URL {url:?}: {e}")))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("ws" | "wss") => {}
        _ => return Err(Failure::error(format!("invalid URL {url:?}: the scheme must be ws:// or wss://"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Failure::error(format!("invalid URL {url:?}: no host")));
    }
    let mut request = http::Request::new(());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for h in &args.headers {
        let bad = || Failure::error(format!("invalid header {h:?}: expected \"Name: value\""));
        let (name, value) = h.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        headers.append(name, value);
    }
    if let Some(origin) = &args.origin {
        let v = HeaderValue::from_str(origin).map_err(|_| Failure::error(format!("invalid origin {origin:?}")))?;
        headers.insert(ORIGIN, v);
    }
    if !args.subprotocols.is_empty() {
        let list = args.subprotocols.join(", ");
        let v = HeaderValue::from_str(&list).map_err(|_| Failure::error(format!("invalid subprotocol in {list:?}")))?;
        headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(request)
}

/// Why connecting failed, as one phrase, and the exit status.
fn connect_failure(url: &str, e: wsx::Error) -> Failure {
    let (status, why) = match &e {
        wsx::Error::Io(io) => (status::CONNECT, io_phrase(io)),
        wsx::Error::HandshakeTimeout => (status::CONNECT, "timed out".to_owned()),
        wsx::Error::Handshake(h) => (status::CONNECT, h.to_string()),
        wsx::Error::Url(m) => (status::ERROR, format!("invalid URL: {m}")),
        other => (status::CONNECT, other.to_string()),
    };
    Failure { status, message: format!("cannot connect to {url}: {why}") }
}

async fn session(args: ConnectArgs, mut out: Printer) -> Result<u8, Failure> {
    let url = normalize_url(&args.url);
    let request = build_request(&url, &args)?;
    let connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
    let wait = seconds("--wait", args.wait)?;
    let ping_every = match args.ping_interval {
        Some(s) => match seconds("--ping-interval", s)? {
            d if d.is_zero() => return Err(Failure::error("--ping-interval must be more than 0")),
            d => Some(d),
        },
        None => None,
    };
    let mut config = wsx::Config::default()
        .with_max_message_size(args.max_message_size)
        .with_max_frame_size(args.max_message_size)
        .with_handshake_timeout(connect_timeout)
        .with_compression(!args.no_compression);
    if let Some(p) = &args.proxy {
        match wsx::proxy::Proxy::parse(p) {
            Ok(p) => config = config.with_proxy(p),
            Err(e) => return Err(Failure::error(format!("--proxy {p}: {e}"))),
        }
    } else if args.proxy_from_env {
        config = config.with_proxy_from_env();
    }

    let (mut ws, response) = match wsx::connect_with(request, &config).await {
        Ok(x) => x,
        Err(e) => {
            // main prints the failure on stderr; --json also gets an event.
            let f = connect_failure(&url, e);
            if out.json {
                out.error(&f.message);
            }
            return Err(f);
        }
    };
    out.open(&url, ws.protocol(), args.show_handshake.then_some(&response));

    let text = !args.binary;
    let to_message = |line: Line| -> Result<Message, String> {
        if text {
            String::from_utf8(line).map(Message::from).map_err(|_| "input line is not UTF-8 (use --binary)".to_owned())
        } else {
            Ok(Message::binary(line))
        }
    };

    let mut input = None;
    let mut deadline = None;
    if args.execute.is_empty() {
        input = Some(spawn_stdin_reader());
    } else {
        for m in &args.execute {
            if let Ok(msg) = to_message(m.clone().into_bytes()) {
                if let Err(e) = ws.feed(msg).await {
                    out.error(&format!("cannot send: {e}"));
                }
            }
        }
        deadline = Some(Instant::now() + wait);
    }
    let mut pinger = ping_every.map(|d| tokio::time::interval_at(Instant::now() + d, d));
    let mut pings_sent: u64 = 0;
    let mut we_closed = false;
    let mut initiator = None;
    let mut server_close: Option<Option<CloseFrame>> = None;
    let mut failed = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);

    loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    initiator.get_or_insert("server");
                    server_close = Some(frame);
                }
                Some(Ok(Message::Ping(p))) => out.control("ping", &p),
                Some(Ok(Message::Pong(p))) => out.control("pong", &p),
                Some(Ok(m)) => out.message(&m),
                Some(Err(e)) => {
                    failed = true;
                    out.error(&describe(&e));
                }
                None => break,
            },
            line = next_line(&mut input), if !we_closed && server_close.is_none() && input.is_some() => match line {
                Some(line) => match to_message(line) {
                    // Queued: `recv` (polled on every turn of this loop) writes
                    // it, and keeps reading while the socket is full, so a
                    // large pipe cannot deadlock against an echo server.
                    Ok(msg) => if let Err(e) = ws.feed(msg).await {
                        out.error(&format!("cannot send: {}", describe(&e)));
                    },
                    Err(why) => out.error(&why),
                },
                None => {
                    input = None;
                    we_closed = start_close(&mut ws, &mut out, &mut initiator).await;
                }
            },
            _ = sleep_until(deadline), if !we_closed && server_close.is_none() && deadline.is_some() => {
                we_closed = start_close(&mut ws, &mut out, &mut initiator).await;
            }
            _ = tick(&mut pinger), if !we_closed && server_close.is_none() && pinger.is_some() => {
                pings_sent += 1;
                if let Err(e) = ws.ping(pings_sent.to_string()).await {
                    out.error(&format!("cannot send a ping: {}", describe(&e)));
                }
            }
            _ = &mut interrupt => {
                if we_closed {
                    return Ok(status::INTERRUPTED);
                }
                interrupt.set(tokio::signal::ctrl_c());
                we_closed = start_close(&mut ws, &mut out, &mut initiator).await;
            }
        }
    }

    let initiator = initiator.unwrap_or("server");
    let (code, reason, clean) = match &server_close {
        Some(Some(f)) => {
            (u16::from(f.code), f.reason.as_str(), matches!(f.code, CloseCode::Normal | CloseCode::GoingAway))
        }
        Some(None) => (u16::from(CloseCode::NoStatus), "", true),
        None => (u16::from(CloseCode::Abnormal), "", false),
    };
    let clean = clean && !failed;
    out.close(code, reason, initiator, clean);
    Ok(if clean { status::OK } else { status::ABNORMAL })
}

/// Send close 1000 unless the server already started the closing
/// handshake; returns whether we are now closing.
async fn start_close(
    ws: &mut wsx::WebSocket<wsx::MaybeTlsStream>,
    out: &mut Printer,
    initiator: &mut Option<&'static str>,
) -> bool {
    if initiator.is_none() {
        *initiator = Some("client");
        if let Err(e) = ws.close(CloseCode::Normal, "").await {
            out.error(&format!("cannot send close: {}", describe(&e)));
        }
    }
    true
}

/// A library error as one phrase.
fn describe(e: &wsx::Error) -> String {
    match e {
        wsx::Error::Io(io) => io_phrase(io),
        other => other.to_string(),
    }
}

async fn next_line(input: &mut Option<mpsc::Receiver<Line>>) -> Option<Line> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn tick(pinger: &mut Option<tokio::time::Interval>) {
    match pinger {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Read stdin lines on a thread of their own (a blocking read cannot be
/// cancelled; the process exits without waiting for it). The channel ends
/// at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Prints events: messages on stdout (one per line), status lines on
/// stderr when it is a terminal; or, with `--json`, every event as one JSON
/// object per line on stdout.
struct Printer {
    json: bool,
    binary_format: BinaryFormat,
    status_lines: bool,
}

impl Printer {
    fn new(json: bool, binary_format: BinaryFormat) -> Self {
        Self { json, binary_format, status_lines: !json && std::io::stderr().is_terminal() }
    }

    fn encode(&self, b: &[u8]) -> String {
        match self.binary_format {
            BinaryFormat::Hex => hex::encode(b),
            BinaryFormat::Base64 => base64::engine::general_purpose::STANDARD.encode(b),
        }
    }

    fn encoding(&self) -> &'static str {
        match self.binary_format {
            BinaryFormat::Hex => "hex",
            BinaryFormat::Base64 => "base64",
        }
    }

    fn emit(&self, mut event: serde_json::Value) {
        if let serde_json::Value::Object(map) = &mut event {
            let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            map.insert("time".into(), time.into());
        }
        self.stdout_line(&event.to_string());
    }

    fn stdout_line(&self, line: &str) {
        let mut o = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not worth an error per message.
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    fn status(&self, line: &str) {
        if self.status_lines {
            eprintln!("{line}");
        }
    }

    fn open(&mut self, url: &str, protocol: Option<&str>, response: Option<&http::Response<()>>) {
        if self.json {
            let mut ev = serde_json::json!({ "event": "open", "url": url, "protocol": protocol });
            if let Some(r) = response {
                let headers: Vec<serde_json::Value> = r
                    .headers()
                    .iter()
                    .map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                    .collect();
                ev["status"] = r.status().as_u16().into();
                ev["headers"] = headers.into();
            }
            self.emit(ev);
            return;
        }
        if let Some(r) = response {
            let mut head = format!("HTTP/1.1 {}\n", r.status());
            for (k, v) in r.headers() {
                head.push_str(&format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())));
            }
            self.stdout_line(&head);
        }
        match protocol {
            Some(p) => self.status(&format!("connected to {url} (subprotocol {p})")),
            None => self.status(&format!("connected to {url}")),
        }
    }

    fn message(&mut self, m: &Message) {
        match m {
            Message::Text(t) if self.json => {
                self.emit(serde_json::json!({ "event": "message", "type": "text", "data": t.as_str() }))
            }
            Message::Text(t) => self.stdout_line(t.as_str()),
            Message::Binary(b) if self.json => self.emit(serde_json::json!({
                "event": "message", "type": "binary", "encoding": self.encoding(), "data": self.encode(b),
            })),
            Message::Binary(b) => self.stdout_line(&self.encode(b)),
            _ => {}
        }
    }

    fn control(&mut self, kind: &str, payload: &[u8]) {
        if self.json {
            self.emit(serde_json::json!({
                "event": kind, "encoding": self.encoding(), "data": self.encode(payload),
            }));
        } else {
            self.status(&format!("{kind} {}", String::from_utf8_lossy(payload)));
        }
    }

    fn close(&mut self, code: u16, reason: &str, initiator: &str, clean: bool) {
        if self.json {
            self.emit(serde_json::json!({
                "event": "close", "code": code, "reason": reason, "initiator": initiator, "clean": clean,
            }));
        } else if reason.is_empty() {
            self.status(&format!("closed ({code}) by the {initiator}"));
        } else {
            self.status(&format!("closed ({code} {reason}) by the {initiator}"));
        }
    }

    fn error(&mut self, message: &str) {
        if self.json {
            self.emit(serde_json::json!({ "event": "error", "message": message }));
        } else {
            eprintln!("wsx: {message}");
        }
    }
}
