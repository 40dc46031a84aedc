//! HTTP client set-up shared by everything in `rap` that talks to a server.

/// Makes rustls's `ring` crypto provider the process default, once; call it before building
/// a `reqwest` client. (The workspace builds reqwest without its own provider, aws-lc-rs,
/// whose C build costs minutes; `ring` does the same job here.)
pub fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // An error means another provider is already the default, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
