//! `wsx connect URL`: an interactive client in the spirit of wscat.
//!
//! Each stdin line goes out as a text (or, with `--binary`, binary)
//! message and every message received is printed on its own line; `--raw`
//! sends stdin's bytes unchanged instead, and `--slash` reads `/ping` and
//! `/close CODE REASON` lines as commands. It works the same in a pipe: at
//! the end of stdin it prints replies until none has come for `--wait`
//! seconds, sends close 1000, waits for the server's close, and exits. `-x`
//! sends messages given on the command line instead of stdin. `--json`
//! prints one JSON object per event for scripts. TLS flags (`--ca`, `-k`,
//! `--cert`/`--key`) map onto the library's client TLS settings.

use crate::{connect_failure, io_phrase, parse_url, seconds, status, Failure};
use base64::Engine;
use clap::{Args, ValueEnum};
use http::header::{HeaderName, HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
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
  wsx connect ws://127.0.0.1:9001/ --json -H 'Authorization: Bearer t' --subprotocol chat
  wsx connect ws://127.0.0.1:9001/ --raw --split 4096 < image.png   # binary, 4 KiB messages
  wsx connect wss://localhost:9443/ --ca cert.pem  # trust a development certificate
  wsx connect ws://127.0.0.1:9001/ --slash         # then: /ping, /close 4000 done

TLS: wss:// trusts Mozilla's root certificates, or those of SSL_CERT_FILE /
SSL_CERT_DIR when set, or only those of --ca files.

HTTP/2: wss:// goes over HTTP/2 (RFC 8441) when the server takes WebSockets
over it, else HTTP/1.1; --http2 requires HTTP/2, --http1 forbids it. ws:// is
always HTTP/1.1.";

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
    /// Send stdin's bytes unchanged as binary messages, not line by line:
    /// all of stdin as one message, or one message per --split bytes.
    #[arg(long, conflicts_with_all = ["binary", "slash"])]
    raw: bool,
    /// With --raw: send a message every BYTES bytes (the last may be
    /// shorter) as stdin arrives.
    #[arg(long, value_name = "BYTES", requires = "raw")]
    split: Option<usize>,
    /// Read lines starting with / as commands: /ping [DATA], /pong [DATA],
    /// /close [CODE [REASON]]; //text sends /text.
    #[arg(long)]
    slash: bool,
    /// Send MSG once connected (repeatable, in order), print replies until
    /// none has arrived for --wait seconds, then close and exit. Stdin is
    /// not read.
    #[arg(short = 'x', long = "execute", value_name = "MSG")]
    execute: Vec<String>,
    /// After the input ends (stdin, or the -x messages sent): print replies
    /// until none has arrived for SECS seconds, then close (0: at once).
    #[arg(short = 'w', long, value_name = "SECS", default_value_t = 1.0)]
    wait: f64,
    /// Print one JSON object per line for each event (open, message, ping,
    /// pong, close, error; refused with --show-handshake), each with an
    /// RFC 3339 "time".
    #[arg(long)]
    json: bool,
    /// Print the handshake response: status line and headers (and, when
    /// the server refuses, the start of the body).
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
    /// wss://: trust the PEM certificates of FILE instead of the default
    /// roots (repeatable), as curl's --cacert: a private CA, or the server's
    /// own certificate (even a self-signed one marked as a CA).
    #[arg(long = "ca", value_name = "FILE")]
    ca: Vec<PathBuf>,
    /// wss://: do not check the server's certificate at all (development
    /// only; a warning is printed).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// wss://: present this client certificate (PEM chain), with --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// wss://: the private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// wss://: open the WebSocket over HTTP/2 (RFC 8441) or fail. By
    /// default HTTP/2 is used when the server takes WebSockets over it.
    #[arg(long, conflicts_with = "http1")]
    http2: bool,
    /// wss://: HTTP/1.1 only (TLS offers ALPN http/1.1 alone).
    #[arg(long)]
    http1: bool,
    /// wss://: open the WebSocket over HTTP/3 (RFC 9220, QUIC with ALPN
    /// h3; experimental, and blocked until the h3 crate can send
    /// `:protocol websocket`: see docs/http3.md).
    #[cfg(feature = "http3")]
    #[arg(long, conflicts_with_all = ["http1", "http2", "proxy", "proxy_from_env"])]
    http3: bool,
}

/// One line of input from stdin (or, with `--raw`, one message's bytes).
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

/// The URL with `ws://` added when it has no scheme (`ws:/host`, one
/// slash, has one: the library says what is wrong with it).
fn normalize_url(url: &str) -> String {
    let has_scheme = url.contains("://")
        || url
            .split_once(':')
            .is_some_and(|(s, _)| ["ws", "wss", "http", "https"].iter().any(|k| s.eq_ignore_ascii_case(k)));
    if has_scheme {
        url.to_owned()
    } else {
        format!("ws://{url}")
    }
}

/// The handshake request: the URL (checked by the library), headers,
/// Origin, subprotocols.
fn build_request(url: &str, args: &ConnectArgs) -> Result<http::Request<()>, Failure> {
    let mut request = parse_url(url)?;
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

/// The client settings the flags ask for; TLS files are read now, so that
/// a missing one is a bad argument (status 1), not a failure to connect.
fn client_config(args: &ConnectArgs, url: &str, connect_timeout: std::time::Duration) -> Result<wsx::Config, Failure> {
    let mut config = wsx::Config::default()
        .with_max_message_size(args.max_message_size)
        .with_handshake_timeout(connect_timeout)
        .with_compression(!args.no_compression);
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        config = config.with_tls_client_cert(cert, key);
    }
    let mut config = crate::client_transport(config, url, &args.ca, args.insecure, args.http2, args.http1)?;
    if let Some(p) = &args.proxy {
        match wsx::proxy::Proxy::parse(p) {
            Ok(p) => config = config.with_proxy(p),
            Err(e) => return Err(Failure::error(format!("--proxy {p}: {e}"))),
        }
    } else if args.proxy_from_env {
        config = config.with_proxy_from_env();
    }
    #[cfg(feature = "http3")]
    if args.http3 && !crate::is_secure(url) {
        return Err(Failure::error("--http3 needs a wss:// URL: QUIC is always encrypted"));
    }
    Ok(config)
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
    if args.split == Some(0) {
        return Err(Failure::error("--split must be at least 1 byte"));
    }
    let config = client_config(&args, &url, connect_timeout)?;
    let timing = Timing { wait, ping_every };

    #[cfg(feature = "http3")]
    if args.http3 {
        let (ws, response) = match wsx::http3::connect_with(request, &config).await {
            Ok(x) => x,
            Err(e) => return Err(connect_failed(e, &url, &args, &mut out)),
        };
        return converse(ws, response, http::Version::HTTP_3, args, out, url, timing).await;
    }
    let (ws, response) = match wsx::connect_with(request, &config).await {
        Ok(x) => x,
        Err(e) => return Err(connect_failed(e, &url, &args, &mut out)),
    };
    let version = ws.get_ref().http_version();
    converse(ws, response, version, args, out, url, timing).await
}

/// When to close and to ping, from the flags.
struct Timing {
    wait: std::time::Duration,
    ping_every: Option<std::time::Duration>,
}

/// Why connecting failed, for main to print; --json also gets an event.
fn connect_failed(e: wsx::Error, url: &str, args: &ConnectArgs, out: &mut Printer) -> Failure {
    if let (wsx::Error::Refused(r), true) = (&e, args.show_handshake) {
        out.refused(r.response());
    }
    let f = connect_failure(url, &e);
    if out.json {
        out.error(&f.message);
    }
    f
}

/// The session on an open WebSocket, over any HTTP version.
async fn converse<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut ws: wsx::WebSocket<S>,
    response: http::Response<()>,
    version: http::Version,
    args: ConnectArgs,
    mut out: Printer,
    url: String,
    timing: Timing,
) -> Result<u8, Failure> {
    let Timing { wait, ping_every } = timing;
    out.open(&url, ws.protocol(), version, args.show_handshake.then_some(&response));

    let text = !args.binary && !args.raw;
    let to_message = |line: Line| -> Result<Message, String> {
        if text {
            String::from_utf8(line).map(Message::from).map_err(|_| "input line is not UTF-8 (use --binary)".to_owned())
        } else {
            Ok(Message::binary(line))
        }
    };

    let mut input = None;
    // Once the input has ended: when to close if nothing arrives before.
    let mut quiet_until = None;
    if args.execute.is_empty() {
        input = Some(if args.raw { spawn_raw_reader(args.split) } else { spawn_stdin_reader() });
    } else {
        for m in &args.execute {
            if let Ok(msg) = to_message(m.clone().into_bytes()) {
                if let Err(e) = ws.feed(msg).await {
                    out.error(&format!("cannot send: {e}"));
                }
            }
        }
        quiet_until = Some(Instant::now() + wait);
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
            msg = ws.recv() => {
                // Anything that arrives starts the quiet period again.
                if let Some(q) = quiet_until.as_mut() {
                    *q = Instant::now() + wait;
                }
                match msg {
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
                }
            }
            line = next_line(&mut input), if !we_closed && server_close.is_none() && input.is_some() => match line {
                Some(line) => {
                    let command = if args.slash { slash_command(line) } else { Command::Send(line) };
                    match command {
                        // Queued: `recv` (polled on every turn of this loop)
                        // writes it, and keeps reading while the socket is
                        // full, so a large pipe cannot deadlock against an
                        // echo server.
                        Command::Send(line) => match to_message(line) {
                            Ok(msg) => if let Err(e) = ws.feed(msg).await {
                                out.error(&format!("cannot send: {}", describe(&e)));
                            },
                            Err(why) => out.error(&why),
                        },
                        Command::Ping(data) => if let Err(e) = ws.ping(data).await {
                            out.error(&format!("cannot send a ping: {}", describe(&e)));
                        },
                        Command::Pong(data) => if let Err(e) = ws.send(Message::pong(data)).await {
                            out.error(&format!("cannot send a pong: {}", describe(&e)));
                        },
                        Command::Close(code, reason) => match ws.close(code, &reason).await {
                            Ok(()) => {
                                initiator.get_or_insert("client");
                                we_closed = true;
                            }
                            Err(e) => out.error(&format!("cannot close: {}", describe(&e))),
                        },
                        Command::Unknown(why) => out.error(&why),
                    }
                }
                None => {
                    input = None;
                    quiet_until = Some(Instant::now() + wait);
                }
            },
            _ = sleep_until(quiet_until), if !we_closed && server_close.is_none() && quiet_until.is_some() => {
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
    out.close(code, reason, initiator, clean, server_close.is_some());
    Ok(if clean { status::OK } else { status::ABNORMAL })
}

/// Send close 1000 unless the server already started the closing
/// handshake; returns whether we are now closing.
async fn start_close<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut wsx::WebSocket<S>,
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

/// What a line of input asks for with `--slash`.
#[derive(Debug, PartialEq)]
enum Command {
    /// A message (a plain line, or `//text` as `/text`).
    Send(Line),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(CloseCode, String),
    /// Not a command: why.
    Unknown(String),
}

const COMMANDS: &str = "/ping [DATA], /pong [DATA], /close [CODE [REASON]], //text to send /text";

/// Read a `--slash` line: `/ping [DATA]`, `/pong [DATA]`,
/// `/close [CODE [REASON]]`, `//text` (sends `/text`), or a message.
fn slash_command(line: Line) -> Command {
    if line.starts_with(b"//") || !line.starts_with(b"/") {
        let skip = usize::from(line.starts_with(b"/"));
        return Command::Send(line[skip..].to_vec());
    }
    let text = String::from_utf8_lossy(&line[1..]).into_owned();
    let (name, rest) = text.split_once(' ').unwrap_or((&text, ""));
    match name {
        "ping" => Command::Ping(rest.as_bytes().to_vec()),
        "pong" => Command::Pong(rest.as_bytes().to_vec()),
        "close" => {
            let rest = rest.trim_start();
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            if code.is_empty() {
                return Command::Close(CloseCode::Normal, String::new());
            }
            match code.parse::<u16>() {
                Ok(n) => Command::Close(CloseCode::from(n), reason.to_owned()),
                Err(_) => Command::Unknown(format!("/close takes a close code (e.g. 1000 or 4000), not {code:?}")),
            }
        }
        _ => Command::Unknown(format!("unknown command /{name}: {COMMANDS}")),
    }
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

/// Read stdin's bytes unchanged on a thread of their own: one message per
/// `split` bytes as they arrive, or all of stdin as one message at its end.
fn spawn_raw_reader(split: Option<usize>) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut pending = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match stdin.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            while let Some(size) = split.filter(|&size| pending.len() >= size) {
                let rest = pending.split_off(size);
                if tx.blocking_send(std::mem::replace(&mut pending, rest)).is_err() {
                    return;
                }
            }
        }
        if !pending.is_empty() {
            let _ = tx.blocking_send(pending);
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

    fn open(
        &mut self,
        url: &str,
        protocol: Option<&str>,
        version: http::Version,
        response: Option<&http::Response<()>>,
    ) {
        let http = version_text(version);
        if self.json {
            let mut ev = serde_json::json!({ "event": "open", "url": url, "protocol": protocol, "http": http });
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
            let mut head = format!("{http} {}\n", r.status());
            for (k, v) in r.headers() {
                head.push_str(&format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())));
            }
            self.stdout_line(&head);
        }
        let over = match version {
            http::Version::HTTP_2 => " over HTTP/2",
            http::Version::HTTP_3 => " over HTTP/3",
            _ => "",
        };
        match protocol {
            Some(p) => self.status(&format!("connected to {url}{over} (subprotocol {p})")),
            None => self.status(&format!("connected to {url}{over}")),
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

    /// The end of the connection; when it did not end cleanly, the line
    /// goes to stderr even when it is not a terminal (scripts need it).
    fn close(&mut self, code: u16, reason: &str, initiator: &str, clean: bool, close_frame: bool) {
        if self.json {
            self.emit(serde_json::json!({
                "event": "close", "code": code, "reason": reason, "initiator": initiator, "clean": clean,
            }));
            return;
        }
        let line = match (close_frame, reason.is_empty()) {
            (false, _) => format!("the connection ended without a close frame ({code})"),
            (true, true) => format!("closed ({code}) by the {initiator}"),
            (true, false) => format!("closed ({code} {reason}) by the {initiator}"),
        };
        if clean {
            self.status(&line);
        } else {
            eprintln!("wsx: {line}");
        }
    }

    /// A refused handshake's response (`--show-handshake`): status line,
    /// headers and the start of the body.
    fn refused(&mut self, r: &http::Response<bytes::Bytes>) {
        let body = String::from_utf8_lossy(r.body());
        if self.json {
            let headers: Vec<serde_json::Value> = r
                .headers()
                .iter()
                .map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect();
            self.emit(serde_json::json!({
                "event": "refused", "status": r.status().as_u16(), "headers": headers, "body": body,
            }));
            return;
        }
        let mut head = format!("{} {}\n", version_text(r.version()), r.status());
        for (k, v) in r.headers() {
            head.push_str(&format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())));
        }
        self.stdout_line(&format!("{head}\n{}", body.trim_end()));
    }

    fn error(&mut self, message: &str) {
        if self.json {
            self.emit(serde_json::json!({ "event": "error", "message": message }));
        } else {
            eprintln!("wsx: {message}");
        }
    }
}

/// An HTTP version as a status line writes it.
fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}
