//! The loopback redirect of the consent flow: a listener that serves exactly
//! one authorization response, the parsing of that response, and the
//! paste-the-address fallback for machines the browser cannot reach.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::token_endpoint::OAuthError;

/// What arrived on the redirect: a code, or the server's refusal.
#[derive(Debug)]
pub(crate) enum Callback {
    Code(SecretString),
    Denied(Error),
}

/// Reads a redirect query. `None` when it is not an answer to *this* request
/// (wrong or missing `state`, or neither `code` nor `error`).
pub(crate) fn parse_callback(query: &str, expected_state: &str) -> Option<Callback> {
    let mut state = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "state" => state = Some(v.into_owned()),
            "code" => code = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {} // iss, scope, authuser, prompt, …
        }
    }
    if !constant_time_eq(state?.as_bytes(), expected_state.as_bytes()) {
        return None;
    }
    match (error, code) {
        (Some(e), _) => Some(Callback::Denied(Error::AuthorizationDenied {
            error: OAuthError::from_code(&e),
            description,
        })),
        (None, Some(c)) if !c.is_empty() => Some(Callback::Code(SecretString::from(c))),
        _ => None,
    }
}

fn is_code_like(s: &str) -> bool {
    s.len() >= 8
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/+=".contains(&b))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A line pasted by the user: the full redirected URL, its query, or a bare code.
pub(crate) fn parse_pasted(line: &str, expected_state: &str) -> Result<Callback> {
    let line = line.trim();
    if line.is_empty() {
        return Err(Error::ConsentFlow("nothing was pasted".into()));
    }
    let query = line.split_once('?').map(|(_, q)| q).or_else(|| {
        (line.contains("code=") || line.contains("error=") || line.contains("state="))
            .then_some(line)
    });
    match query {
        Some(q) => {
            let q = q.split('#').next().unwrap_or(q);
            parse_callback(q, expected_state).ok_or_else(|| {
                Error::ConsentFlow(
                    "the pasted URL does not belong to this sign-in (wrong or missing state, or no \
                     code); paste the whole address of the page the browser was sent to"
                        .into(),
                )
            })
        }
        // A bare code: no state to check, but PKCE still binds it to this flow.
        None if is_code_like(line) => Ok(Callback::Code(SecretString::from(line.to_owned()))),
        None => Err(Error::ConsentFlow(
            "that is neither the redirected address nor an authorization code".into(),
        )),
    }
}

/// Reads pasted lines from stdin until one answers this sign-in.
///
/// The reading happens on a thread of its own (a blocking read on tokio's
/// pool would hold the runtime's shutdown), which on Unix waits for input
/// with `poll` and stops as soon as this future is dropped, without reading
/// a line it no longer needs: the user's next line is left for whoever reads
/// stdin after the sign-in.
pub(crate) async fn read_pasted(expected: Arc<SecretString>, tx: mpsc::Sender<Callback>) {
    let (lines_tx, mut lines) = mpsc::channel::<String>(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let reader = std::thread::Builder::new()
        .name("gemini-oauth-stdin".into())
        .spawn(move || stdin_lines(&stop, &lines_tx));
    if reader.is_err() {
        return;
    }
    while let Some(line) = lines.recv().await {
        match parse_pasted(&line, expected.expose_secret()) {
            Ok(cb) => {
                let _ = tx.send(cb).await;
                return;
            }
            Err(e) => eprintln!("{e}; try again:"),
        }
    }
}

struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sends stdin's lines until `stop` is set, stdin ends, or nobody listens.
fn stdin_lines(stop: &std::sync::atomic::AtomicBool, lines: &mpsc::Sender<String>) {
    use std::sync::atomic::Ordering;
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Checked again once input is there: after the flow ended, the
        // user's next line is left for whoever reads stdin next.
        if !stdin_ready(std::time::Duration::from_millis(100)) || stop.load(Ordering::Relaxed) {
            continue;
        }
        // One byte at a time, straight from the descriptor (std's Stdin
        // buffers), so nothing past this line is taken from stdin.
        let mut byte = [0u8; 1];
        match read_stdin_byte(&mut byte) {
            Ok(0) | Err(_) => return,
            Ok(_) if byte[0] == b'\n' => {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if lines.blocking_send(text).is_err() {
                    return;
                }
            }
            Ok(_) => line.push(byte[0]),
        }
    }
}

/// Whether stdin has input within `wait` (Linux: `poll`; elsewhere a read
/// simply blocks, on a thread that does not hold the process).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn stdin_ready(wait: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let timeout = Timespec::try_from(wait).ok();
    matches!(poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn stdin_ready(_wait: std::time::Duration) -> bool {
    true
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_stdin_byte(byte: &mut [u8; 1]) -> std::io::Result<usize> {
    use std::os::fd::AsFd;
    Ok(rustix::io::read(std::io::stdin().as_fd(), byte)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_stdin_byte(byte: &mut [u8; 1]) -> std::io::Result<usize> {
    std::io::Read::read(&mut std::io::stdin().lock(), byte)
}

/// At most this many redirect connections are open at once; a new one beyond
/// them closes the oldest that has not sent a request yet.
const MAX_CONNECTIONS: usize = 16;
/// A client has this long to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A silent connection younger than this is not closed for a new one: it
/// may be the browser's, its request not read yet. A flood of new
/// connections would otherwise close it before it is heard.
const SILENT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Serves the redirect until dropped: one request per connection, at most
/// [`MAX_CONNECTIONS`] at a time, finished connections reaped as it goes,
/// and a pause after an accept error (such as running out of descriptors)
/// rather than a busy loop.
///
/// At the cap, a new connection closes the oldest one still silent (once
/// it is [`SILENT_GRACE`] old): another local process holding or opening
/// silent connections cannot keep the browser out.
pub(crate) async fn serve(
    listener: TcpListener,
    expected: Arc<SecretString>,
    tx: mpsc::Sender<Callback>,
) {
    let mut connections = tokio::task::JoinSet::new();
    // In accept order: each connection's task, whether it sent a request,
    // and when it was accepted.
    let mut open: VecDeque<(AbortHandle, Arc<AtomicBool>, Instant)> = VecDeque::new();
    loop {
        while connections.try_join_next().is_some() {}
        open.retain(|(task, ..)| !task.is_finished());
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "accepting a redirect connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        while open.len() >= MAX_CONNECTIONS {
            let oldest_silent = open
                .iter()
                .position(|(_, asked, _)| !asked.load(Ordering::Relaxed));
            match oldest_silent.map(|i| (i, open[i].2.checked_add(SILENT_GRACE))) {
                Some((_, Some(grace_over))) if Instant::now() < grace_over => {
                    tokio::select! {
                        () = tokio::time::sleep_until(grace_over) => {}
                        _ = connections.join_next() => {}
                    }
                    open.retain(|(task, ..)| !task.is_finished());
                }
                Some((i, _)) => {
                    if let Some((task, ..)) = open.remove(i) {
                        task.abort();
                    }
                }
                // All are answering a request, which takes no time (the
                // task joined may be one aborted above: then wait again).
                None => {
                    let _ = connections.join_next().await;
                    open.retain(|(task, ..)| !task.is_finished());
                }
            }
        }
        let expected = Arc::clone(&expected);
        let tx = tx.clone();
        let asked = Arc::new(AtomicBool::new(false));
        let asking = Arc::clone(&asked);
        let task = connections.spawn(async move {
            if let Some(callback) = serve_one(TokioIo::new(stream), expected, &asking).await {
                let _ = tx.try_send(callback);
            }
        });
        open.push_back((task, asked, Instant::now()));
    }
}

/// Serves one connection's one request: its page, then the callback it carried.
/// `asked` turns true once the connection has sent a request (it is then no
/// idle connection to close for a new one).
pub(crate) async fn serve_one<I>(
    io: I,
    expected: Arc<SecretString>,
    asked: &Arc<AtomicBool>,
) -> Option<Callback>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let carried = Arc::new(std::sync::Mutex::new(None));
    let slot = Arc::clone(&carried);
    let asking = Arc::clone(asked);
    let service = hyper::service::service_fn(move |req| {
        asking.store(true, Ordering::Relaxed);
        let (reply, callback) = answer(&req, expected.expose_secret());
        if callback.is_some() {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = callback;
        }
        async move { Ok::<_, Infallible>(reply) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(io, service);
    let _ = conn.await;
    // Only now that the page is written (one request per connection) may the
    // flow end: a program that exits at once after a denial would otherwise
    // cut the page off.
    carried
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The page for `req`, and the callback it carries, if it answers this sign-in.
fn answer(req: &Request<Incoming>, expected: &str) -> (Response<Full<Bytes>>, Option<Callback>) {
    if req.method() != Method::GET {
        return (
            page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", ""),
            None,
        );
    }
    if req.uri().path() != "/" {
        return (page(StatusCode::NOT_FOUND, "Not found", ""), None);
    }
    // Query values are never echoed into the page.
    match parse_callback(req.uri().query().unwrap_or(""), expected) {
        None => (
            page(
                StatusCode::BAD_REQUEST,
                "Not a response to this sign-in",
                "This address does not belong to the sign-in that is waiting. Start the sign-in again from the application.",
            ),
            None,
        ),
        Some(Callback::Denied(e)) => (
            page(
                StatusCode::OK,
                "Authorization refused",
                "The application was not authorized. You may close this window and return to the application.",
            ),
            Some(Callback::Denied(e)),
        ),
        Some(cb) => (
            page(
                StatusCode::OK,
                "Authorization complete",
                "The authentication flow has completed. You may close this window.",
            ),
            Some(cb),
        ),
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener itself over real loopback TCP (also run under wine by
    /// .ci/platforms, for Windows' sockets).
    #[tokio::test]
    async fn the_listener_answers_the_redirect_and_passes_the_code_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut rx) = mpsc::channel(1);
        let server = tokio::spawn(serve(listener, Arc::new("S".into()), tx));
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = "GET /?state=S&code=4%2FLOOPBACK HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let callback = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("a callback within 20 s");
        match callback {
            Some(Callback::Code(code)) => assert_eq!(code.expose_secret(), "4/LOOPBACK"),
            other => panic!("unexpected {other:?}"),
        }
        server.abort();
    }

    #[test]
    fn callback_parsing() {
        let code = |q| match parse_callback(q, "S") {
            Some(Callback::Code(c)) => Some(c.expose_secret().to_owned()),
            _ => None,
        };
        assert_eq!(
            code("state=S&code=4%2F0Ab&scope=x&iss=https%3A%2F%2Faccounts.google.com").as_deref(),
            Some("4/0Ab")
        );
        assert!(parse_callback("state=T&code=c", "S").is_none());
        assert!(parse_callback("code=c", "S").is_none());
        assert!(parse_callback("state=S", "S").is_none());
        assert!(parse_callback("state=S&code=", "S").is_none());
        match parse_callback("error=access_denied&state=S", "S") {
            Some(Callback::Denied(Error::AuthorizationDenied { error, .. })) => {
                assert_eq!(error, OAuthError::AccessDenied)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pasted_input() {
        let code = |line| match parse_pasted(line, "S") {
            Ok(Callback::Code(c)) => c.expose_secret().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code("http://127.0.0.1:5000/?state=S&code=abc&scope=x\n"),
            "abc"
        );
        assert_eq!(code("  4/0AbCdEfGh  "), "4/0AbCdEfGh");
        assert_eq!(code("state=S&code=q"), "q");
        assert!(parse_pasted("http://127.0.0.1:5000/?state=X&code=abc", "S").is_err());
        assert!(parse_pasted("", "S").is_err());
        assert!(parse_pasted("not a url", "S").is_err());
        assert!(matches!(
            parse_pasted("http://127.0.0.1/?error=access_denied&state=S", "S"),
            Ok(Callback::Denied(_))
        ));
    }

    mod properties {
        //! The redirect and the pasted line are attacker-reachable input: the
        //! listener is on 127.0.0.1, but any local process or web page can
        //! send it a request.

        use super::*;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// How a generated query value relates to the expected state.
        #[derive(Debug, Clone)]
        enum Val {
            Expected,
            /// The expected state with one character changed, added or dropped.
            Near(usize, char, u8),
            Any(String),
        }

        impl Val {
            fn render(&self, expected: &str) -> String {
                match self {
                    Val::Expected => expected.to_owned(),
                    Val::Near(at, c, how) => {
                        let mut chars: Vec<char> = expected.chars().collect();
                        let at = at % (chars.len() + 1);
                        match how % 3 {
                            0 if at < chars.len() => {
                                // A different character: flip its case or replace it.
                                let old = chars[at];
                                chars[at] = if *c != old { *c } else { '!' };
                            }
                            1 if at < chars.len() => {
                                chars.remove(at);
                            }
                            _ => chars.insert(at, *c),
                        }
                        chars.into_iter().collect()
                    }
                    Val::Any(s) => s.clone(),
                }
            }
        }

        fn val() -> impl Strategy<Value = Val> {
            prop_oneof![
                3 => Just(Val::Expected),
                2 => (any::<usize>(), any::<char>(), any::<u8>()).prop_map(|(a, c, h)| Val::Near(a, c, h)),
                2 => prop_oneof!["[A-Za-z0-9/_-]{0,12}", "\\PC{0,12}", Just(String::new())].prop_map(Val::Any),
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                6 => select(vec!["state", "code", "error", "error_description", "scope", "iss", "authuser"])
                    .prop_map(str::to_owned),
                1 => "[a-z_]{0,8}",
            ]
        }

        fn expected_state() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "[A-Za-z0-9_-]{32}",
                1 => "[A-Za-z0-9_-]{1,8}",
                1 => "\\PC{1,8}",
            ]
        }

        /// `(expected state, the pairs, the query they encode)`.
        fn query() -> impl Strategy<Value = (String, Vec<(String, String)>, String)> {
            (
                expected_state(),
                prop::collection::vec((key(), val()), 0..7),
            )
                .prop_map(|(expected, pairs)| {
                    let pairs: Vec<(String, String)> = pairs
                        .into_iter()
                        .map(|(k, v)| (k, v.render(&expected)))
                        .collect();
                    let query = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(&pairs)
                        .finish();
                    (expected, pairs, query)
                })
        }

        /// The last value of `key`, as the parser reads duplicates.
        fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        /// What `parse_callback` must answer for these pairs.
        fn check(
            pairs: &[(String, String)],
            expected: &str,
            got: Option<&Callback>,
        ) -> Result<(), TestCaseError> {
            let state_ok = last(pairs, "state") == Some(expected);
            let error = last(pairs, "error");
            let code = last(pairs, "code").filter(|c| !c.is_empty());
            match got {
                Some(Callback::Code(c)) => {
                    prop_assert!(state_ok, "a code was accepted with the wrong state");
                    prop_assert!(error.is_none(), "an error answer was taken for a code");
                    prop_assert_eq!(Some(c.expose_secret()), code);
                }
                Some(Callback::Denied(e)) => {
                    prop_assert!(state_ok, "a refusal was accepted with the wrong state");
                    let is_denied = matches!(e, Error::AuthorizationDenied { error: got, .. } if Some(got.as_str()) == error);
                    prop_assert!(is_denied, "{:?}", e);
                }
                None => prop_assert!(
                    !state_ok || (error.is_none() && code.is_none()),
                    "a well-formed answer to this sign-in was refused"
                ),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn callback_any_input_never_panics(query in any::<String>(), state in any::<String>()) {
                let got = parse_callback(&query, &state);
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                check(&pairs, &state, got.as_ref())?;
            }

            /// A callback is accepted only when its state is the expected one,
            /// and a Code never comes from a query whose state differs.
            #[test]
            fn callback_only_with_the_expected_state((expected, pairs, query) in query()) {
                check(&pairs, &expected, parse_callback(&query, &expected).as_ref())?;
            }

            #[test]
            fn pasted_any_line_never_panics(line in any::<String>(), state in "\\PC{0,40}") {
                let got = parse_pasted(&line, &state);
                let trimmed = line.trim();
                let query = trimmed
                    .split_once('?')
                    .map(|(_, q)| q)
                    .or_else(|| (trimmed.contains("code=") || trimmed.contains("error=")).then_some(trimmed));
                match (query, &got) {
                    (Some(q), _) => {
                        let q = q.split('#').next().unwrap();
                        let pairs: Vec<(String, String)> =
                            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
                        check(&pairs, &state, got.as_ref().ok())?;
                    }
                    // A bare code: exactly the pasted text, nothing URL-like in it.
                    (None, Ok(Callback::Code(c))) => {
                        prop_assert_eq!(c.expose_secret(), trimmed);
                        prop_assert!(is_code_like(trimmed));
                    }
                    (None, Ok(Callback::Denied(e))) => prop_assert!(false, "{:?}", e),
                    (None, Err(_)) => {}
                }
            }

            /// The redirected address as a user would paste it (with a
            /// fragment, surrounding blanks, or only its query).
            #[test]
            fn pasted_url_only_with_the_expected_state(
                (expected, pairs, query) in query(),
                form in 0u8..4,
                port in 1024u16..65535,
            ) {
                let line = match form {
                    0 => format!("http://127.0.0.1:{port}/?{query}"),
                    1 => format!("  http://localhost:{port}/?{query}#frag\r\n"),
                    2 => format!("http://127.0.0.1:{port}/?{query}&code=&error=&state=#"),
                    _ => format!("\t{query}\n"),
                };
                let got = parse_pasted(&line, &expected);
                let mut pairs = pairs;
                if form == 2 {
                    for k in ["code", "error", "state"] {
                        pairs.push((k.to_owned(), String::new()));
                    }
                }
                let is_query = form != 3 || query.contains("code=") || query.contains("error=");
                if is_query {
                    check(&pairs, &expected, got.as_ref().ok())?;
                }
                let wrong_state = last(&pairs, "state") != Some(expected.as_str());
                prop_assert!(
                    !(is_query && wrong_state && matches!(got, Ok(Callback::Code(_)))),
                    "a code was taken from a paste with the wrong state"
                );
            }
        }
    }
}
