//! HTTPS to a local TLS server: HTTP/2 negotiated by ALPN, one multiplexed
//! connection, extra trusted roots, and an untrusted certificate refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;
use gemini_oauth::{CredentialLoader, Error};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a leaf certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certs(dir: &Path) -> (String, String, String) {
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
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
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

/// An HTTPS server on 127.0.0.1 that speaks only HTTP/2 (ALPN "h2").
/// Returns its base URL and counters of connections and HTTP/2 requests.
async fn h2_server(leaf: &str, key: &str) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections, h2_requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), h2_requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        if req.version() == http::Version::HTTP_2 {
                            r.fetch_add(1, Ordering::SeqCst);
                        }
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    br#"{"models": [{"name": "models/h2"}]}"#,
                                )),
                            ))
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
            });
        }
    });
    (format!("https://{addr}/v1"), connections, h2_requests)
}

fn loader(dir: &Path, api_base: &str, token_uri: &str) -> CredentialLoader {
    write_token(dir, &token_json(token_uri, 3000));
    temp_loader(dir).api_base(api_base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_by_alpn_and_multiplexed_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_certs(dir.path());
    let (base, connections, h2_requests) = h2_server(&leaf, &key).await;
    let tokens = token_endpoint().await;
    let creds = loader(dir.path(), &base, &token_uri(&tokens))
        .root_certificates_pem(&ca)
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client();
    let resp = client.get(&client.api_url("models")).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    for _ in 0..10 {
        let models = gemini_oauth::gemini::list_models(&client).await.unwrap();
        assert_eq!(models[0].name, "models/h2");
    }
    assert_eq!(h2_requests.load(Ordering::SeqCst), 11);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "HTTP/2 multiplexes one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_and_bad_pem_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, leaf, key) = make_certs(dir.path());
    let (base, _, h2_requests) = h2_server(&leaf, &key).await;
    let tokens = token_endpoint().await;
    let creds = loader(dir.path(), &base, &token_uri(&tokens))
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client();
    let err = client.get(&client.api_url("models")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(h2_requests.load(Ordering::SeqCst), 0);

    let err = loader(dir.path(), &base, &token_uri(&tokens))
        .root_certificates_pem(
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCertificate(_)), "{err:?}");
}
