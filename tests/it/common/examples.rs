//! Runs the example programs as a user would (built by `cargo test` or
//! `cargo build --examples`).
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The path of the built example `name`.
pub fn example_path(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let exe = target.join("debug/examples").join(name);
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build --examples` (bash .ci/test does)",
        exe.display()
    );
    exe
}

/// The proxy variables, both cases.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The variables Google's Gemini SDKs (and `from_env()`) choose credentials by.
pub const GENAI_VARS: [&str; 9] = [
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_GENAI_API_VERSION",
];

pub fn example(name: &str) -> Command {
    let mut cmd = Command::new(example_path(name));
    cmd.env_remove("GEMINI_API_BASE")
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT");
    // The variables `from_env()` reads choose for a run without credential flags.
    for var in GENAI_VARS {
        cmd.env_remove(var);
    }
    // A proxy of the machine running the tests must not carry the loopback traffic.
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// The stdout of a process that must have succeeded (else its stderr fails the test).
pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The `gemini-oauth` command line tool (feature `cli`), built by `cargo
/// test --all-features` or `cargo build --bins --all-features`, with the
/// same clean environment as the examples.
pub fn cli() -> Command {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let exe = target.join("debug/gemini-oauth");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build --bins --all-features` (bash .ci/test does)",
        exe.display()
    );
    let mut cmd = Command::new(exe);
    cmd.env_remove("GEMINI_API_BASE")
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR");
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}
