// `npm run build:site`'s output served under a sub-path (/some/prefix/), as a static host would:
// the page loads the default model from there and tags a sample; nothing is requested outside
// the prefix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { launchChromium } from '../../scripts/chromium.mjs';
import { serveStatic, send, sendFile } from '../../scripts/serve.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const PREFIX = '/some/prefix/';
let out;
let server;
let browser;
const outside = [];

before(async () => {
  out = await mkdtemp(join(tmpdir(), 'webclip-site-'));
  await promisify(execFile)(process.execPath, [join(root, 'scripts/build-site.mjs'), '--out', out]);
  server = await serveStatic(out, {
    route: async (req, res, path) => {
      if (path.startsWith(PREFIX)) await sendFile(res, out, path.slice(PREFIX.length - 1));
      else {
        outside.push(path);
        send(res, 404, 'not found');
      }
      return true;
    },
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (out) await rm(out, { recursive: true, force: true });
});

test('the built site works under a sub-path', { timeout: 120_000 }, async () => {
  const { page } = browser;
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}${PREFIX}`);
  await page.waitForFunction(() => document.body.dataset.model === 'ready', null, { timeout: 90_000 });
  assert.equal(await page.textContent('#device'), 'CPU');

  const [sample] = (await readFile(join(out, 'samples/captions.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  await page.click('[data-preset="colours"]');
  const before = await page.evaluate(() => Number(document.getElementById('canvas').dataset.version));
  await page.click('#samples .sample:nth-child(1)');
  await page.waitForFunction((after) => {
    const version = document.getElementById('canvas').dataset.version;
    return Number(version) > after && document.getElementById('results').dataset.version === version
      && document.querySelectorAll('#results li').length === 6;
  }, before, { timeout: 30_000 });
  const top = await page.getAttribute('#results li:first-child', 'data-label');
  assert.ok(sample.caption.includes(` ${top} `), `"${sample.caption}" tagged ${top}`);
  assert.deepEqual(outside, [], 'every request stays under the prefix');
  assert.deepEqual(errors, []);
});
