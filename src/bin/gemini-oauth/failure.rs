//! Errors as one line on stderr with the fix, and the documented exit codes.

use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code: an error (network, file, server, …).
pub(crate) const ERROR: u8 = 1;
/// Exit code: a usage error (bad flag or value); clap uses it too.
pub(crate) const USAGE: u8 = 2;
/// Exit code: a sign-in is required (no credentials, none cached, the
/// refresh token rejected or revoked) and was not allowed or possible here.
pub(crate) const SIGN_IN_REQUIRED: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library's error.
    Lib(gemini_oauth::Error),
    /// A bad combination of flags or values, found after parsing.
    Usage(String),
    /// Anything else, as a message that says what to do.
    Other(String),
}

impl From<gemini_oauth::Error> for Failure {
    fn from(e: gemini_oauth::Error) -> Self {
        Failure::Lib(e)
    }
}

impl Failure {
    /// The exit code for this failure.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => USAGE,
            Failure::Other(_) => ERROR,
            Failure::Lib(e) if sign_in_required(e) => SIGN_IN_REQUIRED,
            Failure::Lib(_) => ERROR,
        }
    }

    /// Prints the failure as one line on stderr and returns its exit code.
    pub(crate) fn report(&self) -> ExitCode {
        let label = if color_on_stderr() {
            "\x1b[1;31merror:\x1b[0m"
        } else {
            "error:"
        };
        eprintln!("{label} {}", one_line(&self.to_string()));
        ExitCode::from(self.code())
    }
}

/// `text` on one line, with no terminal controls: a line break (a server's
/// message, a file name) becomes a space, any other control its escape.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::Lib(e) => describe(f, e),
        }
    }
}

/// The library's error in the command line's words: the fix names a
/// command of this tool, not a builder call.
fn describe(f: &mut fmt::Formatter<'_>, e: &gemini_oauth::Error) -> fmt::Result {
    use gemini_oauth::Error as E;
    const LOGIN: &str = "sign in with `gemini-oauth login` (or `gemini-oauth login --adc \
                         --client-id-file client_secret.json` for Application Default Credentials)";
    match e {
        E::ConsentRequired { reason, store, .. } => {
            return write!(f, "{reason} in {store}; {LOGIN}");
        }
        E::NoCredentials { tried, .. } if tried.iter().all(|t| t.contains("API_KEY")) => {
            return write!(
                f,
                "no API key found (tried: {}); set GOOGLE_API_KEY (or GEMINI_API_KEY) to a key \
                 from https://aistudio.google.com/apikey, or leave out --api-key to sign in",
                tried.join("; ")
            );
        }
        E::NoCredentials { tried, .. } => {
            return write!(
                f,
                "no Google credentials found (tried: {}); run `gemini-oauth login --adc \
                 --client-id-file client_secret.json`, point GOOGLE_APPLICATION_CREDENTIALS at \
                 a credentials file, or use --api-key with GOOGLE_API_KEY set",
                tried.join("; ")
            );
        }
        _ => {}
    }
    write!(f, "{e}")?;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        write!(f, " (caused by: {s})")?;
        source = s.source();
    }
    if sign_in_required(e) {
        write!(f, "; {LOGIN}")?;
    }
    Ok(())
}

/// Whether `e` means that someone has to sign in.
fn sign_in_required(e: &gemini_oauth::Error) -> bool {
    use gemini_oauth::Error as E;
    matches!(
        e,
        E::ConsentRequired { .. }
            | E::NoCredentials { .. }
            | E::InvalidGrant { .. }
            | E::Revoked { .. }
    )
}

/// Colour on stderr: only on a terminal, never with `NO_COLOR` (any value).
pub(crate) fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_turns_breaks_into_spaces_and_escapes_controls() {
        assert_eq!(
            super::one_line("panicked at a.rs:1:2:\nboom\r\t\x1b[2J"),
            "panicked at a.rs:1:2: boom  \\u{1b}[2J"
        );
    }
}
