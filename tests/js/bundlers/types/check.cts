// Type-checks a CommonJS consumer (require of the ES module package, Node >= 20.19).
import webclip = require('webclip-wasm');

async function main(): Promise<number> {
  const clip = await webclip.Clip.fromFiles({ config: '{}', weights: new Uint8Array(0), tokenizer: '{}' });
  return clip.embeddingDim;
}
void main;
