// webclip-wasm: a thin JS wrapper over the Rust core compiled to wasm. It loads the runtime,
// fetches (streams, caches) model files, turns image sources into RGBA or encoded bytes,
// checks argument types, and maps every failure to a WebclipError with a `code`. All model
// logic lives in Rust. No `node:` imports: the same file serves browsers, bundlers and Node.
import initWasm, * as bindings from './webclip_wasm.js';

const CACHE_NAME = 'webclip-v1';
const HUB_URL = 'https://huggingface.co';
/** `owner/name` (Hugging Face's repo name characters; no trailing slash, no `..`). */
const HUB_ID = /^[A-Za-z0-9](?:[\w-]|\.(?!\.))*\/[\w.-]*[\w-]$/;

/** An error from webclip, with a stable `code` (E_FETCH, E_TRUNCATED, E_FORMAT, E_INPUT, ...). */
export class WebclipError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'WebclipError';
    this.code = code;
  }
}

const inputError = (message) => new WebclipError('E_INPUT', message);

// ---- the runtime: loaded once, retried after a failure, dead after a crash ----------------

let runtime = null;
let memory = null;
let crashMessage = null;
let rejectPending;
/** Rejects when the wasm instance crashes; every call races against it. */
const crashed = new Promise((_, reject) => { rejectPending = reject; });
crashed.catch(() => {});

function crash(message) {
  if (crashMessage !== null) return;
  crashMessage = message;
  rejectPending(new WebclipError('E_INTERNAL', `webclip crashed: ${message}`));
}

/** Called by Rust with the panic message, just before the instance traps. */
function onPanic(message) {
  crash(String(message));
  // Trapping inside an async call throws from a microtask: an uncaught exception, which ends
  // a Node process. The call's promise is rejected already; let that one trap pass.
  const proc = globalThis.process;
  if (typeof proc?.prependOnceListener === 'function') {
    const swallow = (e) => {
      if (!(e instanceof WebAssembly.RuntimeError)) throw e;
    };
    proc.prependOnceListener('uncaughtException', swallow);
    setTimeout(() => proc.removeListener('uncaughtException', swallow), 0);
  }
}

function checkAlive() {
  if (crashMessage !== null) {
    throw new WebclipError('E_INTERNAL', `webclip crashed earlier: ${crashMessage}; reload the page`);
  }
}

function wrapError(e) {
  if (e instanceof WebclipError) return e;
  if (e instanceof WebAssembly.RuntimeError) {
    crash(e.message);
    return new WebclipError('E_INTERNAL', `webclip crashed: ${crashMessage}`, { cause: e });
  }
  if (typeof e?.code === 'string' && e.code.startsWith('E_')) return new WebclipError(e.code, e.message, { cause: e });
  return new WebclipError('E_INTERNAL', String(e?.message ?? e), { cause: e });
}

/** Run `fn` (sync, or returning a promise) against the wasm instance; failures become WebclipErrors. */
async function call(fn) {
  checkAlive();
  try {
    return await Promise.race([fn(), crashed]);
  } catch (e) {
    throw wrapError(e);
  }
}

function callSync(fn) {
  checkAlive();
  try {
    return fn();
  } catch (e) {
    throw wrapError(e);
  }
}

async function wasmSource(url) {
  const href = String(url);
  const fs = href.startsWith('file:') ? globalThis.process?.getBuiltinModule?.('fs/promises') : undefined;
  try {
    if (fs) return await fs.readFile(new URL(href));
    const response = await fetch(href);
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
    return response;
  } catch (e) {
    throw new WebclipError('E_FETCH', `could not fetch the webclip runtime ${href}: ${e.message}`, { cause: e });
  }
}

async function startRuntime(wasmUrl) {
  const url = wasmUrl ?? new URL('./webclip_wasm_bg.wasm', import.meta.url);
  const source = await wasmSource(url);
  try {
    const exports = await initWasm({ module_or_path: source });
    bindings.setPanicHandler(onPanic);
    memory = exports.memory;
  } catch (e) {
    throw new WebclipError('E_BACKEND', `could not start the webclip runtime (${url}): ${e.message}`, { cause: e });
  }
}

/** Load the wasm runtime once; a failed attempt is forgotten so that the next call retries. */
function loadRuntime(wasmUrl) {
  checkAlive();
  runtime ??= startRuntime(wasmUrl).catch((e) => {
    runtime = null;
    throw e;
  });
  return runtime;
}

/**
 * Bytes of WebAssembly memory in use by webclip (0 before the first model loads). Wasm memory
 * only grows, so after a load this is the peak of the load; on the CPU device it holds the weights.
 */
export function wasmMemoryBytes() {
  return memory?.buffer.byteLength ?? 0;
}

// ---- argument checks ----------------------------------------------------------------------

function options(value, what) {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object') throw inputError(`${what}: options must be an object`);
  return value;
}

function optionalFunction(value, what) {
  if (value !== undefined && typeof value !== 'function') throw inputError(`${what} must be a function`);
  return value;
}

function optionalUrl(value, what) {
  if (value === undefined) return undefined;
  if (!(typeof value === 'string' || value instanceof URL)) throw inputError(`${what} must be a string or a URL`);
  return value;
}

function positiveInteger(value, what) {
  if (!Number.isSafeInteger(value) || value < 1) throw inputError(`${what} must be a positive integer, got ${String(value)}`);
  return value;
}

function stringList(value, what) {
  if (!Array.isArray(value)) throw inputError(`${what} must be an array of strings`);
  const i = value.findIndex((v) => typeof v !== 'string');
  if (i >= 0) throw inputError(`${what}[${i}] is not a string`);
  return value;
}

function checkSignal(signal) {
  if (signal !== undefined && !(signal && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function')) {
    throw inputError('signal must be an AbortSignal');
  }
  return signal;
}

function checkImageLimits(limits) {
  if (limits === undefined) return undefined;
  const { maxSide, maxBytes } = limits ?? {};
  if (!(Number.isInteger(maxSide) && maxSide > 0 && maxSide <= 0xffffffff && Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
    throw inputError('imageLimits must be { maxSide, maxBytes } with positive integers');
  }
  return limits;
}

function checkDevice(device) {
  if (!['auto', 'webgpu', 'cpu'].includes(device)) {
    throw inputError(`unknown device "${String(device)}" (expected auto, webgpu or cpu)`);
  }
}

function throwIfAborted(signal) {
  if (signal?.aborted) throw new WebclipError('E_ABORTED', 'the load was cancelled', { cause: signal.reason });
}

/** The base URL of a model: a Hub id (`owner/name`) or a URL, absolute or relative to the page. */
function modelBase(model, { revision = 'main', hubUrl = HUB_URL }) {
  if (model instanceof URL) model = model.href;
  if (typeof model !== 'string' || model.trim() === '') {
    throw inputError('the model must be a Hugging Face id ("owner/name") or a URL');
  }
  if (typeof revision !== 'string' || revision === '') throw inputError('revision must be a non-empty string');
  const hub = String(optionalUrl(hubUrl, 'hubUrl')).replace(/\/+$/, '');
  const page = globalThis.document?.baseURI ?? globalThis.location?.href;
  let base;
  try {
    base = HUB_ID.test(model) ? new URL(`${hub}/${model}/resolve/${encodeURIComponent(revision)}/`) : new URL(model, page);
  } catch {
    throw inputError(HUB_ID.test(model) ? `hubUrl "${hub}" is not an absolute URL`
      : `"${model}" is not ${page ? 'a URL' : 'an absolute URL'} or a Hugging Face id ("owner/name")`);
  }
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  return base;
}

// ---- device choice --------------------------------------------------------------------------

/** The WebGPU adapter this environment offers: { adapter, fallback, name } or { reason }. */
async function webGpuAdapter() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return { reason: 'this environment has no WebGPU (navigator.gpu)' };
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { reason: 'no WebGPU adapter is available' };
    const info = adapter.info ?? {};
    const fallback = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
    const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'unnamed';
    return { adapter, fallback, name };
  } catch (e) {
    return { reason: `requesting a WebGPU adapter failed: ${e.message}` };
  }
}

/**
 * The devices to try, in order, each with the reason it was chosen. 'auto' prefers the CPU
 * over a software (fallback) WebGPU adapter; 'webgpu' without WebGPU is E_BACKEND.
 */
async function devicePlan(device) {
  if (device === 'cpu') return [['cpu', 'requested']];
  const gpu = await webGpuAdapter();
  if (device === 'webgpu') {
    if (!gpu.adapter) throw new WebclipError('E_BACKEND', `WebGPU was requested, but ${gpu.reason}`);
    return [['webgpu', `requested (adapter: ${gpu.name}${gpu.fallback ? ', a software fallback' : ''})`]];
  }
  if (!gpu.adapter) return [['cpu', `auto: ${gpu.reason}`]];
  if (gpu.fallback) return [['cpu', `auto: the WebGPU adapter (${gpu.name}) is a software fallback; the CPU is faster`]];
  return [['webgpu', `auto: WebGPU adapter ${gpu.name}`], ['cpu', 'auto: WebGPU failed to start']];
}

/** Create a loader on the first device of the plan that starts: { loader, reason }. */
async function createLoader(device, files, weightsLen) {
  const plan = await devicePlan(device);
  let failure;
  for (const [kind, reason] of plan) {
    try {
      const loader = await call(() => bindings.Loader.create(kind, files.config, files.tokenizer, files.tokenizerConfig ?? undefined, files.preprocessor ?? undefined, weightsLen));
      return { loader, reason: failure ? `${reason} (${failure.message})` : reason };
    } catch (e) {
      if (e.code !== 'E_BACKEND') throw e;
      failure = e;
    }
  }
  throw failure;
}

function free(object) {
  if (crashMessage === null) {
    try { object?.free(); } catch { /* consumed already */ }
  }
}

// ---- model files ----------------------------------------------------------------------------

/** Read a file's bytes from a Uint8Array, ArrayBuffer, Blob, Response or string. */
async function toBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (typeof Blob !== 'undefined' && value instanceof Blob) return new Uint8Array(await value.arrayBuffer());
  if (typeof Response !== 'undefined' && value instanceof Response) return new Uint8Array(await value.arrayBuffer());
  if (typeof value === 'string') return new TextEncoder().encode(value);
  throw inputError(`${what}: expected a string, bytes, a Blob or a Response`);
}

async function toText(value, what) {
  return typeof value === 'string' ? value : new TextDecoder().decode(await toBytes(value, what));
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
async function fetchFile(url, { cache, fetchFn, signal }, optional = false) {
  const cached = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (cached) return { response: cached, fromCache: true };
  let response;
  try {
    response = await fetchFn(url, signal ? { signal } : undefined);
  } catch (e) {
    throwIfAborted(signal);
    throw new WebclipError('E_FETCH', `could not fetch ${url}: ${e.message}`, { cause: e });
  }
  if (!response.ok) {
    response.body?.cancel().catch(() => {});
    if (optional && response.status === 404) return { response: null, fromCache: false };
    throw new WebclipError('E_FETCH', `could not fetch ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  }
  return { response, fromCache: false };
}

/** Read a whole small file; it is cached (by the caller) once the whole model has loaded. */
async function readSmallFile(base, name, context, optional = false) {
  const url = new URL(name, base).href;
  const { response, fromCache } = await fetchFile(url, context, optional);
  if (!response) return null;
  let bytes;
  try {
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch (e) {
    throwIfAborted(context.signal);
    throw new WebclipError('E_FETCH', `could not read ${url}: ${e.message}`, { cause: e });
  }
  context.onProgress?.({ file: name, loaded: bytes.length, total: bytes.length });
  if (!fromCache) context.toCache.push([url, bytes]);
  return bytes;
}

/**
 * Stream the weights (`name`) into a loader chunk by chunk: one copy of the weights in memory.
 * Its length is judged by the safetensors header (Rust), not by Content-Length, which a
 * compressed transfer makes smaller than the body; Content-Length is only a first estimate
 * for progress.
 */
async function streamWeights(base, name, createFor, context) {
  const url = new URL(name, base).href;
  const { response, fromCache } = await fetchFile(url, context);
  const { signal, onProgress, cache } = context;
  let created;
  try {
    throwIfAborted(signal);
    created = await createFor();
  } catch (e) {
    response.body?.cancel().catch(() => {});
    throw e;
  }
  const { loader } = created;
  const estimate = Number(response.headers.get('content-length')) || 0;
  // The cache reads a second branch of the stream; the entry is deleted if the load fails.
  const caching = !fromCache && cache ? cache.put(url, response.clone()).then(() => true, () => false) : null;
  const reader = response.body.getReader();
  let loaded = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throwIfAborted(signal);
        throw new WebclipError('E_TRUNCATED', `${name}: the download broke off after ${loaded} bytes`, { cause: e });
      }
      throwIfAborted(signal);
      if (chunk.done) break;
      callSync(() => loader.push(chunk.value));
      loaded += chunk.value.length;
      const total = Math.max(callSync(() => loader.totalBytes) ?? estimate, loaded);
      onProgress?.({ file: name, loaded, total });
    }
    const inner = await call(() => loader.finish());
    if (signal?.aborted) {
      free(inner);
      throwIfAborted(signal);
    }
    if (caching) await caching;
    return { inner, reason: created.reason };
  } catch (e) {
    reader.cancel().catch(() => {});
    free(loader);
    if (caching) {
      await caching;
      await cache.delete(url).catch(() => {});
    }
    throw wrapError(e);
  }
}

// ---- images -----------------------------------------------------------------------------------

/** Width or height of an RGBA buffer: an integer in 0..2^32-1. */
function dimension(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw inputError(`image ${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function rgbaOf(data, width, height) {
  if (!ArrayBuffer.isView(data)) throw inputError('image data must be a Uint8Array or Uint8ClampedArray');
  dimension(width, 'width');
  dimension(height, 'height');
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (width * height * 4 !== bytes.length) {
    throw inputError(`image data has ${bytes.length} bytes, but ${width} x ${height} RGBA needs ${width * height * 4}`);
  }
  return { data: bytes, width, height };
}

/** Read pixels out of anything drawable (canvas, image, bitmap, video). */
function pixelsOfDrawable(source) {
  const width = source.naturalWidth ?? source.videoWidth ?? source.width ?? 0;
  const height = source.naturalHeight ?? source.videoHeight ?? source.height ?? 0;
  if (!width || !height) return { data: new Uint8Array(0), width: 0, height: 0 };
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

const isDrawable = (source) => ['HTMLCanvasElement', 'OffscreenCanvas', 'HTMLImageElement', 'ImageBitmap',
  'HTMLVideoElement'].some((name) => typeof globalThis[name] === 'function' && source instanceof globalThis[name]);

/** Add one image source to a wasm ImageBatch. */
async function pushSource(batch, source) {
  if (source === null || (typeof source !== 'object' && typeof source !== 'string')) {
    throw inputError(`not an image: ${String(source)}`);
  }
  if (typeof source === 'string') {
    let url;
    try {
      url = new URL(source, globalThis.document?.baseURI ?? globalThis.location?.href);
    } catch {
      throw inputError(`image URL "${source}" is not an absolute URL`);
    }
    const response = await fetch(url).catch((e) => { throw new WebclipError('E_FETCH', `could not fetch ${url}: ${e.message}`); });
    if (!response.ok) throw new WebclipError('E_FETCH', `could not fetch ${url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return callSync(() => batch.pushEncoded(bytes));
  }
  if ((typeof Blob !== 'undefined' && source instanceof Blob) || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const bytes = await toBytes(source, 'image');
    return callSync(() => batch.pushEncoded(bytes));
  }
  let pixels;
  if (isDrawable(source)) {
    if (typeof HTMLImageElement !== 'undefined' && source instanceof HTMLImageElement && !source.complete) await source.decode();
    pixels = pixelsOfDrawable(source);
  } else if ('data' in source && 'width' in source && 'height' in source) {
    pixels = rgbaOf(source.data, source.width, source.height); // ImageData or {data, width, height}
  } else {
    throw inputError('not an image: expected a canvas, image, ImageData, {data, width, height}, Blob, bytes or a URL');
  }
  return callSync(() => batch.pushRgba(pixels.data, pixels.width, pixels.height));
}

/** Let the page handle events between batches. */
function yieldToEventLoop() {
  return globalThis.scheduler?.yield?.() ?? new Promise((resolve) => setTimeout(resolve, 0));
}

// ---- the model ------------------------------------------------------------------------------

/** A CLIP model running in wasm, on WebGPU or the CPU. */
export class Clip {
  #inner;
  #deviceReason;
  #imageLimits;

  /** Use `Clip.fromPretrained` or `Clip.fromFiles`. */
  constructor(inner, { deviceReason, imageLimits } = {}) {
    this.#inner = inner;
    this.#deviceReason = deviceReason;
    this.#imageLimits = imageLimits;
  }

  /**
   * Load a CLIP or SigLIP model by Hub id (`'openai/clip-vit-base-patch32'`) or from a URL of a
   * directory: a Hugging Face one (config.json, model.safetensors, tokenizer.json (SigLIP: or
   * spiece.model), optionally tokenizer_config.json and preprocessor_config.json) or
   * open_clip's hub layout (open_clip_config.json, open_clip_model.safetensors, tokenizer.json).
   */
  static async fromPretrained(model, loadOptions) {
    const {
      device = 'auto', onProgress, cache = true, fetch: fetchFn, signal, revision, hubUrl, wasmUrl, imageLimits,
    } = options(loadOptions, 'fromPretrained');
    const base = modelBase(model, { revision, hubUrl });
    checkDevice(device);
    checkImageLimits(imageLimits);
    optionalFunction(onProgress, 'onProgress');
    optionalFunction(fetchFn, 'fetch');
    optionalUrl(wasmUrl, 'wasmUrl');
    checkSignal(signal);
    throwIfAborted(signal);
    const context = {
      cache: await openCache(cache),
      fetchFn: fetchFn ?? globalThis.fetch.bind(globalThis),
      onProgress,
      signal,
      toCache: [],
    };
    const tokenizerUrl = new URL('tokenizer.json', base).href;
    const [, hfConfig, tokenizerJson, preprocessor] = await Promise.all([
      loadRuntime(wasmUrl),
      readSmallFile(base, 'config.json', context, true),
      readSmallFile(base, 'tokenizer.json', context, true),
      readSmallFile(base, 'preprocessor_config.json', context, true),
    ]);
    // A Hugging Face config.json first (CLIP or SigLIP); else open_clip's hub layout (its
    // config holds the preprocessing), also where config.json is another library's (timm's).
    const decoder = new TextDecoder();
    const family = hfConfig === null ? '' : callSync(() => bindings.configFamily(decoder.decode(hfConfig)));
    const isHf = family === 'clip' || family === 'siglip';
    const openClipConfig = isHf ? null : await readSmallFile(base, 'open_clip_config.json', context, true);
    const config = openClipConfig ?? hfConfig;
    if (config === null) {
      throw new WebclipError('E_FETCH', `${base} has neither config.json nor open_clip_config.json (HTTP 404)`);
    }
    // SigLIP: the pad token is named in tokenizer_config.json, and repos often ship
    // SentencePiece's spiece.model instead of a tokenizer.json.
    const siglip = family === 'siglip';
    const [tokenizerConfig, spiece] = await Promise.all([
      siglip ? readSmallFile(base, 'tokenizer_config.json', context, true) : null,
      siglip && tokenizerJson === null ? readSmallFile(base, 'spiece.model', context, true) : null,
    ]);
    const tokenizer = tokenizerJson ?? spiece;
    if (tokenizer === null) {
      throw new WebclipError('E_FETCH', `could not fetch ${tokenizerUrl}: HTTP 404${siglip ? ' (nor spiece.model)' : ''}`);
    }
    const weightsFile = openClipConfig ? 'open_clip_model.safetensors' : 'model.safetensors';
    const files = {
      config: decoder.decode(config),
      tokenizer,
      tokenizerConfig: tokenizerConfig && decoder.decode(tokenizerConfig),
      preprocessor: preprocessor && decoder.decode(preprocessor),
    };
    const { inner, reason } = await streamWeights(base, weightsFile, () => createLoader(device, files, undefined), context);
    if (context.cache) {
      await Promise.all(context.toCache.map(([url, bytes]) => context.cache.put(url, new Response(bytes)).catch(() => {})));
    }
    return new Clip(inner, { deviceReason: reason, imageLimits });
  }

  /**
   * Load from in-memory files: each a string, Uint8Array, ArrayBuffer, Blob or Response.
   * `tokenizer` is a tokenizer.json or (SigLIP) a spiece.model; `tokenizerConfig` and
   * `preprocessor` are optional.
   */
  static async fromFiles(files, loadOptions) {
    if (files === null || typeof files !== 'object') {
      throw inputError('fromFiles needs { config, weights, tokenizer } (and optionally tokenizerConfig, preprocessor)');
    }
    const { config, weights, tokenizer, tokenizerConfig, preprocessor } = files;
    if (config == null || weights == null || tokenizer == null) {
      throw inputError('fromFiles needs config, weights and tokenizer');
    }
    const { device = 'auto', wasmUrl, imageLimits } = options(loadOptions, 'fromFiles');
    checkDevice(device);
    checkImageLimits(imageLimits);
    optionalUrl(wasmUrl, 'wasmUrl');
    const parsed = {
      config: await toText(config, 'config'),
      tokenizer: await toBytes(tokenizer, 'tokenizer'),
      tokenizerConfig: tokenizerConfig == null ? null : await toText(tokenizerConfig, 'tokenizerConfig'),
      preprocessor: preprocessor == null ? null : await toText(preprocessor, 'preprocessor'),
    };
    const weightBytes = await toBytes(weights, 'weights');
    await loadRuntime(wasmUrl);
    const { loader, reason } = await createLoader(device, parsed, weightBytes.length);
    try {
      callSync(() => loader.push(weightBytes));
    } catch (e) {
      free(loader);
      throw e;
    }
    return new Clip(await call(() => loader.finish()), { deviceReason: reason, imageLimits });
  }

  #model() {
    checkAlive();
    if (!this.#inner) throw inputError('this model has been disposed');
    return this.#inner;
  }

  /** The device in use: 'webgpu' or 'cpu'. */
  get device() {
    return callSync(() => this.#model().device);
  }

  /** Why that device was chosen (e.g. "auto: the WebGPU adapter (google swiftshader) is a software fallback; ..."). */
  get deviceReason() {
    return this.#deviceReason;
  }

  /** Size of the embedding space. */
  get embeddingDim() {
    return callSync(() => this.#model().embeddingDim);
  }

  /**
   * How `classify` scores: 'softmax' (CLIP: the scores sum to 1 across the labels) or 'sigmoid'
   * (SigLIP: each label's own probability, independent of the others).
   */
  get scoring() {
    return callSync(() => this.#model().scoring);
  }

  /** A wasm ImageBatch holding `sources`; freed again if one of them fails. */
  async #imageBatch(sources) {
    const batch = callSync(() => new bindings.ImageBatch());
    try {
      if (this.#imageLimits) {
        const { maxSide, maxBytes } = this.#imageLimits;
        callSync(() => batch.setLimits(maxSide, maxBytes));
      }
      for (const source of sources) await pushSource(batch, source);
    } catch (e) {
      free(batch);
      throw wrapError(e);
    }
    return batch;
  }

  /**
   * L2-normalized image embeddings, one Float32Array per source. Images are read and embedded
   * `batchSize` at a time (default 8), yielding to the event loop between batches, with
   * `onProgress({ done, total })` after each.
   */
  async embedImages(sources, callOptions) {
    const { batchSize = 8, onProgress } = options(callOptions, 'embedImages');
    positiveInteger(batchSize, 'batchSize');
    optionalFunction(onProgress, 'onProgress');
    const list = Array.isArray(sources) ? sources : [sources];
    const out = [];
    for (let start = 0; start < list.length; start += batchSize) {
      if (start > 0) await yieldToEventLoop();
      const batch = await this.#imageBatch(list.slice(start, start + batchSize));
      out.push(...(await call(() => this.#model().embedImages(batch))));
      onProgress?.({ done: out.length, total: list.length });
    }
    return out;
  }

  /** L2-normalized text embeddings, one Float32Array per text. */
  async embedTexts(texts) {
    const list = Array.isArray(texts) ? texts : [texts];
    stringList(list, 'texts');
    if (list.length === 0) return [];
    return call(() => this.#model().embedTexts(list));
  }

  /**
   * Zero-shot classification of one image ([{label, score}], best first) or of an array of
   * images (one such list per image). Several templates, or `(a|b)` alternatives, form an
   * ensemble: 'mean' or 'probability'. Scores are a softmax across the labels, or for SigLIP
   * independent sigmoid probabilities (see `scoring`).
   */
  async classify(images, labels, callOptions) {
    const { template, templates, ensemble = 'mean', onProgress } = options(callOptions, 'classify');
    if (!Array.isArray(labels) || labels.length === 0) throw inputError('labels must be a non-empty array of strings');
    stringList(labels, 'labels');
    if (template !== undefined && typeof template !== 'string') throw inputError('template must be a string');
    if (typeof ensemble !== 'string') throw inputError('ensemble must be "mean" or "probability"');
    optionalFunction(onProgress, 'onProgress');
    const list = typeof templates === 'string' ? [templates]
      : templates !== undefined ? stringList(templates, 'templates')
        : [template ?? callSync(() => bindings.defaultTemplate())];
    const many = Array.isArray(images);
    const sources = many ? images : [images];
    const results = [];
    for (const source of sources) {
      if (results.length > 0) await yieldToEventLoop();
      const batch = await this.#imageBatch([source]);
      results.push(await call(() => this.#model().classify(batch, labels, list, ensemble)));
      onProgress?.({ done: results.length, total: sources.length });
    }
    return many ? results : results[0];
  }

  /** Rank embeddings (e.g. from embedImages) by similarity to a text query: [{index, score}]. */
  async rank(query, embeddings, callOptions) {
    if (typeof query !== 'string') throw inputError('the query must be a string');
    if (!Array.isArray(embeddings)) throw inputError('embeddings must be an array of Float32Array');
    const { topk = embeddings.length } = options(callOptions, 'rank');
    if (!Number.isSafeInteger(topk) || topk < 0) throw inputError(`topk must be a non-negative integer, got ${String(topk)}`);
    const dim = this.embeddingDim;
    const flat = new Float32Array(embeddings.length * dim);
    embeddings.forEach((e, i) => {
      if (e?.length !== dim || !(ArrayBuffer.isView(e) || Array.isArray(e))) {
        throw inputError(`embedding ${i} is not an array of ${dim} numbers`);
      }
      flat.set(e, i * dim);
    });
    return call(() => this.#model().rankText(query, flat, Math.min(topk, embeddings.length)));
  }

  /** Token ids of a text (start and end tokens, no padding). */
  tokenize(text) {
    if (typeof text !== 'string') throw inputError('the text must be a string');
    return callSync(() => Array.from(this.#model().tokenize(text)));
  }

  /** Free the model's memory (wasm and GPU). */
  dispose() {
    free(this.#inner);
    this.#inner = null;
  }
}

/** Delete every cached model file. */
export async function clearCache() {
  if (typeof caches !== 'undefined') await caches.delete(CACHE_NAME);
}
