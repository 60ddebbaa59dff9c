//! `gemini-oauth` fed bad files: each is one error line, never an unbounded
//! read (a symbolic link to /dev/zero would otherwise fill the memory).
//! A regular file past the 1 MiB limit stands in for /dev/zero here.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::common::examples::cli;

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the tool in `dir` with no credentials anywhere, stdin closed.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    cli()
        .current_dir(dir)
        .env("HOME", dir)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", closed_port()))
        .env("GCE_METADATA_IP", format!("127.0.0.1:{}", closed_port()))
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

#[test]
fn a_huge_root_certificates_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let huge = huge_file(dir.path());
    let base = format!("http://127.0.0.1:{}/v1", closed_port());
    let out = run_in(
        dir.path(),
        &[
            "models",
            "--api-key",
            "--api-base",
            &base,
            "--root-certificates",
            &huge,
        ],
    );
    assert_too_large(&out, "--root-certificates");
}

#[test]
fn a_huge_client_id_file_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let huge = huge_file(dir.path());
    let out = run_in(dir.path(), &["login", "--adc", "--client-id-file", &huge]);
    assert_too_large(&out, "login --adc --client-id-file");
}
