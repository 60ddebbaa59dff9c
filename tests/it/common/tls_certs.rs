//! A throwaway CA and a leaf certificate for 127.0.0.1 (and `gemini.test`,
//! a name only the tests' proxies resolve), made with openssl,
//! and a TLS acceptor serving them (shared by the TLS tests and
//! `benches/token.rs`).
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a leaf certificate for 127.0.0.1 and `gemini.test` signed by it, made with openssl.
pub fn make_certs(dir: &Path) -> (String, String, String) {
    make_certs_for(dir, "IP:127.0.0.1,DNS:gemini.test")
}

/// A CA and a leaf certificate for the names in `san` (openssl's
/// `subjectAltName` syntax) signed by it.
pub fn make_certs_for(dir: &Path, san: &str) -> (String, String, String) {
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (bash .ci/test installs it)")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gemini-oauth test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("ca.pem"), read("leaf.pem"), read("leaf.key"))
}

/// A TLS acceptor for the PEM `leaf` and `key`, offering `alpn` protocols.
pub fn acceptor(leaf: &str, key: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(Arc::new(server_config(leaf, key, alpn)))
}

/// The server side for the PEM `leaf` and `key`, offering `alpn` protocols.
pub fn server_config(leaf: &str, key: &str, alpn: &[&[u8]]) -> tokio_rustls::rustls::ServerConfig {
    let ring = tokio_rustls::rustls::crypto::ring::default_provider();
    server_config_with(leaf, key, alpn, ring)
}

/// [`server_config`] with `provider`'s cipher suites and key exchanges.
pub fn server_config_with(
    leaf: &str,
    key: &str,
    alpn: &[&[u8]],
    provider: tokio_rustls::rustls::crypto::CryptoProvider,
) -> tokio_rustls::rustls::ServerConfig {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
