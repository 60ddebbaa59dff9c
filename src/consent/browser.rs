//! Opening the consent URL in the user's browser (feature `browser`):
//! `$BROWSER` when it is set, as Python's `webbrowser` module and most Unix
//! tools honour it, else the `open` crate (xdg-open, `open`, `start`, and
//! WSL's `wslview`). Always on a thread of its own: an opener may block until
//! a text browser exits, which must hold neither the runtime nor the
//! listener that waits for the redirect.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::env;

/// Text browsers run in the user's terminal: they keep its stdin and stdout.
const TEXT_BROWSERS: &[&str] = &["lynx", "links", "links2", "elinks", "w3m", "www-browser"];

/// Opens `url` on a new thread; failures are logged at debug level only,
/// since the URL has been printed anyway.
pub(super) fn open(url: &str) {
    let url = url.to_owned();
    let browser = std::env::var_os(env::BROWSER).filter(|b| !b.is_empty());
    let spawned = std::thread::Builder::new()
        .name("gemini-oauth-browser".into())
        .spawn(move || {
            let opened = match browser {
                Some(browser) => open_with_env(&browser, &url),
                None => ::open::that(&url).map_err(|e| e.to_string()),
            };
            if let Err(e) = opened {
                tracing::debug!(error = %e, "could not open a browser; the URL was printed");
            }
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not start the browser thread; the URL was printed");
    }
}

/// `$BROWSER` is a list of commands separated by `:` (`;` on Windows, whose
/// paths hold `C:`, as Python's `webbrowser` splits at `os.pathsep`), tried
/// in order until one succeeds. In each, `%s` stands for the URL (it is
/// appended when absent) and `%%` for `%`.
fn open_with_env(browser: &std::ffi::OsStr, url: &str) -> Result<(), String> {
    let browser = browser.to_string_lossy();
    let mut last = String::from("BROWSER names no command");
    let separator = if cfg!(windows) { ';' } else { ':' };
    for entry in browser.split(separator).filter(|e| !e.trim().is_empty()) {
        let argv = command_line(entry, url);
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        if !is_text_browser(program) {
            // A graphical browser's chatter must not land in our stdout,
            // which may be a token printed for a script.
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        match cmd.status() {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => last = format!("$BROWSER entry exited with {status}"),
            Err(e) => last = format!("$BROWSER entry could not be started: {e}"),
        }
    }
    Err(last)
}

/// The arguments of one `$BROWSER` entry for `url`.
fn command_line(entry: &str, url: &str) -> Vec<OsString> {
    let mut has_url = false;
    let mut argv: Vec<OsString> = entry
        .split_ascii_whitespace()
        .map(|word| {
            let mut out = String::new();
            let mut chars = word.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('%', Some('s')) => {
                        out.push_str(url);
                        has_url = true;
                        chars.next();
                    }
                    ('%', Some('%')) => {
                        out.push('%');
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            OsString::from(out)
        })
        .collect();
    if !has_url && !argv.is_empty() {
        argv.push(url.into());
    }
    argv
}

fn is_text_browser(program: &OsString) -> bool {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| TEXT_BROWSERS.contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: Vec<OsString>) -> Vec<String> {
        argv.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_url_is_appended_or_put_in_place_of_percent_s() {
        let url = "https://a.example/auth?x=1";
        assert_eq!(
            strings(command_line("/usr/bin/firefox --new-tab", url)),
            ["/usr/bin/firefox", "--new-tab", url]
        );
        assert_eq!(
            strings(command_line("wrap --url=%s --pct=100%%", url)),
            ["wrap", format!("--url={url}").as_str(), "--pct=100%"]
        );
        assert!(command_line("   ", url).is_empty());
    }

    #[test]
    fn text_browsers_are_known_by_their_file_name() {
        assert!(is_text_browser(&"/usr/bin/w3m".into()));
        assert!(!is_text_browser(&"/usr/bin/firefox".into()));
    }

    #[cfg(unix)]
    #[test]
    fn entries_are_tried_in_order_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let script = dir.path().join("browser.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$1\" > '{}'\n", seen.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let browser = format!("/nonexistent/browser:false:{}", script.display());
        assert_eq!(
            open_with_env(browser.as_ref(), "https://u.example/"),
            Ok(())
        );
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "https://u.example/\n"
        );
        let err = open_with_env("false".as_ref(), "https://u.example/").unwrap_err();
        assert!(err.contains("exited"), "{err}");
    }

    /// Windows paths hold `:` after the drive letter: entries are split at
    /// `;` there, as Python's `webbrowser` splits at `os.pathsep`.
    #[cfg(windows)]
    #[test]
    fn entries_are_split_at_semicolons_and_keep_drive_letters() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let script = dir.path().join("browser.cmd");
        std::fs::write(&script, format!("@echo %~1> \"{}\"\r\n", seen.display())).unwrap();
        let browser = format!("C:\\nonexistent\\browser.exe;{}", script.display());
        assert_eq!(
            open_with_env(browser.as_ref(), "https://u.example/"),
            Ok(())
        );
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap().trim_end(),
            "https://u.example/"
        );
        let err = open_with_env("cmd /c exit 3".as_ref(), "https://u.example/").unwrap_err();
        assert!(err.contains("exited"), "{err}");
    }
}
