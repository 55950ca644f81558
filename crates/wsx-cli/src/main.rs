//! `wsx`: the WebSocket command-line tool.
//!
//! `wsx connect` is an interactive client (like wscat) that also works in
//! pipes and scripts, `wsx serve` an echo / broadcast server that can serve
//! static files next to its WebSocket endpoint, and `wsx bench` a
//! round-trip load generator with an HDR latency histogram. Argument
//! parsing and printing live here; anything a library user could want lives
//! in the library crates.

mod bench;
mod connect;
#[cfg(feature = "http3")]
mod http3;
mod hub;
mod serve;

/// mimalloc packs the small, 128-byte-aligned blocks of idle connections
/// (docs/performance.md, idle footprint).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "wsx", version, about = "WebSocket client, server and load tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to a WebSocket server: send stdin lines, print what arrives.
    Connect(connect::ConnectArgs),
    /// Run a WebSocket echo (or broadcast) server, or a wsx-hub (--hub), optionally serving static files.
    Serve(serve::ServeArgs),
    /// Measure round trips against an echo server: messages/s, MB/s, latency percentiles.
    Bench(bench::BenchArgs),
}

/// Exit statuses shared by the subcommands (documented in each `--help`).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad arguments or another local error (cannot bind, cannot start).
    pub const ERROR: u8 = 1;
    /// Could not connect: DNS, TCP, timeout, or the server refused the
    /// opening handshake.
    pub const CONNECT: u8 = 2;
    /// `connect`: the connection ended without a clean close (no close
    /// frame, a protocol error, or a close code other than 1000/1001).
    /// `bench`: errors were counted during the run.
    pub const ABNORMAL: u8 = 3;
    /// Interrupted a second time while closing (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

/// A command that failed: the line for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status (see [`status`]).
    pub status: u8,
    /// One line, without the `wsx: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with status [`status::ERROR`].
    pub fn error(message: impl Into<String>) -> Self {
        Self { status: status::ERROR, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parse a number of seconds given on the command line.
pub fn seconds(flag: &str, secs: f64) -> Result<std::time::Duration, Failure> {
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| Failure::error(format!("{flag} must be a non-negative number of seconds, not {secs}")))
}

/// What a client's flags say of TLS and the HTTP version (`wsx connect`,
/// `wsx bench`), on top of `config`: the roots of SSL_CERT_FILE /
/// SSL_CERT_DIR, `--ca` files, `-k` (said on stderr), and `--http2`
/// (required; wss:// only) or `--http1` (never). TLS files are read now,
/// so that a missing one is a bad argument (status 1), not a failure to
/// connect.
pub fn client_transport(
    config: wsx::Config,
    url: &str,
    ca: &[std::path::PathBuf],
    insecure: bool,
    http2: bool,
    http1: bool,
) -> Result<wsx::Config, Failure> {
    let mut config = config.with_tls_roots_from_env().with_tls_insecure(insecure);
    for ca in ca {
        config = config.with_tls_ca(ca);
    }
    let secure = is_secure(url);
    if http2 && !secure {
        return Err(Failure::error("--http2 needs a wss:// URL: HTTP/2 goes over TLS only"));
    }
    if http2 {
        config = config.with_http2(wsx::http2::Mode::Required);
    } else if http1 {
        config = config.with_http2(wsx::http2::Mode::Off);
    }
    if secure {
        config.tls_client_config().map_err(|e| Failure::error(e.to_string()))?;
        if insecure {
            eprintln!("wsx: warning: -k: the server's certificate is not checked; anyone can answer for it");
        }
    }
    Ok(config)
}

/// Whether `url` is `wss://` (or `https://`).
pub fn is_secure(url: &str) -> bool {
    ["wss:", "https:"].iter().any(|s| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
}

/// An I/O error as a short lower-case phrase ("connection refused"), without
/// the "(os error N)" suffix.
pub fn io_phrase(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the peer".into(),
        TimedOut => "timed out".into(),
        UnexpectedEof => "the peer closed the connection".into(),
        AddrInUse => "address already in use".into(),
        PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_owned(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// Why connecting to `url` failed, as one line, and the exit status (an
/// invalid URL is a bad argument).
pub fn connect_failure(url: &str, e: &wsx::Error) -> Failure {
    let (status, why) = match e {
        wsx::Error::Io(io) => (status::CONNECT, io_phrase(io)),
        // The address, when the URL does not show it (a default port).
        wsx::Error::Connect { address, source } if !url.contains(address.as_str()) => {
            (status::CONNECT, format!("{address}: {}", io_phrase(source)))
        }
        wsx::Error::Connect { source, .. } => (status::CONNECT, io_phrase(source)),
        wsx::Error::HandshakeTimeout => (status::CONNECT, "timed out".to_owned()),
        wsx::Error::Handshake(h) => (status::CONNECT, h.to_string()),
        wsx::Error::Url(m) => (status::ERROR, format!("invalid URL: {m}")),
        other => (status::CONNECT, other.to_string()),
    };
    Failure { status, message: format!("cannot connect to {url}: {why}") }
}

/// Parse and check a `ws://` or `wss://` URL as the library does for
/// `wsx::connect`; an invalid one is a bad argument.
pub fn parse_url(url: &str) -> Result<http::Request<()>, Failure> {
    use wsx::IntoClientRequest;
    url.into_client_request().map_err(|e| match e {
        wsx::Error::Url(why) => Failure::error(format!("invalid URL {url:?}: {why}")),
        other => Failure::error(format!("invalid URL {url:?}: {other}")),
    })
}

/// Whether log lines may be coloured: only on a terminal, and not when
/// NO_COLOR is set to anything but the empty string (no-color.org).
fn log_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; usage errors are status 1
            // (2 means "could not connect").
            return if e.use_stderr() { ExitCode::from(status::ERROR) } else { ExitCode::SUCCESS };
        }
    };
    // The server logs its life at info; the client and the load tool only
    // warn (their output is the events and the report).
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .init();
    let result = match cli.command {
        Command::Connect(args) => connect::run(args),
        Command::Serve(args) => serve::run(args).map(|()| status::OK),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("wsx: {f}");
            ExitCode::from(f.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some("".into())));
        assert!(!log_colour(true, Some("1".into())));
        assert!(!log_colour(false, None));
    }
}
