//! gemini-oauth side by side with yup-oauth2 12.1.2 (and a naive floor), in
//! one run: `cargo bench --bench token`. No network: token files on disk and
//! a GET server on 127.0.0.1.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use gemini_oauth::{Consent, CredentialLoader, Credentials, FileTokenStore};
use tokio::runtime::Runtime;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::{ApplicationSecret, InstalledFlowAuthenticator, InstalledFlowReturnMethod};

const SCOPE: &str = "https://www.googleapis.com/auth/generative-language.retriever";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A valid token.json (ours) and yup-oauth2's token cache, both expiring in an hour.
fn token_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let ours = dir.join("token.json");
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    std::fs::write(
        &ours,
        format!(
            r#"{{"token": "ya29.bench", "refresh_token": "1//r", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "c", "client_secret": "s", "scopes": ["{SCOPE}"], "expiry": "{}"}}"#,
            expiry.format(&fmt).unwrap()
        ),
    )
    .unwrap();
    let yup = dir.join("yup-tokens.json");
    let info = yup_oauth2::storage::TokenInfo {
        access_token: Some("ya29.bench".into()),
        refresh_token: Some("1//r".into()),
        expires_at: Some(expiry),
        id_token: None,
    };
    let cache = serde_json::json!([{ "scopes": [SCOPE], "token": info }]);
    std::fs::write(&yup, cache.to_string()).unwrap();
    (ours, yup)
}

async fn ours(path: &std::path::Path) -> Credentials {
    CredentialLoader::new()
        .token_store(FileTokenStore::new(path))
        .consent(Consent::Never)
        .load()
        .await
        .unwrap()
}

type Yup = Authenticator<
    yup_oauth2::hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

async fn yup(path: &std::path::Path) -> Yup {
    let secret = ApplicationSecret {
        client_id: "c".into(),
        client_secret: "s".into(),
        token_uri: "https://oauth2.googleapis.com/token".into(),
        auth_uri: "https://accounts.google.com/o/oauth2/auth".into(),
        redirect_uris: vec!["http://localhost".into()],
        ..Default::default()
    };
    InstalledFlowAuthenticator::builder(secret, InstalledFlowReturnMethod::HTTPRedirect)
        .persist_tokens_to_disk(path)
        .build()
        .await
        .unwrap()
}

fn token_hot_path(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (ours_path, yup_path) = token_files(dir.path());
    let creds = rt.block_on(ours(&ours_path));
    let auth = rt.block_on(yup(&yup_path));
    assert_eq!(
        rt.block_on(creds.access_token()).unwrap().secret(),
        "ya29.bench"
    );
    assert_eq!(
        rt.block_on(auth.token(&[SCOPE])).unwrap().token(),
        Some("ya29.bench")
    );
    let floor = ArcSwap::from_pointee((
        String::from("ya29.bench"),
        SystemTime::now() + Duration::from_secs(3600),
    ));

    let mut g = c.benchmark_group("token_hot_path");
    g.bench_function("gemini_oauth", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(creds.access_token().await.unwrap()) })
    });
    g.bench_function("yup_oauth2", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(auth.token(&[SCOPE]).await.unwrap()) })
    });
    g.bench_function("floor_std_clock", |b| {
        b.to_async(&rt).iter(|| async {
            let t = floor.load();
            assert!(SystemTime::now() < t.1);
            black_box(Arc::clone(&*t))
        })
    });
    g.finish();
}

/// Wall time per call with 8 tasks calling concurrently on the 2-thread
/// runtime; each task owns its handle, so the harness shares nothing.
fn per_call_8_tasks<T, F, Fut>(rt: &Runtime, iters: u64, handle: &T, call: F) -> Duration
where
    T: Clone + Send + 'static,
    F: Fn(T, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per_task = iters.div_ceil(8);
    rt.block_on(async {
        let tasks: Vec<_> = (0..8).map(|_| call(handle.clone(), per_task)).collect();
        let start = Instant::now();
        let tasks: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for t in tasks {
            t.await.unwrap();
        }
        start
            .elapsed()
            .mul_f64(iters as f64 / (per_task * 8) as f64)
    })
}

fn token_contended_8(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (ours_path, yup_path) = token_files(dir.path());
    let creds = rt.block_on(ours(&ours_path));
    let auth = Arc::new(rt.block_on(yup(&yup_path)));
    let mut g = c.benchmark_group("token_contended_8");
    g.bench_function("gemini_oauth", |b| {
        b.iter_custom(|iters| {
            per_call_8_tasks(&rt, iters, &creds, |creds, n| async move {
                for _ in 0..n {
                    black_box(creds.access_token().await.unwrap());
                }
            })
        })
    });
    g.bench_function("yup_oauth2", |b| {
        b.iter_custom(|iters| {
            per_call_8_tasks(&rt, iters, &auth, |auth, n| async move {
                for _ in 0..n {
                    black_box(auth.token(&[SCOPE]).await.unwrap());
                }
            })
        })
    });
    g.finish();
}

fn cold_start(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (ours_path, yup_path) = token_files(dir.path());
    let mut g = c.benchmark_group("cold_start");
    g.bench_function("gemini_oauth", |b| {
        b.to_async(&rt).iter(|| async {
            let creds = ours(&ours_path).await;
            black_box(creds.access_token().await.unwrap())
        })
    });
    g.bench_function("yup_oauth2", |b| {
        b.to_async(&rt).iter(|| async {
            let auth = yup(&yup_path).await;
            black_box(auth.token(&[SCOPE]).await.unwrap())
        })
    });
    g.finish();
}

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request with a small JSON body.
async fn local_server() -> String {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(br#"{"models": []}"#)),
                    ))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/v1/models")
}

fn authorized_get(c: &mut Criterion) {
    use http_body_util::{BodyExt, Empty};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (ours_path, _) = token_files(dir.path());
    let url = rt.block_on(local_server());
    let client = rt.block_on(ours(&ours_path)).authorized_client();
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = url.parse().unwrap();
    let mut g = c.benchmark_group("authorized_get");
    g.bench_function("gemini_oauth", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = client.get(&url).await.unwrap();
            assert!(resp.status().is_success());
            black_box(resp)
        })
    });
    g.bench_function("raw_hyper", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(uri.clone())
                .header("authorization", "Bearer ya29.bench")
                .body(Empty::new())
                .unwrap();
            let resp = raw.request(req).await.unwrap();
            assert!(resp.status().is_success());
            black_box(resp.into_body().collect().await.unwrap().to_bytes())
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = token_hot_path, token_contended_8, cold_start, authorized_get
}
criterion_main!(benches);
