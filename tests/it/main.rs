//! The integration tests, one binary so the suite links once: a module per
//! topic, with the helpers they share in `common` (a local token endpoint,
//! token files, loaders on temp dirs, the example programs, a stand-in
//! browser, oidc-provider). `tests/kill_during_write.rs` stays a binary of
//! its own: it has its own harness and runs itself as the writer.
//!
//! Everything here shares one process: no test sets environment variables
//! or changes the current directory of this process (examples, Python and
//! servers run as child processes with their own environment).

#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests may panic on overflow; the library may not (Cargo.toml)"
)]

mod common;

mod adc;
mod adc_login;
mod bad_input;
#[cfg(feature = "blocking")]
mod blocking;
mod browser_consent;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_e2e;
#[cfg(feature = "cli")]
mod cli_gemini;
#[cfg(feature = "cli")]
mod cli_input;
mod client;
mod connect_deadline;
mod consent_e2e;
mod consent_flow;
mod credential_files;
mod dependency_tree;
mod examples;
mod executable_source;
mod external_account;
mod fault_matrix;
mod faults;
mod gcloud;
#[cfg(feature = "gcloud-auth")]
mod gcloud_auth_adapter;
#[cfg(feature = "gcp-auth")]
mod gcp_token_provider;
mod gemini_examples;
mod gemini_stream;
mod gemini_timeouts;
mod gemini_upload;
#[cfg(feature = "genai")]
mod genai_adapter;
#[cfg(feature = "google-apis-common")]
mod google_apis;
#[cfg(feature = "google-cloud-auth")]
mod google_cloud;
mod hardening;
mod id_tokens;
mod impersonation;
#[cfg(feature = "keyring")]
mod keyring_store;
mod load_and_refresh;
mod multi_process;
mod proxy;
mod python_interop;
mod redaction;
mod redis_store;
#[cfg(feature = "reqwest")]
mod reqwest_middleware;
#[cfg(feature = "reqwest")]
mod reqwest_redirect;
mod review_cache;
mod review_many;
mod review_probes;
mod review_web;
mod sdk_env;
mod shared_token_file;
mod single_flight;
mod socks_faults;
mod test_doubles;
mod tls;
#[cfg(feature = "tower")]
mod tower_layer;
mod universe;
mod upload_stall;
mod vertex_ai;
mod web_sign_in;
mod web_users;
#[cfg(feature = "yup-oauth2")]
mod yup_source;
