// The app every bundler builds: load the fixture model by Hub id from the test server (a Hub
// mirror), embed the reference texts and images, and leave the result in window.result.
import { Clip } from 'webclip-wasm';

async function run() {
  const reference = await (await fetch('/fixture/reference.json')).json();
  const images = await Promise.all(reference.images.map(async (name) => (await fetch(`/fixture/images/${name}`)).blob()));
  const clip = await Clip.fromPretrained('fixtures/tiny-gelu', { hubUrl: `${location.origin}/hub`, cache: false });
  const texts = await clip.embedTexts(reference.texts);
  const embeds = await clip.embedImages(images);
  return { device: clip.device, texts: texts.map((e) => Array.from(e)), images: embeds.map((e) => Array.from(e)) };
}

run().then(
  (result) => { window.result = result; },
  (e) => { window.result = { error: e.code ?? 'no code', message: String(e.message ?? e) }; },
);
