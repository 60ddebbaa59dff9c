//! The default dependency tree stays lean (issue 14: at most 100 crates).
//! Optional integrations (reqwest, tower, google-cloud-auth, gcp_auth,
//! google-apis-common, yup-oauth2, aws-lc-rs, genai, token-source, redis) must not
//! leak into it.

use std::collections::BTreeSet;
use std::process::Command;

/// Distinct packages (name and version) in `cargo tree -e normal` for the
/// default features: what a user compiles by adding the crate, ourselves included.
fn default_tree() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-e", "normal", "--prefix", "none", "--locked"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // `(*)` marks a package whose dependencies were listed already.
        .map(|l| l.trim_end_matches(" (*)").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_default_tree_has_at_most_100_crates() {
    let tree = default_tree();
    assert!(
        tree.iter().any(|p| p.starts_with("gemini-oauth ")),
        "not our tree: {tree:?}"
    );
    assert!(
        tree.len() <= 100,
        "{} crates by default (limit 100): {tree:#?}",
        tree.len()
    );
    let names: BTreeSet<&str> = tree.iter().filter_map(|p| p.split(' ').next()).collect();
    for optional in [
        "webbrowser",
        "url",
        "reqwest",
        "reqwest-middleware",
        "tower-layer",
        "google-cloud-auth",
        "gcp_auth",
        "google-apis-common",
        "yup-oauth2",
        "aws-lc-rs",
        "aws-lc-sys",
        "genai",
        "token-source",
        "redis",
    ] {
        assert!(
            !names.contains(optional),
            "{optional} is in the default tree"
        );
    }
}
