#!/usr/bin/env bash
# Whole-process time of printing a cached token, as a person running it for
# curl feels it: `print_access_token` (release build) against the Gemini
# quickstart's Python `load_creds.py` on the same valid token.json.
# Installs hyperfine (Debian) and a venv with google-auth + google-auth-oauthlib.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
if ! .venv-bench/bin/python -c 'import google_auth_oauthlib' 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q --disable-pip-version-check -r benches/python/requirements.txt
fi
cargo build --release --example print_access_token --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
expiry="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
printf '{"token": "ya29.bench", "refresh_token": "1//r", "token_uri": "https://oauth2.googleapis.com/token", "client_id": "c", "client_secret": "s", "scopes": ["https://www.googleapis.com/auth/generative-language.retriever"], "universe_domain": "googleapis.com", "account": "", "expiry": "%s"}' "$expiry" > "$work/token.json"
chmod 600 "$work/token.json"
cd "$work"
# Both must print the cached token and touch nothing else.
test "$("$ROOT/target/release/examples/print_access_token" --no-consent)" = ya29.bench
test "$("$ROOT/.venv-bench/bin/python" "$ROOT/benches/python/load_creds.py")" = ya29.bench
hyperfine --warmup 5 --runs "${RUNS:-50}" -N --export-json "$ROOT/target/whole_process.json" \
  -n print_access_token "$ROOT/target/release/examples/print_access_token --no-consent" \
  -n load_creds.py "$ROOT/.venv-bench/bin/python $ROOT/benches/python/load_creds.py"
