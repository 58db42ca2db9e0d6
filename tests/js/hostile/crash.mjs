// Child process of hostile.test.mjs: make the wasm instance panic under a pending call and
// print (as JSON) how that call and later ones settle. The panic is real: wgpu asked for
// WebGPU in Node, through the raw bindings (the wrapper itself refuses with E_BACKEND).
import { readFile } from 'node:fs/promises';
import { Clip } from '../../../pkg/index.js';
import { Loader } from '../../../pkg/webclip_wasm.js';

const model = new URL('../../fixtures/models/tiny-gelu/', import.meta.url);
const files = {
  config: await readFile(new URL('config.json', model), 'utf8'),
  weights: await readFile(new URL('model.safetensors', model)),
  tokenizer: await readFile(new URL('tokenizer.json', model)),
};

const settle = async (thunk) => {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve({ code: 'PENDING' }), 20_000); });
  const run = (async () => thunk())().then(() => ({ code: 'RESOLVED' }), (e) => ({ code: e.code, message: e.message }));
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

const clip = await Clip.fromFiles(files, { device: 'cpu' });
Loader.create('webgpu', files.config, files.tokenizer, undefined, undefined).catch(() => {});
const pending = clip.embedTexts(['queued behind the panic']);
const result = {
  pending: await settle(() => pending),
  embed: await settle(() => clip.embedTexts(['later'])),
  load: await settle(() => Clip.fromFiles(files, { device: 'cpu' })),
  tokenize: await settle(() => clip.tokenize('later')),
};
console.log(JSON.stringify(result));
