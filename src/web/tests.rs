//! The flow against a wiremock token endpoint: the URL's parameters, the
//! state check, PKCE, the ID token's claims, refused scopes.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn web_secret(token_uri: &str) -> ClientSecret {
    ClientSecret::from_json(
        serde_json::json!({"web": {
            "client_id": "web-client", "client_secret": "CLIENTSECRETMARKER",
            "auth_uri": "https://accounts.example/o/auth?hd=x", "token_uri": token_uri,
            "redirect_uris": ["https://app.example/cb"]
        }})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn pairs(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').unwrap().1;
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

fn jwt(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn the_url_carries_every_parameter() {
    let flow = WebFlow::new(
        web_secret("https://t.example/token"),
        "https://app.example/cb",
    )
    .unwrap()
    .scopes(["openid", "s1"]);
    let (url, pending) = flow
        .authorization_url(
            &SignInOptions::new()
                .prompt("consent select_account")
                .login_hint("a@b.example")
                .scopes(["s2", "s1"]),
        )
        .unwrap();
    assert!(
        url.starts_with("https://accounts.example/o/auth?hd=x&"),
        "{url}"
    );
    let p = pairs(&url);
    assert_eq!(get(&p, "response_type"), Some("code"));
    assert_eq!(get(&p, "client_id"), Some("web-client"));
    assert_eq!(get(&p, "redirect_uri"), Some("https://app.example/cb"));
    assert_eq!(get(&p, "scope"), Some("openid s1 s2"));
    assert_eq!(get(&p, "access_type"), Some("offline"));
    assert_eq!(get(&p, "include_granted_scopes"), Some("true"));
    assert_eq!(get(&p, "prompt"), Some("consent select_account"));
    assert_eq!(get(&p, "login_hint"), Some("a@b.example"));
    assert_eq!(get(&p, "code_challenge_method"), Some("S256"));
    assert_eq!(get(&p, "state"), Some(pending.state.expose_secret()));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.expose_secret()));
    assert_eq!(get(&p, "code_challenge"), Some(challenge.as_str()));
    assert!(!url.contains(pending.verifier.expose_secret()));
    assert!(!url.contains("CLIENTSECRETMARKER"));
    assert_eq!(pending.scopes(), ["openid", "s1", "s2"]);

    let (url, other) = flow
        .authorization_url(&SignInOptions::new().include_granted_scopes(false))
        .unwrap();
    let p = pairs(&url);
    assert_eq!(get(&p, "include_granted_scopes"), None);
    assert_eq!(get(&p, "prompt"), None);
    assert_eq!(get(&p, "login_hint"), None);
    assert_ne!(other.state.expose_secret(), pending.state.expose_secret());
    assert_ne!(
        other.verifier.expose_secret(),
        pending.verifier.expose_secret()
    );
    let shown = format!("{flow:?} {other:?}");
    assert!(
        !shown.contains("CLIENTSECRETMARKER") && !shown.contains(other.verifier.expose_secret())
    );
}

#[test]
fn only_a_web_client_and_safe_redirects_are_taken() {
    let installed = ClientSecret::new("cid", "cs");
    assert!(matches!(
        WebFlow::new(installed, "https://app.example/cb"),
        Err(Error::ConsentFlow(_))
    ));
    let secret = web_secret("https://t.example/token");
    assert!(WebFlow::new(secret.clone(), "http://app.example/cb").is_err());
    assert!(WebFlow::new(secret.clone(), "http://127.0.0.1:8080/cb").is_ok());
}

async fn token_server(answer: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn finish_exchanges_the_code_with_the_verifier_and_reads_the_id_token() {
    let id = jwt(
        &serde_json::json!({"aud": "web-client", "sub": "1234", "email": "u@example.com", "exp": 1}),
    );
    let server = token_server(serde_json::json!({
        "access_token": "ya29.A", "refresh_token": "1//R", "expires_in": 3600,
        "scope": "openid s1", "token_type": "Bearer", "id_token": id,
    }))
    .await;
    let flow = WebFlow::new(
        web_secret(&format!("{}/token", server.uri())),
        "http://127.0.0.1:9/cb",
    )
    .unwrap()
    .scopes(["openid", "s1"]);
    let (_, pending) = flow.authorization_url(&SignInOptions::new()).unwrap();
    // The app keeps it as JSON between the two requests.
    let kept = serde_json::to_string(&pending).unwrap();
    let pending: PendingSignIn = serde_json::from_str(&kept).unwrap();
    let state = pending.state.expose_secret().to_owned();
    let query = format!("?state={state}&code=4%2FCODE&scope=openid+s1");
    let done = flow.finish(&pending, &query).await.unwrap();
    assert_eq!(done.subject(), Some("1234"));
    assert_eq!(done.email(), Some("u@example.com"));
    assert_eq!(done.token().access_token(), Some("ya29.A"));
    assert_eq!(done.token().refresh_token(), Some("1//R"));
    assert_eq!(done.token().client_id(), Some("web-client"));
    assert!(!format!("{done:?}").contains("ya29.A"));
    let sent = &server.received_requests().await.unwrap()[0];
    let form: Vec<(String, String)> = form_urlencoded::parse(&sent.body).into_owned().collect();
    assert_eq!(get(&form, "grant_type"), Some("authorization_code"));
    assert_eq!(get(&form, "code"), Some("4/CODE"));
    assert_eq!(
        get(&form, "code_verifier"),
        Some(pending.verifier.expose_secret())
    );
    assert_eq!(get(&form, "redirect_uri"), Some("http://127.0.0.1:9/cb"));
}

#[tokio::test]
async fn a_wrong_state_a_denial_or_an_old_sign_in_exchanges_nothing() {
    let server = token_server(serde_json::json!({"access_token": "a"})).await;
    let flow = WebFlow::new(
        web_secret(&format!("{}/token", server.uri())),
        "http://127.0.0.1:9/cb",
    )
    .unwrap();
    let (_, pending) = flow.authorization_url(&SignInOptions::new()).unwrap();
    let (_, other) = flow.authorization_url(&SignInOptions::new()).unwrap();
    let state = pending.state.expose_secret().to_owned();
    let wrong = format!("state={}&code=c", other.state.expose_secret());
    assert!(matches!(
        flow.finish(&pending, &wrong).await,
        Err(Error::ConsentFlow(_))
    ));
    assert!(matches!(
        flow.finish(&pending, "code=c").await,
        Err(Error::ConsentFlow(_))
    ));
    let denied = format!("state={state}&error=access_denied");
    assert!(matches!(
        flow.finish(&pending, &denied).await,
        Err(Error::AuthorizationDenied { .. })
    ));
    let mut old = pending.clone();
    old.started_at -= 601;
    let ok = format!("state={state}&code=c");
    assert!(matches!(
        flow.finish(&old, &ok).await,
        Err(Error::ConsentFlow(_))
    ));
    // Nor one that claims to start later than the window (never expiring).
    let mut ahead = pending.clone();
    ahead.started_at += 601;
    assert!(matches!(
        flow.finish(&ahead, &ok).await,
        Err(Error::ConsentFlow(_))
    ));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn declined_scopes_and_a_foreign_id_token_are_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("code=narrow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "a", "refresh_token": "r", "scope": "s1"}),
        ))
        .mount(&server)
        .await;
    let foreign = jwt(&serde_json::json!({"aud": "another-client", "sub": "1", "exp": 1}));
    Mock::given(method("POST"))
        .and(body_string_contains("code=foreign"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "a", "refresh_token": "r", "scope": "s1 s2", "id_token": foreign,
        })))
        .mount(&server)
        .await;
    let flow = WebFlow::new(
        web_secret(&format!("{}/token", server.uri())),
        "http://127.0.0.1:9/cb",
    )
    .unwrap()
    .scopes(["s1", "s2"]);
    let (_, pending) = flow.authorization_url(&SignInOptions::new()).unwrap();
    let state = pending.state.expose_secret().to_owned();
    match flow
        .finish(&pending, &format!("state={state}&code=narrow"))
        .await
    {
        Err(Error::ScopesNotGranted { missing }) => assert_eq!(missing, ["s2"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        flow.finish(&pending, &format!("state={state}&code=foreign"))
            .await,
        Err(Error::ConsentFlow(_))
    ));
}
