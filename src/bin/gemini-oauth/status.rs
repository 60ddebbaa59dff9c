//! `status`: which credentials are found and why, what they are, never a secret.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use gemini_oauth::Consent;
use serde_json::{Map, Value, json};

use crate::failure::Failure;
use crate::flags::Flags;

/// What `status` takes besides the shared flags.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Loads the credentials without ever signing in, gets a token, and
/// describes them.
pub(crate) async fn run(flags: &Flags, args: &StatusArgs) -> Result<(), Failure> {
    let (mode, search, file) = search(flags);
    let creds = flags.load_with(|l| l.consent(Consent::Never)).await?;
    let mut s = Map::new();
    s.insert("credentials".into(), json!(mode));
    s.insert("search".into(), Value::Array(search));
    s.insert("source".into(), json!(creds.source()));
    let contents = file.as_deref().and_then(read_json);
    // A token.json is google-auth's authorized_user record without the key.
    let kind = match (mode, &contents) {
        ("user", _) => Some("authorized_user".into()),
        ("api_key", _) => Some("api_key".into()),
        (_, Some(c)) => c.get("type").and_then(Value::as_str).map(str::to_owned),
        (_, None) => Some("metadata_server".into()),
    };
    s.insert("type".into(), json!(kind));
    let account = contents.as_ref().and_then(account).or_else(|| {
        creds
            .stored_token()
            .and_then(|t| {
                t.extra("account")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|a| !a.is_empty())
    });
    s.insert("account".into(), json!(account));
    if let Some((target, _)) = flags.impersonation() {
        s.insert("impersonated_service_account".into(), json!(target));
    }
    s.insert("scopes".into(), json!(creds.granted_scopes()));
    let expiry = if mode == "api_key" {
        None
    } else {
        let token = creds.access_token().await?;
        time::OffsetDateTime::from(token.expires_at())
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    s.insert("expiry".into(), json!(expiry));
    s.insert("quota_project".into(), json!(creds.quota_project()));
    s.insert("universe_domain".into(), json!(creds.universe_domain()));
    let s = Value::Object(s);
    let text = match args.format {
        Format::Json => format!("{s}\n"),
        Format::Text => text(&s),
    };
    crate::output::write(text.as_bytes())
}

/// The places looked at, in order, and the file that serves (if any).
fn search(flags: &Flags) -> (&'static str, Vec<Value>, Option<PathBuf>) {
    if flags.api_key {
        let tried = ["GOOGLE_API_KEY", "GEMINI_API_KEY"]
            .iter()
            .map(|k| {
                let set = std::env::var_os(k).is_some_and(|v| !v.is_empty());
                json!({"place": k, "found": set})
            })
            .collect();
        return ("api_key", tried, None);
    }
    if !flags.adc
        && let Some(name) = &flags.keyring
    {
        // Found when the credentials load (status fails otherwise).
        let place = format!("OS keyring entry gemini-oauth/{name}");
        return ("user", vec![json!({"place": place, "found": true})], None);
    }
    if !flags.adc {
        let file = flags.token_file();
        let found = file.exists();
        return (
            "user",
            vec![json!({"place": file.display().to_string(), "found": found})],
            found.then_some(file),
        );
    }
    let mut tried = Vec::new();
    let env = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty());
    tried.push(json!({"place": "GOOGLE_APPLICATION_CREDENTIALS", "found": env.is_some()}));
    if let Some(path) = env {
        return ("adc", tried, Some(PathBuf::from(path)));
    }
    if let Some(file) = gemini_oauth::adc::well_known_file() {
        let found = file.exists();
        tried.push(json!({"place": file.display().to_string(), "found": found}));
        if found {
            return ("adc", tried, Some(file));
        }
    }
    tried.push(json!({"place": "metadata server", "found": true}));
    ("adc", tried, None)
}

/// A credentials file's JSON (its secrets are never printed: only chosen keys are read).
fn read_json(path: &Path) -> Option<Map<String, Value>> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The account a credentials file names: a service account's email, the
/// target of an impersonation, or the user's account when recorded.
fn account(file: &Map<String, Value>) -> Option<String> {
    if let Some(email) = file.get("client_email").and_then(Value::as_str) {
        return Some(email.to_owned());
    }
    if let Some(url) = file
        .get("service_account_impersonation_url")
        .and_then(Value::as_str)
    {
        let after = url.split("serviceAccounts/").nth(1)?;
        return after.split(':').next().map(str::to_owned);
    }
    file.get("account")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

/// The status as `key: value` lines.
fn text(s: &Value) -> String {
    let mut out = String::new();
    let Some(map) = s.as_object() else {
        return out;
    };
    for (key, value) in map {
        let line = match value {
            Value::Array(items) if key == "search" => {
                let mut lines = "search:".to_owned();
                for item in items {
                    let mark = if item["found"] == true {
                        "found"
                    } else {
                        "not found"
                    };
                    let place = item["place"].as_str().unwrap_or_default();
                    lines.push_str(&format!("\n  {place}: {mark}"));
                }
                lines
            }
            Value::Array(items) => {
                let list: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                format!("{key}: {}", list.join(" "))
            }
            Value::String(v) => format!("{key}: {v}"),
            Value::Null => format!("{key}: -"),
            other => format!("{key}: {other}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}
