//! HTTPS to a local TLS server: HTTP/2 negotiated by ALPN, one multiplexed
//! connection, extra trusted roots, and an untrusted certificate refused.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::tls_certs::make_certs;
use crate::common::*;
use gemini_oauth::{CredentialLoader, Error};

/// Counters kept by [`h2_server`].
#[derive(Clone, Default)]
struct H2Counts {
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

/// An HTTPS server on 127.0.0.1 that speaks only HTTP/2 (ALPN "h2") and
/// takes 100 ms per answer. Returns its base URL and its counters.
async fn h2_server(leaf: &str, key: &str) -> (String, H2Counts) {
    h2_server_on(crate::common::tls_certs::acceptor(leaf, key, &[b"h2"])).await
}

/// [`h2_server`] behind `acceptor`.
async fn h2_server_on(acceptor: tokio_rustls::TlsAcceptor) -> (String, H2Counts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = H2Counts::default();
    let (c, r) = (counts.connections.clone(), counts.clone());
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
                            r.requests.fetch_add(1, Ordering::SeqCst);
                        }
                        let r = r.clone();
                        async move {
                            let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            r.most_in_flight.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            r.in_flight.fetch_sub(1, Ordering::SeqCst);
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
    (format!("https://{addr}/v1"), counts)
}

/// Credentials for `api_base` that trust `ca`, tokens from `tokens`.
async fn trusting(
    dir: &Path,
    ca: &str,
    api_base: &str,
    tokens: &wiremock::MockServer,
) -> gemini_oauth::Credentials {
    loader(dir, api_base, &token_uri(tokens))
        .root_certificates_pem(ca)
        .load()
        .await
        .unwrap()
}

fn loader(dir: &Path, api_base: &str, token_uri: &str) -> CredentialLoader {
    write_token(dir, &token_json(token_uri, 3000));
    temp_loader(dir).api_base(api_base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_by_alpn_and_multiplexed_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_certs(dir.path());
    let (base, counts) = h2_server(&leaf, &key).await;
    let tokens = token_endpoint().await;
    let creds = trusting(dir.path(), &ca, &base, &tokens).await;
    let client = creds.authorized_client();
    let resp = client.get(&client.api_url("models")).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    for _ in 0..10 {
        let models = gemini_oauth::gemini::list_models(&client).await.unwrap();
        assert_eq!(models[0].name, "models/h2");
    }
    assert_eq!(counts.requests.load(Ordering::SeqCst), 11);
    // Concurrent requests are in flight together, on the same connection.
    let concurrent: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { gemini_oauth::gemini::list_models(&client).await })
        })
        .collect();
    for call in concurrent {
        assert_eq!(call.await.unwrap().unwrap()[0].name, "models/h2");
    }
    assert_eq!(counts.requests.load(Ordering::SeqCst), 19);
    assert!(
        counts.most_in_flight.load(Ordering::SeqCst) >= 2,
        "requests were multiplexed, not queued"
    );
    assert_eq!(
        counts.connections.load(Ordering::SeqCst),
        1,
        "HTTP/2 multiplexes one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_and_bad_pem_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, leaf, key) = make_certs(dir.path());
    let (base, counts) = h2_server(&leaf, &key).await;
    let tokens = token_endpoint().await;
    let creds = loader(dir.path(), &base, &token_uri(&tokens))
        .load()
        .await
        .unwrap();
    let client = creds.authorized_client();
    let err = client.get(&client.api_url("models")).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(counts.requests.load(Ordering::SeqCst), 0);

    let err = loader(dir.path(), &base, &token_uri(&tokens))
        .root_certificates_pem(
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .load()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCertificate(_)), "{err:?}");

    // A file with no certificate in it (empty, or DER, or a key) is refused
    // at load, not found out at the first TLS handshake.
    for pem in [
        "",
        "just text\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        let err = loader(dir.path(), &base, &token_uri(&tokens))
            .root_certificates_pem(pem)
            .load()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidCertificate(why) if why.contains("no certificate")),
            "{pem:?}: {err:?}"
        );
    }
}

/// A certificate bundle with a private key pasted in whose line breaks were
/// lost (a secret copied through an environment variable or a one-line
/// JSON field): the PEM parser's errors carry the offending line, here the
/// key itself; `load()`'s error must say what is wrong without it.
#[tokio::test]
async fn a_pem_error_never_shows_a_private_key_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, key) = make_certs(dir.path());
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let one_line = format!("-----BEGIN PRIVATE KEY-----{body}-----END PRIVATE KEY-----\n");
    let glued_header = format!("-----BEGIN PRIVATE KEY-----{body}\n-----END PRIVATE KEY-----\n");
    // Shown as text, or as the bytes' numbers ({:?} of a Vec<u8>).
    let marker = &body[body.len() / 2..body.len() / 2 + 24];
    let as_numbers = format!("{:?}", marker.as_bytes());
    let as_numbers = as_numbers.trim_start_matches('[').trim_end_matches(']');
    for bad in [one_line, glued_header] {
        for pem in [bad.clone(), format!("{ca}{bad}")] {
            let err = CredentialLoader::api_key("k")
                .root_certificates_pem(&pem)
                .load()
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidCertificate(_)), "{err:?}");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(marker), "{shown}");
                assert!(!shown.contains(as_numbers), "{shown}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crypto_provider_the_application_installed_is_the_one_used() {
    if !alone_in_this_process("tls::a_crypto_provider_the_application_installed_is_the_one_used") {
        return;
    }
    use rustls::crypto::CryptoProvider;
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let only = |suite| CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    };
    // The application's choice, made before it loads credentials: AES only.
    only(cipher_suite::TLS13_AES_128_GCM_SHA256)
        .install_default()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_certs(dir.path());
    let server = |suite| {
        let config =
            crate::common::tls_certs::server_config_with(&leaf, &key, &[b"h2"], only(suite));
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    };
    let (chacha, chacha_counts) =
        h2_server_on(server(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256)).await;
    let (aes, aes_counts) = h2_server_on(server(cipher_suite::TLS13_AES_128_GCM_SHA256)).await;
    let tokens = token_endpoint().await;
    for (base, works) in [(&aes, true), (&chacha, false)] {
        let creds = trusting(dir.path(), &ca, base, &tokens).await;
        let client = creds.authorized_client();
        let answer = client.get(&client.api_url("models")).await;
        // ring's own defaults would have agreed on ChaCha20 with the second server.
        assert_eq!(answer.is_ok(), works, "{base}: {answer:?}");
    }
    assert_eq!(aes_counts.requests.load(Ordering::SeqCst), 1);
    assert_eq!(chacha_counts.requests.load(Ordering::SeqCst), 0);
}

/// With feature `aws-lc-rs`, TLS is aws-lc-rs's: a server that agrees only
/// on the post-quantum X25519MLKEM768 key exchange, which ring lacks, is
/// reached.
#[cfg(feature = "aws-lc-rs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_feature_aws_lc_rs_tls_is_aws_lc_rs() {
    // A process of its own: no provider installed by another test.
    if !alone_in_this_process("tls::with_feature_aws_lc_rs_tls_is_aws_lc_rs") {
        return;
    }
    use rustls::crypto::{CryptoProvider, aws_lc_rs};
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_certs(dir.path());
    let post_quantum_only = CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519MLKEM768],
        ..aws_lc_rs::default_provider()
    };
    let config =
        crate::common::tls_certs::server_config_with(&leaf, &key, &[b"h2"], post_quantum_only);
    let (base, counts) = h2_server_on(tokio_rustls::TlsAcceptor::from(Arc::new(config))).await;
    let tokens = token_endpoint().await;
    let creds = trusting(dir.path(), &ca, &base, &tokens).await;
    let client = creds.authorized_client();
    let answer = client.get(&client.api_url("models")).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
}
