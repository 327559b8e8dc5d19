// BullMQ's side of benches/vs_bullmq.sh, measured the way gpuq-bench measures its queue:
//   node bench.mjs enqueue JOBS REDIS_URL   single `add`, 50 in flight
//   node bench.mjs drain JOBS REDIS_URL     JOBS waiting no-op jobs, one Worker, concurrency 50
// Jobs carry about 500 bytes of data (gpuq-bench's envelope size) and are removed when
// completed, as gpuq's ack removes its job. Prints one JSON line per figure.
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const [mode, jobsArg, url] = process.argv.slice(2);
const jobs = Number(jobsArg);
if (!(jobs > 0) || !url) {
  console.error('usage: node bench.mjs enqueue|drain JOBS REDIS_URL (JOBS at least 1)');
  process.exit(2);
}
// BullMQ 6 takes a constructed client in ESM; the Worker duplicates it for its blocking calls.
const connection = new IORedis(url, { maxRetriesPerRequest: null });
const name = `bench-${process.pid}`;
const data = { prompt: 'a lighthouse on a cliff at dusk, volumetric light', seed: 1234, pad: 'x'.repeat(400) };
const opts = { removeOnComplete: true, removeOnFail: true };
const IN_FLIGHT = 50;
const CONCURRENCY = 50;

function report(metric, value, params) {
  console.log(JSON.stringify({ scenario: 'bullmq', metric, value, unit: 'jobs/s', params: { jobs, ...params } }));
}

const queue = new Queue(name, { connection });
await queue.waitUntilReady();

if (mode === 'enqueue') {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < jobs) {
        next += 1;
        await queue.add('generate', data, opts);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  report('enqueue, single, 50 in flight', jobs / secs, { in_flight: IN_FLIGHT });
} else if (mode === 'drain') {
  for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: 'generate', data, opts })));
  }
  let done = 0;
  let finish;
  const drained = new Promise((resolve) => (finish = resolve));
  const worker = new Worker(name, async () => {}, { connection, concurrency: CONCURRENCY, autorun: false });
  worker.on('error', (e) => {
    console.error(`worker error: ${e.message}`);
    process.exit(1);
  });
  worker.on('completed', () => {
    done += 1;
    if (done === jobs) finish();
  });
  const started = process.hrtime.bigint();
  worker.run();
  await drained;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  report('no-op drain, one worker, concurrency 50', jobs / secs, { concurrency: CONCURRENCY });
  await worker.close();
} else {
  console.error(`unknown mode ${mode}: enqueue or drain`);
  process.exit(2);
}
await queue.obliterate({ force: true });
await queue.close();
connection.disconnect();
