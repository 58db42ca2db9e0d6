// With the DOM library: browser image sources and AbortSignal are accepted.
import { Clip } from 'webclip-wasm';

declare const canvas: HTMLCanvasElement;
declare const bitmap: ImageBitmap;
declare const blob: Blob;
const controller = new AbortController();
const clip = await Clip.fromPretrained(new URL('./models/clip/', location.href), { wasmUrl: new URL('https://cdn.example/x.wasm'), signal: controller.signal, fetch: (url, init) => fetch(url, init) });
await clip.classify(canvas, ['cat']);
await clip.embedImages([bitmap, blob, new ImageData(1, 1)]);
await Clip.fromFiles({ config: blob, weights: await fetch('model.safetensors'), tokenizer: blob });
