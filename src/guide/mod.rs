//! The reference, topic by topic: what each part does, the numbers it keeps
//! and the tests that hold it to them. The crate's front page and README
//! show the quickstart; these pages are what they link to.
//!
//! | page | what it covers |
//! |---|---|
//! | [`loading`] | what the loader decides (cached → refresh → consent), refresh observers, `token.json` shared with Python |
//! | [`consent`] | the browser consent flow: loopback listener, PKCE, `state`, timeouts |
//! | [`stores`] | token stores: your own, Redis, the OS keyring |
//! | [`adc`] | Application Default Credentials, API keys, universe domains, revocation, ID tokens |
//! | [`workload_identity`] | impersonation, `external_account` and workforce identity |
//! | [`calling`] | the authorized client: streams, long generations, uploads, timeouts |
//! | [`proxies`] | proxies as curl reads them |
//! | [`vertex_ai`] | Gemini through Vertex AI |
//! | [`environment`] | `from_env()`: the backend, base URL and credentials google-genai would pick |
//! | [`integrations`] | reqwest, tower/tonic, google-cloud-rust, gcp_auth, google-apis-rs hubs, yup-oauth2, blocking code, test doubles |
//! | [`cli`] | the `gemini-oauth` command line tool: commands, exit codes, `status` |
//! | [`faults`] | which calls are retried and how, every phase's time bound, the fault matrix |
//! | [`security`] | files, processes, network faults, secrets, bad input: what is guaranteed and tested |
//! | [`performance`] | the benchmarks against yup-oauth2, raw hyper, load_creds.py and gcloud, with their commands |
//! | [`platforms`] | where it is built and tested (MSRV, Windows, macOS), the package, cargo deny, semver checks |
//! | [`design`] | design choices and the module layout |
//! | [`testing`] | how the tests run and what they use |

#[doc = include_str!("loading.md")]
pub mod loading {}
#[doc = include_str!("consent.md")]
pub mod consent {}
#[doc = include_str!("stores.md")]
pub mod stores {}
#[doc = include_str!("adc.md")]
pub mod adc {}
#[doc = include_str!("workload_identity.md")]
pub mod workload_identity {}
#[doc = include_str!("calling.md")]
pub mod calling {}
#[doc = include_str!("proxies.md")]
pub mod proxies {}
#[doc = include_str!("vertex_ai.md")]
pub mod vertex_ai {}
#[doc = include_str!("environment.md")]
pub mod environment {}
#[doc = include_str!("integrations.md")]
pub mod integrations {}
#[doc = include_str!("cli.md")]
pub mod cli {}
#[doc = include_str!("faults.md")]
pub mod faults {}
#[doc = include_str!("security.md")]
pub mod security {}
#[doc = include_str!("performance.md")]
pub mod performance {}
#[doc = include_str!("platforms.md")]
pub mod platforms {}
#[doc = include_str!("design.md")]
pub mod design {}
#[doc = include_str!("testing.md")]
pub mod testing {}
