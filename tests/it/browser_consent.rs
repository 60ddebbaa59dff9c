//! The sign-in as a user goes through it, in a real browser: the example
//! opens its browser through `BROWSER`, which here is tests/browser/consent.mjs
//! driving Debian's headless Chromium. Chromium signs in and answers the
//! consent on oidc-provider's own pages (`OIDC_INTERACTIVE=1`: a login form
//! and a consent form, nothing automatic), follows the redirect to the
//! example's loopback listener, and the driver reports what each page showed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::examples::example;
use crate::common::oidc::{self, OidcServer};
use crate::common::read_json;
use serde_json::Value;

/// The login name the driver types into the server's login form.
const LOGIN: &str = "browser-user";
/// The driver stops itself (and its Chromium) after this long.
const DRIVER_TIMEOUT_SECS: u64 = 60;

/// tests/browser/consent.mjs, once its playwright-core and Chromium are installed.
fn driver() -> PathBuf {
    let script = std::env::var("GEMINI_OAUTH_BROWSER_DRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/consent.mjs")
        });
    assert!(
        script
            .parent()
            .unwrap()
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `bash .ci/test` (or `npm ci --prefix tests/browser`)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is not installed: run `bash .ci/test` (or `apt-get install chromium`)"
    );
    // The webbrowser crate splits BROWSER at ':' and at whitespace.
    let shown = script.display().to_string();
    assert!(
        !shown.contains(':') && !shown.contains(char::is_whitespace),
        "BROWSER cannot name {shown}: no ':' or spaces allowed"
    );
    script
}

/// The example, ended if the test gives up on it.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one sign-in in the browser left behind.
struct Run {
    /// The driver's report (tests/browser/README.md).
    report: Value,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// The oidc server's stderr.
    server_log: String,
    /// The OAuth server's host:port.
    issuer_host: String,
    /// Chromium's directory: every Chromium process names it.
    browser_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "driver report: {:#}\nexample {}: stdout {:?}\nstderr: {}\noidc server log:\n{}",
            self.report, self.status, self.stdout, self.stderr, self.server_log
        )
    }
}

/// Runs `print_access_token` until it exits, with the driver as its browser
/// answering the consent page with `action` (`consent`, `cancel` or `none`).
fn sign_in_in_browser(action: &str) -> Run {
    let driver = driver();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("oidc.log");
    let server = OidcServer::start_logging_to(&[("OIDC_INTERACTIVE", "1")], &log);
    std::fs::write(
        dir.path().join("client_secret.json"),
        server.client_secret_json(oidc::CLIENT_ID, oidc::CLIENT_SECRET),
    )
    .unwrap();
    let report_file = dir.path().join("browser-report.json");
    let browser_dir = dir.path().join("chromium");
    let mut program = Program(
        example("print_access_token")
            .current_dir(dir.path())
            .env("BROWSER", format!("node {}", driver.display()))
            .env("CONSENT_REPORT", &report_file)
            .env("CONSENT_BROWSER_DIR", &browser_dir)
            .env("CONSENT_ACTION", action)
            .env("CONSENT_LOGIN", LOGIN)
            .env(
                "CONSENT_DRIVER_TIMEOUT_SECS",
                DRIVER_TIMEOUT_SECS.to_string(),
            )
            .args(["--consent-timeout", "90"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = drain(program.0.stdout.take().unwrap());
    let stderr = drain(program.0.stderr.take().unwrap());

    // The driver writes its report last, once Chromium is closed, whether
    // the example has exited by then or not; it gives up by itself after
    // DRIVER_TIMEOUT_SECS.
    let give_up = Instant::now() + Duration::from_secs(DRIVER_TIMEOUT_SECS + 30);
    while !report_file.exists() {
        if Instant::now() > give_up {
            drop(program);
            panic!(
                "the browser driver wrote no report\nexample stderr: {}\noidc server log:\n{}",
                stderr.join().unwrap(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = read_json(&report_file);
    // Only a run whose browser got past the consent page ends the example
    // early; otherwise it would wait out its --consent-timeout.
    let status = if reached_loopback(&report, &server.issuer) {
        program.0.wait().unwrap()
    } else {
        program.0.kill().unwrap();
        program.0.wait().unwrap()
    };
    let issuer_host = server.issuer.trim_start_matches("http://").to_owned();
    drop(server); // its log is complete once it has exited
    Run {
        report,
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        server_log: std::fs::read_to_string(&log).unwrap(),
        issuer_host,
        browser_dir,
        dir,
    }
}

fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

/// Whether the browser's last page was somewhere other than the OAuth server.
fn reached_loopback(report: &Value, issuer: &str) -> bool {
    report["final"]["host"]
        .as_str()
        .is_some_and(|host| !issuer.ends_with(host))
}

/// The processes still running whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // A zombie's command line is empty: it runs no more.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Chromium is gone: no process of this run's Chromium (all of them name
/// its directory), and not the driver, is left running.
fn assert_browser_gone(run: &Run) {
    let needle = run.browser_dir.display().to_string();
    let driver_pid = run.report["driver_pid"].as_u64().unwrap();
    let left = || {
        let mut left = processes_naming(&needle);
        left.extend(
            processes_naming("consent.mjs")
                .into_iter()
                .filter(|p| p.starts_with(&format!("{driver_pid}:"))),
        );
        left
    };
    // The driver closed Chromium before it wrote its report; a crash handler
    // may take a moment to notice.
    let give_up = Instant::now() + Duration::from_secs(30);
    while !left().is_empty() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left(), Vec::<String>::new(), "{}", run.context());
    assert_eq!(run.report["browser_closed"], true, "{}", run.context());
}

/// The driver filled the server's login form and reached its consent page,
/// both served by the OAuth server under /interaction/.
fn assert_signed_in_on_the_servers_pages(run: &Run) -> &Value {
    let ctx = run.context();
    let steps = run.report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "a login page, then a consent page: {ctx}");
    let (login, consent) = (&steps[0], &steps[1]);
    for (step, page, heading) in [
        (login, "login", "Sign-in"),
        (consent, "consent", "Authorize"),
    ] {
        assert_eq!(step["page"], page, "{ctx}");
        assert_eq!(step["heading"], heading, "{ctx}");
        assert_eq!(step["host"], run.issuer_host.as_str(), "{ctx}");
        assert!(
            step["path"].as_str().unwrap().starts_with("/interaction/"),
            "{ctx}"
        );
    }
    assert_eq!(
        login["action"],
        format!("filled the login form as {LOGIN} and clicked Sign-in"),
        "{ctx}"
    );
    // The consent page names what the program asked for.
    assert!(
        consent["text"]
            .as_str()
            .unwrap()
            .contains(crate::common::RETRIEVER),
        "{ctx}"
    );
    // The server saw the same: its login page logged the typed-in user in,
    // then it asked for consent.
    let log = &run.server_log;
    let login_at = log.find("oidc interaction.started: login");
    let ended_at = log.find(&format!("oidc interaction.ended: login account {LOGIN}"));
    let consent_at = log.find("oidc interaction.started: consent");
    assert!(
        login_at.is_some() && login_at < ended_at && ended_at < consent_at,
        "{ctx}"
    );
    consent
}

#[test]
fn sign_in_and_consent_on_the_servers_pages_in_headless_chromium() {
    let run = sign_in_in_browser("consent");
    let ctx = run.context();
    assert!(run.report["error"].is_null(), "{ctx}");

    // What the user sees last: our listener's success page, on 127.0.0.1.
    let last = &run.report["final"];
    let host = last["host"].as_str().unwrap();
    assert!(
        host.starts_with("127.0.0.1:") && host != run.issuer_host,
        "the last page is the program's loopback listener: {ctx}"
    );
    assert_eq!(last["path"], "/", "{ctx}");
    assert_eq!(last["status"], 200, "{ctx}");
    assert_eq!(last["title"], "Authorization complete", "{ctx}");
    let text = last["text"].as_str().unwrap();
    assert!(
        text.starts_with("Authorization complete") && text.contains("You may close this window"),
        "{ctx}"
    );
    for bad in ["error", "refused", "Not a response", "Not found"] {
        assert!(!text.to_lowercase().contains(&bad.to_lowercase()), "{ctx}");
    }

    // The program finished the sign-in and saved the token it printed.
    assert!(run.status.success(), "{ctx}");
    let token = run.stdout.trim_end();
    assert!(!token.is_empty() && !token.contains('\n'), "{ctx}");
    let saved = read_json(&run.dir.path().join("token.json"));
    assert_eq!(saved["token"], token, "{ctx}");
    assert!(
        saved["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{ctx}"
    );
    assert_eq!(
        saved["scopes"],
        serde_json::json!([crate::common::RETRIEVER]),
        "{ctx}"
    );

    // It got there through the server's own pages, answered in the browser.
    let consent = assert_signed_in_on_the_servers_pages(&run);
    assert_eq!(consent["action"], "clicked Continue", "{ctx}");
    assert!(
        run.server_log.contains(&format!(
            "oidc interaction.ended: login, consent account {LOGIN}"
        )),
        "{ctx}"
    );
    assert_browser_gone(&run);
}

/// Fails now and then: the flow drops the listener (and aborts its
/// connections) as soon as the redirect's callback arrives, and on a denial
/// the example exits at once, sometimes before the "Authorization refused"
/// page was written: Chromium then shows ERR_EMPTY_RESPONSE for 127.0.0.1.
/// (A granted sign-in exchanges the code first, which leaves the page time.)
#[test]
fn cancel_on_the_servers_consent_page_shows_refused_and_saves_nothing() {
    let run = sign_in_in_browser("cancel");
    let ctx = run.context();
    assert!(run.report["error"].is_null(), "{ctx}");

    let last = &run.report["final"];
    let host = last["host"].as_str().unwrap();
    assert!(
        host.starts_with("127.0.0.1:") && host != run.issuer_host,
        "{ctx}"
    );
    assert_eq!(last["title"], "Authorization refused", "{ctx}");
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .contains("The application was not authorized"),
        "{ctx}"
    );

    // One clear error line, exit code 1, nothing printed or saved.
    assert_eq!(run.status.code(), Some(1), "{ctx}");
    assert!(run.stdout.is_empty(), "{ctx}");
    let stderr_tail = run.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        stderr_tail.starts_with("error: ") && stderr_tail.contains("access_denied"),
        "{ctx}"
    );
    assert!(!run.dir.path().join("token.json").exists(), "{ctx}");

    let consent = assert_signed_in_on_the_servers_pages(&run);
    assert_eq!(consent["action"], "clicked [ Cancel ]", "{ctx}");
    assert_browser_gone(&run);
}
