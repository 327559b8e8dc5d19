// An app's page on another origin, as the replaced edge function's users have it: headless
// Debian chromium (playwright-core) loads a page served here, on its own port, that calls
// `supabase.functions.invoke('queue-job', ...)` with @supabase/supabase-js from npm (its
// UMD build, as a <script>), then follows the job with the browser's own EventSource and
// the answer's stream token until a real demo worker completed it. Every cross-origin rule
// is the browser's: a missing CORS header fails the call here as it would for a user.
// Started by run.sh (BROWSER_* variables). Prints "ok"/"FAIL" lines and
// "RESULT passed=N failed=M" last.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { need } from './checks.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const API = need('BROWSER_API');
const USER_TOKEN = need('BROWSER_USER_TOKEN');
const PAGE_PORT = Number(need('BROWSER_PAGE_PORT'));
const CHROMIUM = process.env.BROWSER_CHROMIUM || '/usr/bin/chromium';

let passed = 0;
let failed = 0;
function report(ok, name, detail) {
  if (ok) passed += 1; else failed += 1;
  console.log(`${ok ? 'ok   ' : 'FAIL '} ${name}${detail ? ` (${detail})` : ''}`);
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>an app</title>
<script src="/supabase.js"></script>
<script>
// What an app's page does: enqueue through supabase-js, then follow the job.
window.enqueueAndFollow = async (api, accessToken) => {
  const client = supabase.createClient(api, accessToken);
  const { data, error } = await client.functions.invoke('queue-job', {
    body: { jobType: 'sdxl_image_fast', metadata: { prompt: 'a lighthouse in a browser', num_images: 1 } },
  });
  if (error) return { error: String(error) + ' ' + (error.context ? error.context.status : '') };
  const statuses = [];
  const done = await new Promise((resolve) => {
    const url = api + '/v1/jobs/' + data.job.id + '/events?access_token=' + encodeURIComponent(data.streamToken);
    const events = new EventSource(url);
    const stop = setTimeout(() => { events.close(); resolve('timed out'); }, 60000);
    // Frames are named: "status" for a status change, "progress" for progress.
    events.addEventListener('progress', (e) => statuses.push('progress:' + JSON.parse(e.data).progress));
    events.addEventListener('status', (e) => {
      const { status } = JSON.parse(e.data);
      statuses.push(status);
      if (['completed', 'failed', 'cancelled'].includes(status)) {
        clearTimeout(stop); events.close(); resolve(status);
      }
    });
  });
  return { id: data.job.id, answerKeys: Object.keys(data), statuses, done };
};
</script>`;

const umd = path.join(HERE, 'node_modules/@supabase/supabase-js/dist/umd/supabase.js');
const server = http.createServer((req, res) => {
  if (req.url === '/supabase.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    fs.createReadStream(umd).pipe(res);
  } else {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  }
});
await new Promise((resolve) => server.listen(PAGE_PORT, '127.0.0.1', resolve));

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  const pageOrigin = `http://127.0.0.1:${PAGE_PORT}`;
  await page.goto(`${pageOrigin}/`);
  report(new URL(API).origin !== pageOrigin, 'the page and the API are different origins',
    `${pageOrigin} → ${new URL(API).origin}`);
  report(await page.evaluate(() => typeof supabase.createClient === 'function'),
    'the page loaded @supabase/supabase-js from npm');
  const result = await page.evaluate(([api, token]) => window.enqueueAndFollow(api, token),
    [API, USER_TOKEN]);
  report(!result.error, "supabase.functions.invoke('queue-job') from the page is answered",
    result.error || `job ${result.id}`);
  report((result.answerKeys || []).includes('streamToken'), 'the answer carries a stream token');
  report(result.done === 'completed', "the page's EventSource follows the job to completed",
    (result.statuses || []).join(' → ') + ` (${result.done})`);
  report(problems.length === 0, 'no CORS or script error in the browser console',
    problems.join(' | ').slice(0, 400));
  if (result.id) console.log(`JOB ${result.id}`);
} catch (e) {
  report(false, 'the browser run', String(e).split('\n')[0]);
} finally {
  await browser.close();
  server.close();
}
console.log(`RESULT passed=${passed} failed=${failed}`);
process.exit(failed === 0 ? 0 : 1);
