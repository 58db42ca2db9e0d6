// The npm package's CPU path in Node 20 against the Python reference: Clip.fromFiles, and
// Clip.fromPretrained over HTTP from a local server (Hub ids, compressed transfers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Clip, WebclipError } from '../../pkg/index.js';
import { serveStatic } from '../../scripts/serve.mjs';

const fixtures = new URL('../fixtures/', import.meta.url);
const modelUrl = (name, file) => new URL(`models/${name}/${file}`, fixtures);

async function files(name) {
  if (name.includes('open-clip')) {
    return {
      config: await readFile(modelUrl(name, 'open_clip_config.json'), 'utf8'),
      weights: await readFile(modelUrl(name, 'open_clip_model.safetensors')),
      tokenizer: await readFile(modelUrl(name, 'tokenizer.json')),
    };
  }
  return {
    config: await readFile(modelUrl(name, 'config.json'), 'utf8'),
    weights: await readFile(modelUrl(name, 'model.safetensors')),
    tokenizer: await readFile(modelUrl(name, 'tokenizer.json')),
    preprocessor: await readFile(modelUrl(name, 'preprocessor_config.json'), 'utf8'),
  };
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

// Hugging Face directories against transformers, open_clip's layout against open_clip.
for (const name of ['tiny-quickgelu', 'tiny-gelu-fp16', 'tiny-open-clip']) {
  test(`${name}: text and image embeddings match the reference within 1e-4`, async () => {
    const reference = JSON.parse(await readFile(modelUrl(name, 'reference.json'), 'utf8'));
    const clip = await Clip.fromFiles(await files(name), { device: 'auto' });
    try {
      assert.equal(clip.device, 'cpu', 'Node has no WebGPU: auto must fall back to the CPU');
      assert.match(clip.deviceReason, /no WebGPU/);
      const texts = await clip.embedTexts(reference.texts);
      texts.forEach((t, i) => assert.ok(maxAbsDiff(t, reference.text_embeds[i]) <= 1e-4, `text ${i}`));
      // PNG bytes, decoded and preprocessed in wasm (PIL-exact), then embedded.
      const images = await Promise.all(reference.images.map((f) => readFile(new URL(`images/${f}`, fixtures))));
      const embeds = await clip.embedImages(images);
      embeds.forEach((e, i) => assert.ok(maxAbsDiff(e, reference.image_embeds[i]) <= 1e-4, `image ${i}`));
    } finally {
      clip.dispose();
    }
  });
}

const softmax = (xs) => {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
};

test('classify and rank match the reference logits', async () => {
  const reference = JSON.parse(await readFile(modelUrl('tiny-gelu', 'reference.json'), 'utf8'));
  const clip = await Clip.fromFiles(await files('tiny-gelu'));
  try {
    // With the template '{}' each prompt is the label itself, so the scores are the softmax of
    // the reference logits over the labels (the empty text cannot be a label).
    const keep = reference.texts.flatMap((t, j) => (t.trim() ? [j] : []));
    const labels = keep.map((j) => reference.texts[j]);
    const images = await Promise.all(reference.images.map((f) => readFile(new URL(`images/${f}`, fixtures))));
    const results = await clip.classify(images, labels, { template: '{}' });
    assert.equal(results.length, images.length, 'an array of images gives one result per image');
    results.forEach((scores, i) => {
      const expected = softmax(keep.map((j) => reference.logits_per_image[i][j]));
      assert.equal(scores.length, labels.length);
      for (const { label, score } of scores) {
        const want = expected[labels.indexOf(label)];
        assert.ok(Math.abs(score - want) <= 1e-4, `image ${i}, "${label}": ${score} vs ${want}`);
      }
      scores.forEach((s, k) => k && assert.ok(scores[k - 1].score >= s.score, 'best first'));
    });
    const [single] = [await clip.classify(images[0], labels, { templates: '{}' })];
    assert.deepEqual(single, results[0], 'one image gives one list; a string is one template');

    // rank: cosine similarities against the reference logits / exp(logit_scale).
    const gallery = await clip.embedImages(images, { batchSize: 2 });
    const scale = Math.exp(reference.logit_scale);
    for (const j of [0, 2]) {
      const hits = await clip.rank(reference.texts[j], gallery);
      const expected = reference.logits_per_image.map((row, index) => ({ index, score: row[j] / scale }))
        .sort((a, b) => b.score - a.score);
      assert.deepEqual(hits.map((h) => h.index), expected.map((h) => h.index), `order for text ${j}`);
      hits.forEach((h, k) => assert.ok(Math.abs(h.score - expected[k].score) <= 1e-4, `score ${k} for text ${j}`));
      const top = await clip.rank(reference.texts[j], gallery, { topk: 1 });
      assert.deepEqual(top.map((h) => h.index), [expected[0].index]);
    }

    // Raw RGBA buffers (what a canvas gives) are accepted too.
    const rgba = { data: new Uint8Array(7 * 5 * 4).fill(200), width: 7, height: 5 };
    const [fromRgba] = await clip.embedImages([rgba]);
    assert.equal(fromRgba.length, clip.embeddingDim);

    await assert.rejects(clip.classify(images[0], []), (e) => e instanceof WebclipError && e.code === 'E_INPUT');
    await assert.rejects(
      clip.embedImages([{ data: new Uint8Array(0), width: 0, height: 0 }]),
      (e) => e.code === 'E_INPUT' && /zero size/.test(e.message),
    );
    await assert.rejects(clip.embedImages([new Uint8Array([1, 2, 3])]), (e) => e.code === 'E_IMAGE');
  } finally {
    clip.dispose();
  }
});

test('embedImages on many images reports progress per batch and yields between batches', async () => {
  const clip = await Clip.fromFiles(await files('tiny-quickgelu'));
  try {
    const images = Array.from({ length: 7 }, (_, i) => ({ data: new Uint8Array(9 * 9 * 4).fill(30 * i), width: 9, height: 9 }));
    const events = [];
    let ticks = 0;
    const timer = setInterval(() => { ticks += 1; }, 0);
    const embeds = await clip.embedImages(images, { batchSize: 3, onProgress: (e) => events.push(e) });
    clearInterval(timer);
    assert.equal(embeds.length, 7);
    assert.deepEqual(events, [{ done: 3, total: 7 }, { done: 6, total: 7 }, { done: 7, total: 7 }]);
    assert.ok(ticks >= 1, 'timers ran between batches');
    const one = await clip.embedImages(images.slice(4, 5));
    assert.ok(maxAbsDiff(one[0], embeds[4]) <= 1e-6, 'batching does not change results');
  } finally {
    clip.dispose();
  }
});

test('bad weights are typed errors', async () => {
  const good = await files('tiny-quickgelu');
  const truncated = { ...good, weights: good.weights.subarray(0, good.weights.length - 1000) };
  await assert.rejects(Clip.fromFiles(truncated, { device: 'cpu' }), (e) => e.code === 'E_TRUNCATED');
  const garbage = { ...good, weights: new Uint8Array(64).fill(7) };
  await assert.rejects(Clip.fromFiles(garbage, { device: 'cpu' }), (e) => e.code === 'E_FORMAT');
  const badConfig = { ...good, config: good.config.replace('quick_gelu', 'swish') };
  await assert.rejects(Clip.fromFiles(badConfig, { device: 'cpu' }), (e) => e.code === 'E_CONFIG');
});

test('fromPretrained in Node: a Hub id on a mirror, a gzip transfer whose Content-Length is smaller than the body', async () => {
  const dir = new URL('models/tiny-gelu/', fixtures);
  const weights = await readFile(new URL('model.safetensors', dir));
  const requests = [];
  // /hub/{owner}/{name}/resolve/{revision}/{file}: the fixture, gzip-encoded (as a CDN sends it).
  const server = await serveStatic(fileURLToPath(dir), {
    route: async (req, res, path) => {
      requests.push(path);
      const match = path.match(/^\/hub\/fixtures\/tiny-gelu\/resolve\/v1\/(.+)$/);
      if (!match) return false;
      const body = gzipSync(await readFile(new URL(match[1], dir)));
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
      return true;
    },
  });
  try {
    const events = [];
    const clip = await Clip.fromPretrained('fixtures/tiny-gelu', {
      hubUrl: `${server.url}/hub/`, revision: 'v1', onProgress: (e) => events.push(e),
    });
    const reference = JSON.parse(await readFile(modelUrl('tiny-gelu', 'reference.json'), 'utf8'));
    const [text] = await clip.embedTexts(reference.texts[0]);
    assert.ok(maxAbsDiff(text, reference.text_embeds[0]) <= 1e-4);
    clip.dispose();
    assert.ok(requests.includes('/hub/fixtures/tiny-gelu/resolve/v1/model.safetensors'), requests.join(' '));
    const progress = events.filter((e) => e.file === 'model.safetensors');
    progress.forEach((e, i) => {
      assert.ok(e.loaded <= e.total, `loaded ${e.loaded} > total ${e.total}`);
      if (i) assert.ok(e.loaded >= progress[i - 1].loaded);
    });
    assert.deepEqual(progress.at(-1), { file: 'model.safetensors', loaded: weights.length, total: weights.length });
  } finally {
    await server.close();
  }
});

test('fromPretrained on open_clip\'s hub layout: without config.json, and beside timm\'s config.json', async () => {
  const name = 'tiny-open-clip';
  const reference = JSON.parse(await readFile(modelUrl(name, 'reference.json'), 'utf8'));
  // /timm/ serves the same directory with a config.json that is not a CLIP config.
  const server = await serveStatic(fileURLToPath(new URL(`models/${name}/`, fixtures)), {
    route: async (req, res, path) => {
      if (path === '/timm/config.json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"architecture": "vit_base_patch32_clip_224", "num_classes": 512}');
        return true;
      }
      if (!path.startsWith('/timm/')) return false;
      res.writeHead(302, { location: path.slice('/timm'.length) });
      res.end();
      return true;
    },
  });
  try {
    for (const base of [`${server.url}/`, `${server.url}/timm/`]) {
      const events = [];
      const clip = await Clip.fromPretrained(base, { onProgress: (e) => events.push(e) });
      try {
        const texts = await clip.embedTexts(reference.texts);
        texts.forEach((t, i) => assert.ok(maxAbsDiff(t, reference.text_embeds[i]) <= 1e-4, `${base}: text ${i}`));
        const files = new Set(events.map((e) => e.file));
        assert.ok(files.has('open_clip_config.json') && files.has('open_clip_model.safetensors'), [...files].join());
      } finally {
        clip.dispose();
      }
    }
  } finally {
    await server.close();
  }
});

const sigmoid = (x) => 1 / (1 + Math.exp(-x));

/** A SigLIP model against its reference: embeddings, and independent sigmoid scores. */
async function checkSiglip(name, clip, what) {
  const reference = JSON.parse(await readFile(modelUrl(name, 'reference.json'), 'utf8'));
  const images = await Promise.all(reference.images.map((f) => readFile(new URL(`images/${f}`, fixtures))));
  assert.equal(clip.scoring, 'sigmoid', what);
  const texts = await clip.embedTexts(reference.texts);
  texts.forEach((t, i) => assert.ok(maxAbsDiff(t, reference.text_embeds[i]) <= 1e-4, `${what}: text ${i}`));
  const embeds = await clip.embedImages(images);
  embeds.forEach((e, i) => assert.ok(maxAbsDiff(e, reference.image_embeds[i]) <= 1e-4, `${what}: image ${i}`));
  // Independent probabilities: each equals the reference's sigmoid, whatever the other labels.
  const labels = reference.texts.slice(0, 3);
  for (const subset of [labels, labels.slice(1, 2)]) {
    const scores = await clip.classify(images[0], subset, { template: '{}' });
    for (const { label, score } of scores) {
      const j = reference.texts.indexOf(label);
      const want = reference.probs_per_image[0][j];
      assert.ok(Math.abs(score - want) <= 1e-4, `${what}: "${label}": ${score} vs ${want}`);
      assert.ok(Math.abs(want - sigmoid(reference.logits_per_image[0][j])) < 1e-5);
    }
  }
}

test('SigLIP: fromFiles and fromPretrained (spiece.model only) match transformers, with sigmoid scores', async () => {
  const name = 'tiny-siglip';
  const check = (clip, what) => checkSiglip(name, clip, what);
  const clip = await Clip.fromFiles({
    ...(await files(name)),
    tokenizerConfig: await readFile(modelUrl(name, 'tokenizer_config.json'), 'utf8'),
  });
  try {
    await check(clip, 'fromFiles');
  } finally {
    clip.dispose();
  }
  // As google/siglip-* repos ship it: no tokenizer.json, SentencePiece's spiece.model.
  const server = await serveStatic(fileURLToPath(new URL(`models/${name}/`, fixtures)), {
    route: async (req, res, path) => {
      if (path !== '/tokenizer.json') return false;
      res.writeHead(404);
      res.end();
      return true;
    },
  });
  try {
    const events = [];
    const served = await Clip.fromPretrained(`${server.url}/`, { onProgress: (e) => events.push(e), cache: false });
    try {
      await check(served, 'fromPretrained');
      const fetched = new Set(events.map((e) => e.file));
      assert.ok(fetched.has('spiece.model') && fetched.has('tokenizer_config.json'), [...fetched].join());
    } finally {
      served.dispose();
    }
  } finally {
    await server.close();
  }
});

test('SigLIP 2 (Gemma-style tokenizer, padded on the left) by fromPretrained matches transformers', async () => {
  const name = 'tiny-siglip2';
  const server = await serveStatic(fileURLToPath(new URL(`models/${name}/`, fixtures)));
  try {
    const clip = await Clip.fromPretrained(`${server.url}/`, { cache: false });
    try {
      assert.deepEqual(clip.tokenize('a photo of a cat'),
        JSON.parse(await readFile(modelUrl(name, 'reference.json'), 'utf8')).input_ids[0]);
      await checkSiglip(name, clip, 'SigLIP 2');
    } finally {
      clip.dispose();
    }
  } finally {
    await server.close();
  }
});
