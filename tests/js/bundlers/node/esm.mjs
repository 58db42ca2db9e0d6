// Node, ES module: load the fixture model by Hub id from the test server given as argv[2],
// embed the reference texts and images, print the result as JSON.
import { Clip } from 'webclip-wasm';

const server = process.argv[2];
const reference = await (await fetch(`${server}/fixture/reference.json`)).json();
const images = await Promise.all(reference.images.map(async (name) => (await fetch(`${server}/fixture/images/${name}`)).blob()));
const clip = await Clip.fromPretrained('fixtures/tiny-gelu', { hubUrl: `${server}/hub` });
const texts = await clip.embedTexts(reference.texts);
const embeds = await clip.embedImages(images);
console.log(JSON.stringify({ device: clip.device, texts: texts.map((e) => Array.from(e)), images: embeds.map((e) => Array.from(e)) }));
