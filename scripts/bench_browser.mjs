// Latency of webclip against transformers.js in headless Chromium, same page, same model, same
// session: embedImages (one 128x128 RGBA image, preprocessing included) and embedTexts (one
// caption, a different one each run so that no cache helps), on the CPU (webclip's wasm CPU
// backend vs transformers.js on onnxruntime-web's wasm, one thread each) and on WebGPU
// (SwiftShader here). On WebGPU also: each library's load time and its first image and text call
// after the load (cold pipelines), and the GPU dispatches of one image and one text forward after
// warm-up (counted by wrapping GPUComputePassEncoder's dispatchWorkgroups[Indirect]).
// Prints medians and ratios (webclip time / transformers.js time; below 1.0 is faster).
//
//   node scripts/bench_browser.mjs [--model DIR] [--name NAME] [--runs 20] [--device cpu|webgpu|both]
//                                  [--skip-software-webgpu] [--deeper DIR] [--json FILE]
//
// --json FILE also writes the rows for `npm run bench` (scripts/bench.mjs): a JSON list of
// {"case", "webclip_ms", "reference", "reference_ms", "ratio", "goal"} (dispatch rows have
// "unit": "dispatches" and the counts instead of times; a device that fails gives rows with an
// "error"). --skip-software-webgpu skips WebGPU when the adapter is a software fallback
// (SwiftShader: a ViT-B/32 image takes tens of seconds there). --deeper DIR: the same
// architecture with more layers (both towers), loaded after the timings on WebGPU to count the
// dispatches one more encoder layer costs (else: the forward's total / its layers).
//
// Needs `npm run build` (pkg/), Python with torch + transformers + onnx (`$PYTHON`, default
// python3; for the ONNX export of the same weights, scripts/export_onnx.py, redone only when the
// weights are newer than it) and npm access once: @huggingface/transformers is installed into
// test-artifacts/bench/, and the model is copied to test-artifacts/bench/models/<dir name>/
// unless it is already there. Default model: the demo's (www/models/default); for the ViT-B/32
// shape, `npm run bench` writes a random-init one with
// `webclip train --config <B/32 config.json> --tokenizer tests/fixtures/tokenizer/tokenizer.json
// --steps 0 --out DIR` and passes --model DIR.
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { sendFile, serveStatic } from './serve.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const model = resolve(arg('model', join(root, 'www/models/default')));
const name = arg('name', model === resolve(root, 'www/models/default') ? 'default model' : basename(model));
const runs = Number(arg('runs', 20));
const devices = { cpu: ['cpu'], webgpu: ['webgpu'], both: ['cpu', 'webgpu'] }[arg('device', 'both')];
const jsonPath = arg('json');
const skipSoftware = argv.includes('--skip-software-webgpu');
const deeperDir = arg('deeper');
if (!devices || !(runs >= 1)) {
  console.error('usage: node scripts/bench_browser.mjs [--model DIR] [--name NAME] [--runs N] '
    + '[--device cpu|webgpu|both] [--skip-software-webgpu] [--deeper DIR] [--json FILE]');
  process.exit(2);
}
const TRANSFORMERS_JS = '@huggingface/transformers@4.3.2';

const bench = join(root, 'test-artifacts/bench');
const models = join(bench, 'models');
if (!(await stat(join(bench, 'node_modules/@huggingface/transformers')).catch(() => null))) {
  await mkdir(bench, { recursive: true });
  console.log(`installing ${TRANSFORMERS_JS} into ${bench}`);
  execFileSync('npm', ['install', '--prefix', bench, '--no-audit', '--no-fund', '--no-save', TRANSFORMERS_JS], {
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' },
  });
}
const tjsVersion = JSON.parse(await readFile(join(bench, 'node_modules/@huggingface/transformers/package.json'), 'utf8')).version;

/**
 * Put a model where the page loads it (webclip and transformers.js from the same directory,
 * test-artifacts/bench/models/<id>/), export it to ONNX when the export is older than the
 * weights, and return { id, layers }.
 */
async function prepare(model) {
  const inBench = /^[^.][^/\\]*$/.test(relative(models, model)); // a directory right under models/
  const dir = inBench ? model : join(models, basename(model));
  if (!inBench) {
    await mkdir(models, { recursive: true });
    await cp(model, dir, { recursive: true, preserveTimestamps: true });
  }
  const id = basename(dir);
  const mtime = async (file) => (await stat(join(dir, file)).catch(() => null))?.mtimeMs ?? -1;
  const weights = await mtime('model.safetensors');
  const exported = Math.min(await mtime('onnx/vision_model.onnx'), await mtime('onnx/text_model.onnx'),
    await mtime('tokenizer_config.json'));
  if (exported < weights) {
    console.log(`exporting ${id} to ONNX (scripts/export_onnx.py)`);
    try {
      execFileSync(process.env.PYTHON || 'python3', [join(root, 'scripts/export_onnx.py'), dir],
        { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new Error(`scripts/export_onnx.py failed: ${String(e.stderr ?? e.message).trim().split('\n').at(-1)}`);
    }
  }
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  return { id, layers: { image: config.vision_config.num_hidden_layers, text: config.text_config.num_hidden_layers } };
}
const { id, layers } = await prepare(model);
// The same architecture with more layers: dispatches per layer = the difference / the extra layers.
const deeper = deeperDir ? await prepare(resolve(deeperDir)) : null;
if (deeper && !(deeper.layers.image > layers.image && deeper.layers.text > layers.text)) {
  throw new Error(`--deeper ${deeperDir} needs more vision and text layers than ${model}`);
}

const server = await serveStatic(root, {
  route: async (req, res, path) => path.startsWith('/bench/') && (await sendFile(res, bench, path.slice(6)), true),
});

/** Counts compute dispatches in the page (window.dispatches), for the WebGPU runs. */
function countDispatches() {
  window.dispatches = 0;
  const proto = globalThis.GPUComputePassEncoder?.prototype;
  for (const method of ['dispatchWorkgroups', 'dispatchWorkgroupsIndirect']) {
    const original = proto?.[method];
    if (original) {
      proto[method] = function (...args) {
        window.dispatches += 1;
        return original.apply(this, args);
      };
    }
  }
}

async function measure(device) {
  const browser = await launchChromium({ webgpu: device === 'webgpu' });
  try {
    const { page } = browser;
    if (device === 'webgpu') await page.addInitScript(countDispatches);
    await page.goto(`${server.url}/scripts/bench/page.html`);
    await page.waitForFunction(() => window.ready === true);
    return await page.evaluate(async ({ device, runs, id, skipSoftware }) => {
      const { transformers: T, Clip } = window;
      let adapter = null;
      if (device === 'webgpu') {
        const a = await navigator.gpu?.requestAdapter();
        if (!a) throw new Error('no WebGPU adapter');
        const info = a.info ?? {};
        adapter = {
          name: [info.vendor, info.architecture, info.description].filter(Boolean).join(' '),
          fallback: Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter),
        };
        if (adapter.fallback && skipSoftware) return { adapter, skipped: true };
      }
      const { pixels, raw } = window.benchSetup();
      // A different caption for every call (webclip caches the embeddings of texts it has seen), cut
      // to the model's context by both libraries.
      const captions = [];
      for (const p of ['on the left', 'at the top', 'on the right', 'at the bottom', 'in the center']) {
        for (const z of ['small', 'big']) {
          for (const s of ['circle', 'square', 'triangle', 'cross']) {
            for (const c of ['red', 'green', 'blue', 'yellow', 'purple', 'orange']) captions.push(`a ${z} ${c} ${s} ${p}`);
          }
        }
      }
      const caption = (i) => captions[i % captions.length] + (i >= captions.length ? ` ${Math.floor(i / captions.length)}` : '');
      const time = async (fn) => {
        const start = performance.now();
        const value = await fn();
        return [performance.now() - start, value];
      };

      // Each library: load, then its first image and text call (cold pipelines on WebGPU).
      const [webclipLoad, clip] = await time(() => Clip.fromPretrained(`/bench/models/${id}/`, { device, cache: false }));
      const webclipImage = () => clip.embedImages([pixels]);
      let webclipTexts = 0;
      const webclipText = () => clip.embedTexts([caption(webclipTexts++)]);
      const webclipFirst = { image: (await time(webclipImage))[0], text: (await time(webclipText))[0] };

      const options = { device: device === 'webgpu' ? 'webgpu' : 'wasm', dtype: 'fp32' };
      const [tjsLoad, [vision, text, tokenizer, processor]] = await time(async () => [
        await T.CLIPVisionModelWithProjection.from_pretrained(id, options),
        await T.CLIPTextModelWithProjection.from_pretrained(id, options),
        await T.AutoTokenizer.from_pretrained(id),
        await T.AutoProcessor.from_pretrained(id),
      ]);
      const tjsImage = async () => (await vision(await processor(raw))).image_embeds.data;
      let tjsTexts = 0;
      const tjsText = async () => (await text(tokenizer([caption(tjsTexts++)], { padding: true, truncation: true }))).text_embeds.data;
      const tjsFirst = { image: (await time(tjsImage))[0], text: (await time(tjsText))[0] };

      const median = async (fn) => {
        for (let i = 0; i < 3; i++) await fn();
        const times = [];
        for (let i = 0; i < runs; i++) times.push((await time(fn))[0]);
        return times.sort((a, b) => a - b)[times.length >> 1];
      };
      const result = {
        device: clip.device,
        adapter,
        load: { webclip: webclipLoad, transformers: tjsLoad },
        first: { webclip: webclipFirst, transformers: tjsFirst },
        image: { webclip: await median(webclipImage), transformers: await median(tjsImage) },
        text: { webclip: await median(webclipText), transformers: await median(tjsText) },
      };
      if (device === 'webgpu') {
        // Dispatches of one forward after warm-up, counted twice (they should agree).
        const count = async (fn) => {
          const counts = [];
          for (let i = 0; i < 2; i++) {
            window.dispatches = 0;
            await fn();
            counts.push(window.dispatches);
          }
          return counts;
        };
        result.dispatches = {
          image: { webclip: await count(webclipImage), transformers: await count(tjsImage) },
          text: { webclip: await count(webclipText), transformers: await count(tjsText) },
        };
      }
      return result;
    }, { device, runs, id, skipSoftware });
  } finally {
    await browser.close();
  }
}

/**
 * Dispatches of one image and one text forward of the deeper model after warm-up, for both
 * libraries, in a page of its own (so the first model's pipelines and memory are not counted).
 */
async function countDeeper() {
  const browser = await launchChromium({ webgpu: true });
  try {
    const { page } = browser;
    await page.addInitScript(countDispatches);
    await page.goto(`${server.url}/scripts/bench/page.html`);
    await page.waitForFunction(() => window.ready === true);
    return await page.evaluate(async ({ id }) => {
      const { transformers: T, Clip } = window;
      const { pixels, raw } = window.benchSetup();
      let texts = 0;
      const caption = () => `a small red circle on the left ${texts++}`;
      const clip = await Clip.fromPretrained(`/bench/models/${id}/`, { device: 'webgpu', cache: false });
      const options = { device: 'webgpu', dtype: 'fp32' };
      const vision = await T.CLIPVisionModelWithProjection.from_pretrained(id, options);
      const text = await T.CLIPTextModelWithProjection.from_pretrained(id, options);
      const tokenizer = await T.AutoTokenizer.from_pretrained(id);
      const processor = await T.AutoProcessor.from_pretrained(id);
      const fns = {
        image: {
          webclip: () => clip.embedImages([pixels]),
          transformers: async () => (await vision(await processor(raw))).image_embeds.data,
        },
        text: {
          webclip: () => clip.embedTexts([caption()]),
          transformers: async () => (await text(tokenizer([caption()], { padding: true, truncation: true }))).text_embeds.data,
        },
      };
      const out = { image: {}, text: {} };
      for (const kind of ['image', 'text']) {
        for (const lib of ['webclip', 'transformers']) {
          for (let i = 0; i < 2; i++) await fns[kind][lib]();
          out[kind][lib] = [];
          for (let i = 0; i < 2; i++) {
            window.dispatches = 0;
            await fns[kind][lib]();
            out[kind][lib].push(window.dispatches);
          }
        }
      }
      return out;
    }, { id: deeper.id });
  } finally {
    await browser.close();
  }
}

const label = { cpu: 'browser wasm CPU', webgpu: 'browser WebGPU' };
const reference = { cpu: `transformers.js ${tjsVersion} (wasm)`, webgpu: `transformers.js ${tjsVersion} (WebGPU)` };
const ratio = (a, b) => (a != null && b ? a / b : null);

/**
 * Dispatches of one `kind` forward: each library's total, and per encoder layer: the difference
 * to the deeper model divided by the extra layers when --deeper was measured (what one more
 * layer costs), else the total divided by the layers (which also counts embeddings, pooling and
 * projection).
 */
function dispatchesOf(r, kind) {
  if (!r?.dispatches) return null;
  const last = (counts) => counts.at(-1);
  const d = r.dispatches[kind];
  const unstable = ['webclip', 'transformers'].filter((lib) => new Set(d[lib]).size > 1)
    .map((lib) => `${lib} counted ${d[lib].join(' and ')}`);
  const extra = r.deeper && deeper.layers[kind] - layers[kind];
  const perLayer = (lib) => (r.deeper ? (last(r.deeper[kind][lib]) - last(d[lib])) / extra : last(d[lib]) / layers[kind]);
  const method = r.deeper
    ? `per layer: (forward with ${deeper.layers[kind]} layers: ${last(r.deeper[kind].webclip)} `
      + `- forward with ${layers[kind]}) / ${extra}`
    : `per layer: the forward's total / ${layers[kind]} layers`;
  return {
    webclip: last(d.webclip),
    transformers: last(d.transformers),
    webclipPerLayer: perLayer('webclip'),
    transformersPerLayer: perLayer('transformers'),
    note: [`goal: ≤ 10 per encoder layer; ${method}`, ...unstable,
      ...(r.deeperError ? [`the deeper model failed: ${r.deeperError}`] : [])].join('; '),
  };
}

/** The JSON rows of one device's result (or of its failure). */
function rowsOf(device, r, error) {
  const note = device === 'cpu' ? `1 thread each, median of ${runs}` : `median of ${runs}`;
  const adapter = r?.adapter && `${r.adapter.name}${r.adapter.fallback ? ' (software fallback adapter)' : ''}`;
  const row = (what, webclip, ref, goal, extra = {}) => ({
    case: `${label[device]}, ${name}, ${what}`, webclip_ms: webclip ?? null, reference: reference[device],
    reference_ms: ref ?? null, ratio: ratio(webclip, ref), goal, ...extra,
    ...(adapter ? { adapter } : {}), ...(error ? { error } : {}),
  });
  if (r?.skipped) {
    const why = `skipped: the WebGPU adapter (${r.adapter.name}) is a software fallback`;
    return [row('image, batch 1', null, null, 1.0, { note: why, skipped: true }),
      row('text, batch 1', null, null, 1.0, { note: why, skipped: true })];
  }
  const rows = [
    row('image, batch 1', r?.image.webclip, r?.image.transformers, 1.0, { note }),
    row('text, batch 1', r?.text.webclip, r?.text.transformers, 1.0, { note }),
  ];
  if (device === 'webgpu') {
    rows.push(
      row('load (fetch, weights, warm-up)', r?.load.webclip, r?.load.transformers, null,
        { note: 'from 127.0.0.1, no cache' }),
      row('image, first call after load', r?.first.webclip.image, r?.first.transformers.image, 2.0),
      row('text, first call after load', r?.first.webclip.text, r?.first.transformers.text, 2.0),
    );
    for (const kind of ['image', 'text']) {
      const d = dispatchesOf(r, kind);
      rows.push(row(`GPU dispatches per ${kind} forward`, null, null, 10, {
        unit: 'dispatches',
        webclip_dispatches: d?.webclip ?? null,
        layers: layers[kind],
        webclip_per_layer: d?.webclipPerLayer ?? null,
        reference_dispatches: d?.transformers ?? null,
        reference_per_layer: d?.transformersPerLayer ?? null,
        note: d?.note ?? 'goal: ≤ 10 per encoder layer',
      }));
    }
  }
  return rows;
}

const rows = [];
let failed = false;
try {
  const ms = (v) => (v == null ? '-' : `${v.toFixed(1)} ms`);
  console.log(`model: ${model} (${name}); medians of ${runs} runs; ratio = webclip / transformers.js ${tjsVersion}`);
  console.log(`${'case'.padEnd(34)}${'webclip'.padStart(12)}${'transformers.js'.padStart(18)}${'ratio'.padStart(8)}`);
  const line = (what, a, b) => console.log(`${what.padEnd(34)}${ms(a).padStart(12)}${ms(b).padStart(18)}`
    + `${(a != null && b ? `${(a / b).toFixed(2)}x` : '-').padStart(8)}`);
  for (const device of devices) {
    let r = null;
    let error = null;
    try {
      r = await measure(device);
      if (device === 'webgpu' && deeper && !r.skipped) {
        try {
          r.deeper = await countDeeper();
        } catch (e) {
          r.deeperError = String(e.message ?? e).split('\n')[0];
          console.error(`dispatches of the deeper model: ${r.deeperError}`);
        }
      }
    } catch (e) {
      error = String(e.message ?? e).split('\n')[0];
      failed = true;
      console.error(`${device}: ${error}`);
    }
    rows.push(...rowsOf(device, r, error));
    if (!r) continue;
    if (r.adapter) console.log(`WebGPU adapter: ${r.adapter.name}${r.adapter.fallback ? ' (software fallback)' : ''}`);
    if (r.skipped) {
      console.log(`${device}: skipped (software adapter, --skip-software-webgpu)`);
      continue;
    }
    for (const kind of ['image', 'text']) line(`${kind}, ${r.device}`, r[kind].webclip, r[kind].transformers);
    if (device === 'webgpu') {
      line('load, webgpu', r.load.webclip, r.load.transformers);
      for (const kind of ['image', 'text']) line(`${kind}, first call after load`, r.first.webclip[kind], r.first.transformers[kind]);
      for (const kind of ['image', 'text']) {
        const d = dispatchesOf(r, kind);
        console.log(`dispatches per ${kind} forward (${layers[kind]} layers): webclip ${d.webclip} `
          + `(${d.webclipPerLayer.toFixed(1)} per layer), transformers.js ${d.transformers} `
          + `(${d.transformersPerLayer.toFixed(1)} per layer)${r.deeper ? ', per layer from the deeper model' : ''}`);
      }
    }
  }
} finally {
  await server.close();
}
if (jsonPath) await writeFile(jsonPath, `${JSON.stringify(rows, null, 1)}\n`);
if (failed) process.exitCode = 1;
