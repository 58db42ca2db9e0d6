// A static server on 127.0.0.1 for the browser tests: serves the repo (pkg/, tests/fixtures/),
// counts requests per path, and offers broken variants of a model for error tests:
//   /broken/truncated/*  model.safetensors cut short (the rest of the files intact)
//   /broken/cutoff/*     model.safetensors whose connection drops mid-body
//   /broken/missing/*    404 for every file
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.png': 'image/png', '.css': 'text/css', '.safetensors': 'application/octet-stream',
};

export async function startServer(root, { model = 'tests/fixtures/models/tiny-gelu' } = {}) {
  const counts = new Map();
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    try {
      const broken = path.match(/^\/broken\/(\w+)\/(.+)$/);
      if (broken) {
        const [, kind, file] = broken;
        if (kind === 'missing') return send(res, 404, 'not found');
        const bytes = await readFile(join(root, model, file));
        if (file !== 'model.safetensors') return send(res, 200, bytes, TYPES[extname(file)]);
        if (kind === 'truncated') return send(res, 200, bytes.subarray(0, bytes.length - 4096), TYPES['.safetensors']);
        if (kind === 'cutoff') {
          res.writeHead(200, { 'content-type': TYPES['.safetensors'], 'content-length': bytes.length });
          res.write(bytes.subarray(0, bytes.length >> 1));
          return setTimeout(() => res.destroy(), 50);
        }
        return send(res, 400, 'unknown broken kind');
      }
      const file = normalize(join(root, path));
      if (!file.startsWith(root)) return send(res, 403, 'forbidden');
      const info = await stat(file).catch(() => null);
      if (!info?.isFile()) return send(res, 404, 'not found');
      return send(res, 200, await readFile(file), TYPES[extname(file)] ?? 'application/octet-stream');
    } catch (e) {
      return send(res, 500, String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    count: (path) => counts.get(path) ?? 0,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

function send(res, status, body, type = 'text/plain') {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
