//! An executable source's `command`, split into words as google-auth splits
//! it: Python's `shlex.split(command)` (POSIX mode, no comments). Not a
//! shell: nothing is expanded, and these are the whole rules:
//!
//! - words are separated by runs of space, tab, carriage return or newline;
//! - outside quotes, a backslash takes the next character as it is (a
//!   backslash before a newline gives the newline);
//! - inside single quotes every character is itself, up to the next `'`;
//! - inside double quotes a backslash escapes only `"` and `\`; before any
//!   other character (`$`, a backtick, a newline) both are kept;
//! - quoted parts join the unquoted ones around them into one word, and
//!   `''` or `""` alone is an empty word;
//! - `#` is an ordinary character (Python's `split` turns comments off);
//! - an unclosed quote, or a backslash at the very end, is an error.

/// Why a command cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SplitError {
    /// A quote is never closed.
    OpenQuote,
    /// The command ends with a backslash that escapes nothing.
    TrailingBackslash,
}

/// The words of `command`, as Python's `shlex.split(command)` gives them.
pub(super) fn split(command: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    // `None` between words; `Some("")` after an empty quoted part.
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => words.extend(word.take()),
            '\\' => {
                let next = chars.next().ok_or(SplitError::TrailingBackslash)?;
                word.get_or_insert_default().push(next);
            }
            '\'' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next().ok_or(SplitError::OpenQuote)? {
                        '\'' => break,
                        other => w.push(other),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                loop {
                    match chars.next().ok_or(SplitError::OpenQuote)? {
                        '"' => break,
                        '\\' => match chars.next().ok_or(SplitError::OpenQuote)? {
                            escaped @ ('"' | '\\') => w.push(escaped),
                            other => {
                                w.push('\\');
                                w.push(other);
                            }
                        },
                        other => w.push(other),
                    }
                }
            }
            other => word.get_or_insert_default().push(other),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &str) -> Vec<String> {
        split(command).unwrap()
    }

    #[test]
    fn the_rules_as_python_applies_them() {
        assert_eq!(words("  a  b\tc\nd\re "), ["a", "b", "c", "d", "e"]);
        assert_eq!(words("#a b #c"), ["#a", "b", "#c"]);
        assert_eq!(
            words(r#""\$x" "\`y\`" "\"\\""#),
            [r"\$x", r"\`y\`", r#""\"#]
        );
        assert_eq!(words(r"\$x \# \\ \a"), ["$x", "#", "\\", "a"]);
        assert_eq!(words(r#"'a\"b' '' "" x"#), [r#"a\"b"#, "", "", "x"]);
        assert_eq!(words(r#"a"b c"'d e'f"#), ["ab cd ef"]);
        assert_eq!(words("a\\\nb \"c\\\nd\""), ["a\nb", "c\\\nd"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(split("'open"), Err(SplitError::OpenQuote));
        assert_eq!(split("\"open\\\""), Err(SplitError::OpenQuote));
        assert_eq!(split("\"open\\"), Err(SplitError::OpenQuote));
        assert_eq!(split("end\\"), Err(SplitError::TrailingBackslash));
    }
}
