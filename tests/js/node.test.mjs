// The npm package's CPU path in Node 20, through Clip.fromFiles, against the Python reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Clip, WebclipError } from '../../pkg/index.js';

const fixtures = new URL('../fixtures/', import.meta.url);
const modelUrl = (name, file) => new URL(`models/${name}/${file}`, fixtures);

async function files(name) {
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

for (const name of ['tiny-quickgelu', 'tiny-gelu-fp16']) {
  test(`${name}: text and image embeddings match transformers within 1e-4`, async () => {
    const reference = JSON.parse(await readFile(modelUrl(name, 'reference.json'), 'utf8'));
    const clip = await Clip.fromFiles(await files(name), { device: 'auto' });
    try {
      assert.equal(clip.device, 'cpu', 'Node has no WebGPU: auto must fall back to the CPU');
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

test('classify, rank and input errors', async () => {
  const clip = await Clip.fromFiles(await files('tiny-gelu'));
  try {
    const png = await readFile(new URL('images/landscape.png', fixtures));
    const scores = await clip.classify(png, ['cat', 'dog', 'car'], { templates: ['a photo of a {}.', 'art of a {}'] });
    assert.equal(scores.length, 3);
    assert.ok(scores[0].score >= scores[1].score && scores[1].score >= scores[2].score);
    assert.ok(Math.abs(scores.reduce((s, x) => s + x.score, 0) - 1) < 1e-5);

    const gallery = await clip.embedImages([png, await readFile(new URL('images/portrait.png', fixtures))]);
    const hits = await clip.rank('a photo', gallery, { topk: 1 });
    assert.equal(hits.length, 1);
    assert.ok(hits[0].index === 0 || hits[0].index === 1);

    // Raw RGBA buffers (what a canvas gives) are accepted too.
    const rgba = { data: new Uint8Array(7 * 5 * 4).fill(200), width: 7, height: 5 };
    const [fromRgba] = await clip.embedImages([rgba]);
    assert.equal(fromRgba.length, clip.embeddingDim);

    await assert.rejects(clip.classify(png, []), (e) => e instanceof WebclipError && e.code === 'E_INPUT');
    await assert.rejects(
      clip.embedImages([{ data: new Uint8Array(0), width: 0, height: 0 }]),
      (e) => e.code === 'E_INPUT' && /zero size/.test(e.message),
    );
    await assert.rejects(clip.embedImages([new Uint8Array([1, 2, 3])]), (e) => e.code === 'E_IMAGE');
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
