"""google-genai side of the from_env() table (driven by tests/it/sdk_env.rs).

  genai_choice.py < ROWS_JSON

ROWS_JSON is a list of {"env": {...}, "explicit": {...}}. For each row, the
process environment becomes exactly "env" and google.genai.Client(**explicit)
is built (base_url and api_version go in http_options; no request is sent).
Prints a JSON list, one report per row: what the client chose (vertexai,
base_url, api_version, project, location, whether an API key is used), or the
error its constructor raised, and every socket connection attempted meanwhile
(none gets through: each attempt is refused and reported).
"""
import json
import os
import socket
import sys

attempts = []
_connect = socket.socket.connect


def _refuse(self, address):
    attempts.append(repr(address))
    raise OSError("genai_choice.py: no network calls while building a client")


socket.socket.connect = _refuse
socket.socket.connect_ex = lambda self, address: (_refuse(self, address), 1)[1]

from google import genai  # noqa: E402


def choice(row):
    """The report for one row."""
    os.environ.clear()
    os.environ.update(row["env"])
    explicit = dict(row["explicit"])
    http_options = {k: explicit.pop(k) for k in ("base_url", "api_version") if k in explicit}
    if http_options:
        explicit["http_options"] = http_options
    attempts.clear()
    try:
        a = genai.Client(**explicit)._api_client
        report = {
            "ok": True,
            "vertexai": bool(a.vertexai),
            "base_url": a._http_options.base_url,
            "api_version": a._http_options.api_version,
            "project": a.project or None,
            "location": a.location or None,
            "api_key": bool(a.api_key),
        }
    except Exception as e:  # the constructor's ValueError or google-auth's error
        report = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    report["connects"] = list(attempts)
    return report


print(json.dumps([choice(row) for row in json.load(sys.stdin)]))
