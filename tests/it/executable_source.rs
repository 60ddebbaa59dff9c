//! `credential_source.executable` beyond the happy path: the command split
//! as Python's `shlex.split` splits it (compared with Python on a table of
//! commands), a failing program's own explanation in the error, and an
//! `output_file` read with a size cap and inside the timeout (a FIFO, a
//! device), each run guarded so that a hang or a runaway read fails the test.

#![cfg(unix)]

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::examples::{example, stdout};
use crate::common::python;
use crate::external_account::{ALLOW, Fed, JWT_TYPE, STS_ACCESS, failure, response, script};
use serde_json::json;

/// What Python's `shlex.split` makes of each command: the words, or `None`
/// where it raises (an open quote, a trailing backslash).
fn python_splits(commands: &[String]) -> Vec<Option<Vec<String>>> {
    let code = "import json, shlex, sys\n\
                def split(c):\n    try:\n        return shlex.split(c)\n    except ValueError:\n        return None\n\
                print(json.dumps([split(c) for c in json.load(sys.stdin)]))";
    let mut cmd = Command::new(python().get_program());
    let mut child = cmd
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), commands).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Arguments after the program's path; each is split by both sides.
const TABLE: &[&str] = &[
    "plain words",
    "'single quoted' \"double quoted\"",
    "#not-a-comment x",
    "a #b c",
    "x# y#z",
    r#""\$HOME" "\`cmd\`""#,
    r#""a\"b" "c\\d" "e\f" "g\'h""#,
    r#"\$a \# \\ \"q\" \'s\'"#,
    r#"'it''s' '' "" x"#,
    r#"a"b"c 'd'e f'g'"#,
    "tab\there\nnew\rline",
    r#""multi word \\" arg"#,
    r#"back\ slash"#,
    "\"line\\\ncontinued\"",
    "a\\\nb",
    "$VAR ${X} `y` *.txt ~ a;b |c &d >e (f)",
    "unicode é ü \u{a0}nbsp",
    "vertical\u{b}tab form\u{c}feed",
    r#"'single \ and \" kept'"#,
    "   leading and trailing   ",
];

/// Commands both sides refuse.
const REFUSED: &[&str] = &["\"open", "'open", "ends\\", "a \"b\\\""];

/// A program that writes its arguments (NUL after each) to `argv.bin` and
/// prints a good response.
fn argv_script(fed: &Fed) -> std::path::PathBuf {
    let log = fed.path("argv.bin");
    script(
        fed,
        "argv.sh",
        &format!(
            "for a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{}'\nprintf '%s' '{}'",
            log.display(),
            response(3600)
        ),
    )
}

#[tokio::test]
async fn the_command_is_split_as_pythons_shlex_splits_it() {
    let fed = Fed::new().await;
    let exe = argv_script(&fed);
    let exe = exe.to_str().unwrap();
    let commands: Vec<String> = TABLE
        .iter()
        .chain(REFUSED)
        .map(|args| format!("{exe} {args}"))
        .collect();
    let expected = python_splits(&commands);
    for (command, python) in commands.iter().zip(expected) {
        let _ = std::fs::remove_file(fed.path("argv.bin"));
        let config = fed.config(
            JWT_TYPE,
            json!({"executable": {"command": command}}),
            json!({}),
        );
        let out = fed.rust(&config, &[ALLOW]);
        match python {
            Some(words) => {
                assert_eq!(
                    stdout(&out),
                    format!("{STS_ACCESS}\n"),
                    "{command:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(words[0], exe, "{command:?}");
                let logged = std::fs::read(fed.path("argv.bin")).unwrap();
                let ours: Vec<String> = logged
                    .split(|b| *b == 0)
                    .map(|w| String::from_utf8(w.to_vec()).unwrap())
                    .collect();
                // One empty piece after the last NUL.
                assert_eq!(ours.last().map(String::as_str), Some(""), "{command:?}");
                assert_eq!(&ours[..ours.len() - 1], &words[1..], "{command:?}");
            }
            None => {
                let err = failure(&out);
                assert!(
                    err.contains("credential_source.executable.command"),
                    "{command:?}: {err}"
                );
                assert!(!fed.path("argv.bin").exists(), "{command:?} ran");
            }
        }
    }
}

#[tokio::test]
async fn a_failing_program_says_why_as_google_auth_reports_it() {
    let fed = Fed::new().await;
    let run = |name: &str, body: &str| {
        let exe = script(&fed, name, body);
        let config = fed.config(JWT_TYPE, json!({"executable": {"command": exe}}), json!({}));
        let err = failure(&fed.rust(&config, &[ALLOW]));
        assert!(err.contains(config.to_str().unwrap()), "{err}");
        assert!(!err.contains("SUBJECTTOKENMARKER"), "{err}");
        err
    };
    // The protocol's own failure answer, with a non-zero exit.
    let failed = json!({"version": 1, "success": false, "code": "401",
                        "message": "the session expired; run tool login"});
    let err = run("json.sh", &format!("printf '%s' '{failed}'; exit 1"));
    assert!(
        err.contains("code 401: the session expired; run tool login"),
        "{err}"
    );
    assert!(err.contains("exit status: 1"), "{err}");

    // Plain text, on stderr as tools write it (google-auth merges the two).
    let err = run(
        "text.sh",
        "echo 'tool: no active account; run tool login' >&2; exit 2",
    );
    assert!(
        err.contains("tool: no active account; run tool login"),
        "{err}"
    );
    assert!(err.contains("exit status: 2"), "{err}");

    // A long output is shown as an excerpt.
    let err = run("long.sh", "head -c 100000 /dev/zero | tr '\\0' x; exit 1");
    assert!(err.contains("xxxxxxxx"), "{err}");
    assert!(err.len() < 2000, "{} bytes: {err}", err.len());

    // A good answer with a failing exit: the token is never shown.
    let err = run(
        "token.sh",
        &format!("printf '%s' '{}'; exit 4", response(3600)),
    );
    assert!(err.contains("exit status: 4"), "{err}");
}

/// Runs `cmd`; kills it and panics when it runs past 30 s or its resident
/// memory passes 256 MiB (a hang or a runaway read).
fn guarded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let problem = if start.elapsed() > Duration::from_secs(30) {
            Some("still running after 30 s".to_owned())
        } else if rss_kib > 256 * 1024 {
            Some(format!("resident memory {rss_kib} KiB"))
        } else {
            None
        };
        if let Some(problem) = problem {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{problem}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success());
}

#[tokio::test]
async fn output_file_reads_are_bounded_in_size_and_time() {
    let fed = Fed::new().await;
    let good = script(
        &fed,
        "good.sh",
        &format!("printf '%s' '{}'", response(3600)),
    );
    let silent = script(&fed, "silent.sh", "true");
    let fifo = fed.path("fifo");
    mkfifo(&fifo);
    let rust = |exe: &Path, output_file: &Path| {
        let config = fed.config(
            JWT_TYPE,
            json!({"executable": {"command": exe, "output_file": output_file, "timeout_millis": 5000}}),
            json!({}),
        );
        let mut cmd = example("print_access_token");
        cmd.args(["--adc"]);
        guarded(fed.prepare(cmd, &config, &[ALLOW]))
    };

    // Nothing cached in a FIFO or a device: the program runs and answers.
    for output_file in [Path::new("/dev/zero"), fifo.as_path()] {
        let out = rust(&good, output_file);
        assert_eq!(
            stdout(&out),
            format!("{STS_ACCESS}\n"),
            "{output_file:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A program that prints nothing: its output_file must be a file.
    for output_file in [fifo.as_path(), Path::new("/dev/zero")] {
        let err = failure(&rust(&silent, output_file));
        assert!(err.contains("output_file"), "{err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
    // A file larger than any response: refused, not read whole.
    let big = fed.path("big.json");
    let mut body = " ".repeat(2 * 1024 * 1024);
    body.push_str(&response(3600));
    std::fs::write(&big, body).unwrap();
    let err = failure(&rust(&silent, &big));
    assert!(
        err.contains("output_file") && err.contains("larger than"),
        "{err}"
    );
    // The same response in a small file is used.
    std::fs::write(&big, response(3600)).unwrap();
    assert_eq!(stdout(&rust(&silent, &big)), format!("{STS_ACCESS}\n"));
}
