//! The tower layer (feature `tower`): plainly over a service function, and
//! under a tonic client calling a local tonic-health server.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::*;
use gemini_oauth::tower::AuthLayer;
use gemini_oauth::{Credentials, Error};
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{ServiceBuilder, ServiceExt};

/// A service that answers with the headers it was called with.
fn echo_headers() -> impl tower::Service<
    http::Request<String>,
    Response = http::HeaderMap,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: http::Request<String>| async move { Ok(req.headers().clone()) })
}

async fn call(
    creds: Credentials,
    req: http::Request<String>,
) -> Result<http::HeaderMap, tower::BoxError> {
    ServiceBuilder::new()
        .layer(AuthLayer::new(creds))
        .service(echo_headers())
        .oneshot(req)
        .await
}

#[tokio::test]
async fn the_service_adds_bearer_and_quota_project_to_any_request() {
    let (dir, _tokens) = TempLoader::signed_in().await;
    let creds = dir
        .loader()
        .quota_project("tower-proj")
        .load()
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri("https://generativelanguage.googleapis.com/v1/models")
        .header("authorization", "Bearer caller-token")
        .body(String::new())
        .unwrap();
    let headers = call(creds, req).await.unwrap();
    let auth: Vec<_> = headers.get_all("authorization").iter().collect();
    assert_eq!(auth, [format!("Bearer {OLD_ACCESS}").as_str()]);
    assert!(auth[0].is_sensitive());
    assert_eq!(headers["x-goog-user-project"], "tower-proj");
}

#[tokio::test]
async fn an_api_key_goes_in_x_goog_api_key() {
    let creds = Credentials::from_api_key("AIzaKEY").unwrap();
    let headers = call(creds, http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(headers["x-goog-api-key"], "AIzaKEY");
    assert!(headers.get("authorization").is_none());
}

#[tokio::test]
async fn no_token_means_an_error_and_no_call() {
    let expired =
        Credentials::from_access_token("ya29.X", SystemTime::now() - Duration::from_secs(1))
            .unwrap();
    let called = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&called);
    let svc = tower::service_fn(move |_: http::Request<String>| {
        *counted.lock().unwrap() += 1;
        async { Ok::<_, Infallible>(()) }
    });
    let err = ServiceBuilder::new()
        .layer(AuthLayer::new(expired))
        .service(svc)
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap_err();
    let ours = err.downcast_ref::<Error>().expect("our error");
    assert!(matches!(ours, Error::CannotRefresh { .. }), "{ours:?}");
    assert_eq!(*called.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_tonic_server_sees_the_bearer_and_the_quota_project_in_its_metadata() {
    let (dir, tokens) = TempLoader::signed_in().await;
    let creds = dir
        .loader()
        .quota_project("grpc-proj")
        .load()
        .await
        .unwrap();

    let (_reporter, health) = tonic_health::server::health_reporter();
    let seen: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>> = Arc::default();
    let record = Arc::clone(&seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InterceptedService::new(
                health,
                move |req: tonic::Request<()>| {
                    record.lock().unwrap().push(req.metadata().clone());
                    Ok(req)
                },
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let authed = ServiceBuilder::new()
        .layer(AuthLayer::new(creds))
        .service(channel);
    let mut client = HealthClient::new(authed);
    for _ in 0..2 {
        let resp = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for metadata in &seen {
        assert_eq!(
            metadata.get("authorization").unwrap(),
            format!("Bearer {OLD_ACCESS}").as_str()
        );
        assert_eq!(metadata.get("x-goog-user-project").unwrap(), "grpc-proj");
    }
    assert_eq!(token_requests(&tokens).await, 0);
    server.abort();
}
