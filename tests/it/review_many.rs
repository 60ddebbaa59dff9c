//! Adversarial probes of the many-credentials review: loader clones that
//! share one HTTP client.

use crate::common::*;
use gemini_oauth::{Consent, CredentialLoader, FileTokenStore};

fn loader_on(base: &CredentialLoader, dir: &std::path::Path) -> CredentialLoader {
    base.clone()
        .client_secret_file(dir.join("client_secret.json"))
        .token_store(FileTokenStore::new(dir.join("token.json")))
        .consent(Consent::Never)
}

/// A TCP forwarder to `upstream` on 127.0.0.1, on the current runtime,
/// counting the connections it accepts.
async fn counting_forwarder(
    upstream: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (format!("http://{addr}/token"), accepted)
}

/// A clone refreshed on a current-thread runtime that is then left idle
/// (alive, not driven: a program keeping a runtime per thread), and another
/// clone loaded on a runtime of its own: the second does not send its token
/// request over a connection of the idle runtime, which nothing drives (it
/// would wait there for the whole timeout), but over one of its own.
#[test]
fn a_clone_on_another_runtime_does_not_use_an_idle_runtimes_connection() {
    use std::sync::atomic::Ordering;
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let tokens = server_rt.block_on(token_endpoint());
    let (uri, connections) = server_rt.block_on(counting_forwarder(*tokens.address()));
    let base = CredentialLoader::new().no_proxy();
    let current_thread = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = TempLoader::with_token(&uri, -60);
    let idle = current_thread();
    let a = idle.block_on(async {
        let creds = loader_on(&base, first.path()).load().await?;
        creds.access_token().await.map(|t| t.secret().to_owned())
    });
    assert_eq!(a.unwrap(), NEW_ACCESS);
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let second = TempLoader::with_token(&uri, -60);
    let loader = loader_on(&base, second.path());
    let (done, finished) = tokio::sync::oneshot::channel();
    let other = std::thread::spawn(move || {
        let b = current_thread().block_on(async {
            let creds = loader.load().await?;
            creds.access_token().await.map(|t| t.secret().to_owned())
        });
        let _ = done.send(());
        b
    });
    // Drives the idle runtime until the other load ends, so that this test
    // ends either way; what matters is the connection the request took.
    idle.block_on(finished).unwrap();
    assert_eq!(other.join().unwrap().unwrap(), NEW_ACCESS);
    assert_eq!(server_rt.block_on(token_requests(&tokens)), 2);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the second runtime's token request went over the idle runtime's connection"
    );
}
