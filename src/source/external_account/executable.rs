//! `credential_source.executable`: a program the user trusts prints the
//! subject token, as google-auth's `pluggable.py` runs it (only when
//! `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`; its timeout bounds, its
//! environment variables, its cached `output_file`, its response schema).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;

use super::ExternalAccountProblem;
use super::command_line::{self, SplitError};
use super::config::Fields;
use crate::env::GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES;
use crate::error::{Error, Result};
use crate::regular_file::{self, NotOpened};

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const TIMEOUT_BOUNDS_MS: (u64, u64) = (5_000, 120_000);
const INTERACTIVE_BOUNDS_MS: (u64, u64) = (30_000, 30 * 60_000);
/// The response versions this code understands.
const MAX_VERSION: u64 = 1;
/// A response is a few KiB; anything far larger is not one (the cap on
/// stdout, stderr and `output_file` alike).
const MAX_OUTPUT: u64 = 1024 * 1024;
/// How much of a failing program's own words an error shows.
const EXCERPT_CHARS: usize = 500;

pub(crate) struct ExecutableSource {
    /// The command split as google-auth splits it (`shlex.split`).
    argv: Vec<String>,
    timeout: Duration,
    output_file: Option<PathBuf>,
}

/// What the executable is told about the credentials (its environment).
pub(super) struct Context<'a> {
    pub(super) config_path: &'a Path,
    pub(super) audience: &'a str,
    pub(super) token_type: &'a str,
    /// `Some` when the file impersonates a service account (its email, or
    /// empty when the URL names none).
    pub(super) impersonated_email: Option<&'a str>,
}

/// Why a response gives no token: a malformed one is an error even when
/// cached; any other reason for a cached one means "run the program".
pub(crate) enum Rejected {
    Malformed(String),
    Unusable(String),
}

impl ExecutableSource {
    pub(super) fn from_json(source: &Map<String, Value>, f: &Fields<'_>) -> Result<Self> {
        let exe = f
            .object(source, "executable", "credential_source.executable")?
            .ok_or_else(|| f.invalid("credential_source.executable", "is missing"))?;
        let command = f.required(exe, "command", "credential_source.executable.command")?;
        let field = "credential_source.executable.command";
        let argv = match command_line::split(&command) {
            Ok(argv) if !argv.is_empty() => argv,
            Ok(_) => return Err(f.invalid(field, "has no program")),
            Err(SplitError::OpenQuote) => {
                return Err(f.invalid(field, "has a quote that is not closed"));
            }
            Err(SplitError::TrailingBackslash) => {
                return Err(f.invalid(field, "ends with a backslash that escapes nothing"));
            }
        };
        let millis = match f.number(
            exe,
            "timeout_millis",
            "credential_source.executable.timeout_millis",
        )? {
            None | Some(0) => DEFAULT_TIMEOUT_MS,
            Some(ms) if (TIMEOUT_BOUNDS_MS.0..=TIMEOUT_BOUNDS_MS.1).contains(&ms) => ms,
            Some(_) => {
                return Err(f.invalid(
                    "credential_source.executable.timeout_millis",
                    "must be between 5000 and 120000 (5 seconds to 2 minutes)",
                ));
            }
        };
        let field = "credential_source.executable.interactive_timeout_millis";
        if let Some(ms) = f
            .number(exe, "interactive_timeout_millis", field)?
            .filter(|ms| *ms > 0)
            && !(INTERACTIVE_BOUNDS_MS.0..=INTERACTIVE_BOUNDS_MS.1).contains(&ms)
        {
            return Err(f.invalid(
                field,
                "must be between 30000 and 1800000 (30 seconds to 30 minutes)",
            ));
        }
        Ok(ExecutableSource {
            argv,
            timeout: Duration::from_millis(millis),
            output_file: f
                .text(
                    exe,
                    "output_file",
                    "credential_source.executable.output_file",
                )?
                .map(PathBuf::from),
        })
    }

    fn program(&self) -> String {
        self.argv[0].clone()
    }

    fn fail(&self, ctx: &Context<'_>, reason: String) -> Error {
        Error::ExternalAccount {
            path: ctx.config_path.to_owned(),
            problem: ExternalAccountProblem::Executable {
                program: self.program(),
                reason,
            },
        }
    }

    pub(super) async fn subject_token(&self, ctx: &Context<'_>) -> Result<String> {
        if std::env::var(GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES).as_deref() != Ok("1") {
            return Err(Error::ExternalAccount {
                path: ctx.config_path.to_owned(),
                problem: ExternalAccountProblem::ExecutablesNotAllowed,
            });
        }
        // A still valid response cached by an earlier run is used as is;
        // anything else there (missing, not JSON, not a file) means "run".
        if let Ok(Some(cached)) = self.read_output_file().await {
            match parse_response(&cached, SystemTime::now()) {
                Ok((token, true)) => return Ok(token),
                Err(Rejected::Malformed(reason)) => {
                    return Err(self.fail(
                        ctx,
                        format!("cached a malformed response in output_file: {reason}"),
                    ));
                }
                Ok((_, false)) | Err(Rejected::Unusable(_)) => {}
            }
        }
        let stdout = self.run(ctx).await?;
        let response = if stdout.iter().all(u8::is_ascii_whitespace) {
            match self.read_output_file().await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    return Err(self.fail(ctx, "printed nothing and wrote no output_file".into()));
                }
                Err(why) => return Err(self.fail(ctx, format!("printed nothing, and {why}"))),
            }
        } else {
            serde_json::from_slice(&stdout).map_err(|e| {
                self.fail(
                    ctx,
                    format!(
                        "printed something that is not JSON (at line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                )
            })?
        };
        match parse_response(&response, SystemTime::now()) {
            Ok((token, _)) => Ok(token),
            Err(Rejected::Malformed(reason) | Rejected::Unusable(reason)) => {
                Err(self.fail(ctx, reason))
            }
        }
    }

    /// The output file's JSON; `None` when there is no output file (or no
    /// such file); why not when it cannot be read or is not JSON. Read
    /// within the timeout and at most [`MAX_OUTPUT`] bytes: a FIFO or a
    /// device there is refused, never waited on or read without end.
    async fn read_output_file(&self) -> std::result::Result<Option<Value>, String> {
        let Some(path) = self.output_file.clone() else {
            return Ok(None);
        };
        // A blocked read cannot be cancelled: on timeout its thread is left
        // to finish by itself. With O_NONBLOCK and regular files only, that
        // is only a file system that hangs (a dead network mount).
        let read = tokio::task::spawn_blocking(move || read_regular_file(&path));
        let bytes = match tokio::time::timeout(self.timeout, read).await {
            Err(_) => {
                return Err(format!(
                    "output_file could not be read within {} ms",
                    self.timeout.as_millis()
                ));
            }
            Ok(Err(_)) => return Err("output_file could not be read".to_owned()),
            Ok(Ok(read)) => read?,
        };
        match bytes {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                format!(
                    "output_file is not JSON (at line {}, column {})",
                    e.line(),
                    e.column()
                )
            }),
        }
    }

    /// Runs the program with google-auth's variables; its stdout, or why not.
    async fn run(&self, ctx: &Context<'_>) -> Result<Vec<u8>> {
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", ctx.audience)
            .env("GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE", ctx.token_type)
            .env(
                "GOOGLE_EXTERNAL_ACCOUNT_ID",
                ctx.impersonated_email.unwrap_or(""),
            )
            .env("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0")
            .env("GOOGLE_EXTERNAL_ACCOUNT_REVOKE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(email) = ctx.impersonated_email {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL", email);
        }
        if let Some(out) = &self.output_file {
            cmd.env("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", out);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| self.fail(ctx, format!("could not be started ({})", e.kind())))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            let (buf, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
            let buf = buf
                .map_err(|e| self.fail(ctx, format!("output could not be read ({})", e.kind())))?;
            if buf.len() as u64 > MAX_OUTPUT {
                return Err(self.fail(ctx, format!("printed more than {MAX_OUTPUT} bytes")));
            }
            let status = child
                .wait()
                .await
                .map_err(|e| self.fail(ctx, format!("could not be waited for ({})", e.kind())))?;
            if !status.success() {
                let said = failure_words(&buf, &err.unwrap_or_default());
                return Err(self.fail(ctx, format!("failed ({status}){said}")));
            }
            Ok(buf)
        };
        // On timeout the child is dropped, which kills it.
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                self.fail(
                    ctx,
                    format!(
                        "did not finish within {} ms (credential_source.executable.timeout_millis)",
                        self.timeout.as_millis()
                    ),
                )
            })?
    }
}

/// Up to [`MAX_OUTPUT`] + 1 bytes of a pipe; the rest is drained unread,
/// so that a chatty program never blocks on a full pipe.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        (&mut pipe)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut buf)
            .await?;
        tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await?;
    }
    Ok(buf)
}

/// The regular file at `path`, at most [`MAX_OUTPUT`] bytes; `None` when
/// there is no such file. Opened without blocking (a FIFO would wait for a
/// writer) and refused unless it is a regular file.
fn read_regular_file(path: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    let file = match regular_file::open(path) {
        Ok((file, _)) => file,
        Err(NotOpened::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(NotOpened::Io { source, .. }) => {
            let kind = source.kind();
            return Err(format!("output_file could not be opened ({kind})"));
        }
        Err(NotOpened::NotRegular(_)) => {
            return Err("output_file is not a regular file".to_owned());
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("output_file could not be read ({})", e.kind()))?;
    if bytes.len() as u64 > MAX_OUTPUT {
        return Err(format!("output_file is larger than {MAX_OUTPUT} bytes"));
    }
    Ok(Some(bytes))
}

/// What a failing program said, as google-auth shows it: the protocol's
/// `code` and `message` when stdout is its JSON answer (nothing else of a
/// JSON answer, which may hold a token), else an excerpt of its text output
/// (stdout, then stderr).
fn failure_words(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(stdout) {
        let text = |k: &str| {
            map.get(k)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        return match (text("code"), text("message")) {
            (Some(code), Some(message)) => {
                format!(": code {}: {}", excerpt(&code), excerpt(&message))
            }
            _ => String::new(),
        };
    }
    let text = [stdout, stderr]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    match text.is_empty() {
        true => String::new(),
        false => format!(" and said: {}", excerpt(&text)),
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text` on one line, with no
/// control or bidirectional-override characters (terminal escapes, text that
/// would show reordered).
fn excerpt(text: &str) -> String {
    let shown = |c: char| {
        !(c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    };
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if shown(c) { c } else { ' ' })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The token of a response, and whether it says when it expires (a cached
/// response without `expiration_time` is not trusted, as in google-auth).
pub(crate) fn parse_response(
    value: &Value,
    now: SystemTime,
) -> std::result::Result<(String, bool), Rejected> {
    let malformed = |s: &str| Rejected::Malformed(s.to_owned());
    let map = value
        .as_object()
        .ok_or_else(|| malformed("the response is not a JSON object"))?;
    let version = match map.get("version") {
        None => return Err(malformed("the response has no \"version\"")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| malformed("\"version\" is not a whole number"))?,
    };
    if version > MAX_VERSION {
        return Err(Rejected::Unusable(format!(
            "answered with response version {version}; version {MAX_VERSION} is supported"
        )));
    }
    let success = match map.get("success") {
        None => return Err(malformed("the response has no \"success\"")),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| malformed("\"success\" is not true or false"))?,
    };
    if !success {
        let (Some(code), Some(message)) = (map.get("code"), map.get("message")) else {
            return Err(malformed(
                "an unsuccessful response needs \"code\" and \"message\"",
            ));
        };
        let show = |v: &Value| excerpt(&v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        return Err(Rejected::Unusable(format!(
            "reported failure (code {}: {})",
            show(code),
            show(message)
        )));
    }
    let expires = match map.get("expiration_time") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| malformed("\"expiration_time\" is not a whole number of seconds"))?,
        ),
    };
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now_secs = i64::try_from(now_secs).unwrap_or(i64::MAX);
    if let Some(at) = expires
        && at < now_secs
    {
        return Err(Rejected::Unusable(format!(
            "returned a token that expired {} seconds ago (expiration_time)",
            now_secs.abs_diff(at)
        )));
    }
    let token_field = match map.get("token_type").and_then(Value::as_str) {
        None => return Err(malformed("the response has no \"token_type\" string")),
        Some(
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token",
        ) => "id_token",
        Some("urn:ietf:params:oauth:token-type:saml2") => "saml_response",
        Some(_) => {
            return Err(Rejected::Unusable(
                "returned an unsupported token_type".to_owned(),
            ));
        }
    };
    match map.get(token_field).and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Ok((t.to_owned(), expires.is_some())),
        _ => Err(malformed(if token_field == "id_token" {
            "the response has no \"id_token\" string"
        } else {
            "the response has no \"saml_response\" string"
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> std::result::Result<(String, bool), String> {
        parse_response(&v, UNIX_EPOCH + Duration::from_secs(1_000)).map_err(|r| match r {
            Rejected::Malformed(s) => format!("malformed: {s}"),
            Rejected::Unusable(s) => format!("unusable: {s}"),
        })
    }

    #[test]
    fn timeout_bounds_and_default_as_google_auth() {
        let path = Path::new("ea.json");
        let f = Fields { path };
        let parse = |exe: Value| {
            let source = json!({ "executable": exe });
            ExecutableSource::from_json(source.as_object().unwrap(), &f)
        };
        let timeout =
            |ms: Value| parse(json!({"command": "x", "timeout_millis": ms})).map(|e| e.timeout);
        assert_eq!(
            parse(json!({"command": "x"})).unwrap().timeout,
            Duration::from_secs(30)
        );
        assert_eq!(timeout(json!(0)).unwrap(), Duration::from_secs(30));
        assert_eq!(timeout(json!(5000)).unwrap(), Duration::from_secs(5));
        assert_eq!(timeout(json!(120_000)).unwrap(), Duration::from_secs(120));
        for bad in [json!(4999), json!(120_001), json!(-1), json!("5000")] {
            assert!(matches!(timeout(bad), Err(Error::ExternalAccount { .. })));
        }
        let argv = parse(json!({"command": "/bin/tool --a 'b c' \"d\""}))
            .unwrap()
            .argv;
        assert_eq!(argv, ["/bin/tool", "--a", "b c", "d"]);
        assert!(parse(json!({"command": "tool 'open"})).is_err());
        assert!(parse(json!({"command": ""})).is_err());
    }

    #[test]
    fn a_failing_program_is_quoted_briefly_and_never_its_token() {
        let answer =
            json!({"version": 1, "success": true, "token_type": "x", "id_token": "TOKENMARKER"});
        assert_eq!(failure_words(answer.to_string().as_bytes(), b"err"), "");
        let failed = json!({"version": 1, "success": false, "code": 7, "message": "a\nb", "id_token": "TOKENMARKER"});
        assert_eq!(
            failure_words(failed.to_string().as_bytes(), b""),
            ": code 7: a b"
        );
        assert_eq!(failure_words(b"", b""), "");
        assert_eq!(
            failure_words(b" out\n", b"line 1\nline 2\n"),
            " and said: out / line 1 line 2"
        );
        let long = "y".repeat(EXCERPT_CHARS + 10);
        let said = failure_words(long.as_bytes(), b"");
        assert!(
            said.ends_with(&format!("{}…", "y".repeat(EXCERPT_CHARS))),
            "{said}"
        );
        assert_eq!(
            said.chars().count(),
            " and said: ".len() + EXCERPT_CHARS + 1
        );
    }

    #[test]
    fn a_program_s_words_reach_no_terminal_as_controls() {
        let evil = "\u{1b}[31mRED\u{1b}]0;title\u{7}\r\u{202e}txt.exe\u{2066}";
        let clean = |shown: &str| {
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '\u{202e}' | '\u{2066}')),
                "{shown:?}"
            );
            assert!(
                shown.contains("RED") && shown.contains("txt.exe"),
                "{shown:?}"
            );
        };
        // A failure answer with a successful exit, and one with a failing exit.
        let failed = json!({"version": 1, "success": false, "code": evil, "message": evil});
        clean(&parse(failed.clone()).unwrap_err());
        clean(&failure_words(failed.to_string().as_bytes(), b""));
        clean(&failure_words(b"", evil.as_bytes()));
    }

    #[test]
    fn responses_as_google_auth_reads_them() {
        let jwt = "urn:ietf:params:oauth:token-type:jwt";
        assert_eq!(
            parse(
                json!({"version": 1, "success": true, "token_type": jwt, "id_token": "T", "expiration_time": 2000})
            ),
            Ok(("T".into(), true))
        );
        assert_eq!(
            parse(
                json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:saml2", "saml_response": "S"})
            ),
            Ok(("S".into(), false))
        );
        let err = |v| parse(v).unwrap_err();
        assert!(err(json!({"version": 1, "success": true, "token_type": jwt, "id_token": "T", "expiration_time": 999})).starts_with("unusable: returned a token that expired 1 seconds ago"));
        assert!(
            err(json!({"success": true})).starts_with("malformed: the response has no \"version\"")
        );
        assert!(err(json!({"version": 2, "success": true})).starts_with("unusable"));
        assert!(err(json!({"version": 1})).contains("no \"success\""));
        assert!(err(json!({"version": 1, "success": false})).starts_with("malformed"));
        assert_eq!(
            err(json!({"version": 1, "success": false, "code": "401", "message": "no session"})),
            "unusable: reported failure (code 401: no session)"
        );
        assert!(
            err(json!({"version": 1, "success": true, "id_token": "T"})).contains("token_type")
        );
        assert!(
            err(json!({"version": 1, "success": true, "token_type": jwt})).contains("id_token")
        );
        assert!(
            err(json!({"version": 1, "success": true, "token_type": "x", "id_token": "T"}))
                .starts_with("unusable")
        );
        assert!(err(json!([1])).starts_with("malformed"));
    }

    /// Found by reading the code for the `executable_output` fuzz target:
    /// an `expiration_time` near `i64::MIN` overflowed the "expired … ago"
    /// subtraction (a panic with overflow checks, nonsense without).
    #[test]
    fn an_expiry_far_in_the_past_is_expired_not_an_overflow() {
        let jwt = "urn:ietf:params:oauth:token-type:jwt";
        let e = parse(
            json!({"version": 1, "success": true, "token_type": jwt, "id_token": "T",
            "expiration_time": i64::MIN}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "unusable: returned a token that expired 9223372036854776808 seconds ago (expiration_time)"
        );
    }
}
