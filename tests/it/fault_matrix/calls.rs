//! Each call kind as code: credentials set up through the loader's own
//! options (endpoints, roots, deadlines, proxy), then one call.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use gemini_oauth::{AuthorizedClient, CredentialLoader, Credentials, Result};
use serde_json::json;

use super::table::{CONNECT_TIMEOUT, Call, IDLE_TIMEOUT, TOKEN_TIMEOUT};
use crate::common::browser;
use crate::common::*;

/// The ID-token rows' audiences: a new one for each call, so that each
/// call makes its request (a second call for the same audience would be
/// served from the cache, and the cell's call after the fault would prove
/// nothing).
fn next_audience() -> String {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("https://tool-matrix.a.run.app/{n}")
}

/// Where a cell's call goes.
pub(super) struct Endpoints {
    /// The origin behind the fault (`https://host:port`).
    pub(super) faulted: String,
    /// An origin without faults (a source's own token endpoint).
    pub(super) clean: String,
    /// The proxy URL, with a user and a password, when the row is proxied.
    pub(super) proxy: Option<String>,
    pub(super) ca: String,
    pub(super) dir: PathBuf,
    /// A PKCS#8 RSA key, for the service-account rows.
    pub(super) sa_key: String,
}

/// What a call needs, set up once per cell and kept across the fault
/// (no sticky failure: the same credentials must work afterwards).
pub(super) struct Prepared {
    creds: Credentials,
    client: AuthorizedClient,
}

/// The loader options every call kind shares.
fn configure<K>(loader: CredentialLoader<K>, e: &Endpoints) -> CredentialLoader<K> {
    let loader = loader
        .root_certificates_pem(&e.ca)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOKEN_TIMEOUT);
    match &e.proxy {
        Some(p) => loader.proxy(p),
        None => loader.no_proxy(),
    }
}

fn write(dir: &Path, name: &str, json: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

fn user_source(token_uri: &str) -> serde_json::Value {
    json!({
        "type": "authorized_user", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN, "token_uri": token_uri, "universe_domain": "googleapis.com"
    })
}

fn external_account(e: &Endpoints, token_url: &str, source: serde_json::Value) -> PathBuf {
    write(
        &e.dir,
        "external_account.json",
        &json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": token_url, "credential_source": source,
            "universe_domain": "googleapis.com"
        }),
    )
}

/// Sets up `call` against `e`: no request reaches the faulted origin
/// except, for sources that get a first token when loaded, that one.
pub(super) async fn prepare(call: Call, e: &Endpoints) -> Result<Prepared> {
    let user = |token_uri: &str| {
        write_token(&e.dir, &token_json(token_uri, 3000));
        configure(temp_loader(&e.dir), e)
    };
    let creds = match call {
        Call::TokenRefresh => user(&format!("{}/token", e.faulted)).load().await?,
        // Each call is a whole sign-in; these credentials go unused.
        Call::CodeExchange => user(&format!("{}/token", e.clean)).load().await?,
        Call::Revoke => {
            user(&format!("{}/token", e.clean))
                .revoke_uri(format!("{}/revoke", e.faulted))
                .load()
                .await?
        }
        Call::ApiGet | Call::Generate | Call::Stream | Call::Upload | Call::UploadBytes => {
            user(&format!("{}/token", e.clean))
                .api_base(format!("{}/v1", e.faulted))
                .load()
                .await?
        }
        Call::Sts => {
            let subject = e.dir.join("subject.jwt");
            std::fs::write(&subject, "eyJ.SUBJECTMARKER").unwrap();
            let file =
                external_account(e, &format!("{}/token", e.faulted), json!({"file": subject}));
            let loader = CredentialLoader::application_default().credentials_file(file);
            configure(loader, e).load().await?
        }
        Call::UrlSubject => {
            let file = external_account(
                e,
                &format!("{}/token", e.clean),
                json!({"url": format!("{}/subject", e.faulted)}),
            );
            let loader = CredentialLoader::application_default().credentials_file(file);
            configure(loader, e).load().await?
        }
        Call::Metadata => {
            // The child process's GCE_METADATA_HOST names the fault proxy.
            configure(CredentialLoader::application_default(), e)
                .load()
                .await?
        }
        Call::AwsImds => {
            let f = &e.faulted;
            let file = write(
                &e.dir,
                "aws.json",
                &json!({
                    "type": "external_account",
                    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws",
                    "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
                    "token_url": format!("{}/token", e.clean),
                    "credential_source": {
                        "environment_id": "aws1",
                        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                        "region_url": format!("{f}/latest/meta-data/placement/availability-zone"),
                        "url": format!("{f}/latest/meta-data/iam/security-credentials"),
                        "imdsv2_session_token_url": format!("{f}/latest/api/token")
                    },
                    "universe_domain": "googleapis.com"
                }),
            );
            let loader = CredentialLoader::application_default().credentials_file(file);
            configure(loader, e).load().await?
        }
        Call::ServiceAccount | Call::IdTokenSa => {
            let file = write(
                &e.dir,
                "sa.json",
                &json!({
                    "type": "service_account", "project_id": "p", "private_key_id": "k1",
                    "private_key": e.sa_key,
                    "client_email": "sa@p.iam.gserviceaccount.com", "client_id": "1",
                    "token_uri": format!("{}/token", e.faulted)
                }),
            );
            let loader = CredentialLoader::application_default().credentials_file(file);
            configure(loader, e).load().await?
        }
        Call::Iam | Call::IdTokenIam => {
            let file = write(
                &e.dir,
                "impersonated.json",
                &json!({
                    "type": "impersonated_service_account", "delegates": [],
                    "service_account_impersonation_url": format!(
                        "{}/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
                        e.faulted
                    ),
                    "source_credentials": user_source(&format!("{}/token", e.clean))
                }),
            );
            let loader = CredentialLoader::application_default().credentials_file(file);
            configure(loader, e).load().await?
        }
    };
    let client = creds.authorized_client().idle_timeout(IDLE_TIMEOUT);
    Ok(Prepared { creds, client })
}

/// A sign-in whose consent screen is answered at once with a code, which
/// the loader exchanges at the faulted token endpoint.
async fn sign_in(e: &Endpoints) -> Result<()> {
    let secret = gemini_oauth::ClientSecret::new(CLIENT_ID, CLIENT_SECRET)
        .auth_uri("https://accounts.example.com/o/oauth2/auth")
        .token_uri(format!("{}/token", e.faulted));
    let loader = CredentialLoader::new()
        .client_secret(secret)
        .token_store(gemini_oauth::MemoryTokenStore::new())
        .consent(gemini_oauth::Consent::PrintUrl)
        .on_consent_url(|url| {
            let q = |k| browser::query_param(url, k).unwrap();
            let answer = format!(
                "{}?state={}&code=AUTHCODEMARKER",
                q("redirect_uri"),
                q("state")
            );
            tokio::spawn(async move { browser::get(&answer).await });
        });
    configure(loader, e).load().await.map(drop)
}

/// Makes the call once.
pub(super) async fn run(call: Call, p: &Prepared, e: &Endpoints) -> Result<()> {
    let dir = &e.dir;
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    match call {
        Call::TokenRefresh
        | Call::Sts
        | Call::UrlSubject
        | Call::AwsImds
        | Call::Metadata
        | Call::ServiceAccount
        | Call::Iam => p.creds.force_refresh().await.map(drop),
        Call::IdTokenSa | Call::IdTokenIam => p.creds.id_token(&next_audience()).await.map(drop),
        Call::Revoke => p.creds.revoke().await,
        Call::CodeExchange => sign_in(e).await,
        Call::ApiGet => {
            let models = gemini_oauth::gemini::list_models(&p.client).await?;
            assert_eq!(models[0].name, "models/matrix");
            Ok(())
        }
        Call::Generate => {
            let v = gemini_oauth::gemini::generate_content(&p.client, "matrix", &body).await?;
            assert_eq!(v, crate::common::gemini_server::text_chunk("hello"));
            Ok(())
        }
        Call::Stream => {
            let mut chunks =
                gemini_oauth::gemini::stream_generate_content(&p.client, "matrix", &body).await?;
            let mut n = 0;
            while let Some(chunk) = chunks.next().await {
                chunk?;
                n += 1;
            }
            assert_eq!(n, 3, "every event arrived");
            Ok(())
        }
        Call::Upload | Call::UploadBytes => {
            let file = dir.join("upload.bin");
            std::fs::write(&file, vec![7u8; 64 * 1024]).unwrap();
            let f = gemini_oauth::gemini::upload_file(
                &p.client,
                &file,
                "application/octet-stream",
                "matrix",
            )
            .await?;
            assert_eq!(f.name, "files/abc-123");
            Ok(())
        }
    }
}

/// Whether the next call needs fresh credentials (a revoke that
/// succeeded leaves none).
pub(super) fn spent_by_success(call: Call) -> bool {
    call == Call::Revoke
}
