// The browser tests' server on 127.0.0.1: serves the repo (pkg/, tests/fixtures/, www/) with
// scripts/serve.mjs, counts requests per path, and offers variants of a model:
//   /hub/{owner}/{name}/resolve/{revision}/*  the model, as a Hub mirror serves it
//   /broken/truncated/*   model.safetensors cut short (the rest of the files intact)
//   /broken/cutoff/*      model.safetensors whose connection drops mid-body
//   /broken/stall/*       model.safetensors sends half its bytes, then nothing (for cancelling)
//   /broken/compressed/*  every file gzip-encoded: Content-Length is smaller than the body
//   /broken/missing/*     404 for every file
//   /broken/garbage.wasm  bytes that are no wasm module
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { extname, join } from 'node:path';
import { serveStatic, send, TYPES } from '../../../scripts/serve.mjs';

export async function startServer(root, { model = 'tests/fixtures/models/tiny-gelu' } = {}) {
  const counts = new Map();
  const route = async (req, res, path) => {
    counts.set(path, (counts.get(path) ?? 0) + 1);
    if (path === '/broken/garbage.wasm') return send(res, 200, 'not a wasm module', TYPES['.wasm']), true;
    const hub = path.match(/^\/hub\/[\w.-]+\/[\w.-]+\/resolve\/[^/]+\/(.+)$/);
    if (hub) return send(res, 200, await readFile(join(root, model, hub[1])), TYPES[extname(hub[1])]), true;
    const broken = path.match(/^\/broken\/(\w+)\/(.+)$/);
    if (!broken) return false;
    const [, kind, file] = broken;
    if (kind === 'missing') return send(res, 404, 'not found'), true;
    const bytes = await readFile(join(root, model, file));
    if (kind === 'compressed') {
      const body = gzipSync(bytes);
      res.writeHead(200, { 'content-type': TYPES[extname(file)], 'content-encoding': 'gzip', 'content-length': body.length });
      res.end(body);
      return true;
    }
    if (file !== 'model.safetensors') return send(res, 200, bytes, TYPES[extname(file)]), true;
    if (kind === 'truncated') return send(res, 200, bytes.subarray(0, bytes.length - 4096), TYPES['.safetensors']), true;
    if (kind === 'cutoff' || kind === 'stall') {
      res.writeHead(200, { 'content-type': TYPES['.safetensors'], 'content-length': bytes.length });
      res.write(bytes.subarray(0, bytes.length >> 1));
      if (kind === 'cutoff') setTimeout(() => res.destroy(), 50);
      return true;
    }
    return send(res, 400, 'unknown broken kind'), true;
  };
  const server = await serveStatic(root, { route });
  return { ...server, count: (path) => counts.get(path) ?? 0 };
}
