// One command measures every speed case of issue 9, in one run, and prints one table:
//   - native CPU (ViT-B/32 shape, 2 threads) vs ONNX Runtime and PyTorch: image and text, batch 1
//     and 8 (scripts/bench_reference.py);
//   - browser wasm CPU and WebGPU vs transformers.js, same page, headless Debian Chromium, on the
//     default model and on ViT-B/32 (WebGPU on ViT-B/32 is skipped on a software adapter such as
//     SwiftShader unless --webgpu-b32), plus on WebGPU each library's load, first call after the
//     load and webclip's GPU dispatches per forward (scripts/bench_browser.mjs);
//   - one training step of the default model at batch 64 vs PyTorch (scripts/bench_train.py).
//
//   npm run bench [-- --json FILE] [--runs N] [--only native,browser,train] [--webclip BIN]
//                    [--no-build] [--webgpu-b32]
//
// --json FILE writes the rows as a JSON list of {"case", "webclip_ms", "reference",
// "reference_ms", "ratio", "goal"} (ratio = webclip_ms / reference_ms; goal = the target ratio,
// or null), with "note", "error" and, for dispatch counts ("unit": "dispatches"),
// "webclip_dispatches", "layers", "webclip_per_layer" and "reference_dispatches".
// --runs N sets the timed runs of every case (default: each script's own, 10 native, 20 browser
// and training). A case that fails becomes a row with its error; the exit status is then 1.
//
// What it needs it builds or installs, unless told otherwise: the native binary
// (`cargo build --release --bin webclip`, in $CARGO_TARGET_DIR, default ~/.cache/webclip/target;
// --webclip BIN uses that binary instead), the npm package (`npm run build` when pkg/ is missing
// or older than src/; --no-build skips both builds and uses what is there), Python with torch,
// transformers, onnx and onnxruntime (the system python3 when it has them, else a venv in
// ~/.cache/webclip/bench-venv with the missing ones from PyPI at scripts/requirements.txt's
// versions; $PYTHON overrides), npm packages (playwright-core; transformers.js into
// test-artifacts/bench/) and Debian's chromium. Models have random weights from configs (no hub
// downloads); the ViT-B/32 one is written once into test-artifacts/bench/models/vit-b32/.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, homedir, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const started = Date.now();
const startLoad = loadavg()[0];
const SECTIONS = ['native', 'browser', 'train'];
const USAGE = 'usage: npm run bench -- [--json FILE] [--runs N] [--only native,browser,train] '
  + '[--webclip BIN] [--no-build] [--webgpu-b32]';

let opts;
try {
  opts = parseArgs({
    options: {
      json: { type: 'string' },
      runs: { type: 'string' },
      only: { type: 'string' },
      webclip: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      'webgpu-b32': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const sections = opts.only ? opts.only.split(',').map((s) => s.trim()).filter(Boolean) : SECTIONS;
const unknown = sections.filter((s) => !SECTIONS.includes(s));
if (unknown.length || !sections.length || (opts.runs !== undefined && !(Number(opts.runs) >= 1))) {
  console.error(`${unknown.length ? `unknown --only section: ${unknown.join(', ')}\n` : ''}${USAGE}`);
  process.exit(2);
}
const runsArgs = opts.runs ? ['--runs', String(Number(opts.runs))] : [];
const cache = join(homedir(), '.cache/webclip');
const bench = join(root, 'test-artifacts/bench');
const warnings = [];

// ---- what the cases need ------------------------------------------------------------------

const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? -1;
/** Newest modification time of the files under `path`. */
function newest(path) {
  const info = statSync(path, { throwIfNoEntry: false });
  if (!info?.isDirectory()) return info?.mtimeMs ?? -1;
  return Math.max(-1, ...readdirSync(path).map((name) => newest(join(path, name))));
}
const sh = (cmd, args, options = {}) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit', ...options });

/** Runs `fn` once and remembers its value or its error: each need is met (or fails) once. */
function once(fn) {
  let result;
  return () => {
    if (!result) {
      try {
        result = { value: fn() };
      } catch (e) {
        result = { error: String(e.message ?? e).trim().split('\n').at(-1) };
      }
    }
    if (result.error) throw new Error(result.error);
    return result.value;
  };
}

const binary = once(() => {
  if (opts.webclip) {
    const bin = resolve(opts.webclip);
    if (!existsSync(bin)) throw new Error(`--webclip ${opts.webclip}: no such file`);
    return bin;
  }
  const target = process.env.CARGO_TARGET_DIR || join(cache, 'target');
  const bin = join(target, 'release/webclip');
  if (!opts['no-build']) {
    console.log(`== cargo build --release --bin webclip (CARGO_TARGET_DIR=${target})`);
    sh('cargo', ['build', '--release', '--bin', 'webclip'], { env: { ...process.env, CARGO_TARGET_DIR: target } });
  }
  if (!existsSync(bin)) throw new Error(`${bin} is missing (build it, or pass --webclip BIN)`);
  return bin;
});

const npmPackage = once(() => {
  const built = mtime(join(root, 'pkg/webclip_wasm_bg.wasm'));
  const sources = Math.max(...['src', 'pkg-template', 'Cargo.toml', 'Cargo.lock'].map((p) => newest(join(root, p))));
  if (built >= sources) return;
  if (opts['no-build']) {
    if (built < 0) throw new Error('pkg/ is missing (npm run build)');
    warnings.push('pkg/ is older than src/ (--no-build: measured as it is)');
    return;
  }
  console.log('== npm run build (pkg/ is missing or older than src/)');
  sh('npm', ['run', 'build']);
});

const browserTools = once(() => {
  if (!existsSync(join(root, 'node_modules/playwright-core'))) {
    console.log('== npm install');
    sh('npm', ['install', '--no-audit', '--no-fund']);
  }
  const chromium = process.env.CHROME_PATH || '/usr/bin/chromium';
  if (!existsSync(chromium) && !process.env.CHROME_PATH && process.getuid?.() === 0
      && spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0) {
    console.log("== installing Debian's chromium");
    sh('apt-get', ['update', '-qq']);
    sh('apt-get', ['install', '-y', '-qq', 'chromium'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if (!existsSync(chromium)) throw new Error(`no Chromium at ${chromium} (apt-get install chromium)`);
});

// The Python references: torch, transformers, onnx (the export) and onnxruntime.
const PY_MODULES = ['torch', 'transformers', 'onnx', 'onnxruntime'];
const imports = (python, modules) => spawnSync(python, ['-c', `import ${modules.join(', ')}`], { stdio: 'ignore' }).status === 0;
const python = once(() => {
  if (process.env.PYTHON) {
    if (!imports(process.env.PYTHON, PY_MODULES)) throw new Error(`$PYTHON cannot import ${PY_MODULES.join(', ')}`);
    return process.env.PYTHON;
  }
  if (imports('python3', PY_MODULES)) return 'python3';
  const venv = join(cache, 'bench-venv');
  const py = join(venv, 'bin/python');
  if (!imports(py, PY_MODULES)) {
    if (!existsSync(py)) {
      console.log(`== creating ${venv} (the system python3 lacks some of ${PY_MODULES.join(', ')})`);
      sh('python3', ['-m', 'venv', '--system-site-packages', venv]);
    }
    const pins = Object.fromEntries(readFileSync(join(root, 'scripts/requirements.txt'), 'utf8').split('\n')
      .map((line) => line.replace(/#.*/, '').trim().split('==')).filter(([name]) => name));
    const missing = PY_MODULES.filter((m) => !imports(py, [m])).map((m) => (pins[m] ? `${m}==${pins[m]}` : m));
    console.log(`== pip install ${missing.join(' ')} (into ${venv})`);
    sh(py, ['-m', 'pip', 'install', '--disable-pip-version-check', ...missing]);
    if (!imports(py, PY_MODULES)) throw new Error(`${py} still cannot import ${PY_MODULES.join(', ')}`);
  }
  return py;
});

/** The random-init ViT-B/32 directory for the browser cases (written once). */
const vitB32 = once(() => {
  const dir = join(bench, 'models/vit-b32');
  if (['config.json', 'model.safetensors', 'tokenizer.json'].every((f) => existsSync(join(dir, f)))) return dir;
  console.log(`== writing a random-init ViT-B/32 into ${dir}`);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const config = join(tmp, 'b32-config.json');
  sh(python(), ['scripts/bench_reference.py', '--write-config', config]);
  // The real CLIP tokenizer (49408 tokens), so that the text tower is B/32's too.
  sh(binary(), ['train', '--config', config, '--tokenizer', join(root, 'tests/fixtures/tokenizer/tokenizer.json'),
    '--steps', '0', '--out', join(tmp, 'model')], { stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(dir, { recursive: true, force: true });
  renameSync(join(tmp, 'model'), dir);
  rmSync(tmp, { recursive: true, force: true });
  return dir;
});

/**
 * The default model's architecture with twice the layers in both towers (random init), for the
 * dispatches per encoder layer: the difference between the two forwards / the extra layers.
 */
const deeperDefault = once(() => {
  const source = join(root, 'www/models/default');
  const dir = join(bench, 'models/default-deeper');
  if (mtime(join(dir, 'model.safetensors')) > mtime(join(source, 'config.json'))) return dir;
  console.log(`== writing ${dir} (the default model's shape with twice the layers)`);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const config = JSON.parse(readFileSync(join(source, 'config.json'), 'utf8'));
  config.vision_config.num_hidden_layers *= 2;
  config.text_config.num_hidden_layers *= 2;
  writeFileSync(join(tmp, 'deeper-config.json'), JSON.stringify(config, null, 2));
  sh(binary(), ['train', '--config', join(tmp, 'deeper-config.json'), '--tokenizer', join(source, 'tokenizer.json'),
    '--steps', '0', '--out', join(tmp, 'model')], { stdio: ['ignore', 'ignore', 'inherit'] });
  copyFileSync(join(source, 'preprocessor_config.json'), join(tmp, 'model/preprocessor_config.json'));
  rmSync(dir, { recursive: true, force: true });
  renameSync(join(tmp, 'model'), dir);
  rmSync(tmp, { recursive: true, force: true });
  return dir;
});

// ---- running the scripts ------------------------------------------------------------------

const scratch = await mkdtemp(join(tmpdir(), 'webclip-bench-'));
let scratchFiles = 0;

/** Run a measuring script with `--json`; its rows, or one error row named `what`. */
async function rowsOf(what, needs, script) {
  console.log(`\n== ${what}`);
  let command;
  try {
    command = needs();
  } catch (e) {
    console.log(`   failed: ${e.message}`);
    return [errorRow(what, e.message)];
  }
  const json = join(scratch, `${scratchFiles++}.json`);
  const [cmd, args, env] = command;
  const { code, stderr } = await new Promise((done) => {
    const child = spawn(cmd, [...args, '--json', json], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    child.stdout.on('data', (d) => {
      const lines = (out + d).split('\n');
      out = lines.pop();
      for (const l of lines) console.log(`   ${l}`);
    });
    child.stderr.on('data', (d) => { err = (err + d).slice(-20000); });
    child.on('error', (e) => done({ code: -1, stderr: e.message }));
    child.on('close', (code) => {
      if (out) console.log(`   ${out}`);
      done({ code, stderr: err });
    });
  });
  const rows = await readFile(json, 'utf8').then(JSON.parse, () => null);
  if (code !== 0) {
    const tail = stderr.trim().split('\n').filter((l) => !/^\s*(warnings\.warn|return |if |\^)/.test(l)).slice(-3);
    console.log(`   ${script} exited with status ${code}${tail.length ? `:\n   ${tail.join('\n   ')}` : ''}`);
  }
  if (Array.isArray(rows) && rows.length) return rows;
  const last = stderr.trim().split('\n').at(-1);
  return [errorRow(what, `${script} exited with status ${code}${last ? `: ${last}` : ''}`)];
}

function errorRow(what, error) {
  return { case: what, webclip_ms: null, reference: null, reference_ms: null, ratio: null, goal: null, error };
}

const rows = [];
if (sections.includes('native')) {
  rows.push(...await rowsOf('native CPU vs ONNX Runtime and PyTorch (scripts/bench_reference.py)',
    () => [python(), ['scripts/bench_reference.py', '--webclip', binary(), ...runsArgs], {}], 'bench_reference.py'));
}
if (sections.includes('browser')) {
  const browserNeeds = () => {
    npmPackage();
    browserTools();
    return { PYTHON: python() };
  };
  rows.push(...await rowsOf('browser, default model, vs transformers.js (scripts/bench_browser.mjs)',
    () => {
      const env = browserNeeds();
      let deeper = [];
      try {
        deeper = ['--deeper', deeperDefault()];
      } catch (e) {
        warnings.push(`dispatches per layer are the forward's total / its layers (no deeper model: ${e.message})`);
      }
      return [process.execPath, ['scripts/bench_browser.mjs', '--model', 'www/models/default', '--name', 'default model',
        '--device', 'both', ...deeper, ...runsArgs], env];
    }, 'bench_browser.mjs'));
  rows.push(...await rowsOf('browser, ViT-B/32, vs transformers.js (scripts/bench_browser.mjs)',
    () => {
      const env = browserNeeds();
      return [process.execPath, ['scripts/bench_browser.mjs', '--model', vitB32(), '--name', 'ViT-B/32',
        '--device', 'both', ...(opts['webgpu-b32'] ? [] : ['--skip-software-webgpu']), ...runsArgs], env];
    }, 'bench_browser.mjs'));
}
if (sections.includes('train')) {
  rows.push(...await rowsOf('training step vs PyTorch (scripts/bench_train.py)',
    () => [python(), ['scripts/bench_train.py', '--webclip', binary(), ...runsArgs], {}], 'bench_train.py'));
}
await rm(scratch, { recursive: true, force: true });

// ---- the table ----------------------------------------------------------------------------

function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  const avx512 = /^flags\s*:.*\bavx512f\b/m.test(cpuinfo) ? ', AVX-512' : '';
  const chromium = spawnSync(process.env.CHROME_PATH || '/usr/bin/chromium', ['--version'], { encoding: 'utf8' })
    .stdout?.trim().replace(/ built on (.*?)( \(.*\))?$/, ' ($1)') || 'no Chromium';
  const adapter = rows.find((r) => r.adapter)?.adapter ?? 'not measured';
  return `${model}, ${cpus().length} cores${avx512}, ${Math.round(totalmem() / 2 ** 30)} GiB; ${chromium}; `
    + `WebGPU adapter: ${adapter}`;
}

const ms = (v) => (v == null ? '-' : v >= 10000 ? `${(v / 1000).toFixed(1)} s` : v >= 100 ? `${v.toFixed(0)} ms`
  : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);
const cell = (s) => String(s).replaceAll('|', '\\|');

function tableRow(r) {
  let webclip = ms(r.webclip_ms);
  let reference = ms(r.reference_ms);
  let ratio = r.ratio == null ? '-' : `${r.ratio.toFixed(2)}x`;
  let goal = r.goal == null ? '-' : `≤ ${r.goal.toFixed(1)}x`;
  let met = r.ratio != null && r.goal != null ? r.ratio <= r.goal : null;
  if (r.unit === 'dispatches') {
    const count = (total, perLayer) => (total == null ? '-' : `${total} (${perLayer.toFixed(1)}/layer)`);
    webclip = count(r.webclip_dispatches, r.webclip_per_layer);
    reference = count(r.reference_dispatches, r.reference_per_layer);
    ratio = '-';
    goal = `≤ ${r.goal}/layer`;
    met = r.webclip_per_layer == null ? null : r.webclip_per_layer <= r.goal;
  }
  if (met !== null) goal += met ? ' (met)' : ' (missed)';
  const note = [r.note, r.error && `error: ${r.error}`].filter(Boolean).join('; ');
  return [r.case, webclip, r.reference ?? '-', reference, ratio, goal, note].map(cell);
}

const header = ['case', 'webclip', 'reference', 'reference time', 'ratio', 'goal', 'note'];
const body = rows.map(tableRow);
const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
const seconds = Math.round((Date.now() - started) / 1000);
console.log(`\nwebclip bench, ${new Date(started).toISOString().slice(0, 16).replace('T', ' ')} UTC; `
  + `load average at the start ${startLoad.toFixed(1)}`);
console.log(`machine: ${machine()}`);
for (const w of warnings) console.log(`note: ${w}`);
console.log('ratio = webclip time / reference time (lower is better); dispatches: per forward after warm-up\n');
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of body) console.log(line(r));
console.log(`\nwhole run: ${Math.floor(seconds / 60)} min ${seconds % 60} s`);
if (opts.json) {
  await mkdir(resolve(opts.json, '..'), { recursive: true });
  await writeFile(opts.json, `${JSON.stringify(rows, null, 1)}\n`);
  console.log(`rows written to ${opts.json}`);
}
if (rows.some((r) => r.error)) process.exitCode = 1;
