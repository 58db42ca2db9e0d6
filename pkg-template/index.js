// webclip: a thin JS wrapper over the Rust core compiled to wasm. It fetches (streams, caches)
// model files, turns image sources into RGBA or encoded bytes, and maps errors to
// WebclipError with a `code`. All model logic lives in Rust.
import initWasm, { Loader, ImageBatch } from './webclip_wasm.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node;
const CACHE_NAME = 'webclip-v1';

let wasmReady;
let wasmExports;
function loadWasm() {
  wasmReady ??= (async () => {
    const url = new URL('./webclip_wasm_bg.wasm', import.meta.url);
    if (isNode) {
      const { readFile } = await import('node:fs/promises');
      wasmExports = await initWasm({ module_or_path: await readFile(url) });
    } else {
      wasmExports = await initWasm({ module_or_path: url });
    }
  })();
  return wasmReady;
}

/**
 * Bytes of WebAssembly memory in use by webclip (0 before the first model loads). Wasm memory
 * only grows, so after a load this is the peak of the load; on the CPU device it holds the weights.
 */
export function wasmMemoryBytes() {
  return wasmExports?.memory?.buffer.byteLength ?? 0;
}

/** An error from webclip, with a stable `code` (E_FETCH, E_TRUNCATED, E_FORMAT, E_SHAPE, E_INPUT, ...). */
export class WebclipError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'WebclipError';
    this.code = code;
  }
}

function wrapError(e) {
  if (e instanceof WebclipError) return e;
  if (e && typeof e.code === 'string' && e.code.startsWith('E_')) return new WebclipError(e.code, e.message, { cause: e });
  return new WebclipError('E_INTERNAL', String(e?.message ?? e), { cause: e });
}

async function guard(promise) {
  try {
    return await promise;
  } catch (e) {
    throw wrapError(e);
  }
}

/** Read a file's bytes from a Uint8Array, ArrayBuffer, Blob or Response. */
async function toBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (typeof Blob !== 'undefined' && value instanceof Blob) return new Uint8Array(await value.arrayBuffer());
  if (typeof Response !== 'undefined' && value instanceof Response) return new Uint8Array(await value.arrayBuffer());
  if (typeof value === 'string') return new TextEncoder().encode(value);
  throw new WebclipError('E_INPUT', `${what}: expected bytes, a Blob or a Response`);
}

async function toText(value, what) {
  return typeof value === 'string' ? value : new TextDecoder().decode(await toBytes(value, what));
}

async function hasWebGpu() {
  try {
    return !!(typeof navigator !== 'undefined' && navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/** Create a loader on the requested device; 'auto' tries WebGPU, then falls back to the CPU. */
async function createLoader(device, config, tokenizer, preprocessor, weightsLen) {
  if (!['auto', 'webgpu', 'cpu'].includes(device)) {
    throw new WebclipError('E_INPUT', `unknown device "${device}" (expected auto, webgpu or cpu)`);
  }
  await loadWasm();
  const wanted = device === 'auto' ? ((await hasWebGpu()) ? ['webgpu', 'cpu'] : ['cpu']) : [device];
  let lastError;
  for (const kind of wanted) {
    try {
      return await Loader.create(kind, config, tokenizer, preprocessor ?? undefined, weightsLen ?? undefined);
    } catch (e) {
      lastError = wrapError(e);
      if (lastError.code !== 'E_BACKEND') throw lastError;
    }
  }
  throw lastError;
}

async function openCache(enabled) {
  if (!enabled || typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
}

/** Fetch one file of a model repo, from the cache when it holds it. */
async function fetchFile(url, { cache, fetchFn, optional }) {
  const cached = cache ? await cache.match(url) : undefined;
  if (cached) return { response: cached, fromCache: true };
  let response;
  try {
    response = await fetchFn(url);
  } catch (e) {
    throw new WebclipError('E_FETCH', `could not fetch ${url}: ${e.message}`, { cause: e });
  }
  if (!response.ok) {
    if (optional && response.status === 404) return { response: null, fromCache: false };
    throw new WebclipError('E_FETCH', `could not fetch ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  }
  return { response, fromCache: false };
}

/** Read a whole small file, reporting progress and caching it once complete. */
async function readSmallFile(base, name, options, optional = false) {
  const url = new URL(name, base).href;
  const { response, fromCache } = await fetchFile(url, { ...options, optional });
  if (!response) return null;
  const bytes = new Uint8Array(await response.arrayBuffer());
  options.onProgress?.({ file: name, loaded: bytes.length, total: bytes.length });
  if (!fromCache && options.cache) {
    await options.cache.put(url, new Response(bytes, { headers: response.headers })).catch(() => {});
  }
  return bytes;
}

/** Stream model.safetensors into the loader chunk by chunk: one copy of the weights in memory. */
async function streamWeights(base, loaderFor, options) {
  const name = 'model.safetensors';
  const url = new URL(name, base).href;
  const { response, fromCache } = await fetchFile(url, options);
  const lengthHeader = response.headers.get('content-length');
  const total = lengthHeader === null ? undefined : Number(lengthHeader);
  const loader = await loaderFor(total);
  // Cache from a second branch of the stream; deleted again if the load fails.
  const caching = !fromCache && options.cache
    ? options.cache.put(url, response.clone()).then(() => true, () => false)
    : null;
  let loaded = 0;
  try {
    const reader = response.body.getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new WebclipError('E_TRUNCATED', `${name}: the download broke off after ${loaded} bytes${total ? ` of ${total}` : ''}`, { cause: e });
      }
      if (chunk.done) break;
      loader.push(chunk.value);
      loaded += chunk.value.length;
      options.onProgress?.({ file: name, loaded, total: total ?? loaded });
    }
    if (total !== undefined && loaded < total) {
      throw new WebclipError('E_TRUNCATED', `${name}: received ${loaded} of ${total} bytes`);
    }
    const clip = await loader.finish();
    if (caching) await caching;
    return clip;
  } catch (e) {
    if (caching) {
      await caching;
      await options.cache.delete(url).catch(() => {});
    }
    try { loader.free(); } catch { /* already consumed */ }
    throw wrapError(e);
  }
}

function rgbaOf(data, width, height) {
  return { data: data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height };
}

/** Read pixels out of anything drawable (canvas, image, bitmap, video). */
function pixelsOfDrawable(source) {
  const width = source.naturalWidth ?? source.videoWidth ?? source.width ?? 0;
  const height = source.naturalHeight ?? source.videoHeight ?? source.height ?? 0;
  if (!width || !height) return { data: new Uint8Array(0), width, height };
  const isCanvas = (typeof HTMLCanvasElement !== 'undefined' && source instanceof HTMLCanvasElement)
    || (typeof OffscreenCanvas !== 'undefined' && source instanceof OffscreenCanvas);
  let context = isCanvas ? source.getContext('2d', { willReadFrequently: true }) : null;
  if (!context) {
    const canvas = typeof OffscreenCanvas !== 'undefined'
      ? new OffscreenCanvas(width, height)
      : Object.assign(document.createElement('canvas'), { width, height });
    context = canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(source, 0, 0, width, height);
  }
  const image = context.getImageData(0, 0, width, height);
  return rgbaOf(image.data, width, height);
}

/** Add one image source to a wasm ImageBatch. */
async function pushSource(batch, source) {
  if (source == null) throw new WebclipError('E_INPUT', 'no image given');
  if (typeof source === 'string') {
    const response = await fetch(source).catch((e) => { throw new WebclipError('E_FETCH', `could not fetch ${source}: ${e.message}`); });
    if (!response.ok) throw new WebclipError('E_FETCH', `could not fetch ${source}: HTTP ${response.status}`);
    return batch.pushEncoded(new Uint8Array(await response.arrayBuffer()));
  }
  if ((typeof Blob !== 'undefined' && source instanceof Blob) || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    return batch.pushEncoded(await toBytes(source, 'image'));
  }
  if (typeof HTMLImageElement !== 'undefined' && source instanceof HTMLImageElement && !source.complete) {
    await source.decode();
  }
  const { data, width, height } = 'data' in source && 'width' in source && 'height' in source && !('getContext' in source)
    ? rgbaOf(source.data, source.width, source.height) // ImageData or {data, width, height}
    : pixelsOfDrawable(source);
  return batch.pushRgba(data, width, height);
}

async function imageBatch(sources) {
  const batch = new ImageBatch();
  try {
    for (const source of sources) await pushSource(batch, source);
  } catch (e) {
    batch.free();
    throw wrapError(e);
  }
  return batch;
}

/** A CLIP model running in wasm, on WebGPU or the CPU. */
export class Clip {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  /**
   * Load a Hugging Face style model directory (config.json, model.safetensors, tokenizer.json,
   * optional preprocessor_config.json) from a base URL.
   */
  static async fromPretrained(baseUrl, { device = 'auto', onProgress, cache = true, fetch: fetchFn } = {}) {
    const base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`, globalThis.location?.href);
    const options = { cache: await openCache(cache), fetchFn: fetchFn ?? globalThis.fetch.bind(globalThis), onProgress };
    const [config, tokenizer, preprocessor] = await Promise.all([
      readSmallFile(base, 'config.json', options),
      readSmallFile(base, 'tokenizer.json', options),
      readSmallFile(base, 'preprocessor_config.json', options, true),
    ]);
    const decoder = new TextDecoder();
    const inner = await streamWeights(base, (total) => createLoader(
      device, decoder.decode(config), tokenizer, preprocessor && decoder.decode(preprocessor), total,
    ), options);
    return new Clip(inner);
  }

  /** Load from in-memory files: each a string, Uint8Array, ArrayBuffer, Blob or Response. */
  static async fromFiles({ config, weights, tokenizer, preprocessor }, { device = 'auto' } = {}) {
    if (config == null || weights == null || tokenizer == null) {
      throw new WebclipError('E_INPUT', 'fromFiles needs config, weights and tokenizer');
    }
    const weightBytes = await toBytes(weights, 'weights');
    const loader = await createLoader(
      device,
      await toText(config, 'config'),
      await toBytes(tokenizer, 'tokenizer'),
      preprocessor == null ? null : await toText(preprocessor, 'preprocessor'),
      weightBytes.length,
    );
    try {
      loader.push(weightBytes);
    } catch (e) {
      loader.free();
      throw wrapError(e);
    }
    return new Clip(await guard(loader.finish()));
  }

  #model() {
    if (!this.#inner) throw new WebclipError('E_INPUT', 'this model has been disposed');
    return this.#inner;
  }

  /** The device in use: 'webgpu' or 'cpu'. */
  get device() {
    return this.#model().device;
  }

  /** Size of the embedding space. */
  get embeddingDim() {
    return this.#model().embeddingDim;
  }

  /** L2-normalized image embeddings, one Float32Array per source. */
  async embedImages(sources) {
    const list = Array.isArray(sources) ? sources : [sources];
    if (list.length === 0) return [];
    return guard(this.#model().embedImages(await imageBatch(list)));
  }

  /** L2-normalized text embeddings, one Float32Array per text. */
  async embedTexts(texts) {
    const list = Array.isArray(texts) ? texts : [texts];
    if (list.some((t) => typeof t !== 'string')) throw new WebclipError('E_INPUT', 'texts must be strings');
    if (list.length === 0) return [];
    return guard(this.#model().embedTexts(list));
  }

  /**
   * Zero-shot classification: [{label, score}] sorted by score (softmax over labels). Several
   * templates, or `(a|b)` alternatives, form an ensemble: 'mean' or 'probability'.
   */
  async classify(source, labels, { template = 'a photo of a {}.', templates, ensemble = 'mean' } = {}) {
    if (!Array.isArray(labels) || labels.length === 0) throw new WebclipError('E_INPUT', 'the label list is empty');
    const list = templates ?? [template];
    const batch = await imageBatch([source]);
    return guard(this.#model().classify(batch, labels.map(String), list.map(String), String(ensemble)));
  }

  /** Rank embeddings (e.g. from embedImages) by similarity to a text query: [{index, score}]. */
  async rank(query, embeddings, { topk = embeddings?.length ?? 0 } = {}) {
    if (!Array.isArray(embeddings)) throw new WebclipError('E_INPUT', 'embeddings must be an array of Float32Array');
    const dim = this.embeddingDim;
    const flat = new Float32Array(embeddings.length * dim);
    embeddings.forEach((e, i) => {
      if (e.length !== dim) throw new WebclipError('E_INPUT', `embedding ${i} has ${e.length} values, expected ${dim}`);
      flat.set(e, i * dim);
    });
    return guard(this.#model().rankText(String(query), flat, topk));
  }

  /** Token ids of a text (start and end tokens, no padding). */
  tokenize(text) {
    try {
      return Array.from(this.#model().tokenize(String(text)));
    } catch (e) {
      throw wrapError(e);
    }
  }

  /** Free the model's memory (wasm and GPU). */
  dispose() {
    this.#inner?.free();
    this.#inner = null;
  }
}

/** Delete every cached model file. */
export async function clearCache() {
  if (typeof caches !== 'undefined') await caches.delete(CACHE_NAME);
}
