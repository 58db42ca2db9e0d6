// Node, CommonJS: require the package, load the fixture model directory given as argv[2] with
// Clip.fromFiles, embed the reference texts and images, print the result as JSON.
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Clip } = require('webclip-wasm');

const [model, images] = process.argv.slice(2);
const read = (file) => readFileSync(join(model, file));
const reference = JSON.parse(read('reference.json'));

Clip.fromFiles({
  config: read('config.json').toString(),
  weights: read('model.safetensors'),
  tokenizer: read('tokenizer.json'),
  preprocessor: read('preprocessor_config.json').toString(),
}).then(async (clip) => {
  const texts = await clip.embedTexts(reference.texts);
  const embeds = await clip.embedImages(reference.images.map((name) => readFileSync(join(images, name))));
  console.log(JSON.stringify({ device: clip.device, texts: texts.map((e) => Array.from(e)), images: embeds.map((e) => Array.from(e)) }));
});
