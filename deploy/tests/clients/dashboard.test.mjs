// Drives the dispatcher's /admin/ dashboard in headless Debian chromium with playwright-core.
// Started by run.sh, which sets up the stack and the queue state and passes it in DASH_*
// variables. Prints one "ok"/"FAIL" line per check and "RESULT passed=N failed=M" last;
// exits non-zero on any failure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { need } from './checks.mjs';

const API = need('DASH_API');
const ADMIN_TOKEN = need('DASH_ADMIN_TOKEN');
const USER_TOKEN = need('DASH_USER_TOKEN');
const QUEUED = need('DASH_QUEUED_JOB');
const HELD = need('DASH_HELD_JOB');
const CONSUMER = need('DASH_CONSUMER');
const TENANT = need('DASH_TENANT');
const DEAD_REQUEUE = need('DASH_DEAD_REQUEUE');
const DEAD_DISCARD = need('DASH_DEAD_DISCARD');
const ERROR_REQUEUE = need('DASH_ERROR_REQUEUE');
const ERROR_DISCARD = need('DASH_ERROR_DISCARD');
const QUARANTINE_REASON = need('DASH_QUARANTINE_REASON');
const QUARANTINE_ERROR = need('DASH_QUARANTINE_ERROR');
const CHROMIUM = process.env.DASH_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = need('DASH_SCREENSHOT');
const Q = 'sdxl_queue';
const TIMEOUT = 15000;
const UNKNOWN_ID = '0190f5d4-0000-7000-8000-000000000000';

let passed = 0;
let failed = 0;
let page;

async function check(name, fn) {
  try {
    const detail = await fn();
    passed += 1;
    console.log(`ok    ${name}${detail !== undefined ? ` (${detail})` : ''}`);
    return true;
  } catch (e) {
    failed += 1;
    const message = String((e && e.message) || e).split('\n').slice(0, 8).join('\n      ');
    console.log(`FAIL  ${name}\n      ${message}`);
    return false;
  }
}

class Stop extends Error {}

/** A check the rest depends on: when it fails, the run stops here. */
async function gate(name, fn) {
  if (!(await check(name, fn))) throw new Stop(name);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Retries `fn` (which throws until satisfied) until it passes or `ms` run out. */
async function eventually(fn, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 150));
    }
  }
}

async function api(method, urlPath, token = ADMIN_TOKEN, body) {
  const res = await fetch(`${API}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

const tid = (id) => page.getByTestId(id);
const text = async (id) => ((await tid(id).textContent({ timeout: TIMEOUT })) || '').trim();

fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpuq-dashboard-chromium-'));
const consoleProblems = [];
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: process.env.GPUQ_DASHBOARD_HEADED !== '1',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 1000 },
    deviceScaleFactor: 1,
    timeout: 60000,
  });
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => consoleProblems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // Failed requests are judged by their answers below, which carry the URL.
    if (/^Failed to load resource: the server responded with a status of \d+/.test(m.text())) return;
    consoleProblems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    const reason = r.failure()?.errorText;
    // A poll the page itself abandons (it logged out, reloaded or navigated while a GET was
    // in flight) ends net::ERR_ABORTED: the client cancelled it, the server did not fail it.
    if (reason === 'net::ERR_ABORTED' && r.method() === 'GET') return;
    consoleProblems.push(`request failed: ${r.method()} ${r.url()} ${reason}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const { pathname } = new URL(r.url());
    const seen = `${r.status()} ${r.request().method()} ${pathname}`;
    // Expected: refused tokens (wrong, a user's, rotated) and the lookup of an unknown id.
    const expected =
      /^40[13] GET \/admin\/(queues|workers|failures|queues\/[a-z_]+\/dead)$/.test(seen) ||
      seen === `404 GET /v1/jobs/${UNKNOWN_ID}`;
    if (!expected) consoleProblems.push(`unexpected answer: ${seen}`);
  });

  await gate(`chromium ${context.browser() ? context.browser().version() : ''} started headless`.trim(), async () => {
    assert(page, 'no page');
  });

  // --- The shell ---------------------------------------------------------------------------
  let response;
  await gate('GET /admin redirects to /admin/, which serves the page under a strict CSP', async () => {
    response = await page.goto(`${API}/admin`, { waitUntil: 'load' });
    assert(new URL(page.url()).pathname === '/admin/', `landed on ${page.url()}`);
    const h = response.headers();
    assert((h['content-security-policy'] || '').startsWith("default-src 'self'"), `CSP: ${h['content-security-policy']}`);
    assert(h['cache-control'] === 'no-cache', `cache-control: ${h['cache-control']}`);
    return h['content-security-policy'].split(';')[0];
  });
  await check('before login only the login form shows (no data on the page)', async () => {
    await tid('login-view').waitFor({ state: 'visible' });
    assert(!(await tid('dashboard-view').isVisible()), 'dashboard visible');
    assert((await page.locator('#queues-body tr').count()) === 0, 'queue rows rendered');
  });

  // --- Login -------------------------------------------------------------------------------
  await check('a wrong token is refused with a message and not kept', async () => {
    await tid('token-input').fill('not-the-admin-token');
    await tid('login-button').click();
    await tid('login-message').waitFor({ state: 'visible' });
    const msg = await text('login-message');
    assert(/401/.test(msg), `message: ${msg}`);
    assert(!(await tid('dashboard-view').isVisible()), 'dashboard visible');
    const stored = await page.evaluate(() => sessionStorage.length);
    assert(stored === 0, 'sessionStorage not empty');
    return msg;
  });
  await gate('the admin token logs in and is kept in sessionStorage', async () => {
    await tid('token-input').fill(ADMIN_TOKEN);
    await tid('login-button').click();
    await tid('dashboard-view').waitFor({ state: 'visible' });
    const stored = await page.evaluate(() => Object.values(sessionStorage));
    assert(stored.includes(ADMIN_TOKEN), 'token not in sessionStorage');
    const local = await page.evaluate(() => localStorage.length);
    assert(local === 0, 'something in localStorage');
  });

  // --- Queues ------------------------------------------------------------------------------
  let waitingBefore = 0;
  await check(`the queued job shows: ${Q} waiting >= 1`, async () => {
    await tid(`queue-row-${Q}`).waitFor();
    waitingBefore = await eventually(async () => {
      const n = Number(await text(`waiting-${Q}`));
      assert(n >= 1, `waiting ${n}`);
      return n;
    });
    return `waiting ${waitingBefore}, in flight ${await text(`inflight-${Q}`)}, dead ${await text(`dead-${Q}`)}`;
  });
  await check(`${Q} shows 1 in flight, 2 dead, 1 live worker`, async () =>
    eventually(async () => {
      const got = [await text(`inflight-${Q}`), await text(`dead-${Q}`), await text(`workers-${Q}`)].join('/');
      assert(got === '1/2/1', `in flight/dead/workers = ${got}`);
      return got;
    }));
  await check(`job search by id shows ${QUEUED} as queued`, async () => {
    await tid('job-search-input').fill(QUEUED);
    await tid('job-search-button').click();
    await eventually(async () => assert((await text('job-id')) === QUEUED, `id ${await text('job-id')}`));
    const status = await text('job-status');
    assert(status === 'queued', `status ${status}`);
    return `${status}, ${await text('job-type')} on ${await text('job-queue')}`;
  });
  await check('an unknown id says so', async () => {
    await tid('job-search-input').fill(UNKNOWN_ID);
    await tid('job-search-button').click();
    const msg = await eventually(async () => {
      const m = await text('job-error-message');
      assert(/No job/.test(m), m);
      return m;
    });
    return msg;
  });
  await check('a job enqueued now appears without a reload (live polling)', async () => {
    const res = await api('POST', '/v1/jobs', USER_TOKEN, {
      jobType: 'sdxl_image_fast',
      metadata: { prompt: 'a lighthouse in fog (enqueued while watching)', num_images: 1 },
    });
    assert(res.status === 202, `enqueue answered ${res.status} ${JSON.stringify(res.body)}`);
    const started = Date.now();
    await eventually(async () => {
      const n = Number(await text(`waiting-${Q}`));
      assert(n === waitingBefore + 1, `waiting ${n}, expected ${waitingBefore + 1}`);
    }, 8000);
    waitingBefore += 1;
    return `waiting ${waitingBefore} after ${Date.now() - started} ms`;
  });
  await check('the live chart is drawn on a canvas with the waiting line', async () =>
    eventually(async () => {
      const stats = await page.evaluate((q) => {
        const canvas = document.querySelector(`[data-testid="chart-${q}"]`);
        if (!canvas) return null;
        const hex = getComputedStyle(document.documentElement).getPropertyValue('--c-waiting').trim();
        const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
        const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        let inked = 0;
        let line = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3] > 0) inked += 1;
          if (data[i + 3] > 200 && Math.abs(data[i] - want[0]) + Math.abs(data[i + 1] - want[1]) + Math.abs(data[i + 2] - want[2]) < 40) line += 1;
        }
        return { w: canvas.width, h: canvas.height, inked, line };
      }, Q);
      assert(stats, 'no canvas');
      assert(stats.inked > 500 && stats.line > 20, JSON.stringify(stats));
      return `${stats.w}x${stats.h}, ${stats.line} px of the waiting line`;
    }));

  // --- Workers and failures ----------------------------------------------------------------
  await check(`live workers: ${CONSUMER} holds ${HELD}`, async () => {
    const row = tid(`worker-${CONSUMER}`);
    await row.waitFor();
    const held = row.getByTestId(`held-${HELD}`);
    await held.waitFor();
    const t = (await held.textContent()).replace(/\s+/g, ' ').trim();
    assert(/held \d/.test(t) && /lease/.test(t), t);
    return t;
  });
  await check(`live workers: ${CONSUMER} shows the GPU and models it advertises`, async () => {
    const cell = tid(`profile-${CONSUMER}`);
    await page.waitForFunction((c) => document.querySelector(`[data-testid="profile-${c}"]`)?.textContent.includes('load'), CONSUMER);
    const t = (await cell.textContent()).trim();
    assert(t === 'NVIDIA L40S · 48 GiB · 1 slot — lustify_sdxl (1 load)', t);
    return t;
  });
  await check(`queues: ${Q} shows its routed claims' warm hits`, async () => {
    const t = (await tid(`warm-${Q}`).textContent()).trim();
    assert(t === '100 % of 3', t);
    return t;
  });
  await check(`live workers: ${CONSUMER} is marked quarantined, with the reason`, async () => {
    const badge = tid(`quarantined-${CONSUMER}`);
    await badge.waitFor({ state: 'visible' });
    const title = await badge.getAttribute('title');
    assert((await badge.textContent()).trim() === 'quarantined', await badge.textContent());
    assert(title === `quarantined: ${QUARANTINE_REASON}`, `title: ${title}`);
    return title;
  });
  await check(`quarantined workers: ${CONSUMER} with its reason and evidence, errors shown as text`, async () => {
    const row = tid(`quarantined-row-${CONSUMER}`);
    await row.waitFor();
    const cells = (await row.locator('td').allTextContents()).map((c) => c.replace(/\s+/g, ' ').trim());
    assert(cells[0] === Q && cells[1] === CONSUMER && cells[3] === QUARANTINE_REASON, cells.join(' | '));
    const first = row.getByTestId(`evidence-${CONSUMER}-${DEAD_REQUEUE}-1`);
    await first.waitFor();
    assert((await first.locator(`[data-job-id="${DEAD_REQUEUE}"]`).count()) === 1, 'no link to the job');
    const t = await first.textContent();
    assert(t.includes('attempt 1') && t.includes(QUARANTINE_ERROR), t);
    await row.getByTestId(`evidence-${CONSUMER}-${DEAD_DISCARD}-1`).waitFor();
    assert((await page.locator('#quarantine-probe').count()) === 0, 'the error markup became an element');
    return `since ${cells[2]}`;
  });
  await check(`Release (confirmed) lets ${CONSUMER} claim again`, async () => {
    const asked = [];
    page.once('dialog', (d) => {
      asked.push(`${d.type()}: ${d.message()}`);
      d.accept();
    });
    await tid(`release-${CONSUMER}`).click();
    await tid(`quarantined-row-${CONSUMER}`).waitFor({ state: 'detached' });
    assert(asked.length === 1 && asked[0].startsWith('confirm') && asked[0].includes(CONSUMER), asked.join(' | '));
    const flash = await text('flash');
    assert(/released/.test(flash), `flash: ${flash}`);
    await tid(`quarantined-${CONSUMER}`).waitFor({ state: 'hidden' });
    const empty = (await page.locator('#quarantined-body tr.empty').textContent()).trim();
    assert(empty === 'no quarantined workers', empty);
    const res = await api('GET', '/admin/workers');
    assert(res.status === 200 && res.body.quarantined.length === 0, JSON.stringify(res.body.quarantined));
    const live = res.body.workers.find((w) => w.consumer === CONSUMER);
    assert(live && live.quarantined === null, JSON.stringify(live));
    return flash;
  });
  await check(`tenants: ${TENANT} with weight 3, at most 2 in flight`, async () => {
    const row = tid(`tenant-${TENANT}`);
    await row.waitFor();
    const cells = (await row.locator('td').allTextContents()).map((c) => c.trim());
    assert(cells.join('|') === `${TENANT}|3|2`, cells.join('|'));
    return cells.join(' ');
  });
  await check(`credits: a grant to ${TENANT} shows in its ledger, reason as text`, async () => {
    const res = await fetch(`${API}/admin/tenants/${TENANT}/credits`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${ADMIN_TOKEN}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': `dash-${TENANT}`,
      },
      body: JSON.stringify({ kind: 'grant', amount: 7, reason: '<b id="credit-probe">welcome</b>' }),
    });
    assert(res.status === 200, `grant answered ${res.status}`);
    await tid('credits-input').fill(TENANT);
    await tid('credits-button').click();
    await eventually(async () => {
      const t = await text('credits-account');
      assert(t === `${TENANT}: balance 7, held 0, available 7`, t);
    });
    const row = (await tid('ledger-table').locator('tbody tr').first().locator('td').allTextContents()).map((c) => c.trim());
    assert(row[1] === 'grant' && row[3] === '7' && row[5] === '<b id="credit-probe">welcome</b>', row.join('|'));
    assert((await page.locator('#credit-probe').count()) === 0, 'the reason markup became an element');
    return row.slice(1).join(' ');
  });
  await check('recent failures list both dead jobs with their errors, markup shown as text', async () => {
    const row = tid(`failure-${DEAD_REQUEUE}`);
    await row.waitFor();
    const t = await row.textContent();
    assert(t.includes(ERROR_REQUEUE), `row text: ${t}`);
    assert((await page.locator('#xss-probe').count()) === 0, 'the error markup became an element');
    assert((await page.locator('#failures-body img').count()) === 0, 'an <img> in the failures table');
    const other = await tid(`failure-${DEAD_DISCARD}`).textContent();
    assert(other.includes(ERROR_DISCARD), other);
  });

  // --- Dead letters ------------------------------------------------------------------------
  await check('the dead-letter list of sdxl_queue shows both dead jobs', async () => {
    const list = tid(`dead-list-${Q}`);
    await list.getByTestId(`dead-row-${DEAD_REQUEUE}`).waitFor();
    await list.getByTestId(`dead-row-${DEAD_DISCARD}`).waitFor();
    const t = await list.getByTestId(`dead-row-${DEAD_REQUEUE}`).textContent();
    assert(t.includes('sdxl_image_fast') && t.includes(ERROR_REQUEUE), t);
  });
  await check('screenshot of the populated dashboard saved', async () => {
    const file = SCREENSHOT.replace(/\.png$/, '-dead-letters.png');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: file, fullPage: true });
    return file;
  });
  const dialogs = [];
  await check(`Requeue (confirmed) takes ${DEAD_REQUEUE} off the dead list`, async () => {
    page.once('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      d.accept();
    });
    await tid(`requeue-${DEAD_REQUEUE}`).click();
    await tid(`dead-row-${DEAD_REQUEUE}`).waitFor({ state: 'detached' });
    assert(dialogs.length === 1 && dialogs[0].startsWith('confirm') && dialogs[0].includes(DEAD_REQUEUE), dialogs.join(' | '));
    const flash = await text('flash');
    assert(/requeued/.test(flash), `flash: ${flash}`);
    return flash;
  });
  await check('the API says the requeued job is queued, attempts reset', async () => {
    const res = await api('GET', `/v1/jobs/${DEAD_REQUEUE}`);
    assert(res.status === 200, `status ${res.status}`);
    const job = res.body.job;
    assert(job.status === 'queued' && job.attempts === 0 && !job.errorMessage, JSON.stringify(job));
    const dead = await api('GET', `/admin/queues/${Q}/dead`);
    assert(!dead.body.jobs.some((j) => j.jobId === DEAD_REQUEUE), 'still in /admin/queues/sdxl_queue/dead');
    return `status ${job.status}, attempts ${job.attempts}`;
  });
  await check('the dashboard follows: 1 dead, one more waiting, the failure gone, the search shows queued', async () => {
    await eventually(async () => {
      const dead = await text(`dead-${Q}`);
      const waiting = Number(await text(`waiting-${Q}`));
      assert(dead === '1' && waiting === waitingBefore + 1, `dead ${dead}, waiting ${waiting}`);
      assert((await tid(`failure-${DEAD_REQUEUE}`).count()) === 0, 'still listed as a failure');
    });
    await tid('job-search-input').fill(DEAD_REQUEUE);
    await tid('job-search-button').click();
    await eventually(async () => assert((await text('job-id')) === DEAD_REQUEUE, 'not shown'));
    const status = await text('job-status');
    assert(status === 'queued', `status ${status}`);
    return `waiting ${waitingBefore + 1}`;
  });
  await check(`Delete, cancelled in the confirm dialog, leaves ${DEAD_DISCARD} alone`, async () => {
    page.once('dialog', (d) => d.dismiss());
    await tid(`discard-${DEAD_DISCARD}`).click();
    await page.waitForTimeout(2500); // at least one refresh
    assert(await tid(`dead-row-${DEAD_DISCARD}`).isVisible(), 'the row went away');
    const dead = await api('GET', `/admin/queues/${Q}/dead`);
    assert(dead.body.jobs.some((j) => j.jobId === DEAD_DISCARD), 'gone from the API');
  });
  await check(`Delete, confirmed, removes ${DEAD_DISCARD} for good`, async () => {
    page.once('dialog', (d) => d.accept());
    await tid(`discard-${DEAD_DISCARD}`).click();
    await tid(`dead-row-${DEAD_DISCARD}`).waitFor({ state: 'detached' });
    const dead = await api('GET', `/admin/queues/${Q}/dead`);
    assert(dead.body.jobs.length === 0, JSON.stringify(dead.body));
    const job = (await api('GET', `/v1/jobs/${DEAD_DISCARD}`)).body.job;
    assert(job.status === 'failed', job.status);
    await eventually(async () => assert((await text(`dead-${Q}`)) === '0', 'dead count not 0'));
    return `row ${job.status}: ${job.errorMessage}`;
  });

  // --- Screenshot --------------------------------------------------------------------------
  await check(`screenshot saved to ${SCREENSHOT}`, async () => {
    await tid('job-search-input').fill(DEAD_REQUEUE);
    await tid('job-search-button').click();
    await eventually(async () => assert((await text('job-status')) === 'queued', 'search'));
    await page.waitForTimeout(2500); // one more point on the chart
    await page.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const size = fs.statSync(SCREENSHOT).size;
    assert(size > 10000, `only ${size} bytes`);
    return `${size} bytes`;
  });

  // --- Session -----------------------------------------------------------------------------
  await check('a reload keeps the session (sessionStorage)', async () => {
    await page.reload();
    await tid('dashboard-view').waitFor({ state: 'visible' });
    await tid(`queue-row-${Q}`).waitFor();
  });
  await check('Log out forgets the token and the data', async () => {
    await tid('logout').click();
    await tid('login-view').waitFor({ state: 'visible' });
    assert((await page.evaluate(() => sessionStorage.length)) === 0, 'sessionStorage not empty');
    assert(
      (await page.locator('#queues-body tr, #workers-body tr, #quarantined-body tr, #dead-lists tr, #job-result dl').count()) === 0,
      'data left in the page',
    );
  });
  await check("a user's token (not an admin) is answered 403 and returns to login with the reason", async () => {
    await tid('token-input').fill(USER_TOKEN);
    await tid('login-button').click();
    // The message of the log-out before ("Signed out.") is still shown until the
    // dispatcher's answer replaces it: wait for the answer, not for any message.
    await eventually(async () => {
      const m = await text('login-message');
      assert(/403/.test(m) && /admin/.test(m), m);
    });
    return await text('login-message');
  });
  await check('a token that stops working while the dashboard runs sends the page back to login', async () => {
    await tid('token-input').fill(ADMIN_TOKEN);
    await tid('login-button').click();
    await tid('dashboard-view').waitFor({ state: 'visible' });
    // As if the admin token were rotated: the next poll answers 401.
    await page.evaluate(() => {
      for (const k of Object.keys(sessionStorage)) sessionStorage.setItem(k, 'rotated-away');
    });
    await page.reload();
    await tid('login-view').waitFor({ state: 'visible' });
    const msg = await text('login-message');
    assert(/401/.test(msg), msg);
    assert((await page.evaluate(() => sessionStorage.length)) === 0, 'bad token kept');
    return msg;
  });
  await check('no script errors, CSP violations, console errors or unexpected HTTP errors', async () => {
    assert(consoleProblems.length === 0, consoleProblems.join('\n'));
  });
} catch (e) {
  if (e instanceof Stop) {
    console.log(`      (stopped: the checks after "${e.message}" depend on it)`);
  } else {
    failed += 1;
    console.log(`FAIL  the browser test ran to the end\n      ${String((e && e.stack) || e).split('\n').slice(0, 6).join('\n      ')}`);
  }
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`RESULT passed=${passed} failed=${failed}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
