//! Proxies, through a real one (tinyproxy): HTTPS tunnelled with `CONNECT`
//! for the token endpoint, revocation and the API, plain http in absolute form, proxy
//! credentials, `NO_PROXY`, `--no-proxy`, a proxy that refuses, and the
//! metadata server never proxied; through the tests' own proxies
//! (`common::proxies`): an `https://` proxy, SOCKS5 (`socks5://`,
//! `socks5h://`), and endpoints named `gemini.test` (not loopback, which is
//! never proxied from the environment), which only those proxies resolve.
//! Environment variables are set only for example processes, never in this
//! process.

use std::convert::Infallible;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::common::examples::{example, stdout};
use crate::common::proxies::{AfterConnect, MapProxy, Socks5};
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

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
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

    /// The API base under a name that is not loopback and that only the
    /// tests' proxies resolve (to the server).
    fn named_base(&self) -> String {
        format!("https://gemini.test:{}/v1", self.server.port)
    }

    fn named_connect_line(&self) -> String {
        format!("CONNECT gemini.test:{} HTTP/1.1", self.server.port)
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
async fn https_proxy_from_the_environment_tunnels_a_named_endpoint() {
    let s = Setup::new().await;
    let proxy = MapProxy::start(s.server.addr(), None, AfterConnect::Tunnel, None).await;
    let named = s.named_base();
    // Whitespace around a pasted value is trimmed, not a silent direct connection.
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        let before = proxy.seen().len();
        let value = format!(" {}\n", proxy.url(None));
        let out = s
            .list_models(&[(var, value)], &["--api-base", &named])
            .await;
        assert_eq!(stdout(&out), "models/via-proxy\n", "{var}");
        // Only the API call: the refresh (127.0.0.1) went straight to the server.
        assert_eq!(proxy.seen()[before..], [s.named_connect_line()], "{var}");
    }
    assert_eq!(s.server.seen()[0], "POST /token");
    let before = proxy.seen().len();
    // A NO_PROXY entry for another port (or another name) leaves this endpoint proxied.
    for no_proxy in ["gemini.test:1", "other.test, [::2]:443"] {
        let env = [
            ("HTTPS_PROXY", proxy.url(None)),
            ("NO_PROXY", no_proxy.to_owned()),
        ];
        let out = s.list_models(&env, &["--api-base", &named]).await;
        assert_eq!(stdout(&out), "models/via-proxy\n", "{no_proxy}");
    }
    // --proxy does not read NO_PROXY.
    let env = [("NO_PROXY", "gemini.test".to_owned())];
    let out = s
        .list_models(&env, &["--api-base", &named, "--proxy", &proxy.url(None)])
        .await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    assert_eq!(proxy.seen().len(), before + 3, "{:?}", proxy.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_endpoints_are_never_sent_to_a_proxy_from_the_environment() {
    let s = Setup::new().await;
    let proxy = MapProxy::start(s.server.addr(), None, AfterConnect::Tunnel, None).await;
    let env: Vec<_> = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
        .into_iter()
        .map(|v| (v, proxy.url(None)))
        .collect();
    // HTTPS: the refresh and the call to 127.0.0.1 go straight to the server.
    let out = s.list_models(&env, &[]).await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    assert_eq!(s.server.seen(), ["POST /token", "GET /v1/models"]);
    // Plain http (a local token endpoint and API): never to the proxy in clear text.
    let tokens = token_endpoint().await;
    let api = api_answering(
        ResponseTemplate::new(200).set_body_json(json!({"models": [{"name": "models/plain"}]})),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), &token_json(&token_uri(&tokens), -60));
    let base = format!("{}/v1", api.uri());
    let mut cmd = example("list_models");
    cmd.current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--no-consent", "--api-base", &base]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(stdout(&out), "models/plain\n");
    assert_eq!(token_requests(&tokens).await, 1);
    assert_eq!(proxy.seen(), Vec::<String>::new());
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
    let closed = format!("http://u:{PASSWORD}@{}", crate::common::closed_port());
    let err = proxy_error(&s, &closed, ProxyProblem::Unreachable).await;
    assert!(err.is_transient());
    assert_no_password(&format!("{err} {err:?}"));
    // A proxy whose rules forbid the port.
    let proxy = Tinyproxy::start(&[443], None);
    proxy_error(&s, proxy.url(None), ProxyProblem::TunnelRefused).await;
    // A scheme this crate does not speak.
    let socks = format!("socks4://u:{PASSWORD}@127.0.0.1:1");
    proxy_error(&s, socks, ProxyProblem::UnsupportedScheme("socks4".into())).await;
    // The example: one line, exit code 1, no panic.
    let env = [("HTTPS_PROXY", closed.clone())];
    let out = s.list_models(&env, &["--api-base", &s.named_base()]).await;
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
    // Given explicitly: a proxy from the environment never carries loopback.
    cmd.current_dir(dir.path())
        .args(["--no-consent", "--api-base", &base, "--proxy", &url]);
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
    let proxy = MapProxy::start(s.server.addr(), None, AfterConnect::Tunnel, None).await;
    let home = tempfile::tempdir().unwrap();
    let env = adc_env(
        home.path(),
        &metadata.address().to_string(),
        &proxy.url(None),
    );
    let out = s
        .list_models(&env, &["--adc", "--api-base", &s.named_base()])
        .await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    // The API call was tunnelled; nothing for the metadata server reached the proxy.
    assert_eq!(proxy.seen(), [s.named_connect_line()]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_carries_the_tunnel_inside_tls_with_its_credentials() {
    let s = Setup::new().await;
    let certs = s.dir.path().join("proxy-certs");
    std::fs::create_dir(&certs).unwrap();
    let (_, leaf, key) = make_certs(&certs);
    // The proxy's certificate comes from another CA: trust both.
    let proxy_ca = std::fs::read_to_string(s.dir.path().join("proxy-certs/ca.pem")).unwrap();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("user:{PASSWORD}")
        )
    );
    let proxy = MapProxy::start(
        s.server.addr(),
        Some(acceptor(&leaf, &key, &[b"http/1.1"])),
        AfterConnect::Tunnel,
        Some(basic),
    )
    .await;
    let url = proxy.url(Some(&format!("user:{PASSWORD}")));
    assert!(url.starts_with("https://"));
    let loader = s
        .loader()
        .root_certificates_pem(format!("{}{proxy_ca}", s.ca))
        .proxy(&url);
    let models = list(loader).await.unwrap();
    assert_eq!(models[0].name, "models/via-proxy");
    // The refresh and the call, through one pooled tunnel (explicit proxies carry loopback too).
    assert_eq!(proxy.seen(), [s.connect_line()]);
    assert_eq!(s.server.seen(), ["POST /token", "GET /v1/models"]);
    // A wrong password: 407, typed, nothing of it shown.
    let bad = proxy.url(Some("user:wrong-PROXYPASSMARKER"));
    let loader = s
        .loader()
        .root_certificates_pem(format!("{}{proxy_ca}", s.ca))
        .proxy(&bad);
    let err = list(loader).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Proxy {
                problem: ProxyProblem::AuthenticationRequired,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_password(&format!("{err} {err:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5h_sends_the_name_and_socks5_an_address_with_the_credentials() {
    let s = Setup::new().await;
    let socks = Socks5::start(s.server.addr(), Some(("user", PASSWORD))).await;
    let port = s.server.port;
    // socks5h: the proxy resolves `gemini.test` (nobody else can).
    let url = socks.url("socks5h", Some(&format!("user:{PASSWORD}")));
    let models = list(s.loader().api_base(s.named_base()).proxy(&url))
        .await
        .unwrap();
    assert_eq!(models[0].name, "models/via-proxy");
    assert_eq!(
        socks.seen(),
        [format!("127.0.0.1:{port}"), format!("gemini.test:{port}")]
    );
    // From the environment, as an SSH -D tunnel is usually given.
    let before = socks.seen().len();
    let out = s
        .list_models(
            &[("ALL_PROXY", url.clone())],
            &["--api-base", &s.named_base()],
        )
        .await;
    assert_eq!(stdout(&out), "models/via-proxy\n");
    assert_eq!(socks.seen()[before..], [format!("gemini.test:{port}")]);
    // socks5: names are resolved here; the proxy gets an address.
    let before = socks.seen().len();
    let plain = socks.url("socks5", Some(&format!("user:{PASSWORD}")));
    let models = list(s.loader().proxy(&plain)).await.unwrap();
    assert_eq!(models[0].name, "models/via-proxy");
    assert_eq!(socks.seen()[before..], [format!("127.0.0.1:{port}")]);
    // A wrong password: refused by the proxy, typed, not shown.
    let bad = socks.url("socks5h", Some("user:wrong-PROXYPASSMARKER"));
    let err = list(s.loader().proxy(&bad)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Proxy {
                problem: ProxyProblem::AuthenticationRequired,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(socks.seen().last().map(String::as_str), Some("auth-failed"));
    assert_no_password(&format!("{err} {err:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_with_an_unencoded_slash_is_refused_before_any_connection() {
    let s = Setup::new().await;
    for pass in [
        "4321/PROXYPASSMARKER",
        "PROXYPASSMARKER?x",
        "PROXYPASSMARKER#x",
    ] {
        let url = format!("http://USERNAMEMARKER:{pass}@127.0.0.1:1");
        let err = list(s.loader().proxy(&url)).await.unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Proxy {
                    problem: ProxyProblem::UnencodedUserinfo,
                    ..
                }
            ),
            "{err:?}"
        );
        let out = s.list_models(&[("HTTPS_PROXY", url.clone())], &[]).await;
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("percent-encode"), "{stderr}");
        for text in [format!("{err} {err:?}"), stderr.into_owned()] {
            assert_no_password(&text);
            assert!(!text.contains("USERNAMEMARKER"), "{text}");
        }
    }
    // Nothing was asked of the server (the token needed a refresh).
    assert!(s.server.seen().is_empty());
}
