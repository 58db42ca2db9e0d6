// A module worker that uses the package as an app would: load a model, embed what it is sent.
import { Clip } from '/pkg/index.js';

self.onmessage = async ({ data: { base, texts, images } }) => {
  try {
    const clip = await Clip.fromPretrained(base, { device: 'cpu', cache: false });
    const result = {
      device: clip.device,
      texts: (await clip.embedTexts(texts)).map((e) => Array.from(e)),
      images: (await clip.embedImages(images)).map((e) => Array.from(e)),
    };
    clip.dispose();
    self.postMessage(result);
  } catch (e) {
    self.postMessage({ error: e.code ?? String(e), message: e.message });
  }
};
