"""google-auth side of the external_account interop tests (driven by
tests/it/external_account.rs): google.auth.default() on the file named by
GOOGLE_APPLICATION_CREDENTIALS, then refresh(), against the local endpoints
the file names.

  refresh SCOPE CRM_URL [FIXED_NOW]

CRM_URL stands in for cloudresourcemanager (default() asks it for the
project id); FIXED_NOW (YYYYmmddTHHMMSSZ) fixes google-auth's clock, so an
AWS request is signed at the same second as the Rust run being compared.
Prints {"class": ..., "token": ...}.
"""
import datetime
import json
import sys
from unittest import mock

import google.auth
import google.auth._helpers
import google.auth.external_account
import google.auth.transport.requests


def main(cmd, scope, crm_url, fixed_now=None):
    if cmd != "refresh":
        raise SystemExit("unknown command " + cmd)
    google.auth.external_account._CLOUD_RESOURCE_MANAGER = crm_url
    patches = []
    if fixed_now:
        now = datetime.datetime.strptime(fixed_now, "%Y%m%dT%H%M%SZ")
        patches.append(mock.patch.object(google.auth._helpers, "utcnow", return_value=now))
    for p in patches:
        p.start()
    creds, _ = google.auth.default(scopes=[scope])
    creds.refresh(google.auth.transport.requests.Request())
    print(json.dumps({"class": type(creds).__module__ + "." + type(creds).__name__,
                      "token": creds.token}))


if __name__ == "__main__":
    main(*sys.argv[1:])
