//! The `gemini-oauth` tool (feature `cli`) run as a process: its help, its
//! version, its error lines and exit codes, its completion scripts. The
//! expected help and error lines are committed under `tests/it/cli/`;
//! `GEMINI_OAUTH_BLESS=1` rewrites them from the current binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::examples::cli;

/// The committed file `name` under tests/it/cli/, compared with `actual`
/// (rewritten instead with `GEMINI_OAUTH_BLESS=1`).
fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/cli")
        .join(name);
    if std::env::var_os("GEMINI_OAUTH_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GEMINI_OAUTH_BLESS=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the output (GEMINI_OAUTH_BLESS=1 rewrites it)",
        path.display()
    );
}

const COMMANDS: [&str; 9] = [
    "login",
    "print-access-token",
    "print-identity-token",
    "status",
    "logout",
    "models",
    "generate",
    "upload",
    "completions",
];

#[test]
fn help_of_the_tool_and_of_each_command_matches_its_snapshot() {
    let out = cli().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let top = String::from_utf8(out.stdout).unwrap();
    for command in COMMANDS {
        assert!(top.contains(&format!("  {command} ")), "{command}: {top}");
    }
    assert!(top.contains("3 sign-in required"), "{top}");
    snapshot("help.txt", &top);
    for command in COMMANDS {
        let out = cli().args([command, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{command}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("Example") && help.contains(&format!("gemini-oauth {command}")),
            "{command} has no example: {help}"
        );
        assert!(!help.contains('\x1b'), "colour in a pipe: {help}");
        snapshot(&format!("help-{command}.txt"), &help);
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = cli().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("gemini-oauth {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_with_a_tip() {
    for args in [
        &["frobnicate"][..],
        &["status", "--format", "yaml"],
        &["models", "--adc", "--api-key"],
        &["models", "--vertex-project", "p"],
        &["completions", "tcsh"],
        // --gcloud-fallback falls back from ADC: without --adc it means nothing.
        &["models", "--gcloud-fallback"],
    ] {
        let out = cli().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Runs the tool in `dir` with no credentials anywhere and a dead metadata server.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd: Command = cli();
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("GCE_METADATA_HOST", crate::common::closed_port())
        .env("GCE_METADATA_IP", crate::common::closed_port())
        .stdin(Stdio::null())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Environment variables of one run.
type Env<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn each_error_is_one_line_with_the_fix_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let cases: Vec<(Vec<&str>, Env)> = vec![
        (vec!["print-access-token"], vec![]),
        (vec!["status", "--format", "json"], vec![]),
        (vec!["logout"], vec![]),
        (vec!["models", "--adc"], vec![]),
        (vec!["print-access-token", "--adc"], vec![]),
        (vec!["models", "--api-key"], vec![]),
        (vec!["login", "--adc"], vec![]),
        (vec!["login", "--api-key"], vec![]),
        (vec!["print-access-token", "--api-key"], vec![]),
        (
            vec!["print-identity-token", "--audiences", "https://a.run.app"],
            vec![],
        ),
        (
            vec![
                "print-identity-token",
                "--adc",
                "--audiences",
                "https://a.run.app",
            ],
            vec![],
        ),
        (
            vec![
                "print-identity-token",
                "--api-key",
                "--audiences",
                "https://a.run.app",
            ],
            vec![],
        ),
        (
            vec!["print-identity-token", "--adc", "--audiences", " "],
            vec![],
        ),
        (
            vec![
                "models",
                "--api-key",
                "--root-certificates",
                missing.to_str().unwrap(),
            ],
            vec![("GOOGLE_API_KEY", "AIzaSECRETKEYMARKER")],
        ),
        (
            vec![
                "upload",
                "missing.pdf",
                "--api-key",
                "--api-base",
                "http://127.0.0.1:9/v1",
            ],
            vec![("GOOGLE_API_KEY", "AIzaSECRETKEYMARKER")],
        ),
    ];
    let mut lines = String::new();
    for (args, env) in cases {
        let out = run_in(dir.path(), &args, &env);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains('\x1b'), "colour in a pipe: {stderr}");
        assert!(!stderr.contains("SECRETKEYMARKER"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let code = out.status.code().unwrap();
        let entry = format!(
            "$ gemini-oauth {}\n[exit {code}] {stderr}\n",
            args.join(" ")
        );
        lines.push_str(&entry.replace(dir.path().to_str().unwrap(), "[DIR]"));
    }
    // The metadata server's port differs from run to run.
    let lines = port_free(&lines);
    snapshot("errors.txt", &lines);
    assert!(
        lines.contains("[exit 3]") && lines.contains("[exit 2]"),
        "{lines}"
    );
}

/// `127.0.0.1:PORT` with the port replaced by `PORT`.
fn port_free(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        let (head, tail) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        out.push_str(if digits > 0 { "PORT" } else { "" });
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = cli().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("gemini-oauth") && script.contains("print-access-token"),
            "{shell}: {script}"
        );
    }
}

/// The tool run with `args` on a terminal (a pseudo-terminal from
/// util-linux's `script`); its exit code and everything the terminal showed.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let exe = cli().get_program().to_owned();
    let mut cmd = Command::new("script");
    cmd.args(["-qec"])
        .arg(format!("'{}' {args}", exe.to_str().unwrap()))
        .arg("/dev/null")
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("util-linux's script runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let (code, shown) = on_a_terminal("print-access-token", None);
    assert_eq!(code, Some(3), "{shown}");
    assert!(
        shown.contains("\x1b[1;31merror:\x1b[0m no cached token"),
        "{shown:?}"
    );
    let (code, shown) = on_a_terminal("print-access-token", Some("1"));
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.starts_with("error: no cached token"), "{shown:?}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
    // clap's usage errors follow the same rule.
    let (code, shown) = on_a_terminal("frobnicate", None);
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains('\x1b'), "{shown:?}");
    let (code, shown) = on_a_terminal("frobnicate", Some("1"));
    assert_eq!(code, Some(2), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
}
