//! The matrix as data: the call kinds, the faults, and the documented
//! outcome of each cell. The tests run it and `guide::faults` shows it.

use std::time::Duration;

use super::server::Proto;

/// Every outbound call kind the matrix runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    TokenRefresh,
    CodeExchange,
    Revoke,
    Sts,
    UrlSubject,
    Iam,
    ServiceAccount,
    IdTokenSa,
    IdTokenIam,
    AwsImds,
    Metadata,
    ApiGet,
    Generate,
    Stream,
    Upload,
    UploadBytes,
}

impl Call {
    pub(super) const ALL: [Call; 16] = [
        Call::TokenRefresh,
        Call::CodeExchange,
        Call::Metadata,
        Call::Revoke,
        Call::Sts,
        Call::UrlSubject,
        Call::AwsImds,
        Call::Iam,
        Call::ServiceAccount,
        Call::IdTokenSa,
        Call::IdTokenIam,
        Call::ApiGet,
        Call::Generate,
        Call::Stream,
        Call::Upload,
        Call::UploadBytes,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Call::TokenRefresh => "token refresh",
            Call::CodeExchange => "code exchange (consent)",
            Call::Revoke => "revoke",
            Call::Sts => "STS exchange",
            Call::UrlSubject => "url-sourced subject token",
            Call::Iam => "IAM generateAccessToken",
            Call::ServiceAccount => "service-account grant",
            Call::IdTokenSa => "ID token, service-account key (`target_audience`)",
            Call::IdTokenIam => "ID token, IAM generateIdToken",
            Call::AwsImds => "AWS IMDS (session, region, role, keys)",
            Call::Metadata => "metadata token",
            Call::ApiGet => "API GET (list models)",
            Call::Generate => "generateContent",
            Call::Stream => "SSE stream",
            Call::Upload => "upload (start, bytes, finalize)",
            Call::UploadBytes => "upload bytes (status faults after the start)",
        }
    }

    /// Retried with backoff on transient faults (the README's retry
    /// policy): every request of the token endpoint client but the code
    /// exchange (an authorization code is used once; revoke too,
    /// the service-account grant), the upload's query and resume after a
    /// failed piece (Google's resumable protocol),
    /// the metadata server, STS, IAM and API GETs. Not the subject
    /// token URL nor AWS IMDS (as google-auth), nor POSTs to the API.
    pub(super) fn retried(self) -> bool {
        matches!(
            self,
            Call::TokenRefresh
                | Call::Revoke
                | Call::ServiceAccount
                | Call::IdTokenSa
                | Call::IdTokenIam
                | Call::Metadata
                | Call::Sts
                | Call::Iam
                | Call::ApiGet
                | Call::UploadBytes
        )
    }

    /// Credential sources on this machine never go through a proxy.
    pub(super) fn proxied(self) -> bool {
        !matches!(self, Call::UrlSubject | Call::AwsImds | Call::Metadata)
    }

    /// The metadata server speaks plain HTTP; everything else is TLS.
    pub(super) fn protos(self) -> &'static [Proto] {
        match self {
            Call::Metadata => &[Proto::Plain],
            _ => &[Proto::H1, Proto::H2],
        }
    }

    /// The paths (or their tails) of the endpoints the fault sits in front
    /// of: an error names the one whose request failed.
    pub(super) fn stages(self) -> &'static [&'static str] {
        match self {
            Call::TokenRefresh
            | Call::CodeExchange
            | Call::Sts
            | Call::ServiceAccount
            | Call::IdTokenSa => &["/token"],
            Call::AwsImds => &["/latest/"],
            Call::Metadata => &["/computeMetadata/v1/instance/service-accounts/default/token"],
            Call::Revoke => &["/revoke"],
            Call::UrlSubject => &["/subject"],
            Call::Iam => &[":generateAccessToken"],
            Call::IdTokenIam => &[":generateIdToken"],
            Call::ApiGet => &["/v1/models"],
            Call::Generate => &[":generateContent"],
            Call::Stream => &[":streamGenerateContent"],
            Call::Upload => &["/upload/v1beta/files", "/upload-session/"],
            Call::UploadBytes => &["/upload-session/"],
        }
    }
}

/// Every fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    Refused,
    Reset,
    SilentAfterAccept,
    SilentAfterHandshake,
    DripHeaders,
    BodyCut,
    Burst5xx,
    TooMany429,
    Latency,
}

impl Fault {
    pub(super) const ALL: [Fault; 9] = [
        Fault::Refused,
        Fault::Reset,
        Fault::SilentAfterAccept,
        Fault::SilentAfterHandshake,
        Fault::DripHeaders,
        Fault::BodyCut,
        Fault::Burst5xx,
        Fault::TooMany429,
        Fault::Latency,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Fault::Refused => "connection refused",
            Fault::Reset => "reset after accept",
            Fault::SilentAfterAccept => "silent after accept",
            Fault::SilentAfterHandshake => "silent after TLS / CONNECT",
            Fault::DripHeaders => "headers 1 byte/s",
            Fault::BodyCut => "body cut midway",
            Fault::Burst5xx => "2×503 then ok",
            Fault::TooMany429 => "429 Retry-After: 1 then ok",
            Fault::Latency => "2 s latency",
        }
    }

    /// A fault of the upstream server (a status or a cut body), which can
    /// single out one endpoint; the others are the connection's.
    pub(super) fn server_side(self) -> bool {
        matches!(self, Fault::BodyCut | Fault::Burst5xx | Fault::TooMany429)
    }
}

/// Direct to the endpoint, or through an HTTP `CONNECT` proxy (the faults
/// then sit between the client and the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Direct,
    Proxied,
}

/// What a cell's call must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Success at once.
    Ok,
    /// Success after retries the endpoint saw.
    Recovered,
    /// `Error::Transport` naming the endpoint.
    Transport,
    /// `Error::Timeout` naming the endpoint.
    Timeout,
    /// `Error::Proxy` naming the proxy.
    Proxy,
    /// An error carrying this HTTP status and naming the endpoint
    /// (`Api`, `TokenResponse`, `Impersonation`, `ExternalAccount`).
    Status(u16),
}

impl Outcome {
    pub(super) fn label(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Recovered => "ok after retries".into(),
            Outcome::Transport => "Transport".into(),
            Outcome::Timeout => "Timeout".into(),
            Outcome::Proxy => "Proxy".into(),
            Outcome::Status(s) => format!("HTTP {s}"),
        }
    }
}

/// The deadlines every cell configures (loader and client options).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(7);
pub(super) const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
/// After a failed refresh the token cache serves that error, without a
/// request, for this long (doubling with each further failure).
pub(super) const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Attempts a retried call makes at most (google-auth's metadata: five).
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// The documented outcome of `call` under `fault` on `route`; `None` where
/// the cell does not exist (a call that is never proxied).
pub(super) fn expected(call: Call, fault: Fault, route: Route) -> Option<Outcome> {
    if route == Route::Proxied && !call.proxied()
        || fault == Fault::SilentAfterHandshake && !call.protos().contains(&Proto::H1)
        || call == Call::UploadBytes && !fault.server_side()
    {
        return None;
    }
    let proxied = route == Route::Proxied;
    Some(match fault {
        Fault::Refused | Fault::Reset if proxied => Outcome::Proxy,
        Fault::Refused | Fault::Reset => Outcome::Transport,
        // The CONNECT is never answered: the proxy is unreachable.
        Fault::SilentAfterAccept if proxied => Outcome::Proxy,
        // Connect, CONNECT and TLS under the connect timeout; the head under the idle limit.
        Fault::SilentAfterAccept | Fault::SilentAfterHandshake | Fault::DripHeaders => {
            Outcome::Timeout
        }
        Fault::BodyCut => Outcome::Transport,
        Fault::Burst5xx | Fault::TooMany429 if call.retried() => Outcome::Recovered,
        Fault::Burst5xx => Outcome::Status(503),
        Fault::TooMany429 => Outcome::Status(429),
        Fault::Latency => Outcome::Ok,
    })
}

/// A generous bound on one cell's call: every attempt at its deadline,
/// plus backoff. A hang check, not a performance threshold.
pub(super) fn bound(call: Call) -> Duration {
    let attempt = TOKEN_TIMEOUT.max(CONNECT_TIMEOUT + IDLE_TIMEOUT);
    let attempts = if call.retried() { MAX_ATTEMPTS } else { 1 };
    attempt * attempts + Duration::from_secs(10)
}

/// The table as markdown, from the same data the tests run.
pub(super) fn markdown() -> String {
    let mut out = String::from("| call | route |");
    for f in Fault::ALL {
        out += &format!(" {} |", f.name());
    }
    out += "\n|---|---|";
    out += &"---|".repeat(Fault::ALL.len());
    out += "\n";
    for call in Call::ALL {
        for route in [Route::Direct, Route::Proxied] {
            if !call.proxied() && route == Route::Proxied {
                continue;
            }
            let r = if route == Route::Direct {
                "direct"
            } else {
                "proxy"
            };
            out += &format!("| {} | {r} |", call.name());
            for f in Fault::ALL {
                let cell = expected(call, f, route).map_or("n/a".into(), Outcome::label);
                out += &format!(" {cell} |");
            }
            out += "\n";
        }
    }
    out
}
