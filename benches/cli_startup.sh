#!/usr/bin/env bash
# Whole-process time of `gemini-oauth print-access-token` (release build,
# feature cli) beside the real gcloud's `auth application-default
# print-access-token` and the quickstart's Python `load_creds.py`, in one
# hyperfine run on one machine:
#   - gemini-oauth and load_creds.py on the same valid token.json (cached:
#     no request);
#   - gemini-oauth --adc and gcloud on the same ADC file (gcloud keeps no
#     access token for ADC: both refresh, at a local token host on 127.0.0.1).
# Installs hyperfine (Debian) and the venv of benches/whole_process.sh;
# gcloud must be there (GEMINI_OAUTH_GCLOUD, else gcloud on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
if ! .venv-bench/bin/python -c 'import google_auth_oauthlib' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q --disable-pip-version-check -r benches/python/requirements.txt
fi
GCLOUD="${GEMINI_OAUTH_GCLOUD:-$(command -v gcloud)}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release --features cli --bin gemini-oauth --locked -q
TOOL="$TARGET/release/gemini-oauth"

work="$(mktemp -d)"
coproc HOST { exec python3 "$ROOT/benches/python/token_host.py"; }
trap 'kill "$HOST_PID" 2>/dev/null; rm -rf "$work"' EXIT
read -r port <&"${HOST[0]}"
token_uri="http://127.0.0.1:$port/token"

expiry="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
printf '{"token": "ya29.bench", "refresh_token": "1//r", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "c", "client_secret": "s", "scopes": ["https://www.googleapis.com/auth/generative-language.retriever"], "universe_domain": "googleapis.com", "account": "", "expiry": "%s"}' "$expiry" > "$work/token.json"
mkdir -p "$work/gcloud"
printf '{\n  "account": "",\n  "client_id": "c.apps.googleusercontent.com",\n  "client_secret": "s",\n  "refresh_token": "1//r",\n  "type": "authorized_user",\n  "universe_domain": "googleapis.com"\n}' > "$work/gcloud/application_default_credentials.json"
chmod 600 "$work/token.json" "$work/gcloud/application_default_credentials.json"
cd "$work"
unset GOOGLE_APPLICATION_CREDENTIALS CLOUDSDK_ACTIVE_CONFIG_NAME
export HOME="$work" CLOUDSDK_CONFIG="$work/gcloud" CLOUDSDK_AUTH_TOKEN_HOST="$token_uri" \
  CLOUDSDK_CORE_DISABLE_PROMPTS=1 CLOUDSDK_CORE_CHECK_GCE_METADATA=false \
  CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=true CLOUDSDK_CORE_DISABLE_USAGE_REPORTING=true \
  NO_PROXY="127.0.0.1,localhost,::1" no_proxy="127.0.0.1,localhost,::1"

# Each must print its token and nothing else.
test "$("$TOOL" print-access-token)" = ya29.bench
test "$("$ROOT/.venv-bench/bin/python" "$ROOT/benches/python/load_creds.py")" = ya29.bench
test "$("$TOOL" print-access-token --adc --token-uri "$token_uri")" = ya29.bench-refreshed
test "$("$GCLOUD" auth application-default print-access-token)" = ya29.bench-refreshed

hyperfine --warmup 3 --runs "${RUNS:-30}" -N --export-json "$TARGET/cli_startup.json" \
  -n "gemini-oauth print-access-token (token.json)" "$TOOL print-access-token" \
  -n "load_creds.py (token.json)" "$ROOT/.venv-bench/bin/python $ROOT/benches/python/load_creds.py" \
  -n "gemini-oauth print-access-token --adc (refresh)" "$TOOL print-access-token --adc --token-uri $token_uri" \
  -n "gcloud auth application-default print-access-token (refresh)" "$GCLOUD auth application-default print-access-token"
