// The demo's model runs here, off the main thread, so the page never freezes. Requests are
// {id, type, ...}; replies are {id, result} or {id, error: {code, message}}, plus
// {id, progress} events while a model loads.
import { Clip } from './pkg/index.js';

let clip = null;

const handlers = {
  async load({ url, device }, progress) {
    const started = performance.now();
    const next = await Clip.fromPretrained(url, { device, onProgress: progress });
    clip?.dispose();
    clip = next;
    return { device: clip.device, ms: performance.now() - started, embeddingDim: clip.embeddingDim };
  },

  async classify({ image, labels, templates, ensemble }) {
    const started = performance.now();
    const scores = await model().classify(image, labels, { templates, ensemble });
    return { scores, ms: performance.now() - started };
  },

  async embedImages({ images }) {
    const started = performance.now();
    const embeddings = await model().embedImages(images);
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
