// Peak memory while headless Chromium streams a model into webclip on the CPU device, against
// the size of model.safetensors. The weights stream from fetch into the loader chunk by chunk,
// so the wasm heap should grow by about one copy of the weights (goal: at most 1.5x), not two.
//
//   node scripts/measure_load_memory.mjs [MODEL_DIR]
//
// Without MODEL_DIR it writes a random-init model of about 100 MB with the webclip binary
// (`webclip train --steps 0` on a 12-layer, 512-wide config) into test-artifacts/.
// Wasm memory only grows, so its size after the load is the peak of the load.
import { execFileSync } from 'node:child_process';
import { stat, writeFile, mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { serveStatic } from './serve.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

async function makeModel() {
  const dir = join(root, 'test-artifacts/memory-model');
  const config = {
    projection_dim: 512,
    text_config: { vocab_size: 64, hidden_size: 512, intermediate_size: 2048, num_attention_heads: 8,
      num_hidden_layers: 4, max_position_embeddings: 16, bos_token_id: 0, eos_token_id: 1, pad_token_id: 1 },
    vision_config: { hidden_size: 512, intermediate_size: 2048, num_attention_heads: 8, num_hidden_layers: 8,
      image_size: 64, patch_size: 16 },
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'init-config.json'), JSON.stringify(config));
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache/webclip/target');
  execFileSync(join(target, 'release/webclip'),
    ['train', '--config', join(dir, 'init-config.json'), '--steps', '0', '--out', dir], { stdio: 'ignore' });
  return dir;
}

const modelDir = resolve(process.argv[2] ?? await makeModel());
const weights = (await stat(join(modelDir, 'model.safetensors'))).size;
const server = await serveStatic(root);
const browser = await launchChromium();
try {
  const { page } = browser;
  await page.goto(`${server.url}/tests/js/browser/index.html`);
  await page.waitForFunction(() => window.ready === true);
  const result = await page.evaluate(async (base) => {
    const { Clip, wasmMemoryBytes } = window.webclip;
    // A first tiny load initialises the module; its heap is the baseline.
    const tiny = await Clip.fromPretrained('/tests/fixtures/models/tiny-gelu/', { device: 'cpu', cache: false });
    tiny.dispose();
    const before = wasmMemoryBytes();
    const started = performance.now();
    const clip = await Clip.fromPretrained(base, { device: 'cpu', cache: false });
    const ms = performance.now() - started;
    const after = wasmMemoryBytes();
    clip.dispose();
    return { before, after, ms };
  }, `/${relative(root, modelDir)}/`);
  const grown = result.after - result.before;
  const mb = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  console.log(`model.safetensors: ${mb(weights)}; load on the CPU device: ${(result.ms / 1000).toFixed(2)} s`);
  console.log(`wasm memory: ${mb(result.before)} before, ${mb(result.after)} after (peak)`);
  console.log(`growth during the load: ${mb(grown)} = ${(grown / weights).toFixed(2)}x the weights file (goal <= 1.5x)`);
} finally {
  await browser.close();
  await server.close();
}
