// The npm package as a web developer meets it: `npm pack` of pkg/, installed from the tarball
// into tiny apps built with Vite, webpack 5, esbuild and Rollup (only the steps the package
// README documents), a page without a bundler (an import map), Node ESM and CommonJS, each run
// (in headless Chromium, or Node) against the fixture's reference embeddings; and the types
// checked by tsc with and without the DOM library.
//
// The bundlers (tests/js/bundlers/versions.json, pinned) are installed once into
// ~/.cache/webclip/bundlers/<hash of the versions> ($WEBCLIP_BUNDLERS overrides); each run
// builds its apps in a fresh directory there and deletes it afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile, access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../../scripts/chromium.mjs';
import { serveStatic, send, sendFile } from '../../scripts/serve.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const here = join(root, 'tests/js/bundlers');
const model = join(root, 'tests/fixtures/models/tiny-gelu');
const images = join(root, 'tests/fixtures/images');
const reference = JSON.parse(await readFile(join(model, 'reference.json'), 'utf8'));
const versions = await readFile(join(here, 'versions.json'), 'utf8');
const key = createHash('sha256').update(versions).update(process.version.split('.')[0]).digest('hex').slice(0, 16);
const cache = process.env.WEBCLIP_BUNDLERS ?? join(homedir(), '.cache/webclip/bundlers', key);
const bin = (name) => join(cache, 'node_modules/.bin', name);
const WASM = 'node_modules/webclip-wasm/webclip_wasm_bg.wasm';

let run;
let tarball;
let browser;

/** Run a command; resolves to stdout, rejects with its output. */
function sh(file, args, cwd, timeout = 240_000) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 64 << 20, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} (in ${cwd}) failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const exists = (path) => access(path).then(() => true, () => false);

before(async () => {
  if (!(await exists(join(cache, '.installed')))) {
    await mkdir(cache, { recursive: true });
    const devDependencies = JSON.parse(versions);
    await writeFile(join(cache, 'package.json'), JSON.stringify({ name: 'webclip-bundlers', private: true, devDependencies }, null, 2));
    await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], cache, 600_000);
    await writeFile(join(cache, '.installed'), versions);
  }
  run = await mkdtemp(join(cache, 'run-'));
  tarball = (await sh('npm', ['pack', join(root, 'pkg'), '--pack-destination', run, '--silent'], run)).trim().split('\n').at(-1);
  await writeFile(join(run, 'package.json'), JSON.stringify({ name: 'apps', private: true, dependencies: { 'webclip-wasm': `file:./${tarball}` } }));
  await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], run);
  browser = await launchChromium();
}, { timeout: 900_000 });

after(async () => {
  await browser?.close();
  if (run) await rm(run, { recursive: true, force: true });
});

/** A new app directory holding the shared app source (main.js, index.html). */
async function app(name) {
  const dir = join(run, name);
  await cp(join(here, 'app'), dir, { recursive: true });
  return dir;
}

/** Serve `dir` as the site root, plus the Hub mirror (/hub/...) and the fixtures (/fixture/...). */
function serveApp(dir) {
  return serveStatic(dir, {
    route: async (req, res, path) => {
      const hub = path.match(/^\/hub\/fixtures\/tiny-gelu\/resolve\/main\/([\w.]+)$/);
      if (hub) return sendFile(res, model, hub[1]).then(() => true);
      if (path === '/fixture/reference.json') return sendFile(res, model, 'reference.json').then(() => true);
      if (path.startsWith('/fixture/images/')) return sendFile(res, images, path.slice('/fixture/images'.length)).then(() => true);
      if (path.startsWith('/hub/')) return send(res, 404, 'not found'), true;
      return false;
    },
  });
}

function checkResult(result) {
  assert.equal(result.error, undefined, `${result.error}: ${result.message}`);
  assert.equal(result.device, 'cpu');
  const diff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
  result.texts.forEach((t, i) => assert.ok(diff(t, reference.text_embeds[i]) <= 1e-4, `text ${i}`));
  result.images.forEach((e, i) => assert.ok(diff(e, reference.image_embeds[i]) <= 1e-4, `image ${i}`));
  assert.equal(result.images.length, reference.images.length);
}

/** Open `path` of a site served from `dir` in Chromium and check what the app computed. */
async function checkInBrowser(dir, path = '/') {
  const server = await serveApp(dir);
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('requestfailed', (r) => errors.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => r.status() >= 400 && errors.push(`${r.url()}: HTTP ${r.status()}`));
  try {
    await page.goto(server.url + path);
    await page.waitForFunction(() => window.result, null, { timeout: 90_000 });
    checkResult(await page.evaluate(() => window.result));
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await server.close();
  }
}

test('Vite: `vite build`, no configuration', { timeout: 300_000 }, async () => {
  const dir = await app('vite');
  await sh(bin('vite'), ['build', '--logLevel', 'warn'], dir);
  await checkInBrowser(join(dir, 'dist'));
});

test('webpack 5: `webpack --mode production`, no configuration', { timeout: 300_000 }, async () => {
  const dir = await app('webpack');
  await cp(join(dir, 'main.js'), join(dir, 'src/index.js'));
  const output = await sh(bin('webpack'), ['--mode', 'production', '--no-color'], dir);
  assert.doesNotMatch(output, /\bERROR\b/);
  await writeFile(join(dir, 'dist/index.html'), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script src="main.js"></script>\n');
  await checkInBrowser(join(dir, 'dist'));
});

test('esbuild: `--bundle --format=esm`, the wasm copied next to the bundle', { timeout: 300_000 }, async () => {
  const dir = await app('esbuild');
  await sh(bin('esbuild'), ['main.js', '--bundle', '--format=esm', '--outfile=dist/main.js', '--log-level=warning'], dir);
  await cp(join(run, WASM), join(dir, 'dist/webclip_wasm_bg.wasm'));
  await cp(join(dir, 'index.html'), join(dir, 'dist/index.html'));
  await checkInBrowser(join(dir, 'dist'));
});

test('Rollup: with @rollup/plugin-node-resolve, the wasm copied next to the bundle', { timeout: 300_000 }, async () => {
  const dir = await app('rollup');
  await sh(bin('rollup'), ['main.js', '--format', 'es', '--dir', 'dist', '--plugin', 'node-resolve', '--silent'], dir);
  await cp(join(run, WASM), join(dir, 'dist/webclip_wasm_bg.wasm'));
  await cp(join(dir, 'index.html'), join(dir, 'dist/index.html'));
  await checkInBrowser(join(dir, 'dist'));
});

test('no bundler: a module script with an import map', { timeout: 120_000 }, async () => {
  await app('plain');
  await checkInBrowser(run, '/plain/plain.html');
});

test('Node: ES module (fromPretrained by Hub id) and CommonJS (require, fromFiles)', { timeout: 120_000 }, async () => {
  const dir = join(run, 'node');
  await cp(join(here, 'node'), dir, { recursive: true });
  const server = await serveApp(dir);
  try {
    checkResult(JSON.parse(await sh(process.execPath, ['esm.mjs', server.url], dir)));
  } finally {
    await server.close();
  }
  checkResult(JSON.parse(await sh(process.execPath, ['cjs.cjs', model, images], dir)));
});

test('TypeScript: the types compile with and without the DOM library (NodeNext, skipLibCheck false)', { timeout: 120_000 }, async () => {
  const dir = join(run, 'types');
  await cp(join(here, 'types'), dir, { recursive: true });
  await sh(bin('tsc'), ['-p', 'tsconfig.json'], dir);
  await sh(bin('tsc'), ['-p', 'tsconfig.dom.json'], dir);
});

test('the package: its manifest is importable; the tarball holds the package files and nothing else', async () => {
  const manifest = JSON.parse(await sh(process.execPath, ['--input-type=module', '-e',
    "import m from 'webclip-wasm/package.json' with { type: 'json' }; console.log(JSON.stringify(m))"], run));
  assert.equal(manifest.name, 'webclip-wasm');
  const listed = (await sh('tar', ['-tzf', tarball], run)).trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();
  assert.deepEqual(listed, [...manifest.files, 'package.json'].sort());
});
