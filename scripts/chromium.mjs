// Debian's Chromium, headless, through playwright-core, with the flags that work on these
// machines and a fresh profile (see ../shared/browser.md). Used by the browser tests, the demo
// tests and the browser measurements.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/**
 * Launch Chromium; `webgpu` adds `--enable-unsafe-webgpu` (SwiftShader here). Resolves to
 * { context, page, close }, where `close` also deletes the profile.
 */
export async function launchChromium({ webgpu = false, viewport } = {}) {
  const userDataDir = await mkdtemp(join(tmpdir(), 'webclip-chromium-'));
  const args = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROME_PATH || '/usr/bin/chromium',
    headless: true,
    args,
    ...(viewport ? { viewport } : {}),
  });
  const page = context.pages()[0] ?? await context.newPage();
  return {
    context,
    page,
    close: async () => {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}
