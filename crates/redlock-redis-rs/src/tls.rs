//! TLS (feature `tls`): a crypto provider for rustls.
//!
//! The `redis` crate enables rustls without a crypto provider, and rustls
//! panics at the first TLS connection unless exactly one provider feature is
//! enabled in the whole build or the application installed one. This crate
//! enables `ring`; when another crate of the application enables `aws-lc-rs`
//! too, rustls cannot choose by itself, so every node constructor installs
//! ring as the process default, unless the application installed a provider
//! first (which is then kept).

/// Installs rustls' ring provider as the process default if none is
/// installed yet.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
