//! The crypto provider of wsx's TLS configurations: the process's default
//! when the application installed one (e.g. aws-lc-rs, for its
//! post-quantum key exchange), else rustls' *ring* cipher suites, key
//! exchange groups and signature algorithms. rustls deprecates its
//! `ring::default_provider()` (no post-quantum key exchange) without a
//! *ring* replacement; wsx keeps *ring* because it builds with no more than
//! a C compiler, and assembles the same provider from the public parts.

use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use std::sync::{Arc, OnceLock};
use webpki::ring as algs;

/// The crypto provider wsx builds its TLS configurations with: the
/// process's default if one was installed, else *ring* (rustls' *ring*
/// cipher suites, key exchange groups and signature algorithms). For a
/// configuration of your own that works as wsx's do:
///
/// ```
/// let provider = wsx::tls::crypto_provider();
/// let config = wsx::tls::rustls::ServerConfig::builder_with_provider(provider)
///     .with_safe_default_protocol_versions()
///     .unwrap();
/// # let _ = config;
/// ```
pub fn provider() -> Arc<CryptoProvider> {
    if let Some(installed) = CryptoProvider::get_default() {
        return installed.clone();
    }
    static RING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    RING.get_or_init(|| Arc::new(ring_provider())).clone()
}

/// rustls' *ring* provider, as `rustls::crypto::ring::default_provider`
/// builds it.
pub(crate) fn ring_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(),
        kx_groups: rustls::crypto::ring::DEFAULT_KX_GROUPS.to_vec(),
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &Ring,
        key_provider: &Ring,
    }
}

/// Random numbers and private keys from *ring*.
#[derive(Debug)]
struct Ring;

impl SecureRandom for Ring {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        use ring::rand::SecureRandom as _;
        ring::rand::SystemRandom::new().fill(buf).map_err(|_| GetRandomFailed)
    }
}

impl KeyProvider for Ring {
    fn load_private_key(&self, key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        rustls::crypto::ring::sign::any_supported_type(&key)
    }
}

/// The signature algorithms webpki verifies with *ring* (the table of
/// rustls' *ring* provider; a test checks that they stay the same).
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        algs::ECDSA_P256_SHA256,
        algs::ECDSA_P256_SHA384,
        algs::ECDSA_P384_SHA256,
        algs::ECDSA_P384_SHA384,
        algs::ED25519,
        algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        algs::RSA_PKCS1_2048_8192_SHA256,
        algs::RSA_PKCS1_2048_8192_SHA384,
        algs::RSA_PKCS1_2048_8192_SHA512,
        algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        // For TLS 1.2 the curve is not fixed by the scheme; for 1.3 it is.
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[algs::ECDSA_P384_SHA384, algs::ECDSA_P256_SHA384]),
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256]),
        (SignatureScheme::ED25519, &[algs::ED25519]),
        (SignatureScheme::RSA_PSS_SHA512, &[algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA384, &[algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA256, &[algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[algs::RSA_PKCS1_2048_8192_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[algs::RSA_PKCS1_2048_8192_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[algs::RSA_PKCS1_2048_8192_SHA256]),
    ],
};

#[cfg(test)]
mod tests {
    /// The provider is rustls' *ring* provider: the same suites, groups
    /// and signature schemes (compared with the deprecated constructor,
    /// which only this test calls).
    #[test]
    #[allow(deprecated)]
    fn the_ring_provider_is_rustls_own() {
        let ours = super::ring_provider();
        let theirs = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        let groups = |p: &rustls::crypto::CryptoProvider| p.kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
        assert_eq!(suites(&ours), suites(&theirs));
        assert_eq!(groups(&ours), groups(&theirs));
        assert_eq!(
            ours.signature_verification_algorithms.supported_schemes(),
            theirs.signature_verification_algorithms.supported_schemes()
        );
        assert_eq!(
            format!("{:?}", ours.signature_verification_algorithms),
            format!("{:?}", theirs.signature_verification_algorithms)
        );
        let mut bytes = [0u8; 32];
        ours.secure_random.fill(&mut bytes).unwrap();
        assert_ne!(bytes, [0u8; 32]);
    }
}
