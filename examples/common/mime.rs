#![allow(dead_code, unreachable_pub)]
//! A file's name, as the display name of an upload (its MIME type comes
//! from `gemini_oauth::gemini::mime_type`).

use std::path::Path;

/// The file's name, as the display name of an upload.
pub fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}
