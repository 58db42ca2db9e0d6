// `npm run build:site`: the demo as a static site in dist/ (or --out DIR): the page, the npm
// package (from pkg/, built by `npm run build`), the default model and the samples. Every URL
// in the page is relative, so any static host serves it under any sub-path.
//
//   node scripts/build-site.mjs [--out DIR]
import { cp, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const outAt = args.indexOf('--out');
const out = resolve(outAt >= 0 ? args[outAt + 1] : join(root, 'dist'));

const pkg = join(root, 'pkg');
const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8').catch(() => {
  console.error('pkg/ is missing: run `npm run build` first');
  process.exit(1);
}));

await rm(out, { recursive: true, force: true });
await mkdir(join(out, 'pkg'), { recursive: true });
for (const file of ['index.html', 'style.css', 'app.js', 'worker.js']) await cp(join(root, 'www', file), join(out, file));
for (const file of [...manifest.files, 'package.json']) await cp(join(pkg, file), join(out, 'pkg', file));
for (const dir of ['models/default', 'samples']) {
  await cp(join(root, 'www', dir), join(out, dir), { recursive: true, dereference: true });
}

let bytes = 0;
let files = 0;
async function count(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await count(join(dir, entry.name));
    else {
      files += 1;
      bytes += (await stat(join(dir, entry.name))).size;
    }
  }
}
await count(out);
console.log(`site written to ${out}: ${files} files, ${(bytes / 2 ** 20).toFixed(1)} MiB; serve it from any path`);
