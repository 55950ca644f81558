//! A throw-away PKI made at test time with rcgen: a CA, server
//! certificates it signs, PEM files on disk and rustls configurations.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wsx::tls::rustls;
use wsx::tls::rustls::pki_types::CertificateDer;

/// A certificate authority.
pub struct Ca {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its key, in PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self { cert_der: cert.der().clone(), cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Roots holding only this CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        roots
    }

    /// A client configuration trusting only this CA (wsx's builder: ALPN
    /// `http/1.1`, the ring provider).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        wsx::tls::client_config_with_roots(self.roots()).unwrap()
    }
}

/// A development certificate as `openssl req -x509 -newkey rsa:2048 -nodes
/// -subj /CN=localhost -addext subjectAltName=...` makes it: self-signed,
/// and marked as a CA (basicConstraints CA:TRUE, OpenSSL's default).
pub fn self_signed_ca_cert(names: &[&str]) -> ServerCert {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    ServerCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A fresh directory under the system's temporary directory, removed on
/// drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "wsx-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TLS acceptor for a certificate of `ca` for `names`, made the way a
/// server would: PEM files read by `wsx::tls::acceptor_from_pem_files`.
pub fn acceptor(ca: &Ca, names: &[&str]) -> wsx::tls::TlsAcceptor {
    let cert = ca.server_cert(names);
    let dir = TempDir::new();
    let cert_path = dir.write("cert.pem", &cert.cert_pem);
    let key_path = dir.write("key.pem", &cert.key_pem);
    wsx::tls::acceptor_from_pem_files(cert_path, key_path).unwrap()
}
