//! TLS with rustls (the `ring` provider): the client side of `wss://`
//! (server name indication, ALPN `http/1.1`, Mozilla's root certificates by
//! default, the platform's with the `native-roots` feature, or any
//! [`rustls::ClientConfig`]), [`MaybeTlsStream`] (what [`crate::connect`]
//! returns: plain TCP or TLS over TCP), and [`acceptor_from_pem_files`] for
//! servers.
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

use crate::maybe_tls::MaybeTlsStream;
use crate::stream::SplitIo;
use crate::{Config, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use rustls;
pub use tokio_rustls;
pub use tokio_rustls::TlsAcceptor;

/// The ALPN protocol wsx offers (a WebSocket handshake is HTTP/1.1).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// What went wrong with TLS: a failed handshake (untrusted certificate,
/// wrong name, ...), or a certificate, key or configuration that cannot be
/// used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The TLS handshake with `server_name` failed; `source` says why
    /// (e.g. `invalid peer certificate: certificate not valid for name ...`).
    #[error("TLS handshake with {server_name:?} failed: {source}{}", hint(source))]
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

/// A few words on the most common certificate failures.
fn hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            " (the certificate is not signed by a trusted root certificate)"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            " (the certificate is for another host name)"
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => " (the certificate has expired)",
        _ => "",
    }
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration with the given roots, ALPN `http/1.1` and the
/// `ring` provider. [`Config::with_tls_config`] takes it (or any other).
///
/// ```
/// let tls = wsx::tls::client_config(wsx::tls::TlsRoots::default())?;
/// assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
/// # Ok::<(), wsx::tls::TlsError>(())
/// ```
pub fn client_config(roots: TlsRoots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with_roots(root_store(roots)?)
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

/// Run the client side of the TLS handshake over `tcp` for `host` (the
/// server name sent with SNI and checked against the certificate).
pub(crate) async fn connect(tcp: TcpStream, host: &str, config: &Config) -> Result<MaybeTlsStream> {
    let tls = match config.tls_config() {
        Some(c) => c.clone(),
        None => default_client_config(config.tls_roots())?,
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    match connector.connect(name, tcp).await {
        Ok(s) => Ok(MaybeTlsStream::Tls(Box::new(s))),
        Err(e) => Err(match rustls_error(&e) {
            Some(source) => TlsError::Handshake { server_name: host.to_owned(), source }.into(),
            None => e.into(),
        }),
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn rustls_error(e: &io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// A server configuration from PEM files: the certificate chain (leaf
/// first) and its private key (PKCS#8, PKCS#1 or SEC1), ALPN `http/1.1`,
/// the `ring` provider. See [`acceptor_from_pem_files`].
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::ReadFile { path: p.to_owned(), source });
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: cert.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificates(cert.to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey(key.to_owned()),
        source => TlsError::Pem { path: key.to_owned(), source },
    })?;
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
