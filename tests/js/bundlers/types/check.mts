// Type-checks the package's public API as an ES module consumer, with or without the DOM library.
import { Clip, WebclipError, clearCache, wasmMemoryBytes, type LabelScore, type WebclipErrorCode } from 'webclip-wasm';
import manifest from 'webclip-wasm/package.json' with { type: 'json' };

const name: string = manifest.name;
const clip: Clip = await Clip.fromPretrained('openai/clip-vit-base-patch32', {
  device: 'auto',
  revision: 'main',
  hubUrl: 'https://huggingface.co',
  wasmUrl: 'https://example.com/webclip_wasm_bg.wasm',
  onProgress: ({ file, loaded, total }) => void [file, loaded / total],
});
const fromFiles: Clip = await Clip.fromFiles({ config: '{}', weights: new Uint8Array(0), tokenizer: new ArrayBuffer(0) }, { device: 'cpu' });
const one: LabelScore[] = await clip.classify({ data: new Uint8Array(4), width: 1, height: 1 }, ['cat'], { templates: 'a {}' });
const many: LabelScore[][] = await clip.classify([new Uint8Array(0), 'https://example.com/cat.png'], ['cat', 'dog'], { ensemble: 'probability' });
const images: Float32Array[] = await clip.embedImages([new Uint8Array(0)], { batchSize: 4, onProgress: ({ done, total }) => void (done / total) });
const texts: Float32Array[] = await clip.embedTexts('a cat');
const hits = await clip.rank('a cat', images, { topk: 1 });
const index: number = hits[0].index;
const reason: string = clip.deviceReason;
const device: 'webgpu' | 'cpu' = clip.device;
const ids: number[] = clip.tokenize('a cat');
try {
  await clearCache();
} catch (e) {
  if (e instanceof WebclipError) {
    const code: WebclipErrorCode = e.code;
    void code;
  }
}
const bytes: number = wasmMemoryBytes();
clip.dispose();
void [name, fromFiles, one, many, texts, index, reason, device, ids, bytes];
