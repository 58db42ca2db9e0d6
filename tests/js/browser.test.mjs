// The npm package in headless Chromium (Debian's, driven by playwright-core), pages served on
// 127.0.0.1: WebGPU (SwiftShader) and CPU, streaming with progress, the cache, Hub ids,
// compressed transfers, cancelling, runtime failures and errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../../scripts/chromium.mjs';
import { startServer } from './browser/server.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = '/tests/fixtures/models/tiny-gelu/';
const reference = JSON.parse(await readFile(join(root, MODEL, 'reference.json'), 'utf8'));
const weightsSize = (await readFile(join(root, MODEL, 'model.safetensors'))).length;

let server;
const browsers = [];

async function openPage({ webgpu }) {
  const browser = await launchChromium({ webgpu });
  browsers.push(browser);
  const { page } = browser;
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${server.url}/tests/js/browser/index.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

/** Load the model in the page and return what the test needs, or the error's code. */
function load(page, base, options) {
  return page.evaluate(async ({ base, options, texts }) => {
    const events = [];
    try {
      const clip = await window.webclip.Clip.fromPretrained(base, { ...options, onProgress: (e) => events.push(e) });
      const embeds = await clip.embedTexts(texts);
      const result = { device: clip.device, deviceReason: clip.deviceReason, events, texts: embeds.map((e) => Array.from(e)) };
      window.clip = clip;
      return result;
    } catch (e) {
      return { error: e.code ?? String(e), message: e.message, events };
    }
  }, { base, options, texts: reference.texts });
}

function maxAbsDiff(a, b) {
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

function checkTexts(result, tolerance) {
  assert.equal(result.error, undefined, result.message);
  result.texts.forEach((t, i) => {
    const diff = maxAbsDiff(t, reference.text_embeds[i]);
    assert.ok(diff <= tolerance, `text ${i}: max abs diff ${diff} > ${tolerance}`);
  });
}

before(async () => {
  server = await startServer(root);
});

after(async () => {
  for (const browser of browsers) await browser.close();
  await server?.close();
});

test('without WebGPU: auto picks the CPU, matches the reference, streams with progress, caches', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const first = await load(page, server.url + MODEL, { device: 'auto' });
  assert.equal(first.device, 'cpu');
  checkTexts(first, 1e-4);

  const weights = first.events.filter((e) => e.file === 'model.safetensors');
  assert.ok(weights.length >= 1);
  weights.forEach((e, i) => i && assert.ok(e.loaded >= weights[i - 1].loaded, 'progress is monotonic'));
  assert.equal(weights.at(-1).loaded, weightsSize);
  assert.equal(weights.at(-1).total, weightsSize);

  const requests = server.count(MODEL + 'model.safetensors');
  const second = await load(page, server.url + MODEL, { device: 'auto' });
  checkTexts(second, 1e-4);
  assert.equal(server.count(MODEL + 'model.safetensors'), requests, 'the second load reads the cache');

  // Images: a canvas and the same pixels as ImageData classify identically.
  const same = await page.evaluate(async () => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 40, height: 30 });
    const g = canvas.getContext('2d');
    g.fillStyle = '#c33'; g.fillRect(0, 0, 40, 30); g.fillStyle = '#39f'; g.fillRect(10, 5, 15, 20);
    const labels = ['red', 'blue', 'green'];
    const a = await window.clip.classify(canvas, labels);
    const b = await window.clip.classify(g.getImageData(0, 0, 40, 30), labels);
    return { a, b };
  });
  assert.deepEqual(same.a, same.b);

  const errors = await page.evaluate(async () => {
    const code = (p) => p.then(() => 'ok', (e) => e.code);
    const empty = document.createElement('canvas');
    empty.width = 0;
    return {
      labels: await code(window.clip.classify(new ImageData(4, 4), [])),
      zero: await code(window.clip.embedImages([empty])),
    };
  });
  assert.deepEqual(errors, { labels: 'E_INPUT', zero: 'E_INPUT' });
});

test('broken downloads: truncated, cut off and missing files', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const truncated = await load(page, `${server.url}/broken/truncated/`, { device: 'cpu' });
  assert.equal(truncated.error, 'E_TRUNCATED', truncated.message);
  const cached = await page.evaluate(async () => (await (await caches.open('webclip-v1')).keys()).map((r) => r.url));
  assert.deepEqual(cached.filter((url) => url.includes('/broken/')), [], 'nothing of a failed load is cached');

  const cutoff = await load(page, `${server.url}/broken/cutoff/`, { device: 'cpu' });
  assert.equal(cutoff.error, 'E_TRUNCATED', cutoff.message);

  const missing = await load(page, `${server.url}/broken/missing/`, { device: 'cpu' });
  assert.equal(missing.error, 'E_FETCH', missing.message);
});

test('the runtime: a missing or broken wasm is E_FETCH / E_BACKEND, and a later call retries', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const missing = await load(page, server.url + MODEL, { wasmUrl: '/no-such.wasm' });
  assert.equal(missing.error, 'E_FETCH', missing.message);
  const garbage = await load(page, server.url + MODEL, { wasmUrl: new URL('/broken/garbage.wasm', server.url).href });
  assert.equal(garbage.error, 'E_BACKEND', garbage.message);
  checkTexts(await load(page, server.url + MODEL, {}), 1e-4);
});

test('Hub ids on a mirror, relative URLs, and a compressed transfer', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const hub = await load(page, 'fixtures/tiny-gelu', { hubUrl: `${server.url}/hub/`, revision: 'v1.0', cache: false });
  checkTexts(hub, 1e-4);
  assert.ok(server.count('/hub/fixtures/tiny-gelu/resolve/v1.0/model.safetensors') >= 1);
  // Relative to the page (/tests/js/browser/index.html), with or without the trailing slash.
  checkTexts(await load(page, '../../fixtures/models/tiny-gelu/', { cache: false }), 1e-4);
  checkTexts(await load(page, '/tests/fixtures/models/tiny-gelu', { cache: false }), 1e-4);

  const compressed = await load(page, `${server.url}/broken/compressed/`, { cache: false });
  checkTexts(compressed, 1e-4);
  const weights = compressed.events.filter((e) => e.file === 'model.safetensors');
  weights.forEach((e) => assert.ok(e.loaded <= e.total, `loaded ${e.loaded} > total ${e.total}`));
  assert.deepEqual(weights.at(-1), { file: 'model.safetensors', loaded: weightsSize, total: weightsSize });
});

test('cancelling a load: E_ABORTED, nothing cached, the loader freed', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const result = await page.evaluate(async ({ url, half }) => {
    const { Clip, wasmMemoryBytes } = window.webclip;
    const cancelAt = async (when) => {
      const controller = new AbortController();
      const onProgress = (e) => when(e) && controller.abort();
      return Clip.fromPretrained(url, { device: 'cpu', signal: controller.signal, onProgress }).then(() => 'loaded', (e) => e.code);
    };
    const codes = [await cancelAt((e) => e.file === 'config.json')];
    codes.push(await cancelAt((e) => e.file === 'model.safetensors' && e.loaded >= half));
    const memory = wasmMemoryBytes();
    for (let i = 0; i < 8; i++) codes.push(await cancelAt((e) => e.file === 'model.safetensors' && e.loaded >= half));
    const cache = await caches.open('webclip-v1');
    return { codes, growth: wasmMemoryBytes() - memory, cached: (await cache.keys()).map((r) => r.url) };
  }, { url: `${server.url}/broken/stall/`, half: weightsSize >> 1 });
  assert.deepEqual(new Set(result.codes), new Set(['E_ABORTED']), result.codes.join(' '));
  assert.deepEqual(result.cached, [], 'nothing of a cancelled load is cached');
  // Eight leaked loaders would hold eight half-loaded models (and tokenizers).
  assert.ok(result.growth < 2 * weightsSize, `wasm memory grew by ${result.growth} bytes over 8 cancelled loads`);
});

test('with WebGPU (SwiftShader): matches the reference within 1e-3', { timeout: 300_000 }, async () => {
  const page = await openPage({ webgpu: true });
  const hasAdapter = await page.evaluate(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()));
  assert.ok(hasAdapter, 'Chromium with --enable-unsafe-webgpu offers an adapter here');
  const auto = await load(page, server.url + MODEL, { device: 'auto' });
  assert.equal(auto.device, 'cpu', 'auto prefers the CPU over a software fallback adapter');
  assert.match(auto.deviceReason, /software fallback/);
  const result = await load(page, server.url + MODEL, { device: 'webgpu' });
  assert.equal(result.device, 'webgpu', result.message);
  assert.match(result.deviceReason, /^requested/);
  checkTexts(result, 1e-3);
  const images = await page.evaluate(async (files) => {
    const blobs = await Promise.all(files.map((f) => fetch(`/tests/fixtures/images/${f}`).then((r) => r.blob())));
    return (await window.clip.embedImages(blobs)).map((e) => Array.from(e));
  }, reference.images);
  images.forEach((e, i) => {
    const diff = maxAbsDiff(e, reference.image_embeds[i]);
    assert.ok(diff <= 1e-3, `image ${i}: max abs diff ${diff}`);
  });
  // A second model on WebGPU in the same page, after the first is disposed and while another
  // is alive: both share the page's one WebGPU device.
  await page.evaluate(() => window.clip.dispose());
  const again = await load(page, server.url + MODEL, { device: 'webgpu' });
  assert.equal(again.device, 'webgpu', again.message);
  checkTexts(again, 1e-3);
  const other = await load(page, server.url + '/tests/fixtures/models/tiny-quickgelu/', { device: 'webgpu' });
  assert.equal(other.device, 'webgpu', other.message);
});

test('open_clip\'s hub layout by URL: open_clip_config.json and open_clip_model.safetensors, matches open_clip', { timeout: 120_000 }, async () => {
  const openClip = JSON.parse(await readFile(join(root, 'tests/fixtures/models/tiny-open-clip/reference.json'), 'utf8'));
  assert.deepEqual(openClip.texts, reference.texts, 'both fixtures embed the same texts');
  const page = await openPage({ webgpu: false });
  const result = await load(page, server.url + '/tests/fixtures/models/tiny-open-clip/', { device: 'cpu' });
  assert.equal(result.error, undefined, result.message);
  assert.ok(result.events.some((e) => e.file === 'open_clip_model.safetensors'));
  result.texts.forEach((t, i) => {
    const diff = maxAbsDiff(t, openClip.text_embeds[i]);
    assert.ok(diff <= 1e-4, `text ${i}: max abs diff ${diff}`);
  });
});

test('SigLIP and SigLIP 2 by URL: embeddings and independent sigmoid scores match transformers', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  for (const name of ['tiny-siglip', 'tiny-siglip2']) {
    const siglip = JSON.parse(await readFile(join(root, `tests/fixtures/models/${name}/reference.json`), 'utf8'));
    assert.deepEqual(siglip.texts.slice(0, reference.texts.length), reference.texts);
    const result = await load(page, `${server.url}/tests/fixtures/models/${name}/`, { device: 'cpu' });
    assert.equal(result.error, undefined, result.message);
    result.texts.forEach((t, i) => {
      const diff = maxAbsDiff(t, siglip.text_embeds[i]);
      assert.ok(diff <= 1e-4, `${name}: text ${i}: max abs diff ${diff}`);
    });
    const labels = siglip.texts.slice(0, 3);
    const classified = await page.evaluate(async ({ file, labels }) => {
      const image = await fetch(`/tests/fixtures/images/${file}`).then((r) => r.blob());
      return { scoring: window.clip.scoring, scores: await window.clip.classify(image, labels, { template: '{}' }) };
    }, { file: siglip.images[0], labels });
    assert.equal(classified.scoring, 'sigmoid');
    for (const { label, score } of classified.scores) {
      const want = siglip.probs_per_image[0][siglip.texts.indexOf(label)];
      assert.ok(Math.abs(score - want) <= 1e-4, `${name}: "${label}": ${score} vs ${want}`);
    }
    await page.evaluate(() => window.clip.dispose());
  }
});

test('inside a Web Worker: loads, embeds texts and image Blobs, matches the reference', { timeout: 120_000 }, async () => {
  const page = await openPage({ webgpu: false });
  const result = await page.evaluate(async ({ base, texts, files }) => {
    const images = await Promise.all(files.map((f) => fetch(`/tests/fixtures/images/${f}`).then((r) => r.blob())));
    const worker = new Worker('/tests/js/browser/worker.js', { type: 'module' });
    const reply = await new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => resolve(data);
      worker.onerror = (e) => reject(new Error(e.message));
      worker.postMessage({ base, texts, images });
    });
    worker.terminate();
    return reply;
  }, { base: server.url + MODEL, texts: reference.texts, files: reference.images });
  assert.equal(result.error, undefined, result.message);
  assert.equal(result.device, 'cpu');
  checkTexts(result, 1e-4);
  result.images.forEach((e, i) => {
    const diff = maxAbsDiff(e, reference.image_embeds[i]);
    assert.ok(diff <= 1e-4, `image ${i}: max abs diff ${diff}`);
  });
});
