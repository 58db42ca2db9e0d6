// A small static file server on 127.0.0.1 (no dependencies): `npm start` serves www/ with it,
// and the browser tests build their servers on it.
//
//   node scripts/serve.mjs [root] [--port 8080]
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.css': 'text/css', '.svg': 'image/svg+xml', '.ts': 'text/plain', '.md': 'text/markdown',
  '.safetensors': 'application/octet-stream',
};

/** Send a small body. */
export function send(res, status, body, type = 'text/plain') {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Stream the file at `path` (URL path) under `root`, or answer 404/403. */
export async function sendFile(res, root, path) {
  let file = normalize(join(root, path));
  if (file !== root && !file.startsWith(root.endsWith(sep) ? root : root + sep)) return send(res, 403, 'forbidden');
  let info = await stat(file).catch(() => null);
  if (info?.isDirectory()) {
    file = join(file, 'index.html');
    info = await stat(file).catch(() => null);
  }
  if (!info?.isFile()) return send(res, 404, 'not found');
  res.writeHead(200, {
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    'content-length': info.size,
    'cache-control': 'no-cache',
  });
  createReadStream(file).pipe(res);
}

/**
 * Serve `root` on 127.0.0.1:`port` (0: any free port). `route(req, res, path)` may answer a
 * request first (return true when it did). Resolves to { url, close }.
 */
export async function serveStatic(root, { port = 0, route } = {}) {
  const base = resolve(root);
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      if (route && (await route(req, res, path))) return;
      await sendFile(res, base, path);
    } catch (e) {
      if (!res.headersSent) send(res, 500, String(e));
      else res.destroy();
    }
  });
  await new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', done);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((done) => {
      server.closeAllConnections?.();
      server.close(done);
    }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const portAt = args.indexOf('--port');
  const port = Number(portAt >= 0 ? args.splice(portAt, 2)[1] : process.env.PORT ?? 8080);
  const root = args[0] ?? 'www';
  try {
    const { url } = await serveStatic(root, { port });
    console.log(`webclip demo: ${url}/  (serving ${root}; Ctrl-C stops)`);
  } catch (e) {
    console.error(`could not serve on 127.0.0.1:${port}: ${e.message}${e.code === 'EADDRINUSE' ? ' (try --port)' : ''}`);
    process.exit(1);
  }
}
