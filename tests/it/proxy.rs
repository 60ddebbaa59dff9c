//! Proxies, through a real one (tinyproxy): HTTPS tunnelled with `CONNECT`
//! for the token endpoint, revocation and the API, plain http in absolute form, proxy
//! credentials, `NO_PROXY`, `--no-proxy`, a proxy that refuses, and the
//! metadata server never proxied. Environment variables are set only for
//! example processes, never in this process.

use std::convert::Infallible;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::common::examples::{example, stdout};
use crate::common::tinyproxy::Tinyproxy;
use crate::common::tls_certs::{acceptor, make_certs};
use crate::common::*;
use gemini_oauth::{CredentialLoader, Error, ProxyProblem};

const PASSWORD: &str = "PROXYPASSMARKER";

/// An HTTPS server on 127.0.0.1 (HTTP/1.1) that is both the token endpoint
/// (`POST /token`) and the Gemini API (`GET /v1/models`), recording each
/// request as "METHOD path".
struct TlsServer {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TlsServer {
    async fn start(leaf: &str, key: &str) -> Self {
        let acceptor = acceptor(leaf, key, &[b"h2", b"http/1.1"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let line = format!("{} {}", req.method(), req.uri().path());
                        log.lock().unwrap().push(line);
                        let body = match req.uri().path() {
                            "/token" => json!({
                                "access_token": NEW_ACCESS, "expires_in": 3599,
                                "scope": RETRIEVER, "token_type": "Bearer"
                            }),
                            _ => json!({"models": [{"name": "models/via-proxy"}]}),
                        };
                        async move {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        TlsServer { port, seen }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A CA, a TLS server, and a temp dir whose token.json has expired and names
/// the server's token endpoint.
struct Setup {
    dir: tempfile::TempDir,
    ca: String,
    server: TlsServer,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf, key) = make_certs(dir.path());
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        let server = TlsServer::start(&leaf, &key).await;
        write_token(
            dir.path(),
            &token_json(&format!("{}/token", server.base()), -60),
        );
        Setup { dir, ca, server }
    }

    fn loader(&self) -> CredentialLoader {
        temp_loader(self.dir.path())
            .api_base(format!("{}/v1", self.server.base()))
            .root_certificates_pem(&self.ca)
    }

    fn connect_line(&self) -> String {
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", self.server.port)
    }

    /// `list_models` run with `env` and `args` (plus the API base and CA).
    async fn list_models(&self, env: &[(&str, String)], args: &[&str]) -> Output {
        let mut cmd = example("list_models");
        for var in [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GCE_METADATA_IP",
            "NO_GCE_CHECK",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path())
            .args(["--no-consent", "--api-base"])
            .arg(format!("{}/v1", self.server.base()))
            .arg("--root-certificates")
            .arg(self.dir.path().join("ca.pem"))
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

/// Loads the credentials and lists the models: the first request that
/// reaches the network (a refresh, else the call) meets the proxy.
async fn list(loader: CredentialLoader) -> gemini_oauth::Result<Vec<gemini_oauth::gemini::Model>> {
    let creds = loader.load().await?;
    gemini_oauth::gemini::list_models(&creds.authorized_client()).await
}

/// The error of listing models through `proxy`, a [`Error::Proxy`] with `problem`.
async fn proxy_error(s: &Setup, proxy: impl Into<String>, problem: ProxyProblem) -> Error {
    let err = list(s.loader().proxy(proxy)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Proxy { problem: p, .. } if *p == problem),
        "{err:?}"
    );
    err
}

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(
        !text.contains("UFJPWFlQQVNTTUFSS0VS"),
        "base64 leaked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refresh_api_calls_and_revocation_go_through_the_proxy_tunnel() {
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(&[s.server.port], None);
    let creds = s
        .loader()
        .proxy(proxy.url(None))
        .revoke_uri(format!("{}/revoke", s.server.base()))
        .load()
        .await
        .unwrap();
    let models = gemini_oauth::gemini::list_models(&creds.authorized_client())
        .await
        .unwrap();
    assert_eq!(models[0].name, "models/via-proxy");
    creds.revoke().await.unwrap();
    // The load's refresh, the call and the revocation reached the server...
    assert_eq!(
        s.server.seen(),
        ["POST /token", "GET /v1/models", "POST /revoke"]
    );
    // ...through tunnels the proxy opened (TLS inside: it saw no path).
    let requests = proxy.requests();
    assert!(!requests.is_empty(), "{}", proxy.log());
    assert!(
        requests.iter().all(|r| *r == s.connect_line()),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_the_environment_tunnels_and_no_proxy_bypasses_it() {
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(&[s.server.port], None);
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"] {
        let before = proxy.requests().len();
        let out = s.list_models(&[(var, proxy.url(None))], &[]).await;
        assert_eq!(stdout(&out), "models/via-proxy\n", "{var}");
        let requests = proxy.requests();
        assert!(requests.len() > before, "{var}: {}", proxy.log());
        assert!(requests[before..].iter().all(|r| *r == s.connect_line()));
    }
    let before = proxy.requests().len();
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "*", "example.com, 127.0.0.1"] {
        let env = [
            ("HTTPS_PROXY", proxy.url(None)),
            ("NO_PROXY", no_proxy.to_owned()),
        ];
        let out = s.list_models(&env, &[]).await;
        assert_eq!(stdout(&out), "models/via-proxy\n", "{no_proxy}");
    }
    // --no-proxy ignores the environment.
    let out = s
        .list_models(&[("HTTPS_PROXY", proxy.url(None))], &["--no-proxy"])
        .await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
    // --proxy does not read NO_PROXY.
    let env = [("NO_PROXY", "127.0.0.1".to_owned())];
    let out = s.list_models(&env, &["--proxy", &proxy.url(None)]).await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    assert_eq!(proxy.requests().len(), before + 1, "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_proxy_name_bypasses_the_proxy_for_that_host_only() {
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(&[s.server.port], None);
    let env = [
        ("HTTPS_PROXY", proxy.url(None)),
        ("no_proxy", "googleapis.com,localhost".to_owned()),
    ];
    let mut cmd_out = s.list_models(&env, &[]).await;
    // 127.0.0.1 is not covered by the names: proxied.
    assert_eq!(stdout(&cmd_out), "models/via-proxy\n");
    assert!(!proxy.requests().is_empty(), "{}", proxy.log());
    let before = proxy.requests().len();
    // The same through `localhost`, which a suffix rule names: direct.
    let localhost_base = format!("https://localhost:{}/v1", s.server.port);
    cmd_out = s.list_models(&env, &["--api-base", &localhost_base]).await;
    // The certificate is for 127.0.0.1 only: the direct connection reached
    // the server and failed TLS there, not at the proxy.
    assert_eq!(cmd_out.status.code(), Some(1));
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_are_sent_and_a_wrong_password_is_a_typed_error_that_hides_it() {
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(&[s.server.port], Some(("user", PASSWORD)));
    let good = proxy.url(Some(&format!("user:{PASSWORD}")));
    let creds = s.loader().proxy(&good).load().await.unwrap();
    let models = gemini_oauth::gemini::list_models(&creds.authorized_client())
        .await
        .unwrap();
    assert_eq!(models[0].name, "models/via-proxy");
    assert_eq!(s.server.seen(), ["POST /token", "GET /v1/models"]);
    assert!(proxy.requests().iter().all(|r| *r == s.connect_line()));
    assert_no_password(&format!(
        "{creds:?} {:?} {:?}",
        s.loader().proxy(&good),
        creds.authorized_client()
    ));

    // Without credentials: 407.
    let err = proxy_error(&s, proxy.url(None), ProxyProblem::AuthenticationRequired).await;
    assert!(
        matches!(&err, Error::Proxy { proxy: p, .. } if *p == format!("{}/", proxy.url(None))),
        "{err:?}"
    );
    // A wrong password: tinyproxy answers 401 to the CONNECT, so the tunnel is refused.
    let bad = proxy.url(Some("user:wrong-PROXYPASSMARKER"));
    let err = proxy_error(&s, &bad, ProxyProblem::TunnelRefused).await;
    assert!(err.to_string().contains(&proxy.url(None)), "{err}");
    assert_no_password(&format!(
        "{err} {err:?} {:?}",
        std::error::Error::source(&err)
    ));

    // In an example with every log line on: one clear error, no password.
    let out = s
        .list_models(&[("RUST_LOG", "trace".to_owned())], &["--proxy", &bad])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: proxy http://127.0.0.1:"),
        "{stderr}"
    );
    assert_no_password(&stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_is_a_typed_error_naming_it() {
    let s = Setup::new().await;
    // Nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://u:{PASSWORD}@{}", l.local_addr().unwrap())
    };
    let err = proxy_error(&s, &closed, ProxyProblem::Unreachable).await;
    assert!(err.is_transient());
    assert_no_password(&format!("{err} {err:?}"));
    // A proxy whose rules forbid the port.
    let proxy = Tinyproxy::start(&[443], None);
    proxy_error(&s, proxy.url(None), ProxyProblem::TunnelRefused).await;
    // A scheme this crate does not speak.
    let socks = format!("socks5://u:{PASSWORD}@127.0.0.1:1");
    proxy_error(&s, socks, ProxyProblem::UnsupportedScheme("socks5".into())).await;
    // The example: one line, exit code 1, no panic.
    let out = s.list_models(&[("HTTPS_PROXY", closed.clone())], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: proxy http://127.0.0.1:")
            && stderr.contains("cannot be reached"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_password(&stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_answers_the_connect_is_given_up_on_after_the_connect_timeout() {
    let s = Setup::new().await;
    // Accepts and keeps the connection, silent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let loader = s
        .loader()
        .proxy(&silent)
        .connect_timeout(std::time::Duration::from_millis(300));
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), list(loader))
        .await
        .expect("given up on before the test's guard")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Proxy { problem: ProxyProblem::Unreachable, proxy, .. } if *proxy == format!("{silent}/")
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
    let tokens = token_endpoint().await;
    let api = api_answering(
        ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/plain"}]})),
    )
    .await;
    let proxy = Tinyproxy::start(&[], Some(("user", PASSWORD)));
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), -60));
    let url = proxy.url(Some(&format!("user:{PASSWORD}")));
    let base = format!("{}/v1", api.uri());
    let mut cmd = example("list_models");
    cmd.current_dir(dir.path())
        .env("HTTP_PROXY", &url)
        .args(["--no-consent", "--api-base", &base]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(stdout(&out), "models/plain\n");
    let requests = proxy.requests();
    assert!(
        requests.contains(&format!("POST {} HTTP/1.1", token_uri(&tokens)))
            && requests
                .iter()
                .any(|r| r.starts_with(&format!("GET {base}/models?"))),
        "{requests:?}"
    );
    // The refresh went through the proxy to the token endpoint.
    assert_eq!(token_requests(&tokens).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_server_is_never_proxied_while_the_api_is() {
    let s = Setup::new().await;
    let metadata = metadata_server(metadata_token()).await;
    let proxy = Tinyproxy::start(&[s.server.port], None);
    let home = tempfile::tempdir().unwrap();
    let env = adc_env(
        home.path(),
        &metadata.address().to_string(),
        &proxy.url(None),
    );
    let out = s.list_models(&env, &["--adc"]).await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    // The API call was tunnelled; nothing for the metadata server reached the proxy.
    let requests = proxy.requests();
    assert_eq!(requests, [s.connect_line()], "{}", proxy.log());
    assert_eq!(s.server.seen(), ["GET /v1/models"]);
    assert_eq!(requests_to(&metadata, METADATA_TOKEN_PATH).await.len(), 1);
}

/// ADC from the metadata server only, with every proxy variable aimed at `proxy`.
fn adc_env(home: &Path, metadata: &str, proxy: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HOME", home.display().to_string()),
        ("CLOUDSDK_CONFIG", home.join("gcloud").display().to_string()),
        ("GCE_METADATA_HOST", metadata.to_owned()),
    ];
    for var in crate::common::examples::PROXY_VARS {
        if !var.eq_ignore_ascii_case("no_proxy") {
            env.push((var, proxy.to_owned()));
        }
    }
    env
}
