#!/usr/bin/env bash
# Smoke test of server.mjs with curl: full code + PKCE flow, refresh, revoke,
# wrong secret, deny client. Needs node, curl, openssl; run `npm ci` here first.
# Usage: bash tests/oidc/smoke.sh   (exits non-zero on the first failure)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Hold the server's stdin open through a coprocess pipe; closing it stops it.
coproc SRV { exec node "$here/server.mjs" 2>/tmp/oidc-smoke.err; }
trap 'exec {SRV[1]}>&- 2>/dev/null || true; wait 2>/dev/null || true' EXIT
while IFS= read -r -t 20 line <&"${SRV[0]}"; do
  echo "server: $line"
  case "$line" in
    OIDC_AUTH=*) AUTH="${line#OIDC_AUTH=}" ;;
    OIDC_TOKEN=*) TOKEN="${line#OIDC_TOKEN=}" ;;
    OIDC_REVOKE=*) REVOKE="${line#OIDC_REVOKE=}" ;;
    OIDC_ISSUER=*) ISSUER="${line#OIDC_ISSUER=}"; break ;;
  esac
done
: "${ISSUER:?server did not start}"

fail() { echo "FAIL: $*" >&2; exit 1; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
VERIFIER="$(head -c 48 /dev/urandom | b64url)"
CHALLENGE="$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | b64url)"
REDIRECT='http://127.0.0.1:54321/'
SCOPE='https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fgenerative-language.retriever%20https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform'

# GET the auth URL without a cookie jar, following only hops on the issuer;
# prints the final Location (the loopback redirect) and the hop count.
authorize() { # client_id state [challenge]
  local url="$AUTH?response_type=code&client_id=$1&redirect_uri=http%3A%2F%2F127.0.0.1%3A54321%2F&scope=$SCOPE&state=$2&access_type=offline&prompt=consent"
  [ -n "${3:-}" ] && url="$url&code_challenge=$3&code_challenge_method=S256"
  local hops=0 loc
  while :; do
    hops=$((hops + 1))
    loc="$(curl -sS -o /dev/null -w '%{redirect_url}' "$url")"
    [ -n "$loc" ] || fail "no redirect from $url"
    case "$loc" in "$ISSUER"/*) url="$loc" ;; *) break ;; esac
  done
  echo "hops=$hops location=$loc" >&2
  printf '%s' "$loc"
}
post() { curl -sS -w '\nHTTP %{http_code}' -X POST "$@"; }

echo "== 1. authorize (test client)"
LOC="$(authorize gemini-oauth-test st4te "$CHALLENGE")"
[[ "$LOC" == "$REDIRECT?code="*"&state=st4te"* ]] || fail "unexpected location $LOC"
CODE="$(sed -E 's/.*[?&]code=([^&]*).*/\1/' <<<"$LOC")"

echo "== 2. wrong code_verifier -> invalid_grant (a fresh code)"
LOC2="$(authorize gemini-oauth-test s2 "$CHALLENGE")"
CODE2="$(sed -E 's/.*[?&]code=([^&]*).*/\1/' <<<"$LOC2")"
R="$(post "$TOKEN" -d grant_type=authorization_code -d "code=$CODE2" --data-urlencode "redirect_uri=$REDIRECT" \
  -d client_id=gemini-oauth-test -d client_secret=test-client-secret -d code_verifier=wrong-wrong-wrong-wrong-wrong-wrong-wrong-wrong)"
echo "$R"; grep -q '"error":"invalid_grant"' <<<"$R" && grep -q 'HTTP 400' <<<"$R" || fail "wrong verifier"

echo "== 3. exchange code"
R="$(post "$TOKEN" -d grant_type=authorization_code -d "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT" \
  -d client_id=gemini-oauth-test -d client_secret=test-client-secret -d "code_verifier=$VERIFIER")"
echo "$R"; grep -q 'HTTP 200' <<<"$R" || fail "code exchange"
grep -q '"scope":"https://www.googleapis.com/auth/generative-language.retriever https://www.googleapis.com/auth/cloud-platform"' <<<"$R" || fail "scope"
RT="$(sed -nE 's/.*"refresh_token":"([^"]*)".*/\1/p' <<<"$R")"; [ -n "$RT" ] || fail "no refresh_token"

echo "== 4. refresh"
R="$(post "$TOKEN" -d grant_type=refresh_token -d "refresh_token=$RT" -d client_id=gemini-oauth-test -d client_secret=test-client-secret)"
echo "$R"; grep -q 'HTTP 200' <<<"$R" && grep -q '"access_token"' <<<"$R" || fail "refresh"

echo "== 5. wrong client_secret -> 401 invalid_client"
R="$(post "$TOKEN" -d grant_type=refresh_token -d "refresh_token=$RT" -d client_id=gemini-oauth-test -d client_secret=nope)"
echo "$R"; grep -q '"error":"invalid_client"' <<<"$R" && grep -q 'HTTP 401' <<<"$R" || fail "invalid_client"

echo "== 6. revoke refresh token"
R="$(post "$REVOKE" -d "token=$RT" -d client_id=gemini-oauth-test -d client_secret=test-client-secret)"
echo "$R"; grep -q 'HTTP 200' <<<"$R" || fail "revoke"

echo "== 7. refresh after revoke -> 400 invalid_grant"
R="$(post "$TOKEN" -d grant_type=refresh_token -d "refresh_token=$RT" -d client_id=gemini-oauth-test -d client_secret=test-client-secret)"
echo "$R"; grep -q '"error":"invalid_grant"' <<<"$R" && grep -q 'HTTP 400' <<<"$R" || fail "refresh after revoke"

echo "== 8. no code_challenge -> rejected"
LOC="$(authorize gemini-oauth-test s3)"
[[ "$LOC" == "$REDIRECT?error=invalid_request"*"state=s3"* ]] || fail "PKCE not required: $LOC"

echo "== 9. deny client -> access_denied"
LOC="$(authorize gemini-oauth-deny d3ny "$CHALLENGE")"
[[ "$LOC" == "$REDIRECT?error=access_denied"*"state=d3ny"* ]] || fail "deny: $LOC"

echo "smoke: all checks passed"
