// The demo page: loads a model in a Web Worker (worker.js), tags the canvas image with a label
// list, and ranks a gallery by a text query. All computation happens in the worker.

const DEFAULT_MODEL = new URL('models/default/', import.meta.url).href;
const SIDES = '(on the left|on the right|at the top|at the bottom|in the center)';
const COLOURS = '(red|green|blue|yellow|purple|orange)';
const SHAPES = '(circle|square|triangle|cross)';

/** Label lists and prompt templates; the first three suit the default model's captions. */
const PRESETS = {
  shapes: {
    labels: 'circle\nsquare\ntriangle\ncross',
    template: `a (small|big) ${COLOURS} {} ${SIDES}`,
    ensemble: 'probability',
  },
  colours: {
    labels: 'red\ngreen\nblue\nyellow\npurple\norange',
    template: `a (small|big) {} ${SHAPES} ${SIDES}`,
    ensemble: 'probability',
  },
  positions: {
    labels: 'on the left\non the right\nat the top\nat the bottom\nin the center',
    template: `a (small|big) ${COLOURS} ${SHAPES} {}`,
    ensemble: 'probability',
  },
  photos: {
    labels: 'cat, dog, car, bird, tree',
    template: 'a photo of a {}.\na blurry photo of a {}.\na drawing of a {}.',
    ensemble: 'mean',
  },
};

/** Brush colours: the default model's six colours. */
const PALETTE = { red: '#dc2828', green: '#28aa3c', blue: '#2850e1', yellow: '#ebd728', purple: '#963cbe', orange: '#f58c1e' };

const $ = (id) => document.getElementById(id);

// ---- the worker -------------------------------------------------------------------------

const worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
const pending = new Map();
let nextId = 0;

worker.onmessage = ({ data }) => {
  const request = pending.get(data.id);
  if (!request) return;
  if (data.progress) return request.onProgress?.(data.progress);
  pending.delete(data.id);
  if (data.error) request.reject(Object.assign(new Error(data.error.message), { code: data.error.code }));
  else request.resolve(data.result);
};

/** Ask the worker for something; resolves with its result. */
function call(type, args = {}, onProgress) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, type, ...args });
  });
}

/** Run `task` now, or once more after the running one ends (only the latest request counts). */
function latest(task) {
  let running = null;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await task();
      } while (again);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  };
}

// ---- loading a model --------------------------------------------------------------------

let modelLoaded = false;

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

/** Words for a load error, from its code. */
function explain(error, url) {
  const detail = error.message;
  switch (error.code) {
    case 'E_FETCH':
      return `Could not download the model from ${url}. The address may be wrong (404), the server may not allow this page to read it (CORS), or you may be offline. (${detail})`;
    case 'E_TRUNCATED':
      return `The download was cut short, so the model was not loaded (nothing was cached). Try again. (${detail})`;
    case 'E_FORMAT': case 'E_CONFIG': case 'E_SHAPE': case 'E_TOKENIZER':
      return `The files at ${url} are not a CLIP model in a layout that webclip reads (Hugging Face CLIP or open_clip). (${detail})`;
    case 'E_BACKEND':
      return `This browser could not run the model on the chosen device; try "auto" or "CPU". (${detail})`;
    case 'E_ABORTED':
      return 'Loading was cancelled.';
    default:
      return `Loading failed: ${detail}`;
  }
}

async function loadModel(url, device = 'auto') {
  const files = new Map();
  const progress = $('load-progress');
  const text = $('load-text');
  $('model-error').hidden = true;
  $('load-button').disabled = $('default-model').disabled = true;
  $('cancel-load').hidden = false;
  progress.removeAttribute('value');
  text.textContent = `Loading ${url === DEFAULT_MODEL ? 'the default model' : url}…`;
  try {
    const result = await call('load', { url, device }, ({ file, loaded, total }) => {
      files.set(file, { loaded, total });
      let sum = 0;
      let of = 0;
      for (const f of files.values()) {
        sum += f.loaded;
        of += f.total;
      }
      progress.max = Math.max(of, 1);
      progress.value = sum;
      text.textContent = `${formatBytes(sum)} of ${formatBytes(of)} (${Math.floor((100 * sum) / Math.max(of, 1))}%)`;
    });
    modelLoaded = true;
    progress.max = 1;
    progress.value = 1;
    text.textContent = 'Ready.';
    $('model-name').textContent = url === DEFAULT_MODEL ? 'default (synthetic shapes)' : url;
    $('device').textContent = result.device === 'webgpu' ? 'WebGPU' : 'CPU';
    $('device-reason').textContent = `(${result.deviceReason})`;
    $('load-time').textContent = `${(result.ms / 1000).toFixed(2)} s`;
    $('results').dataset.scoring = result.scoring;
    $('scoring-note').textContent = result.scoring === 'sigmoid'
      ? 'Each score is that label\'s own probability (SigLIP): several labels, or none, can be likely.'
      : 'Scores are shared out among the labels (CLIP): they add up to 100%.';
    document.body.dataset.model = 'ready';
    gallery.forEach((item) => { item.embedding = null; }); // another model: embed again
    classifyNow();
    embedGallery();
  } catch (error) {
    $('model-error').textContent = explain(error, url);
    $('model-error').hidden = false;
    progress.max = 1;
    progress.value = modelLoaded ? 1 : 0;
    text.textContent = modelLoaded ? 'Still using the previous model.' : 'No model loaded.';
  } finally {
    $('load-button').disabled = $('default-model').disabled = false;
    $('cancel-load').hidden = true;
  }
}

$('model-form').addEventListener('submit', (event) => {
  event.preventDefault();
  loadModel($('model-url').value.trim(), $('device-choice').value);
});
$('default-model').addEventListener('click', () => loadModel(DEFAULT_MODEL, $('device-choice').value));
$('cancel-load').addEventListener('click', () => call('cancel'));

// ---- the canvas -------------------------------------------------------------------------

const canvas = $('canvas');
const ctx = canvas.getContext('2d', { willReadFrequently: true });
/** What to classify: the canvas, or an opened image (a Blob) until someone draws on it. */
let source = { kind: 'canvas' };

/** Note that the image changed (tests wait for results of the latest version) and tag it. */
function imageChanged() {
  canvas.dataset.version = String(Number(canvas.dataset.version ?? 0) + 1);
  classifyNow();
}

function clearCanvas() {
  ctx.fillStyle = $('background').value;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  source = { kind: 'canvas' };
  imageChanged();
}

/** Show an image on the canvas (scaled to cover it, centred, as CLIP crops) and classify it. */
async function showImage(blob) {
  const bitmap = await createImageBitmap(blob);
  const scale = Math.max(canvas.width / bitmap.width, canvas.height / bitmap.height);
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  bitmap.close();
  source = { kind: 'blob', blob };
  imageChanged();
}

function brushColour() {
  return $('brush-colour').value;
}

let drawing = null;
canvas.addEventListener('pointerdown', (event) => {
  canvas.setPointerCapture(event.pointerId);
  drawing = { x: event.offsetX, y: event.offsetY };
  stroke(event);
});
canvas.addEventListener('pointermove', (event) => drawing && stroke(event));
const endStroke = () => {
  if (!drawing) return;
  drawing = null;
  source = { kind: 'canvas' };
  imageChanged();
};
canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);

function stroke(event) {
  const scaleX = canvas.width / canvas.clientWidth;
  const scaleY = canvas.height / canvas.clientHeight;
  ctx.strokeStyle = brushColour();
  ctx.lineWidth = Number($('brush-size').value);
  ctx.lineCap = ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(drawing.x * scaleX, drawing.y * scaleY);
  ctx.lineTo(event.offsetX * scaleX, event.offsetY * scaleY);
  ctx.stroke();
  drawing = { x: event.offsetX, y: event.offsetY };
}

/** Draw a filled shape in the brush colour at the centre (a keyboard way to draw). */
function stamp(shape) {
  const r = canvas.width * 0.3;
  const [cx, cy] = [canvas.width / 2, canvas.height / 2];
  ctx.fillStyle = brushColour();
  ctx.beginPath();
  if (shape === 'circle') ctx.arc(cx, cy, r, 0, 2 * Math.PI);
  if (shape === 'square') ctx.rect(cx - 0.8 * r, cy - 0.8 * r, 1.6 * r, 1.6 * r);
  if (shape === 'triangle') {
    ctx.moveTo(cx, cy - r);
    ctx.lineTo(cx + 0.95 * r, cy + 0.8 * r);
    ctx.lineTo(cx - 0.95 * r, cy + 0.8 * r);
  }
  if (shape === 'cross') {
    ctx.rect(cx - 0.35 * r, cy - r, 0.7 * r, 2 * r);
    ctx.rect(cx - r, cy - 0.35 * r, 2 * r, 0.7 * r);
  }
  ctx.fill('nonzero');
  source = { kind: 'canvas' };
  imageChanged();
}

for (const [name, hex] of Object.entries(PALETTE)) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'swatch';
  button.style.background = hex;
  button.title = button.ariaLabel = name;
  button.addEventListener('click', () => { $('brush-colour').value = hex; });
  $('swatches').append(button);
}
$('clear').addEventListener('click', clearCanvas);
$('background').addEventListener('change', clearCanvas);
document.querySelectorAll('[data-stamp]').forEach((b) => b.addEventListener('click', () => stamp(b.dataset.stamp)));
$('file').addEventListener('change', () => $('file').files[0] && showImage($('file').files[0]));
document.addEventListener('dragover', (event) => event.preventDefault());
document.addEventListener('drop', (event) => {
  event.preventDefault();
  const file = [...(event.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) showImage(file);
});
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) showImage(file);
});

/** The pixels or bytes to send to the worker. */
function currentImage() {
  return source.kind === 'blob' ? source.blob : ctx.getImageData(0, 0, canvas.width, canvas.height);
}

// ---- tagging ----------------------------------------------------------------------------

function parseLabels() {
  const text = $('labels').value;
  const parts = text.includes('\n') ? text.split('\n') : text.split(',');
  return parts.map((l) => l.trim()).filter(Boolean);
}

function parseTemplates() {
  return $('template').value.split('\n').map((t) => t.trim()).filter(Boolean);
}

const classifyNow = latest(async () => {
  if (!modelLoaded) return;
  const labels = parseLabels();
  const status = $('classify-status');
  if (labels.length === 0) {
    $('results').replaceChildren();
    status.textContent = 'Add some labels to tag the image.';
    return;
  }
  try {
    const templates = parseTemplates();
    const version = canvas.dataset.version;
    const { scores, ms } = await call('classify', {
      image: currentImage(),
      labels,
      templates: templates.length ? templates : ['{}'],
      ensemble: $('ensemble').value,
    });
    $('results').replaceChildren(...scores.map(({ label, score }) => {
      const li = document.createElement('li');
      li.dataset.label = label;
      const pct = `${(100 * score).toFixed(1)}%`;
      li.innerHTML = '<span class="name"></span><span class="bar"><span></span></span><span class="pct"></span>';
      li.querySelector('.name').textContent = label;
      li.querySelector('.bar > span').style.width = pct;
      li.querySelector('.pct').textContent = pct;
      return li;
    }));
    $('results').dataset.version = version;
    status.textContent = `Inference: ${ms.toFixed(0)} ms`;
  } catch (error) {
    status.textContent = `Could not tag the image: ${error.message}`;
  }
});

function debounce(fn, ms) {
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}
$('labels').addEventListener('input', debounce(classifyNow, 250));
$('template').addEventListener('input', debounce(classifyNow, 250));
$('ensemble').addEventListener('change', classifyNow);
function usePreset(name) {
  $('labels').value = PRESETS[name].labels;
  $('template').value = PRESETS[name].template;
  $('ensemble').value = PRESETS[name].ensemble;
  classifyNow();
}
document.querySelectorAll('[data-preset]').forEach((b) => b.addEventListener('click', () => usePreset(b.dataset.preset)));

// ---- samples ----------------------------------------------------------------------------

/** The sample images: {name, caption, url}. */
async function loadSamples() {
  const base = new URL('samples/', import.meta.url);
  const response = await fetch(new URL('captions.jsonl', base));
  const text = response.ok ? await response.text() : '';
  return text.split('\n').filter(Boolean).map((line) => {
    const { image, caption } = JSON.parse(line);
    return { name: image, caption, url: new URL(image, base).href };
  });
}

async function fetchBlob(url) {
  return (await fetch(url)).blob();
}

// ---- the gallery ------------------------------------------------------------------------

/** Gallery items: {name, url, blob, embedding}; embeddings are computed once per model. */
const gallery = [];

async function addToGallery(items) {
  gallery.push(...items.map((item) => ({ ...item, embedding: null })));
  await embedGallery();
}

const embedGallery = latest(async () => {
  const todo = gallery.filter((item) => !item.embedding);
  if (!modelLoaded || todo.length === 0) return searchNow();
  $('search-status').textContent = `Embedding ${todo.length} image(s)…`;
  try {
    const { embeddings, ms } = await call('embedImages', { images: todo.map((item) => item.blob) }, ({ done, total }) => {
      $('search-status').textContent = `Embedding ${todo.length} image(s)… ${done} of ${total} done`;
    });
    todo.forEach((item, i) => { item.embedding = embeddings[i]; });
    $('search-status').textContent = `Embedded ${todo.length} image(s) in ${ms.toFixed(0)} ms.`;
  } catch (error) {
    $('search-status').textContent = `Could not embed the images: ${error.message}`;
    return;
  }
  await searchNow();
});

const searchNow = latest(async () => {
  const ready = gallery.filter((item) => item.embedding);
  const query = $('query').value.trim();
  let order = ready.map((item) => ({ item, score: null }));
  if (modelLoaded && query && ready.length) {
    try {
      const { hits, ms } = await call('rank', { query, embeddings: ready.map((item) => item.embedding) });
      order = hits.map(({ index, score }) => ({ item: ready[index], score }));
      $('search-status').textContent = `${ready.length} image(s) ranked in ${ms.toFixed(0)} ms.`;
      $('search-status').dataset.query = query;
    } catch (error) {
      $('search-status').textContent = `Search failed: ${error.message}`;
    }
  }
  $('gallery').replaceChildren(...order.map(({ item, score }) => {
    const li = document.createElement('li');
    li.dataset.name = item.name;
    const img = document.createElement('img');
    img.src = item.url;
    img.alt = item.caption ?? item.name;
    const caption = document.createElement('span');
    caption.textContent = score === null ? item.name : `${score.toFixed(3)}`;
    li.append(img, caption);
    return li;
  }));
});

$('query').addEventListener('input', debounce(searchNow, 250));
$('clear-gallery').addEventListener('click', () => {
  gallery.length = 0;
  searchNow();
});
$('gallery-files').addEventListener('change', () => addToGallery([...$('gallery-files').files].map((file) => ({
  name: file.name, url: URL.createObjectURL(file), blob: file,
}))));
$('add-canvas').addEventListener('click', async () => {
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  const name = `drawing ${gallery.length + 1}`;
  addToGallery([{ name, url: URL.createObjectURL(blob), blob }]);
});

// ---- start ------------------------------------------------------------------------------

async function start() {
  clearCanvas();
  usePreset('shapes');
  const samples = await loadSamples().catch(() => []);
  const blobs = await Promise.all(samples.map((s) => fetchBlob(s.url)));
  samples.forEach((sample, i) => {
    sample.blob = blobs[i];
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'sample';
    button.dataset.name = sample.name;
    button.title = sample.caption;
    const img = document.createElement('img');
    img.src = sample.url;
    img.alt = sample.caption;
    button.append(img);
    button.addEventListener('click', () => showImage(sample.blob));
    $('samples').append(button);
  });
  $('add-samples').addEventListener('click', () => addToGallery(
    samples.filter((s) => !gallery.some((g) => g.url === s.url)).map((s) => ({ ...s })),
  ));
  await loadModel(DEFAULT_MODEL);
}

start();
