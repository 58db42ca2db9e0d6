// The browser tests' server on 127.0.0.1: serves the repo (pkg/, tests/fixtures/, www/) with
// scripts/serve.mjs, counts requests per path, and offers broken variants of a model:
//   /broken/truncated/*  model.safetensors cut short (the rest of the files intact)
//   /broken/cutoff/*     model.safetensors whose connection drops mid-body
//   /broken/missing/*    404 for every file
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { serveStatic, send, TYPES } from '../../../scripts/serve.mjs';

export async function startServer(root, { model = 'tests/fixtures/models/tiny-gelu' } = {}) {
  const counts = new Map();
  const route = async (req, res, path) => {
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const broken = path.match(/^\/broken\/(\w+)\/(.+)$/);
    if (!broken) return false;
    const [, kind, file] = broken;
    if (kind === 'missing') return send(res, 404, 'not found'), true;
    const bytes = await readFile(join(root, model, file));
    if (file !== 'model.safetensors') return send(res, 200, bytes, TYPES[extname(file)]), true;
    if (kind === 'truncated') return send(res, 200, bytes.subarray(0, bytes.length - 4096), TYPES['.safetensors']), true;
    if (kind === 'cutoff') {
      res.writeHead(200, { 'content-type': TYPES['.safetensors'], 'content-length': bytes.length });
      res.write(bytes.subarray(0, bytes.length >> 1));
      setTimeout(() => res.destroy(), 50);
      return true;
    }
    return send(res, 400, 'unknown broken kind'), true;
  };
  const server = await serveStatic(root, { route });
  return { ...server, count: (path) => counts.get(path) ?? 0 };
}
