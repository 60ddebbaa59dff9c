//! Issue #19's fault matrix: every outbound call kind, direct and through
//! a proxy, over HTTP/1.1 and HTTP/2 (TLS with ALPN), against every fault
//! kind from the fault proxy (`common::fault_proxy`) or the upstream
//! server (`server.rs`). Each cell checks the documented outcome
//! (`table.rs`) within its time bound, a typed error naming the stage and
//! nothing secret, then clears the fault and checks that the same
//! credentials succeed again. `src/guide/faults.md` (`guide::faults`) shows the table the
//! README shows; a test keeps it equal to `table.rs`.

mod calls;
mod proxy_check;
mod server;
mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gemini_oauth::{Error, ExternalAccountProblem};

use crate::common::fault_proxy::{FaultProxy, Gate, Toxic};
use calls::Endpoints;
use server::{Misbehave, Proto, Upstream};
use table::{Call, Fault, Outcome, Route};

/// The proxy's password: a secret no output may show.
const PROXY_PASSWORD: &str = "PROXYPASSWORDMARKER";
/// Cells run at once (they mostly wait on deadlines).
const CONCURRENCY: usize = 64;

/// A CA, and a leaf for 127.0.0.1 and the proxied rows' host names.
struct Certs {
    ca: String,
    leaf: String,
    key: String,
    _dir: tempfile::TempDir,
}

fn certs() -> Arc<Certs> {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = crate::common::tls_certs::make_certs_for(
        dir.path(),
        "IP:127.0.0.1,DNS:faulted.test,DNS:clean.test",
    );
    Arc::new(Certs {
        ca,
        leaf,
        key,
        _dir: dir,
    })
}

/// One cell's parts: the faulted and the clean server, the fault proxy.
struct Cell {
    call: Call,
    fault: Fault,
    route: Route,
    proto: Proto,
    faulted: Upstream,
    proxy: FaultProxy,
    endpoints: Endpoints,
    _dir: tempfile::TempDir,
}

impl Cell {
    async fn start(call: Call, fault: Fault, route: Route, proto: Proto, c: &Certs) -> Cell {
        let dir = tempfile::tempdir().unwrap();
        let pair = (c.leaf.as_str(), c.key.as_str());
        let (faulted_l, clean_l) = (Upstream::bind().await, Upstream::bind().await);
        let (faulted_addr, clean_addr) = (
            faulted_l.local_addr().unwrap(),
            clean_l.local_addr().unwrap(),
        );
        let (proxy, faulted, clean, proxy_url) = match route {
            Route::Direct if proto == Proto::Plain => {
                let at = std::env::var("GCE_METADATA_HOST").unwrap().parse().unwrap();
                let proxy = FaultProxy::to_at(at, faulted_addr).await;
                let faulted = format!("http://{}", proxy.addr());
                (proxy, faulted, format!("http://{clean_addr}"), None)
            }
            Route::Direct => {
                let proxy = FaultProxy::to(faulted_addr).await;
                let faulted = format!("https://{}", proxy.addr());
                (proxy, faulted, format!("https://{clean_addr}"), None)
            }
            Route::Proxied => {
                let routes = HashMap::from([
                    ("faulted.test".to_owned(), faulted_addr),
                    ("clean.test".to_owned(), clean_addr),
                ]);
                let proxy = FaultProxy::connect_proxy(routes).await;
                let url = format!("http://matrix:{PROXY_PASSWORD}@{}", proxy.addr());
                (
                    proxy,
                    "https://faulted.test".to_owned(),
                    "https://clean.test".to_owned(),
                    Some(url),
                )
            }
        };
        let faulted_server = Upstream::serve(proto, pair, faulted_l, faulted.clone());
        Upstream::serve(proto, pair, clean_l, clean.clone());
        Cell {
            call,
            fault,
            route,
            proto,
            faulted: faulted_server,
            proxy,
            endpoints: Endpoints {
                faulted,
                clean,
                proxy: proxy_url,
                ca: c.ca.clone(),
                dir: dir.path().to_owned(),
                // PKCS#8 RSA, as a service-account key file holds.
                sa_key: c.key.clone(),
            },
            _dir: dir,
        }
    }

    fn name(&self) -> String {
        format!(
            "{} / {} / {:?} / {}",
            self.call.name(),
            self.fault.name(),
            self.route,
            self.proto.name()
        )
    }

    async fn inject(&self) {
        let after_handshake = match self.route {
            Route::Direct => Gate::Tls,
            Route::Proxied => Gate::Tunnel,
        };
        // Without TLS the head follows the accept.
        let head = if self.proto == Proto::Plain {
            Gate::Tunnel
        } else {
            Gate::Tls
        };
        if self.call == Call::UploadBytes {
            self.faulted.only_on("/upload-session/");
        }
        match self.fault {
            Fault::Refused => self.proxy.set(Toxic::Refuse, Gate::Accept).await,
            Fault::Reset => self.proxy.set(Toxic::ResetPeer, Gate::Accept).await,
            Fault::SilentAfterAccept => self.proxy.set(Toxic::Silent, Gate::Accept).await,
            Fault::SilentAfterHandshake => self.proxy.set(Toxic::Silent, after_handshake).await,
            Fault::DripHeaders => {
                let every = Duration::from_secs(1);
                self.proxy.set(Toxic::Slicer { every }, head).await;
            }
            Fault::Latency => {
                let d = Duration::from_secs(2);
                self.proxy.set(Toxic::Latency(d), Gate::Accept).await;
            }
            Fault::BodyCut => self.faulted.misbehave(Some(Misbehave::CutBody)),
            Fault::Burst5xx => self.faulted.misbehave(Some(Misbehave::Burst5xx(2))),
            Fault::TooMany429 => self.faulted.misbehave(Some(Misbehave::TooMany(1))),
        }
        // Let the client see its pooled connections close.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn clear(&self) {
        self.proxy.clear().await;
        self.faulted.misbehave(None);
        // The token cache's documented quiet period after a failed refresh
        // (1 s after the first failure), during which it serves that error.
        tokio::time::sleep(table::QUIET_AFTER_FAILURE + Duration::from_millis(200)).await;
    }

    /// The host (and port) the error must name for `outcome`.
    fn named_host(&self, outcome: Outcome) -> String {
        match (outcome, &self.endpoints.proxy) {
            (Outcome::Proxy, _) | (_, None) => self.proxy.addr().to_string(),
            (_, Some(_)) => "faulted.test".to_owned(),
        }
    }

    /// Runs the cell; returns what went wrong, if anything.
    async fn run(self, expected: Outcome) -> (Option<Outcome>, Vec<String>) {
        let mut problems = Vec::new();
        let bound = table::bound(self.call);
        let mut prepared = match calls::prepare(self.call, &self.endpoints).await {
            Ok(p) => p,
            Err(e) => return (None, vec![format!("setup failed: {e}")]),
        };
        self.inject().await;
        let before = self.faulted.requests().1;
        let started = Instant::now();
        let first =
            tokio::time::timeout(bound, calls::run(self.call, &prepared, &self.endpoints)).await;
        let elapsed = started.elapsed();
        let attempts = self.faulted.requests().1 - before;
        let mut actual = match &first {
            Err(_) => {
                problems.push(format!("no outcome within its bound {bound:?} (a hang)"));
                None
            }
            Ok(Ok(())) => Some(Outcome::Ok),
            Ok(Err(e)) => {
                self.check_error(e, &mut problems);
                classify(e)
            }
        };
        self.clear().await;
        if matches!(first, Ok(Ok(()))) && calls::spent_by_success(self.call) {
            match calls::prepare(self.call, &self.endpoints).await {
                Ok(p) => prepared = p,
                Err(e) => problems.push(format!("setup again failed: {e}")),
            }
        }
        let (version_before, before) = self.faulted.requests();
        let next =
            tokio::time::timeout(bound, calls::run(self.call, &prepared, &self.endpoints)).await;
        // More requests than the same call without the fault: retries.
        if actual == Some(Outcome::Ok) && attempts > self.faulted.requests().1 - before {
            actual = Some(Outcome::Recovered);
        }
        if actual != Some(expected) {
            let got = match &first {
                Ok(Err(e)) => format!("{e} / {e:?}"),
                _ => format!("{actual:?}"),
            };
            problems.push(format!(
                "expected {expected:?}, got {got} after {elapsed:?}"
            ));
        }
        match next {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("sticky failure: after the fault cleared: {e}")),
            Err(_) => problems.push("sticky failure: the call after the fault hung".into()),
        }
        if self.faulted.requests().0 == version_before {
            problems.push(format!(
                "no request reached the server over {}",
                self.proto.name()
            ));
        }
        (actual, problems)
    }

    /// The error is typed, names the stage, and shows nothing secret.
    fn check_error(&self, e: &Error, problems: &mut Vec<String>) {
        let text = format!("{e}");
        let all = format!("{e} {e:?}");
        // Every secret planted (tokens, refresh token, client secret, the
        // subject token, the proxy password, the upload id) holds "MARKER".
        if all.contains("MARKER") {
            problems.push(format!("a secret in the error: {all}"));
        }
        for query in ["alt=sse", "upload_id", "?"] {
            if text.contains(query) {
                problems.push(format!("a URL query in the error: {text}"));
            }
        }
        let Some(outcome) = classify(e) else { return };
        let host = self.named_host(outcome);
        if !text.contains(&host) {
            problems.push(format!("the error does not name {host}: {text}"));
        }
        let stages = self.call.stages();
        if outcome != Outcome::Proxy && !stages.iter().any(|s| text.contains(s)) {
            problems.push(format!(
                "the error does not name a stage of {stages:?}: {text}"
            ));
        }
    }
}

/// The outcome class of a typed error; `None` for any other variant.
fn classify(e: &Error) -> Option<Outcome> {
    Some(match e {
        Error::Transport { .. } => Outcome::Transport,
        Error::Timeout { .. } => Outcome::Timeout,
        Error::Proxy { .. } => Outcome::Proxy,
        Error::Api(api) => Outcome::Status(api.status),
        Error::TokenResponse { status, .. } | Error::Impersonation { status, .. } => {
            Outcome::Status(*status)
        }
        Error::ExternalAccount {
            problem: ExternalAccountProblem::HttpStatus { status, .. },
            ..
        } => Outcome::Status(*status),
        _ => return None,
    })
}

/// Every cell but the metadata server's (below), all in one pool: the
/// matrix takes about as long as its slowest cell, not the sum of its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell() {
    let mut cells = Vec::new();
    for call in Call::ALL {
        let skip = call == Call::Metadata
            || matches!(call, Call::ServiceAccount | Call::IdTokenSa)
                && !cfg!(feature = "service-account");
        if skip {
            continue;
        }
        for route in [Route::Direct, Route::Proxied] {
            for &proto in call.protos() {
                for fault in Fault::ALL {
                    if table::expected(call, fault, route).is_some() {
                        cells.push((call, fault, route, proto));
                    }
                }
            }
        }
    }
    run_cells(cells).await;
}

/// Runs `cells`, at most [`CONCURRENCY`] at a time, and fails with a
/// report of the cells that went wrong.
async fn run_cells(cells: Vec<(Call, Fault, Route, Proto)>) {
    let certs = certs();
    let results: Vec<(String, Option<Outcome>, Vec<String>)> = futures_util::stream::iter(cells)
        .map(|(call, fault, route, proto)| {
            let certs = Arc::clone(&certs);
            let expected = table::expected(call, fault, route).unwrap();
            async move {
                let cell = Cell::start(call, fault, route, proto, &certs).await;
                let name = cell.name();
                let task = tokio::spawn(cell.run(expected));
                let (actual, problems) = task
                    .await
                    .unwrap_or_else(|e| (None, vec![format!("panicked: {e}")]));
                (name, actual, problems)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, p)| !p.is_empty())
        .map(|(name, _, p)| format!("{name}:\n    {}", p.join("\n    ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cells failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// Set, to a fault's index, in the child process that runs that fault's
/// metadata cell.
const FAULT_VAR: &str = "GEMINI_OAUTH_MATRIX_FAULT";

/// The metadata server's address is an environment variable
/// (`GCE_METADATA_HOST`), which this process never sets: each cell runs in
/// a child process of its own, with a clean ADC environment and that
/// variable naming a port reserved for its fault proxy.
#[test]
fn metadata_token() {
    if let Ok(i) = std::env::var(FAULT_VAR) {
        let fault = Fault::ALL[i.parse::<usize>().unwrap()];
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_cells(vec![(
            Call::Metadata,
            fault,
            Route::Direct,
            Proto::Plain,
        )]));
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..Fault::ALL.len())
        .filter(|&i| table::expected(Call::Metadata, Fault::ALL[i], Route::Direct).is_some())
        .map(|i| {
            let home = home.path().to_owned();
            std::thread::spawn(move || {
                let at = crate::common::closed_port();
                crate::common::alone_in_a_process_with("fault_matrix::metadata_token", |cmd| {
                    for k in crate::common::ADC_ENV {
                        cmd.env_remove(k);
                    }
                    cmd.env("HOME", &home)
                        .env("CLOUDSDK_CONFIG", &home)
                        .env("GCE_METADATA_HOST", at)
                        .env(FAULT_VAR, i.to_string());
                });
            })
        })
        .collect();
    let failed = children.into_iter().filter_map(|c| c.join().err()).count();
    assert_eq!(failed, 0, "metadata cells failed (their reports are above)");
}

/// The committed table is the one the tests run.
#[test]
fn the_committed_table_matches_the_tests() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/guide/faults.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let table = table::markdown();
    assert!(
        committed.contains(&table),
        "{path} does not hold the matrix the tests run; put this table in it:\n{table}"
    );
}
