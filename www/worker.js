// The demo's model runs here, off the main thread, so the page never freezes. Requests are
// {id, type, ...}; replies are {id, result} or {id, error: {code, message}}, plus
// {id, progress} events while a model loads.
import { Clip } from './pkg/index.js';

let clip = null;
let loading = null;

const handlers = {
  async load({ url, device }, progress) {
    const started = performance.now();
    loading?.abort();
    const controller = new AbortController();
    loading = controller;
    try {
      const next = await Clip.fromPretrained(url, { device, onProgress: progress, signal: controller.signal });
      clip?.dispose();
      clip = next;
    } finally {
      if (loading === controller) loading = null;
    }
    return {
      device: clip.device,
      deviceReason: clip.deviceReason,
      ms: performance.now() - started,
      embeddingDim: clip.embeddingDim,
      scoring: clip.scoring,
    };
  },

  async cancel() {
    loading?.abort();
    return {};
  },

  async classify({ image, labels, templates, ensemble }) {
    const started = performance.now();
    const scores = await model().classify(image, labels, { templates, ensemble });
    return { scores, ms: performance.now() - started };
  },

  async embedImages({ images }, progress) {
    const started = performance.now();
    const embeddings = await model().embedImages(images, { onProgress: progress });
    return { embeddings, ms: performance.now() - started };
  },

  async rank({ query, embeddings }) {
    const started = performance.now();
    const hits = await model().rank(query, embeddings);
    return { hits, ms: performance.now() - started };
  },
};

function model() {
  if (!clip) throw Object.assign(new Error('no model is loaded'), { code: 'E_INPUT' });
  return clip;
}

self.onmessage = async ({ data }) => {
  const { id, type, ...args } = data;
  try {
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request ${type}`);
    const result = await handler(args, (progress) => self.postMessage({ id, progress }));
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: { code: e.code ?? 'E_INTERNAL', message: e.message ?? String(e) } });
  }
};
