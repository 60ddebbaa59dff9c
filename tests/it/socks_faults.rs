//! SOCKS5 proxies that misbehave: a wrong version, no acceptable method, a
//! method not offered, a truncated or stalled answer, a huge bound address,
//! an HTTP proxy answering instead. Each is an `Error::Proxy` within the
//! connect timeout, never a panic or a hang, and never shows the password.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use gemini_oauth::{CredentialLoader, Error, ProxyProblem};

const PASSWORD: &str = "SOCKSPASSMARKER";

/// A peer on 127.0.0.1 that, on each connection, reads what the client
/// sends first, answers `greeting`, then (if `after_auth` is given) reads
/// once more and answers that; then holds the connection (`hold`) or closes it.
async fn peer(greeting: Vec<u8>, after_auth: Option<Vec<u8>>, hold: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (greeting, after_auth) = (greeting.clone(), after_auth.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(&greeting).await;
                if let Some(answer) = after_auth {
                    let _ = tcp.read(&mut buf).await;
                    let _ = tcp.write_all(&answer).await;
                }
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    port
}

async fn through(proxy: String) -> Error {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let creds = CredentialLoader::api_key("AIzaKEY")
        .api_base("https://gemini.test/v1")
        .proxy(proxy)
        .connect_timeout(Duration::from_secs(2))
        .load()
        .await;
    // A URL refused by `load()` is the answer too.
    let creds = match creds {
        Ok(creds) => creds,
        Err(e) => return e,
    };
    let client = creds.authorized_client();
    tokio::time::timeout(
        Duration::from_secs(20),
        gemini_oauth::gemini::list_models(&client),
    )
    .await
    .expect("the connect timeout fired, not a hang")
    .unwrap_err()
}

fn assert_proxy_error(err: &Error, scenario: &str) {
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(PASSWORD),
        "{scenario}: the password leaked: {text}"
    );
    // A tunnel the proxy opened and then closed fails the endpoint's TLS.
    let opened = scenario.starts_with("a huge bound address");
    assert!(
        matches!(err, Error::Proxy { .. }) || opened && matches!(err, Error::Transport { .. }),
        "{scenario}: {err:?}"
    );
}

/// A scenario: its name, the greeting's answer, the answer after the
/// next message, whether the peer then holds the connection.
type Case = (&'static str, Vec<u8>, Option<Vec<u8>>, bool);

/// A user-and-password answer, then a CONNECT answer with a domain-name
/// bound address of 255 bytes.
fn huge_bound_address() -> Vec<u8> {
    let mut reply = vec![0x05, 0x00, 0x00, 0x03, 0xff];
    reply.extend(std::iter::repeat_n(b'a', 255));
    reply.extend([0x01, 0xbb]);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_socks5_proxy_is_a_proxy_error_within_the_connect_timeout() {
    let http_answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec();
    let cases: Vec<Case> = vec![
        ("wrong version", vec![0x04, 0x02], None, false),
        ("no acceptable method", vec![0x05, 0xff], None, false),
        ("a method not offered", vec![0x05, 0x01], None, false),
        ("truncated, then closed", vec![0x05], None, false),
        ("truncated, then silent", vec![0x05], None, true),
        ("an HTTP proxy answering", http_answer, None, false),
        (
            "a truncated CONNECT answer, then silent",
            vec![0x05, 0x02],
            Some(vec![0x01, 0x00, 0x05, 0x00]),
            true,
        ),
        (
            "a huge bound address, then closed",
            vec![0x05, 0x02],
            Some([vec![0x01, 0x00], huge_bound_address()].concat()),
            false,
        ),
        (
            "an unknown address type",
            vec![0x05, 0x02],
            Some(vec![0x01, 0x00, 0x05, 0x00, 0x00, 0x09, 0, 0, 0, 0, 0, 0]),
            false,
        ),
    ];
    for (scenario, greeting, after_auth, hold) in cases {
        let port = peer(greeting, after_auth, hold).await;
        for scheme in ["socks5h", "socks5"] {
            let url = format!("{scheme}://user:pre%2F{PASSWORD}@127.0.0.1:{port}");
            let err = if scheme == "socks5" {
                // socks5 resolves here: `gemini.test` resolves nowhere, so name loopback.
                through_loopback(url).await
            } else {
                through(url).await
            };
            assert_proxy_error(&err, &format!("{scenario} ({scheme})"));
        }
    }
}

async fn through_loopback(proxy: String) -> Error {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let creds = CredentialLoader::api_key("AIzaKEY")
        .api_base("https://127.0.0.1:9/v1")
        .proxy(proxy)
        .connect_timeout(Duration::from_secs(2))
        .load()
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        gemini_oauth::gemini::list_models(&creds.authorized_client()),
    )
    .await
    .expect("the connect timeout fired, not a hang")
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_password_longer_than_the_protocol_allows_is_named_as_such_unseen() {
    // RFC 1929: a user name and a password of 1 to 255 bytes each.
    let port = peer(vec![0x05, 0x02], Some(vec![0x01, 0x00]), true).await;
    let long = format!("{}{PASSWORD}", "p".repeat(300));
    let url = format!("socks5h://user:{long}@127.0.0.1:{port}");
    let err = through(url).await;
    assert_proxy_error(&err, "a 315-byte password");
    assert!(
        !matches!(
            err,
            Error::Proxy {
                problem: ProxyProblem::TunnelRefused,
                ..
            }
        ),
        "not the proxy's refusal: {err:?}"
    );
    assert!(err.to_string().contains("255"), "{err}");
    // Each within 255 bytes, but more together than the handshake's buffer.
    let url = format!(
        "socks5h://{}:{}{PASSWORD}@127.0.0.1:{port}",
        "u".repeat(150),
        "p".repeat(130)
    );
    let err = through(url).await;
    assert_proxy_error(&err, "150 + 145 bytes");
    assert!(
        matches!(
            err,
            Error::Proxy {
                problem: ProxyProblem::CredentialsTooLong,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_with_an_untrusted_certificate_is_a_proxy_error_unseen() {
    use crate::common::proxies::{AfterConnect, MapProxy};
    use crate::common::tls_certs::{acceptor, make_certs};
    let dir = tempfile::tempdir().unwrap();
    let (_ca, leaf, key) = make_certs(dir.path());
    let target = "127.0.0.1:9".parse().unwrap();
    let proxy = MapProxy::start(
        target,
        Some(acceptor(&leaf, &key, &[b"http/1.1"])),
        AfterConnect::Tunnel,
        None,
    )
    .await;
    let url = proxy.url(Some(&format!("user:pre%2F{PASSWORD}")));
    assert!(url.starts_with("https://"), "{url}");
    let err = through(url).await;
    assert_proxy_error(&err, "untrusted proxy certificate");
    let text = format!("{err:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}
