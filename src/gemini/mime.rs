//! What the Gemini helpers' callers need around a call: a file's MIME type
//! from its extension (a small table of the types Gemini reads, rather than
//! a dependency) and an answer's text.

use std::path::Path;

use serde_json::Value;

const TYPES: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("csv", "text/csv"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("py", "text/x-python"),
    ("rs", "text/x-rust"),
    ("xml", "text/xml"),
    ("rtf", "text/rtf"),
    ("json", "application/json"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("gif", "image/gif"),
    ("heic", "image/heic"),
    ("heif", "image/heif"),
    ("mp3", "audio/mp3"),
    ("wav", "audio/wav"),
    ("aac", "audio/aac"),
    ("ogg", "audio/ogg"),
    ("flac", "audio/flac"),
    ("aiff", "audio/aiff"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("mov", "video/mov"),
    ("avi", "video/avi"),
    ("webm", "video/webm"),
    ("wmv", "video/wmv"),
    ("flv", "video/x-flv"),
    ("3gp", "video/3gpp"),
];

/// The MIME type for `path`'s extension (any case), else
/// `application/octet-stream`: what [`upload_file`](super::upload_file)
/// and [`Upload::new`](super::Upload::new) take.
///
/// ```
/// assert_eq!(gemini_oauth::gemini::mime_type("report.PDF"), "application/pdf");
/// assert_eq!(gemini_oauth::gemini::mime_type("data.bin"), "application/octet-stream");
/// ```
#[must_use]
pub fn mime_type(path: impl AsRef<Path>) -> &'static str {
    let ext = path
        .as_ref()
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map_or("application/octet-stream", |(_, t)| t)
}

/// The text parts of a `generateContent` answer (or of one piece of a
/// stream) for its first candidate, thought summaries left out.
///
/// ```
/// let answer = serde_json::json!({"candidates": [{"content": {"parts": [
///     {"text": "thinking…", "thought": true}, {"text": "Hello"}, {"text": "!"}
/// ]}}]});
/// let text: String = gemini_oauth::gemini::answer_texts(&answer).collect();
/// assert_eq!(text, "Hello!");
/// ```
pub fn answer_texts(answer: &Value) -> impl Iterator<Item = &str> {
    answer["candidates"][0]["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|part| part["thought"] != true)
        .filter_map(|part| part["text"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extensions_in_any_case_and_unknown_ones() {
        assert_eq!(mime_type("a/b/photo.JPG"), "image/jpeg");
        assert_eq!(mime_type("notes.md"), "text/markdown");
        assert_eq!(mime_type("noextension"), "application/octet-stream");
        assert_eq!(mime_type("archive.tar.gz"), "application/octet-stream");
    }

    #[test]
    fn answer_texts_skip_thoughts_and_non_text_parts() {
        let answer = serde_json::json!({"candidates": [{"content": {"parts": [
            {"text": "a"}, {"thought": true, "text": "x"}, {"inline_data": {}}, {"text": "b"}
        ]}}]});
        assert_eq!(answer_texts(&answer).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(answer_texts(&serde_json::json!({})).count(), 0);
    }
}
