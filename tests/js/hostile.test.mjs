// Hostile inputs to the npm package in Node: every wrong argument, config or image is a rejected
// WebclipError with the expected `code`, and no call stays pending (each races a timeout). A
// panic inside wasm is tested in a child process (it leaves the runtime unusable).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Clip, WebclipError } from '../../pkg/index.js';

const fixtures = new URL('../fixtures/', import.meta.url);
const model = new URL('models/tiny-gelu/', fixtures);
const good = {
  config: await readFile(new URL('config.json', model), 'utf8'),
  weights: await readFile(new URL('model.safetensors', model)),
  tokenizer: await readFile(new URL('tokenizer.json', model)),
  preprocessor: await readFile(new URL('preprocessor_config.json', model), 'utf8'),
};
const png = await readFile(new URL('images/landscape.png', fixtures));
const siglipDir = new URL('models/tiny-siglip/', fixtures);
const siglip = {
  config: await readFile(new URL('config.json', siglipDir), 'utf8'),
  weights: await readFile(new URL('model.safetensors', siglipDir)),
  tokenizer: await readFile(new URL('spiece.model', siglipDir)),
  tokenizerConfig: await readFile(new URL('tokenizer_config.json', siglipDir), 'utf8'),
  preprocessor: await readFile(new URL('preprocessor_config.json', siglipDir), 'utf8'),
};
/** SigLIP's spiece.model with `count` bytes from `at` overwritten by 0xff (not JSON, not valid protobuf). */
const spoiled = (at, count) => {
  const bytes = new Uint8Array(siglip.tokenizer);
  bytes.fill(0xff, at, at + count);
  return bytes;
};

/** Settle `thunk()` (sync or async) within `ms`: { value } | { error } | { pending: true }. */
async function settle(thunk, ms = 30_000) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve({ pending: true }), ms); });
  try {
    return await Promise.race([(async () => thunk())().then((value) => ({ value }), (error) => ({ error })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run each [name, thunk, code] as a subtest: it must reject with a WebclipError of that code. */
async function expectCodes(t, cases) {
  for (const [name, thunk, code] of cases) {
    await t.test(name, async () => {
      const result = await settle(thunk);
      assert.ok(!result.pending, 'the call is still pending after 30 s');
      assert.ok(result.error, `resolved instead of failing: ${JSON.stringify(result.value)?.slice(0, 200)}`);
      assert.ok(result.error instanceof WebclipError, `not a WebclipError: ${result.error}`);
      assert.equal(result.error.code, code, result.error.message);
    });
  }
}

const withConfig = (edit) => {
  const config = JSON.parse(good.config);
  edit(config);
  return { ...good, config: JSON.stringify(config) };
};
const withPreprocessor = (edit) => {
  const preprocessor = JSON.parse(good.preprocessor);
  edit(preprocessor);
  return { ...good, preprocessor: JSON.stringify(preprocessor) };
};

/** A valid PNG header promising `width` x `height` RGB pixels (zeros, compressed). */
function bigPng(width, height) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = deflateSync(Buffer.alloc((1 + 3 * width) * height), { level: 9 });
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', header), chunk('IDAT', rows), chunk('IEND', Buffer.alloc(0))]);
}

function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

test('loading: wrong arguments are E_INPUT, no WebGPU is E_BACKEND, bad files are typed', async (t) => {
  await expectCodes(t, [
    ['fromPretrained()', () => Clip.fromPretrained(), 'E_INPUT'],
    ['fromPretrained(42)', () => Clip.fromPretrained(42), 'E_INPUT'],
    ['fromPretrained({})', () => Clip.fromPretrained({}), 'E_INPUT'],
    ['fromPretrained("")', () => Clip.fromPretrained(''), 'E_INPUT'],
    ['a relative URL in Node', () => Clip.fromPretrained('./models/default/'), 'E_INPUT'],
    ['a relative path in Node', () => Clip.fromPretrained('some/dir/'), 'E_INPUT'],
    ['options not an object', () => Clip.fromPretrained('https://127.0.0.1:1/', 'cpu'), 'E_INPUT'],
    ['unknown device', () => Clip.fromPretrained('http://127.0.0.1:1/', { device: 'gpu' }), 'E_INPUT'],
    ['onProgress not a function', () => Clip.fromPretrained('http://127.0.0.1:1/', { onProgress: 5 }), 'E_INPUT'],
    ['signal not an AbortSignal', () => Clip.fromPretrained('http://127.0.0.1:1/', { signal: 'stop' }), 'E_INPUT'],
    ['revision not a string', () => Clip.fromPretrained('openai/clip', { revision: 3 }), 'E_INPUT'],
    ['hubUrl not absolute', () => Clip.fromPretrained('openai/clip', { hubUrl: 'mirror' }), 'E_INPUT'],
    ['wasmUrl not a string', () => Clip.fromPretrained('http://127.0.0.1:1/', { wasmUrl: 7 }), 'E_INPUT'],
    ['an aborted signal', () => Clip.fromPretrained('http://127.0.0.1:1/', { signal: AbortSignal.abort() }), 'E_ABORTED'],
    ['nothing listening', () => Clip.fromPretrained('http://127.0.0.1:1/', { cache: false }), 'E_FETCH'],
    ['fromFiles()', () => Clip.fromFiles(), 'E_INPUT'],
    ['fromFiles(null)', () => Clip.fromFiles(null), 'E_INPUT'],
    ['fromFiles("config.json")', () => Clip.fromFiles('config.json'), 'E_INPUT'],
    ['fromFiles without weights', () => Clip.fromFiles({ ...good, weights: undefined }), 'E_INPUT'],
    ['weights a number', () => Clip.fromFiles({ ...good, weights: 5 }), 'E_INPUT'],
    ['config an object', () => Clip.fromFiles({ ...good, config: { model_type: 'clip' } }), 'E_INPUT'],
    ['fromFiles options not an object', () => Clip.fromFiles(good, 1), 'E_INPUT'],
    ['imageLimits negative', () => Clip.fromFiles(good, { imageLimits: { maxSide: -1, maxBytes: 1 } }), 'E_INPUT'],
    ['imageLimits a number', () => Clip.fromFiles(good, { imageLimits: 4096 }), 'E_INPUT'],
    ['device webgpu in Node', () => Clip.fromFiles(good, { device: 'webgpu' }), 'E_BACKEND'],
    ['config not JSON', () => Clip.fromFiles({ ...good, config: '{' }), 'E_CONFIG'],
    ['tokenizer garbage', () => Clip.fromFiles({ ...good, tokenizer: new Uint8Array([1, 2, 3]) }), 'E_TOKENIZER'],
    ['weights empty', () => Clip.fromFiles({ ...good, weights: new Uint8Array(0) }), 'E_FORMAT'],
    // SigLIP: SentencePiece models and tokenizer configs that are not what they claim.
    ['spiece.model truncated', () => Clip.fromFiles({ ...siglip, tokenizer: siglip.tokenizer.subarray(0, 1000) }), 'E_TOKENIZER'],
    ['spiece.model with its first pieces overwritten', () => Clip.fromFiles({ ...siglip, tokenizer: spoiled(0, 64) }), 'E_TOKENIZER'],
    ['spiece.model for a CLIP model', () => Clip.fromFiles({ ...good, tokenizer: siglip.tokenizer }), 'E_TOKENIZER'],
    ['tokenizer_config.json not JSON', () => Clip.fromFiles({ ...siglip, tokenizerConfig: '{"pad_token":' }), 'E_TOKENIZER'],
    ['a pad token outside the vocabulary', () => Clip.fromFiles({ ...siglip, tokenizerConfig: '{"pad_token": "<nope>"}' }), 'E_TOKENIZER'],
  ]);
});

test('configs and preprocessors out of range are E_CONFIG', async (t) => {
  await expectCodes(t, [
    ['pad_token_id beyond the vocabulary', () => Clip.fromFiles(withConfig((c) => { c.text_config.pad_token_id = 100000; })), 'E_CONFIG'],
    ['eos_token_id beyond the vocabulary', () => Clip.fromFiles(withConfig((c) => { c.text_config.eos_token_id = 100000; })), 'E_CONFIG'],
    ['a billion layers', () => Clip.fromFiles(withConfig((c) => { c.text_config.num_hidden_layers = 1e9; })), 'E_CONFIG'],
    ['negative layer_norm_eps', () => Clip.fromFiles(withConfig((c) => { c.vision_config.layer_norm_eps = -1; })), 'E_CONFIG'],
    ['image_size 0', () => Clip.fromFiles(withConfig((c) => { c.vision_config.image_size = 0; })), 'E_CONFIG'],
    ['shortest_edge 0', () => Clip.fromFiles(withPreprocessor((p) => { p.size.shortest_edge = 0; })), 'E_CONFIG'],
    ['crop_size 2^64-1', () => Clip.fromFiles({ ...good, preprocessor: good.preprocessor.replace(/"height": 48/, '"height": 18446744073709551615') }), 'E_CONFIG'],
  ]);
});

test('calls: wrong arguments and hostile images are typed errors', async (t) => {
  const clip = await Clip.fromFiles(good, { device: 'cpu', imageLimits: { maxSide: 4096, maxBytes: 64 << 20 } });
  const rgba = (width, height, data = new Uint8Array(16)) => clip.embedImages([{ data, width, height }]);
  try {
    await expectCodes(t, [
      ['embedTexts(5)', () => clip.embedTexts(5), 'E_INPUT'],
      ['embedTexts([null])', () => clip.embedTexts([null]), 'E_INPUT'],
      ['embedImages(null)', () => clip.embedImages(null), 'E_INPUT'],
      ['embedImages(5)', () => clip.embedImages(5), 'E_INPUT'],
      ['embedImages({})', () => clip.embedImages({}), 'E_INPUT'],
      ['a relative image URL in Node', () => clip.embedImages('cat.png'), 'E_INPUT'],
      ['batchSize 0', () => clip.embedImages([png], { batchSize: 0 }), 'E_INPUT'],
      ['onProgress a string', () => clip.embedImages([png], { onProgress: 'x' }), 'E_INPUT'],
      ['RGBA width -1', () => rgba(-1, 4), 'E_INPUT'],
      ['RGBA width NaN', () => rgba(NaN, 4), 'E_INPUT'],
      ['RGBA height Infinity', () => rgba(2, Infinity), 'E_INPUT'],
      ['RGBA width 1.5', () => rgba(1.5, 2), 'E_INPUT'],
      ['RGBA width a string', () => rgba('2', 2), 'E_INPUT'],
      ['RGBA width 2^32', () => rgba(2 ** 32, 1), 'E_INPUT'],
      ['RGBA 65536 x 65536 (4 * w * h overflows 32 bits)', () => rgba(65536, 65536), 'E_INPUT'],
      ['RGBA 2^31 x 2 with 16 bytes', () => rgba(2 ** 31, 2), 'E_INPUT'],
      ['RGBA data too short', () => rgba(2, 2, new Uint8Array(15)), 'E_INPUT'],
      ['RGBA data a plain array', () => rgba(1, 1, [1, 2, 3, 4]), 'E_INPUT'],
      ['RGBA of zero size', () => rgba(0, 0, new Uint8Array(0)), 'E_INPUT'],
      ['RGBA beyond imageLimits', () => rgba(5000, 1, new Uint8Array(5000 * 4)), 'E_IMAGE'],
      ['a PNG of 1 x 10,000,000 pixels', () => clip.embedImages([bigPng(1, 10_000_000)]), 'E_IMAGE'],
      ['bytes that are no image', () => clip.embedImages([new Uint8Array([1, 2, 3])]), 'E_IMAGE'],
      ['classify: labels a string', () => clip.classify(png, 'cat'), 'E_INPUT'],
      ['classify: labels []', () => clip.classify(png, []), 'E_INPUT'],
      ['classify: labels [1, 2]', () => clip.classify(png, [1, 2]), 'E_INPUT'],
      ['classify: an empty label', () => clip.classify(png, ['cat', ' '], { template: '{}' }), 'E_INPUT'],
      ['classify: templates [5]', () => clip.classify(png, ['cat'], { templates: [5] }), 'E_INPUT'],
      ['classify: templates []', () => clip.classify(png, ['cat'], { templates: [] }), 'E_INPUT'],
      ['classify: template 5', () => clip.classify(png, ['cat'], { template: 5 }), 'E_INPUT'],
      ['classify: ensemble "max"', () => clip.classify(png, ['cat'], { template: '{}', ensemble: 'max' }), 'E_INPUT'],
      ['classify: ensemble 1', () => clip.classify(png, ['cat'], { ensemble: 1 }), 'E_INPUT'],
      ['classify: [png, null]', () => clip.classify([png, null], ['cat'], { template: '{}' }), 'E_INPUT'],
      ['rank: query 5', () => clip.rank(5, []), 'E_INPUT'],
      ['rank: embeddings a string', () => clip.rank('a', 'x'), 'E_INPUT'],
      ['rank: an embedding of the wrong size', () => clip.rank('a', [new Float32Array(3)]), 'E_INPUT'],
      ['rank: an embedding null', () => clip.rank('a', [null]), 'E_INPUT'],
      ['rank: topk -1', () => clip.rank('a', [], { topk: -1 }), 'E_INPUT'],
      ['rank: topk NaN', () => clip.rank('a', [], { topk: NaN }), 'E_INPUT'],
      ['rank: topk 1.5', () => clip.rank('a', [], { topk: 1.5 }), 'E_INPUT'],
      ['tokenize(5)', () => clip.tokenize(5), 'E_INPUT'],
    ]);
    await t.test('templates given as one string are one template', async () => {
      const [a, b] = [await clip.classify(png, ['cat', 'dog'], { templates: 'a photo of a {}.' }), await clip.classify(png, ['cat', 'dog'])];
      assert.deepEqual(a, b);
    });
    await t.test('the model still works after all of the above', async () => {
      const [embedding] = await clip.embedImages(png);
      assert.equal(embedding.length, clip.embeddingDim);
    });
  } finally {
    clip.dispose();
  }
  await expectCodes(t, [['a disposed model', () => clip.embedTexts('a'), 'E_INPUT']]);
});

test('a panic inside wasm rejects the pending call with E_INTERNAL and every later call too; the process survives', { timeout: 120_000 }, async () => {
  const script = fileURLToPath(new URL('hostile/crash.mjs', import.meta.url));
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, [script], { timeout: 90_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
  const result = JSON.parse(stdout.trim().split('\n').at(-1));
  assert.equal(result.pending.code, 'E_INTERNAL', JSON.stringify(result.pending));
  assert.match(result.pending.message, /webclip crashed: .*panicked/s);
  for (const later of [result.embed, result.load, result.tokenize]) {
    assert.equal(later.code, 'E_INTERNAL', JSON.stringify(later));
    assert.match(later.message, /webclip crashed earlier: .*reload the page/s);
  }
});
