//! `gemini-oauth` fed bad files: each is one error line, never an unbounded
//! read (a symbolic link to /dev/zero would otherwise fill the memory).
//! A regular file past the 1 MiB limit stands in for /dev/zero here.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::common::examples::cli;

/// Runs the tool in `dir` with no credentials anywhere, stdin closed.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    cli()
        .current_dir(dir)
        .env("HOME", dir)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("GCE_METADATA_HOST", crate::common::closed_port())
        .env("GCE_METADATA_IP", crate::common::closed_port())
        .env("GOOGLE_API_KEY", "AIzaSECRETKEYMARKER")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .args(args)
        .output()
        .unwrap()
}

/// A file of 2 MiB of `{`: larger than any credentials or certificate file.
fn huge_file(dir: &Path) -> String {
    let path = dir.join("huge.json");
    std::fs::write(&path, vec![b'{'; 2 << 20]).unwrap();
    path.to_str().unwrap().to_owned()
}

fn assert_too_large(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    assert!(
        stderr.contains("larger than 1048576 bytes"),
        "{what}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{what}");
}

/// `models --api-key --root-certificates PEM` against a closed port.
fn models_trusting(dir: &Path, pem: &str) -> Output {
    let base = format!("http://{}/v1", crate::common::closed_port());
    let args = ["models", "--api-key", "--api-base", &base];
    run_in(dir, &[&args[..], &["--root-certificates", pem]].concat())
}

#[test]
fn a_huge_root_certificates_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let huge = huge_file(dir.path());
    let out = models_trusting(dir.path(), &huge);
    assert_too_large(&out, "--root-certificates");
}

#[test]
fn an_empty_root_certificates_file_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = models_trusting(dir.path(), empty.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("holds no certificate"), "{stderr}");
    assert!(
        !stderr.contains("connect"),
        "refused before any request: {stderr}"
    );
}

#[test]
fn login_adc_with_no_consent_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "login",
            "--adc",
            "--no-consent",
            "--client-id-file",
            "c.json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("drop --no-consent"), "{stderr}");
    assert!(!dir.path().join("gcloud").exists(), "nothing written");
}

#[test]
fn a_huge_client_id_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let huge = huge_file(dir.path());
    let out = run_in(dir.path(), &["login", "--adc", "--client-id-file", &huge]);
    assert_too_large(&out, "login --adc --client-id-file");
}

/// Runs `args` and checks it is a usage error (exit 2) naming `flag`,
/// before any sign-in or request.
fn assert_usage(dir: &Path, args: &[&str], flag: &str) {
    let out = run_in(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(stderr.contains(flag), "{args:?}: {stderr}");
    assert!(!stderr.contains("http://"), "{args:?} went on: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn an_empty_account_to_impersonate_is_a_usage_error_before_the_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client_secret.json");
    std::fs::write(
        &client,
        r#"{"installed":{"client_id":"x","client_secret":"s","auth_uri":"http://127.0.0.1:9/a","token_uri":"http://127.0.0.1:9/t"}}"#,
    )
    .unwrap();
    let client = client.to_str().unwrap();
    for accounts in [
        "",
        ",",
        "a@p.iam.gserviceaccount.com,",
        " , sa@p.iam.gserviceaccount.com",
    ] {
        assert_usage(
            dir.path(),
            &[
                "print-access-token",
                "--adc",
                "--impersonate-service-account",
                accounts,
            ],
            "--impersonate-service-account",
        );
        assert_usage(
            dir.path(),
            &[
                "login",
                "--adc",
                "--no-browser",
                "--client-id-file",
                client,
                "--impersonate-service-account",
                accounts,
            ],
            "--impersonate-service-account",
        );
    }
}

#[test]
fn a_time_limit_of_zero_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}/v1", crate::common::closed_port());
    for flag in ["--timeout", "--idle-timeout", "--consent-timeout"] {
        assert_usage(
            dir.path(),
            &["models", "--api-key", "--api-base", &base, flag, "0"],
            flag,
        );
    }
}

#[test]
fn logout_with_an_api_key_is_a_usage_error_as_login_and_print_access_token() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["login", "print-access-token", "logout"] {
        assert_usage(dir.path(), &[command, "--api-key"], "API key");
    }
}

/// A server on 127.0.0.1 that answers every request with HTTP 400 and
/// `body`; its base URL.
fn answering_400(body: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

#[test]
fn a_server_message_with_line_breaks_and_terminal_controls_stays_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = answering_400(
        r#"{"error":{"code":400,"message":"line one\nline two\r\u001b[2Jcleared","status":"INVALID_ARGUMENT"}}"#,
    );
    let out = run_in(dir.path(), &["models", "--api-key", "--api-base", &base]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(!stderr.contains(['\r', '\x1b']), "{stderr:?}");
    assert!(
        stderr.contains("line one") && stderr.contains("cleared"),
        "{stderr:?}"
    );
}

#[test]
fn an_empty_scope_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for scopes in ["", "openid,,email", " "] {
        assert_usage(
            dir.path(),
            &["status", "--adc", "--scopes", scopes],
            "--scopes",
        );
    }
}
