// A user's browser for the end-to-end consent test: `BROWSER="node
// tests/browser/consent.mjs"` makes a program that opens the consent URL
// (through the `webbrowser` crate) launch this. It opens the URL in Debian's
// headless Chromium, signs in and consents on the authorization server's own
// pages (oidc-provider's dev interactions: tests/oidc with OIDC_INTERACTIVE=1),
// lets the browser follow the redirect to the program's loopback listener, and
// writes what happened, and what the last page showed, as JSON to the file
// named by CONSENT_REPORT. See README.md here.
//
// The program that launches it does not wait for it and gives it no stdout
// or stderr: the report is its only output. It stops itself after
// CONSENT_DRIVER_TIMEOUT_SECS, and Chromium is closed (or killed, with its
// whole process group, by playwright's exit handler) before it exits.
import * as fs from 'node:fs';
import * as path from 'node:path';

const env = (name, dflt) => process.env[name] || dflt;
const REPORT = process.env.CONSENT_REPORT;
// `consent` clicks Continue; `cancel` follows the page's [ Cancel ] link;
// `none` stops on the consent page without answering it.
const ACTION = env('CONSENT_ACTION', 'consent');
const LOGIN = env('CONSENT_LOGIN', 'browser-user');
const TIMEOUT_SECS = Number(env('CONSENT_DRIVER_TIMEOUT_SECS', '60'));
const CHROMIUM = env('CONSENT_CHROMIUM', '/usr/bin/chromium');
// Everything Chromium writes goes under this directory (made fresh, and
// removed afterwards, when unset): its profile, and the HOME, config and
// cache that it and its crash handler use. Every Chromium process of this
// run names it on its command line, so a caller can check that none is left.
const BROWSER_DIR = process.env.CONSENT_BROWSER_DIR;
// The authorization server's origin, when the URL opened is not on it (a
// web app's /login that redirects there); default: the URL's own origin.
const ISSUER = process.env.CONSENT_ISSUER;
// `1`: the report also lists the cookies the browser holds for the URL
// opened (a web app's session), for the test to call the app as that user.
const REPORT_COOKIES = process.env.CONSENT_REPORT_COOKIES === '1';

const url = process.argv[process.argv.length - 1];
const report = {
  driver_pid: process.pid,
  action: ACTION,
  steps: [],
  final: null,
  blocked: [],
  browser_dir: null,
  browser_closed: false,
  error: null,
};

// Writes the report whole (a rename), so a reader never sees half of it.
function writeReport() {
  if (!REPORT) return;
  const tmp = `${REPORT}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(report, null, 2)}\n`);
  fs.renameSync(tmp, REPORT);
}

// The hard bound: whatever hangs, report and exit; exiting makes
// playwright SIGKILL Chromium's process group.
const deadline = setTimeout(() => {
  report.error = `${report.error ?? ''}driver timed out after ${TIMEOUT_SECS}s`;
  try { writeReport(); } finally { process.exit(3); }
}, TIMEOUT_SECS * 1000);

// Where a page is, without its query (which carries the code and state).
const where = (u) => {
  const p = new URL(u);
  return { host: p.host, path: p.pathname };
};

let context;
try {
  if (!/^https?:\/\//.test(url)) throw new Error(`not a URL: ${url}`);
  const issuer = ISSUER ? new URL(ISSUER).origin : new URL(url).origin;
  const { chromium } = await import('playwright-core');

  const dir = BROWSER_DIR ?? fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'consent-chromium-'));
  report.browser_dir = dir;
  const home = path.join(dir, 'home');
  fs.mkdirSync(home, { recursive: true });
  context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    env: {
      ...process.env,
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, '.config'),
      XDG_CACHE_HOME: path.join(home, '.cache'),
    },
    timeout: TIMEOUT_SECS * 1000,
    // No networking beyond this machine's loopback: Chromium's own
    // background services are off, and no host name resolves.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
  context.setDefaultTimeout(TIMEOUT_SECS * 1000);
  // Pages may ask for more (oidc-provider's pages @import a web font): only
  // 127.0.0.1 is let through; the rest is refused and listed in the report.
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    report.blocked.push(`${u.protocol}//${u.host}${u.pathname}`);
    return route.abort('blockedbyclient');
  });

  const page = context.pages()[0] ?? (await context.newPage());
  let lastStatus = null;
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastStatus = r.status();
  });
  // Runs `act` and waits until the main frame has navigated and loaded.
  const navigating = async (act) => {
    const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
    await act();
    await navigated;
    await page.waitForLoadState('load');
  };
  const heading = async () => (await page.locator('h1').first().textContent({ timeout: 1000 }).catch(() => null))?.trim() ?? null;

  await navigating(() => page.goto(url, { waitUntil: 'commit' }));
  // Answer the authorization server's pages until the browser leaves it.
  for (let n = 0; n < 5 && new URL(page.url()).origin === issuer; n += 1) {
    const login = page.locator('form input[name="login"]');
    const consent = page.locator('form:has(input[name="prompt"][value="consent"])');
    if (await login.count()) {
      const step = { page: 'login', ...where(page.url()), heading: await heading(), action: null };
      report.steps.push(step);
      await login.fill(LOGIN);
      await page.locator('form input[name="password"]').fill('any password');
      step.action = `filled the login form as ${LOGIN}`;
      await navigating(() => page.getByRole('button', { name: 'Sign-in' }).click());
      step.action += ' and clicked Sign-in';
    } else if (await consent.count()) {
      const step = {
        page: 'consent',
        ...where(page.url()),
        heading: await heading(),
        text: (await page.locator('.login-card').innerText()).trim(),
        action: null,
      };
      report.steps.push(step);
      if (ACTION === 'consent') {
        await navigating(() => consent.getByRole('button', { name: 'Continue' }).click());
        step.action = 'clicked Continue';
      } else if (ACTION === 'cancel') {
        await navigating(() => page.getByRole('link', { name: '[ Cancel ]' }).click());
        step.action = 'clicked [ Cancel ]';
      } else {
        step.action = 'left the page unanswered';
        break;
      }
    } else {
      break; // an error page of the server: reported as the final page
    }
  }

  report.final = {
    ...where(page.url()),
    status: lastStatus,
    title: await page.title(),
    text: (await page.locator('body').innerText()).trim(),
  };
  if (REPORT_COOKIES) {
    report.cookies = (await context.cookies(url)).map(({ name, value, expires }) => ({ name, value, expires }));
  }
} catch (e) {
  report.error = `${e?.stack ?? e}`;
} finally {
  if (context) {
    await context.close().catch((e) => { report.error = `${report.error ?? ''}\nclose: ${e}`; });
    report.browser_closed = true;
  }
  if (report.browser_dir && !BROWSER_DIR) fs.rmSync(report.browser_dir, { recursive: true, force: true });
  clearTimeout(deadline);
  writeReport();
}
process.exit(report.error ? 1 : 0);
