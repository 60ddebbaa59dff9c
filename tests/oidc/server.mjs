// Local OAuth 2.0 authorization server for gemini-oauth end-to-end tests.
// See README.md in this directory for the contract. Only 127.0.0.1 is bound.
//
// stdout carries exactly the OIDC_* lines (issuer last); everything else goes
// to stderr. oidc-provider prints some notices with console.info (stdout), so
// route every console method to stderr before anything else runs.
import { once } from 'node:events';
import * as crypto from 'node:crypto';
import * as http from 'node:http';

for (const m of ['log', 'info', 'debug']) {
  console[m] = (...args) => console.error(...args);
}

const { default: Provider, errors, interactionPolicy } = await import('oidc-provider');

const TEST_CLIENT = 'gemini-oauth-test';
const DENY_CLIENT = 'gemini-oauth-deny';
// A "Web application" client, registered only when its redirect URIs are
// given (space-separated): a web client's redirect URI must match exactly.
const WEB_CLIENT = 'gemini-oauth-web';
const WEB_REDIRECT_URIS = (process.env.OIDC_WEB_REDIRECT_URIS || '').split(' ').filter(Boolean);
const ACCOUNT_ID = 'test-user';
const GOOGLE_SCOPES = [
  'https://www.googleapis.com/auth/generative-language.retriever',
  'https://www.googleapis.com/auth/cloud-platform',
];

function intEnv(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`invalid ${name}=${raw}, using ${dflt}`);
    return dflt;
  }
  return n;
}

const ACCESS_TOKEN_TTL = intEnv('OIDC_ACCESS_TOKEN_TTL', 3600);
const MAX_LIFETIME_SECS = intEnv('OIDC_MAX_LIFETIME_SECS', 600);
const ROTATE_REFRESH = process.env.OIDC_ROTATE_REFRESH === '1';
// Interactive mode: oidc-provider's own development login and consent pages
// (HTML forms a browser must fill and submit) instead of the automatic user.
const INTERACTIVE = process.env.OIDC_INTERACTIVE === '1';

// --- lifetime: die with the parent's stdin pipe, or after the max lifetime ---
function shutdown(why) {
  console.error(`oidc test server exiting: ${why}`);
  process.exit(0);
}
process.stdin.on('end', () => shutdown('stdin ended'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();
setTimeout(() => shutdown(`max lifetime ${MAX_LIFETIME_SECS}s reached`), MAX_LIFETIME_SECS * 1000);

// --- bind first so the issuer can carry the real port ---
const server = http.createServer();
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// Fresh throwaway keys per process: nothing secret is committed.
const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'dev-rs256',
  use: 'sig',
  alg: 'RS256',
};

// Interaction policy: the standard one minus the checks that would force a
// browser round trip although the automatic user has already "logged in" and
// "consented" (see Session.get / loadExistingGrant below). Interactive mode
// keeps the standard policy: a new session must log in, and a native client
// (or prompt=consent) always gets the consent page.
const policy = interactionPolicy.base();
if (!INTERACTIVE) {
  policy.get('login').checks.remove('login_prompt'); // prompt=login is accepted but needs no UI
  policy.get('consent').checks.remove('consent_prompt'); // prompt=consent likewise
  policy.get('consent').checks.remove('native_client_prompt'); // native clients always prompt otherwise
}

const client = (clientId, secret) => ({
  client_id: clientId,
  client_secret: secret,
  token_endpoint_auth_method: 'client_secret_post',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  application_type: 'native',
  // native + loopback: any port on 127.0.0.1 matches (RFC 8252 §7.3)
  redirect_uris: ['http://127.0.0.1/'],
});

const webClients = WEB_REDIRECT_URIS.length === 0 ? [] : [{
  ...client(WEB_CLIENT, 'web-client-secret'),
  application_type: 'web',
  redirect_uris: WEB_REDIRECT_URIS,
}];

const provider = new Provider(issuer, {
  clients: [
    client(TEST_CLIENT, 'test-client-secret'),
    client(DENY_CLIENT, 'deny-client-secret'),
    ...webClients,
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  // Google's scope URLs are registered as plain static scopes, so a request
  // without `openid` is an ordinary OAuth 2.0 request and these scopes are
  // granted and echoed in the token response `scope`.
  scopes: ['openid', 'offline_access', 'email', ...GOOGLE_SCOPES],
  // With `openid email`, the ID token names the user: sub is the login name.
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: { required: () => true }, // only S256 exists in oidc-provider 9
  routes: {
    authorization: '/auth',
    token: '/token',
    revocation: '/token/revocation',
  },
  features: {
    // In interactive mode: GET/POST /interaction/:uid, a login form (any
    // login name and password) and then a consent form with a Continue button.
    devInteractions: { enabled: INTERACTIVE },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, c, token) => token.clientId === c.clientId,
    },
  },
  interactions: { policy },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@example.test`, email_verified: true }),
  }),
  // The automatic user: always consents for the test client (grants every
  // requested, known scope), always denies for the deny client. In
  // interactive mode the test client gets oidc-provider's default: the grant
  // that the consent page just made, or none (so the consent page is shown).
  loadExistingGrant: async (ctx) => {
    const { client: c, session } = ctx.oidc;
    if (c.clientId === DENY_CLIENT) {
      throw new errors.AccessDenied('the automatic test user denied the request');
    }
    if (INTERACTIVE) {
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(c.clientId);
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    }
    const grant = new ctx.oidc.provider.Grant({ accountId: session.accountId, clientId: c.clientId });
    const scope = [...ctx.oidc.requestParamOIDCScopes].join(' ');
    if (scope) grant.addOIDCScope(scope);
    await grant.save();
    return grant;
  },
  issueRefreshToken: async (ctx, c) => c.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => ROTATE_REFRESH,
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 60 * 60,
    Interaction: 600,
    Session: 3600,
    Grant: 14 * 24 * 60 * 60,
  },
  clientBasedCORS: () => false,
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Automatic login without any HTML or cookie round trip: every authorization
// request gets a session that is already authenticated as `test-user`.
// (Session.get is what the authorization endpoint uses to load the session.)
// Not in interactive mode: there the login page does it.
if (!INTERACTIVE) {
  const originalSessionGet = provider.Session.get;
  provider.Session.get = async function autoLoginSessionGet(ctx) {
    const session = await originalSessionGet.call(this, ctx);
    if (ctx.oidc?.route === 'authorization' && !session.accountId) {
      session.loginAccount({ accountId: ACCOUNT_ID });
    }
    return session;
  };
}

// One stderr line per interaction page shown and per interaction finished
// (only interactive mode has any).
provider.on('interaction.started', (ctx, prompt) => {
  console.error(`oidc interaction.started: ${prompt.name} (${prompt.reasons.join(', ')})`);
});
provider.on('interaction.ended', (ctx) => {
  const r = ctx.oidc.result ?? {};
  console.error(`oidc interaction.ended: ${Object.keys(r).join(', ')}${r.login ? ` account ${r.login.accountId}` : ''}`);
});

for (const ev of ['server_error', 'authorization.error', 'grant.error', 'revocation.error']) {
  provider.on(ev, (ctx, err) => {
    console.error(`oidc ${ev}: ${err?.error ?? ''} ${err?.error_description ?? err?.message ?? err}`);
  });
}

server.on('request', provider.callback());

const url = (route) => new URL(route, issuer).href;
process.stdout.write([
  `OIDC_AUTH=${url('/auth')}`,
  `OIDC_TOKEN=${url('/token')}`,
  `OIDC_REVOKE=${url('/token/revocation')}`,
  `OIDC_ISSUER=${issuer}`,
  '',
].join('\n'));
console.error(`oidc test server ready on ${issuer} (max lifetime ${MAX_LIFETIME_SECS}s, access token ttl ${ACCESS_TOKEN_TTL}s, rotate refresh ${ROTATE_REFRESH}, interactive ${INTERACTIVE})`);
