// The demo page (www/) in headless Chromium, served on 127.0.0.1 as `npm start` serves it: the
// bundled model loads and shows its device, samples and a drawn shape are tagged correctly, a
// gallery query finds its image, a bad model URL shows an error and the page stays usable.
// Screenshots go to test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../../scripts/chromium.mjs';
import { sendFile, serveStatic } from '../../scripts/serve.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const artifacts = join(root, 'test-artifacts');
const samples = (await readFile(join(root, 'www/samples/captions.jsonl'), 'utf8'))
  .split('\n').filter(Boolean).map((line) => JSON.parse(line));
const SHAPES = ['circle', 'square', 'triangle', 'cross'];
const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'];

let server;
let browser;
let page;
const pageErrors = [];

before(async () => {
  // The page as `npm start` serves it, plus the test fixtures under /fixtures/ (a SigLIP model).
  server = await serveStatic(join(root, 'www'), {
    route: async (req, res, path) => {
      if (!path.startsWith('/fixtures/')) return false;
      await sendFile(res, join(root, 'tests/fixtures'), path.slice('/fixtures'.length));
      return true;
    },
  });
  browser = await launchChromium({ viewport: { width: 1100, height: 900 } });
  page = browser.page;
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await mkdir(artifacts, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const PRESET_LABELS = { shapes: SHAPES, colours: COLOURS };
let labels = SHAPES;

/** The canvas image's version (it grows with every new image or stroke). */
function imageVersion() {
  return page.evaluate(() => Number(document.getElementById('canvas').dataset.version));
}

/**
 * Wait until the tag results belong to the image now on the canvas (newer than version
 * `after`, when given) and to the current labels; returns them.
 */
async function results(after = 0) {
  await page.waitForFunction(({ labels, after }) => {
    const version = document.getElementById('canvas').dataset.version;
    const list = document.getElementById('results');
    const shown = [...list.children].map((li) => li.dataset.label).sort();
    return Number(version) > after && list.dataset.version === version
      && JSON.stringify(shown) === JSON.stringify(labels);
  }, { labels: [...labels].sort(), after }, { timeout: 30_000 });
  return page.$$eval('#results li', (items) => items.map((li) => ({
    label: li.dataset.label,
    pct: li.querySelector('.pct').textContent,
  })));
}

async function preset(name) {
  labels = PRESET_LABELS[name];
  await page.click(`[data-preset="${name}"]`);
}

test('the bundled model loads and the page shows its device', { timeout: 120_000 }, async () => {
  await page.goto(`${server.url}/`);
  await page.waitForFunction(() => document.body.dataset.model === 'ready', null, { timeout: 90_000 });
  assert.equal(await page.textContent('#device'), 'CPU'); // this browser has no WebGPU flag
  assert.match(await page.textContent('#load-time'), /^\d+\.\d\d s$/);
  assert.equal(await page.getAttribute('#load-progress', 'value'), '1');
  assert.equal(await page.locator('#samples .sample').count(), samples.length);
});

test('samples are tagged with their colour and shape', { timeout: 120_000 }, async () => {
  let shapeHits = 0;
  for (const [i, sample] of samples.entries()) {
    await preset('colours');
    const before = await imageVersion();
    await page.click(`#samples .sample:nth-child(${i + 1})`);
    const colours = await results(before);
    assert.equal(colours.length, COLOURS.length);
    assert.equal(colours[0].label, COLOURS.find((c) => sample.caption.includes(` ${c} `)), sample.caption);
    await preset('shapes');
    const shapes = await results();
    shapeHits += shapes[0].label === SHAPES.find((s) => sample.caption.includes(` ${s} `));
  }
  // Every sample is a held-out colour-shape pair; the model's held-out shape accuracy is ~90%.
  assert.ok(shapeHits >= samples.length - 2, `shape right on ${shapeHits} of ${samples.length} samples`);
  await page.screenshot({ path: join(artifacts, 'demo-sample.png'), fullPage: true });
});

test('a shape drawn on the canvas is tagged correctly', { timeout: 60_000 }, async () => {
  await page.click('#clear');
  const before = await imageVersion();
  await page.click('#swatches [aria-label="blue"]');
  await page.fill('#brush-size', '40');
  await preset('shapes');
  const box = await page.locator('#canvas').boundingBox();
  const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
  // A cross: two thick strokes through the centre.
  for (const [[x0, y0], [x1, y1]] of [[at(0.5, 0.2), at(0.5, 0.8)], [at(0.2, 0.5), at(0.8, 0.5)]]) {
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    await page.mouse.move(x1, y1, { steps: 12 });
    await page.mouse.up();
  }
  const shapes = await results(before);
  assert.equal(shapes[0].label, 'cross', JSON.stringify(shapes));
  await preset('colours');
  assert.equal((await results())[0].label, 'blue');
  await page.screenshot({ path: join(artifacts, 'demo-drawing.png'), fullPage: true });
});

test('stamping a shape from the keyboard tags it', { timeout: 60_000 }, async () => {
  await page.click('#clear');
  await preset('shapes');
  const before = await imageVersion();
  await page.focus('[data-stamp="triangle"]');
  await page.keyboard.press('Enter');
  assert.equal((await results(before))[0].label, 'triangle');
});

test('a gallery query ranks the matching image first', { timeout: 60_000 }, async () => {
  await page.click('#add-samples');
  await page.waitForFunction((n) => document.querySelectorAll('#gallery li').length === n
    && /\d image\(s\) ranked/.test(document.getElementById('search-status').textContent), samples.length);
  const unique = samples.filter((s) => samples.filter((t) => t.caption === s.caption).length === 1);
  let hits = 0;
  for (const sample of unique) {
    await page.fill('#query', sample.caption);
    await page.waitForFunction((caption) => {
      const first = document.querySelector('#gallery li img');
      return document.getElementById('search-status').dataset.query === caption && first;
    }, sample.caption);
    hits += (await page.getAttribute('#gallery li:first-child', 'data-name')) === sample.image;
  }
  assert.ok(hits >= unique.length - 1, `the exact caption found its image first for ${hits} of ${unique.length}`);
  await page.screenshot({ path: join(artifacts, 'demo-gallery.png'), fullPage: true });
});

test('a bad model URL shows an error and the page stays usable', { timeout: 60_000 }, async () => {
  await page.fill('#model-url', `${server.url}/no-such-model/`);
  await page.click('#load-button');
  await page.waitForSelector('#model-error:not([hidden])');
  assert.match(await page.textContent('#model-error'), /Could not download the model/);
  assert.equal(await page.textContent('#device'), 'CPU');
  await page.click('#clear');
  await preset('shapes');
  const before = await imageVersion();
  await page.click('[data-stamp="square"]');
  assert.equal((await results(before))[0].label, 'square');
  await page.screenshot({ path: join(artifacts, 'demo-error.png'), fullPage: true });
});

test('a SigLIP model loads by URL and shows independent sigmoid bars', { timeout: 90_000 }, async () => {
  await page.fill('#model-url', `${server.url}/fixtures/models/tiny-siglip/`);
  await page.click('#load-button');
  await page.waitForFunction(() => document.getElementById('results').dataset.scoring === 'sigmoid'
    && document.getElementById('model-name').textContent.includes('tiny-siglip'), null, { timeout: 60_000 });
  assert.match(await page.textContent('#scoring-note'), /own probability \(SigLIP\)/);
  await page.click('#clear');
  await preset('shapes');
  const before = await imageVersion();
  await page.click('[data-stamp="circle"]');
  const shown = await results(before);
  const scores = shown.map((s) => Number.parseFloat(s.pct));
  assert.ok(scores.every((s, i) => s >= 0 && s <= 100 && (i === 0 || scores[i - 1] >= s)), shown.join());
  await page.screenshot({ path: join(artifacts, 'demo-siglip.png'), fullPage: true });
});

test('the layout fits a phone-width screen', { timeout: 30_000 }, async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
  await page.screenshot({ path: join(artifacts, 'demo-phone.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
});
