// Latency of webclip against transformers.js in headless Chromium, same page, same model, same
// session: embedImages (one 128x128 RGBA image, preprocessing included) and embedTexts (one
// caption, a different one each run so that no cache helps), on the CPU (webclip's wasm CPU
// backend vs transformers.js on onnxruntime-web's wasm) and on WebGPU (SwiftShader here).
// Prints medians and ratios (webclip time / transformers.js time; below 1.0 is faster).
//
//   node scripts/bench_browser.mjs [--model DIR] [--runs 20] [--device cpu|webgpu|both]
//
// Needs `npm run build` (pkg/), Python with torch + transformers + onnx (for the ONNX export
// of the same weights, scripts/export_onnx.py) and npm access once: @huggingface/transformers is
// installed into test-artifacts/bench/. Default model: the demo's (www/models/default); for the
// ViT-B/32 shape, write a random-init one with
// `webclip train --config <B/32 config.json> --steps 0 --out DIR` and pass --model DIR.
import { execFileSync } from 'node:child_process';
import { cp, mkdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { sendFile, serveStatic } from './serve.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const model = resolve(arg('model', join(root, 'www/models/default')));
const runs = Number(arg('runs', 20));
const devices = { cpu: ['cpu'], webgpu: ['webgpu'], both: ['cpu', 'webgpu'] }[arg('device', 'both')];
const TRANSFORMERS_JS = '@huggingface/transformers@4.3.2';

const bench = join(root, 'test-artifacts/bench');
if (!(await stat(join(bench, 'node_modules/@huggingface/transformers')).catch(() => null))) {
  await mkdir(bench, { recursive: true });
  console.log(`installing ${TRANSFORMERS_JS} into ${bench}`);
  execFileSync('npm', ['install', '--prefix', bench, '--no-audit', '--no-fund', '--no-save', TRANSFORMERS_JS], {
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip' },
  });
}
const copy = join(bench, 'models/model');
await rm(copy, { recursive: true, force: true });
await cp(model, copy, { recursive: true });
execFileSync('python3', [join(root, 'scripts/export_onnx.py'), copy], { stdio: 'ignore' });

const server = await serveStatic(root, {
  route: async (req, res, path) => path.startsWith('/bench/') && (await sendFile(res, bench, path.slice(6)), true),
});

async function measure(device) {
  const browser = await launchChromium({ webgpu: device === 'webgpu' });
  try {
    const { page } = browser;
    await page.goto(`${server.url}/scripts/bench/page.html`);
    await page.waitForFunction(() => window.ready === true);
    return await page.evaluate(async ({ device, runs }) => {
      const { transformers: T, Clip } = window;
      T.env.allowRemoteModels = false;
      T.env.allowLocalModels = true;
      T.env.localModelPath = '/bench/models/';
      T.env.backends.onnx.wasm.wasmPaths = '/bench/node_modules/onnxruntime-web/dist/';
      const options = { device: device === 'webgpu' ? 'webgpu' : 'wasm', dtype: 'fp32' };
      const vision = await T.CLIPVisionModelWithProjection.from_pretrained('model', options);
      const text = await T.CLIPTextModelWithProjection.from_pretrained('model', options);
      const tokenizer = await T.AutoTokenizer.from_pretrained('model');
      const processor = await T.AutoProcessor.from_pretrained('model');
      const clip = await Clip.fromPretrained('/bench/models/model/', { device, cache: false });

      const canvas = new OffscreenCanvas(128, 128);
      const g = canvas.getContext('2d');
      g.fillStyle = '#888'; g.fillRect(0, 0, 128, 128); g.fillStyle = '#d22'; g.fillRect(30, 30, 60, 60);
      const pixels = g.getImageData(0, 0, 128, 128);
      const raw = new T.RawImage(pixels.data, 128, 128, 4);
      const captions = [];
      for (const c of ['red', 'green', 'blue', 'yellow', 'purple', 'orange']) {
        for (const s of ['circle', 'square', 'triangle', 'cross']) {
          for (const p of ['on the left', 'at the top']) captions.push(`a small ${c} ${s} ${p}`);
        }
      }
      const median = async (fn) => {
        for (let i = 0; i < 3; i++) await fn(i);
        const times = [];
        for (let i = 3; i < runs + 3; i++) {
          const start = performance.now();
          await fn(i);
          times.push(performance.now() - start);
        }
        return times.sort((a, b) => a - b)[times.length >> 1];
      };
      return {
        device: clip.device,
        image: {
          webclip: await median(() => clip.embedImages([pixels])),
          transformers: await median(async () => (await vision(await processor(raw))).image_embeds.data),
        },
        text: {
          webclip: await median((i) => clip.embedTexts([captions[i % captions.length]])),
          transformers: await median(async (i) => (await text(tokenizer([captions[i % captions.length]], { padding: true }))).text_embeds.data),
        },
      };
    }, { device, runs });
  } finally {
    await browser.close();
  }
}

try {
  console.log(`model: ${model}; medians of ${runs} runs; ratio = webclip / transformers.js`);
  console.log(`${'case'.padEnd(22)}${'webclip'.padStart(12)}${'transformers.js'.padStart(18)}${'ratio'.padStart(8)}`);
  for (const device of devices) {
    const r = await measure(device);
    for (const kind of ['image', 'text']) {
      const { webclip, transformers } = r[kind];
      console.log(`${`${kind}, ${r.device}`.padEnd(22)}${`${webclip.toFixed(1)} ms`.padStart(12)}`
        + `${`${transformers.toFixed(1)} ms`.padStart(18)}${`${(webclip / transformers).toFixed(2)}x`.padStart(8)}`);
    }
  }
} finally {
  await server.close();
}
