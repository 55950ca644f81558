//! TLS with rustls (the `ring` provider): the client side of `wss://`
//! (server name indication, ALPN, Mozilla's root certificates by default,
//! the platform's with the `native-roots` feature, or any
//! [`rustls::ClientConfig`]), [`MaybeTlsStream`] (what [`crate::connect`]
//! returns: plain TCP or TLS over TCP), and [`acceptor_from_pem_files`] for
//! servers.
//!
//! A client offers by ALPN what `Config::with_http2` allows: `h2` and
//! `http/1.1` by default, as browsers do, or `http/1.1` alone; it sets the
//! list of each connection itself, whatever the configuration says.
//!
//! A server accepts `wss://` by running the TLS handshake first and then
//! [`crate::accept`] (or [`crate::accept_with`]) on the TLS stream:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let acceptor = wsx::tls::acceptor_from_pem_files("cert.pem", "key.pem")?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let tls = acceptor.accept(tcp).await?;
//! let mut ws = wsx::accept(tls).await?;
//! # Ok(()) }
//! ```

mod provider;
mod verify;

use crate::maybe_tls::MaybeTlsStream;
use crate::stream::SplitIo;
use crate::{Config, Error, Result};
pub use provider::provider as crypto_provider;
use provider::provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use rustls;
pub use tokio_rustls;
pub use tokio_rustls::TlsAcceptor;

/// The ALPN protocol of an HTTP/1.1 WebSocket handshake.
pub(crate) const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 §3.2).
#[cfg(feature = "http2")]
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// What a client offers by ALPN on one TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// `http/1.1` alone.
    Http11,
    /// `h2`, then `http/1.1` (the server picks, RFC 7301 §3.2).
    #[cfg(feature = "http2")]
    H2AndHttp11,
}

/// The ALPN protocols of `offer`, in the client's order of preference.
fn alpn_protocols(offer: Offer) -> Vec<Vec<u8>> {
    match offer {
        Offer::Http11 => vec![ALPN_HTTP_1_1.to_vec()],
        #[cfg(feature = "http2")]
        Offer::H2AndHttp11 => vec![ALPN_H2.to_vec(), ALPN_HTTP_1_1.to_vec()],
    }
}

/// What went wrong with TLS: a failed handshake (untrusted certificate,
/// wrong name, ...), or a certificate, key or configuration that cannot be
/// used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The TLS handshake with `server_name` failed; `source` says why.
    /// The message is one sentence that says what to do, e.g. "the
    /// server's certificate is not signed by a trusted certificate
    /// authority: pass --ca FILE (Config::with_tls_ca) with that
    /// authority's certificate, or -k (Config::with_tls_insecure) to skip
    /// the check".
    #[error("TLS handshake with {server_name:?} failed: {}", explain(source))]
    Handshake {
        /// The name the client checked the certificate against.
        server_name: String,
        /// What rustls found wrong.
        #[source]
        source: rustls::Error,
    },
    /// The URL's host cannot be used as a TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    InvalidServerName(String),
    /// A certificate or key file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A certificate or key file is not valid PEM.
    #[error("{}: invalid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)", .0.display())]
    NoCertificates(PathBuf),
    /// A certificate of a file given to trust (`Config::with_tls_ca`,
    /// `SSL_CERT_FILE`) cannot be used as a trust anchor.
    #[error("{}: a certificate cannot be trusted: {source}", path.display())]
    BadTrustedCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The key file holds no private key.
    #[error("{}: no private key found (expected a PEM PKCS#8, PKCS#1 or SEC1 private key)", .0.display())]
    NoPrivateKey(PathBuf),
    /// rustls refused the configuration (e.g. a key that does not match the
    /// certificate).
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// The platform's root certificates cannot be loaded.
    #[error("cannot load the platform's root certificates: {0}")]
    PlatformRoots(String),
    /// No root certificates to check a server against: give a
    /// configuration with [`Config::with_tls_config`], or build with the
    /// `webpki-roots` or `native-roots` feature.
    #[error("no root certificates to check the server's certificate against: give a TLS configuration with trusted roots, or build wsx with its webpki-roots or native-roots feature")]
    NoRoots,
}

/// A rustls failure as one plain sentence that says what to do (the flags
/// are `wsx connect`'s, the methods the library's).
fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    const TRUST: &str = "pass --ca FILE (Config::with_tls_ca) with that authority's certificate, or -k \
                         (Config::with_tls_insecure) to skip the check";
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            format!("the server's certificate is not signed by a trusted certificate authority: {TRUST}")
        }
        rustls::Error::InvalidCertificate(C::Other(other)) if is_ca_used_as_end_entity(other) => {
            "the server's certificate is a CA certificate used as its own: trust it with --ca FILE \
             (Config::with_tls_ca), or pass -k (Config::with_tls_insecure) to skip the check"
                .into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForNameContext { presented, .. }) if !presented.is_empty() => {
            format!(
                "the server's certificate is for another name ({}): connect by one of those names, or pass -k \
                 (Config::with_tls_insecure) to skip the check",
                presented.iter().map(|n| name_of(n)).collect::<Vec<_>>().join(", ")
            )
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate is for another name: connect by a name it has, or pass -k \
             (Config::with_tls_insecure) to skip the check"
                .into()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired: renew it, or pass -k (Config::with_tls_insecure) to skip the check"
                .into()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet: check this machine's clock".into()
        }
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the server wants a client certificate: pass --cert FILE --key FILE (Config::with_tls_client_cert)".into()
        }
        rustls::Error::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateUnknown) => {
            format!("the server refused the client certificate ({e}): check --cert and --key")
        }
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the server's answer is not TLS: if it is a plain server, use ws://".into()
        }
        other => format!("{other}"),
    }
}

/// A name of a certificate as webpki writes it (`DnsName("example.com")`),
/// without the wrapping.
fn name_of(presented: &str) -> &str {
    presented.strip_prefix("DnsName(\"").and_then(|n| n.strip_suffix("\")")).unwrap_or(presented)
}

/// Whether webpki said that the server's certificate is a CA's.
fn is_ca_used_as_end_entity(e: &rustls::OtherError) -> bool {
    matches!(e.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
}

/// Which root certificates a `wss://` client trusts when no
/// [`rustls::ClientConfig`] is given ([`Config::with_tls_roots`]).
///
/// The default is the first compiled in: Mozilla's (feature
/// `webpki-roots`, on by default), else the platform's (feature
/// `native-roots`), else none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// Mozilla's root certificates, compiled in (feature `webpki-roots`).
    #[cfg(feature = "webpki-roots")]
    WebPki,
    /// The platform's trust store (`rustls-native-certs`: the system's
    /// certificate files on Linux, the keychain on macOS, the certificate
    /// store on Windows). Needs the `native-roots` feature.
    #[cfg(feature = "native-roots")]
    Platform,
    /// No root certificates: `wss://` needs a configuration of its own
    /// ([`Config::with_tls_config`]), else connecting fails with
    /// [`TlsError::NoRoots`].
    Empty,
}

impl Default for TlsRoots {
    fn default() -> Self {
        #[cfg(feature = "webpki-roots")]
        return TlsRoots::WebPki;
        #[cfg(all(not(feature = "webpki-roots"), feature = "native-roots"))]
        return TlsRoots::Platform;
        #[cfg(not(any(feature = "webpki-roots", feature = "native-roots")))]
        return TlsRoots::Empty;
    }
}

/// A client configuration with the given roots, ALPN `http/1.1` and the
/// `ring` provider. [`Config::with_tls_config`] takes it (or any other);
/// a connection offers the ALPN protocols its HTTP versions allow, `h2`
/// too by default.
///
/// ```
/// let tls = wsx::tls::client_config(wsx::tls::TlsRoots::default())?;
/// assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
/// # Ok::<(), wsx::tls::TlsError>(())
/// ```
pub fn client_config(roots: TlsRoots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with_roots(root_store(roots)?)
}

/// How a `wss://` client checks the server and what it presents: set with
/// `Config::with_tls_ca`, `with_tls_roots_from_env`, `with_tls_insecure`
/// and `with_tls_client_cert`; the files are read when a connection needs
/// them (then kept, with the configuration built from them).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientTlsOptions {
    ca_files: Vec<PathBuf>,
    roots_from_env: bool,
    insecure: bool,
    client_cert: Option<(PathBuf, PathBuf)>,
    /// The configuration built from these options (shared by the clones
    /// of a `Config`; a new one after any change).
    built: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl ClientTlsOptions {
    pub(crate) fn add_ca_file(&mut self, path: PathBuf) {
        self.ca_files.push(path);
        self.built = Arc::default();
    }

    pub(crate) fn set_roots_from_env(&mut self, on: bool) {
        self.roots_from_env = on;
        self.built = Arc::default();
    }

    pub(crate) fn set_insecure(&mut self, on: bool) {
        self.insecure = on;
        self.built = Arc::default();
    }

    pub(crate) fn set_client_cert(&mut self, cert: PathBuf, key: PathBuf) {
        self.client_cert = Some((cert, key));
        self.built = Arc::default();
    }

    pub(crate) fn insecure(&self) -> bool {
        self.insecure
    }

    fn is_default(&self) -> bool {
        self.ca_files.is_empty() && !self.roots_from_env && !self.insecure && self.client_cert.is_none()
    }
}

/// The client configuration `wss://` connections with `config` use: the
/// one given with `Config::with_tls_config`, else one built from the TLS
/// options and roots.
pub(crate) fn client_config_for(config: &Config) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    if let Some(c) = config.tls_config() {
        return Ok(c.clone());
    }
    let options = config.tls_options();
    if options.is_default() {
        return default_client_config(config.tls_roots());
    }
    if let Some(c) = options.built.get() {
        return Ok(c.clone());
    }
    let built = build_client_config(options, config.tls_roots())?;
    Ok(options.built.get_or_init(|| built).clone())
}

fn build_client_config(options: &ClientTlsOptions, roots: TlsRoots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = if options.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::NoVerification(provider)))
    } else {
        let trusted = trusted_files(options)?;
        if trusted.is_empty() {
            builder.with_root_certificates(root_store(roots)?)
        } else {
            let mut store = rustls::RootCertStore::empty();
            let mut certificates = Vec::new();
            for (path, certs) in trusted {
                for cert in certs {
                    store
                        .add(cert.clone())
                        .map_err(|source| TlsError::BadTrustedCertificate { path: path.clone(), source })?;
                    certificates.push(cert);
                }
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::TrustedAsIs { webpki, certificates }))
        }
    };
    let mut config = match &options.client_cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(read_certificates(cert)?, read_key(key)?).map_err(TlsError::Config)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The certificates to trust instead of the default roots, by file: the
/// `--ca` files, else `SSL_CERT_FILE` and the files of `SSL_CERT_DIR` (a
/// `:`-separated list of directories) when asked and set; none means the
/// roots of [`TlsRoots`].
fn trusted_files(options: &ClientTlsOptions) -> Result<Vec<(PathBuf, Vec<CertificateDer<'static>>)>, TlsError> {
    if !options.ca_files.is_empty() {
        return options.ca_files.iter().map(|p| Ok((p.clone(), read_certificates(p)?))).collect();
    }
    if !options.roots_from_env {
        return Ok(Vec::new());
    }
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut found = Vec::new();
    if let Some(file) = var("SSL_CERT_FILE") {
        let path = PathBuf::from(file);
        found.push((path.clone(), read_certificates(&path)?));
    }
    if let Some(dirs) = var("SSL_CERT_DIR") {
        for dir in std::env::split_paths(&dirs) {
            let entries = std::fs::read_dir(&dir).map_err(|source| TlsError::ReadFile { path: dir.clone(), source })?;
            let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            files.sort();
            // A certificate directory also holds other files (CRLs, keys,
            // notes): only the certificates count.
            for path in files {
                let Ok(pem) = std::fs::read(&path) else { continue };
                let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok()).collect();
                if !certs.is_empty() {
                    found.push((path, certs));
                }
            }
            if found.is_empty() {
                return Err(TlsError::NoCertificates(dir));
            }
        }
    }
    Ok(found)
}

/// The PEM certificates of `path` (at least one).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadFile { path: path.to_owned(), source })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(path.to_owned()));
    }
    Ok(certs)
}

/// The PEM private key of `path` (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadFile { path: path.to_owned(), source })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey(path.to_owned()),
        source => TlsError::Pem { path: path.to_owned(), source },
    })
}

/// The certificates of `roots`.
fn root_store(roots: TlsRoots) -> Result<rustls::RootCertStore, TlsError> {
    match roots {
        #[cfg(feature = "webpki-roots")]
        TlsRoots::WebPki => {
            let mut store = rustls::RootCertStore::empty();
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Ok(store)
        }
        #[cfg(feature = "native-roots")]
        TlsRoots::Platform => {
            let mut store = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
                return Err(TlsError::PlatformRoots(why));
            }
            Ok(store)
        }
        TlsRoots::Empty => Err(TlsError::NoRoots),
    }
}

/// A client configuration trusting exactly `roots` (e.g. a private CA),
/// with ALPN `http/1.1` and the `ring` provider.
///
/// ```no_run
/// # fn run(ca_der: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut roots = wsx::tls::rustls::RootCertStore::empty();
/// roots.add(ca_der.into())?;
/// let config = wsx::Config::default().with_tls_config(wsx::tls::client_config_with_roots(roots)?);
/// # Ok(()) }
/// ```
pub fn client_config_with_roots(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The configuration for `roots`, built once per process (a failure, such
/// as a machine without root certificates, is not remembered).
fn default_client_config(roots: TlsRoots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let Some(cell) = cache(roots) else { return Err(TlsError::NoRoots) };
    if let Some(c) = cell.get() {
        return Ok(c.clone());
    }
    let config = client_config(roots)?;
    Ok(cell.get_or_init(|| config).clone())
}

/// Where the configuration for `roots` is kept.
fn cache(roots: TlsRoots) -> Option<&'static OnceLock<Arc<rustls::ClientConfig>>> {
    match roots {
        #[cfg(feature = "webpki-roots")]
        TlsRoots::WebPki => {
            static WEBPKI: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
            Some(&WEBPKI)
        }
        #[cfg(feature = "native-roots")]
        TlsRoots::Platform => {
            static PLATFORM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
            Some(&PLATFORM)
        }
        TlsRoots::Empty => None,
    }
}

/// A configuration with ALPN `http/1.1` when the given one offers no ALPN
/// protocol (used by [`Config::with_tls_config`]).
pub(crate) fn with_alpn(config: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if !config.alpn_protocols.is_empty() {
        return config;
    }
    let mut c = (*config).clone();
    c.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Arc::new(c)
}

/// `base` offering `offer` by ALPN: `base` itself when it already does,
/// else a copy, made once per configuration and offer (the copy shares
/// `base`'s session cache, so resumption works across offers).
fn offering(base: Arc<rustls::ClientConfig>, offer: Offer) -> Arc<rustls::ClientConfig> {
    let protocols = alpn_protocols(offer);
    if base.alpn_protocols == protocols {
        return base;
    }
    type Copies = Vec<(std::sync::Weak<rustls::ClientConfig>, Offer, Arc<rustls::ClientConfig>)>;
    static COPIES: std::sync::Mutex<Copies> = std::sync::Mutex::new(Vec::new());
    let mut copies = COPIES.lock().unwrap_or_else(|p| p.into_inner());
    // The base is held while its copy is looked up: its address cannot be
    // another configuration's.
    copies.retain(|(b, _, _)| b.strong_count() > 0);
    let found = copies.iter().find(|(b, o, _)| *o == offer && std::ptr::eq(b.as_ptr(), Arc::as_ptr(&base)));
    if let Some((_, _, copy)) = found {
        return copy.clone();
    }
    let mut copy = (*base).clone();
    copy.alpn_protocols = protocols;
    let copy = Arc::new(copy);
    copies.push((Arc::downgrade(&base), offer, copy.clone()));
    copy
}

/// Whether the server chose HTTP/2 by ALPN on `stream`.
#[cfg(feature = "http2")]
pub(crate) fn negotiated_h2(stream: &MaybeTlsStream) -> bool {
    stream.tls_connection().and_then(|c| c.alpn_protocol()) == Some(ALPN_H2)
}

/// Run the client side of the TLS handshake over `tcp` for `host` (the
/// server name sent with SNI and checked against the certificate),
/// offering `offer` by ALPN. A plain HTTP answer to the ClientHello (first
/// bytes `HTTP/`) fails at once with [`Error::WrongScheme`]; `unanswered`
/// is set while nothing has come back.
pub(crate) async fn connect(
    tcp: TcpStream,
    host: &str,
    config: &Config,
    offer: Offer,
    unanswered: &std::sync::atomic::AtomicBool,
) -> Result<MaybeTlsStream> {
    let tls = offering(client_config_for(config)?, offer);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut handshake = connector.connect(name, tcp);
    // The server's first bytes are peeked at (left for rustls to read)
    // before each turn of the handshake, until some have arrived.
    let mut sniffed = false;
    unanswered.store(true, std::sync::atomic::Ordering::Relaxed);
    let result = poll_fn(|cx| {
        if !sniffed {
            if let Some(tcp) = handshake.get_ref() {
                let mut first = [0u8; 5];
                let mut buf = ReadBuf::new(&mut first);
                if let Poll::Ready(r) = tcp.poll_peek(cx, &mut buf) {
                    sniffed = true;
                    unanswered.store(false, std::sync::atomic::Ordering::Relaxed);
                    if r.is_ok() && buf.filled().starts_with(b"HTTP/") {
                        return Poll::Ready(Err(Error::WrongScheme { use_scheme: "ws" }));
                    }
                }
            }
        }
        Pin::new(&mut handshake).poll(cx).map_err(|e| io_error(e, host))
    })
    .await?;
    Ok(MaybeTlsStream::Tls(Box::new(result)))
}

/// An I/O error of a TLS connection to `host`: the TLS failure inside it,
/// if there is one (e.g. the server's alert when it wants a client
/// certificate, which TLS 1.3 sends after the client's handshake is done).
pub(crate) fn io_error(e: io::Error, host: &str) -> Error {
    match rustls_error(&e) {
        Some(source) => TlsError::Handshake { server_name: host.to_owned(), source }.into(),
        None => Error::Io(e),
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn rustls_error(e: &io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// A server configuration from PEM files: the certificate chain (leaf
/// first) and its private key (PKCS#8, PKCS#1 or SEC1), ALPN `http/1.1`,
/// the `ring` provider. See [`acceptor_from_pem_files`], which wraps it;
/// take this one to change rustls settings first.
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = (*wsx::tls::server_config_from_pem_files("cert.pem", "key.pem")?).clone();
/// config.max_fragment_size = Some(4096); // any rustls setting
/// let acceptor = wsx::tls::TlsAcceptor::from(std::sync::Arc::new(config));
/// let server = wsx::server::Server::builder().tls(acceptor).build();
/// # Ok(()) }
/// ```
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert.as_ref())?;
    let key_der = read_key(key.as_ref())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor for a `wss://` server from PEM files: `cert` holds the
/// certificate chain (leaf first, then intermediates), `key` its private
/// key (PKCS#8, PKCS#1 or SEC1). The files are read now, synchronously.
/// Errors name the file and what is wrong with it.
///
/// Run `acceptor.accept(tcp).await` on each connection, then
/// [`crate::accept`] (or [`crate::accept_with`]) on the TLS stream.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = wsx::tls::acceptor_from_pem_files("cert.pem", "key.pem")?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9443").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let acceptor = acceptor.clone();
///     tokio::spawn(async move {
///         let tls = acceptor.accept(tcp).await?;
///         let mut ws = wsx::accept(tls).await?;
///         while let Some(msg) = ws.recv().await {
///             let msg = msg?;
///             if msg.is_text() || msg.is_binary() {
///                 ws.feed(msg).await?;
///             }
///         }
///         Ok::<_, wsx::Error>(())
///     });
/// }
/// # }
/// ```
pub fn acceptor_from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(server_config_from_pem_files(cert, key)?))
}

/// A server's TLS stream splits with `tokio::io::split`.
impl<S: AsyncRead + AsyncWrite + Unpin> SplitIo for tokio_rustls::server::TlsStream<S> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split_io(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// A client's TLS stream over any transport splits with `tokio::io::split`.
impl<S: AsyncRead + AsyncWrite + Unpin> SplitIo for tokio_rustls::client::TlsStream<S> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split_io(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}
