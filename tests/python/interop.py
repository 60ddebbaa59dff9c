"""google-auth side of the token.json interop tests (driven by tests/python_interop.rs).

  write-expired OUT TOKEN_URI     write Credentials.to_json() of an expired credential
  write-refreshed OUT TOKEN_URI   refresh against TOKEN_URI, then write to_json()
  roundtrip IN                    print to_json() of from_authorized_user_file(IN)
  refresh IN TOKEN_URI            load IN with the quickstart's scopes, refresh
                                  against TOKEN_URI, print a JSON report
  adc-default TOKEN_URI           google.auth.default() (CLOUDSDK_CONFIG from the
                                  environment), refresh against TOKEN_URI, report
  id-token AUDIENCE               google.oauth2.id_token.fetch_id_token_credentials
                                  (GOOGLE_APPLICATION_CREDENTIALS or GCE_METADATA_HOST
                                  from the environment; IAM_IDTOKEN_ENDPOINT replaces
                                  IAM's), refresh, report the token and its expiry
  user-id-token IN TOKEN_URI      refresh the authorized_user file IN against
                                  TOKEN_URI, report Credentials.id_token
  adc-file SCOPES_JSON [revoke]   google.auth.default(scopes) on the file named by
                                  GOOGLE_APPLICATION_CREDENTIALS, refresh with the
                                  endpoints the file names, report (then revoke)
"""
import datetime
import json
import os
import sys

import google.auth
import google.auth.transport.requests
from google.oauth2.credentials import Credentials

SCOPES = ["https://www.googleapis.com/auth/generative-language.retriever"]


def new_credentials(token_uri):
    return Credentials(
        token="ya29.PYTHONOLD",
        refresh_token="1//PYTHONREFRESH",
        token_uri=token_uri,
        client_id="python-client.apps.googleusercontent.com",
        client_secret="GOCSPX-PYTHONSECRET",
        scopes=SCOPES,
        expiry=datetime.datetime(2020, 1, 2, 3, 4, 5, 123456),
    )


def main(cmd, *args):
    if cmd == "write-expired":
        out, token_uri = args
        with open(out, "w") as f:
            f.write(new_credentials(token_uri).to_json())
    elif cmd == "write-refreshed":
        out, token_uri = args
        creds = new_credentials(token_uri)
        creds.refresh(google.auth.transport.requests.Request())
        with open(out, "w") as f:
            f.write(creds.to_json())
    elif cmd == "roundtrip":
        (path,) = args
        sys.stdout.write(Credentials.from_authorized_user_file(path).to_json())
    elif cmd == "refresh":
        path, token_uri = args
        creds = Credentials.from_authorized_user_file(path, SCOPES)
        report = {"valid_before": creds.valid, "token_before": creds.token,
                  "refresh_token": creds.refresh_token, "client_id": creds.client_id,
                  "expiry_before": creds.expiry.isoformat() if creds.expiry else None}
        # google-auth always resets token_uri to Google's endpoint on load.
        creds._token_uri = token_uri
        creds.refresh(google.auth.transport.requests.Request())
        report.update(valid_after=creds.valid, token_after=creds.token)
        print(json.dumps(report))
    elif cmd == "adc-default":
        (token_uri,) = args
        # CLOUDSDK_CONFIG (set by the caller) points at the ADC file.
        creds, project = google.auth.default(scopes=SCOPES)
        report = {"class": type(creds).__module__ + "." + type(creds).__name__,
                  "refresh_token": creds.refresh_token, "client_id": creds.client_id,
                  "quota_project_id": creds.quota_project_id}
        creds._token_uri = token_uri
        creds.refresh(google.auth.transport.requests.Request())
        report.update(valid_after=creds.valid, token_after=creds.token)
        print(json.dumps(report))
    elif cmd == "adc-file":
        scopes = json.loads(args[0])
        creds, _ = google.auth.default(scopes=scopes)
        with open(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]) as f:
            info = json.load(f)
        if info.get("type") == "impersonated_service_account":
            # google-auth takes only the account from the file's URL and asks
            # Google's host; aim it at the file's URL, as gemini-oauth does.
            creds._iam_endpoint_override = info["service_account_impersonation_url"]
            # google-auth always puts Google's token_uri on a user's source
            # credentials; aim them at the file's, as gemini-oauth does.
            source = info["source_credentials"]
            if source.get("type") == "authorized_user" and "token_uri" in source:
                creds._source_credentials._token_uri = source["token_uri"]
        creds.refresh(google.auth.transport.requests.Request())
        report = {"class": type(creds).__module__ + "." + type(creds).__name__,
                  "token": creds.token, "quota_project_id": creds.quota_project_id,
                  "valid": creds.valid}
        if args[1:] == ("revoke",):
            creds.revoke(google.auth.transport.requests.Request())
            report["revoked"] = True
        print(json.dumps(report))
    elif cmd == "id-token":
        (audience,) = args
        from google.auth import iam
        from google.oauth2 import id_token

        if os.environ.get("IAM_IDTOKEN_ENDPOINT"):
            iam._IAM_IDTOKEN_ENDPOINT = os.environ["IAM_IDTOKEN_ENDPOINT"]
        request = google.auth.transport.requests.Request()
        creds = id_token.fetch_id_token_credentials(audience, request=request)
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            with open(path) as f:
                info = json.load(f)
            source = info.get("source_credentials", {})
            # As in adc-file: aim a user source at the file's token_uri.
            if source.get("type") == "authorized_user" and "token_uri" in source:
                creds._target_credentials._source_credentials._token_uri = source["token_uri"]
        creds.refresh(request)
        print(json.dumps({"class": type(creds).__module__ + "." + type(creds).__name__,
                          "token": creds.token,
                          "expiry": creds.expiry.replace(tzinfo=datetime.timezone.utc).timestamp()}))
    elif cmd == "user-id-token":
        path, token_uri = args
        creds = Credentials.from_authorized_user_file(path)
        creds._token_uri = token_uri
        creds.refresh(google.auth.transport.requests.Request())
        print(json.dumps({"id_token": creds.id_token, "token": creds.token}))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(*sys.argv[1:])
