// vite-plugin-vmd against the JavaScript original (baseline.mjs), side by side in one run.
//
//   node bench/vite/bench.mjs latency [--edits 100] [--gap 100]   watched-file write -> regenerated module served
//   node bench/vite/bench.mjs latency --http [--edits 100]        ... served over HTTP, as the page fetches it
//   node bench/vite/bench.mjs latency --browser [--edits 100]     ... -> the page in Chromium shows it
//   node bench/vite/bench.mjs build [--modules 500] [--rounds 3]       build() inside one Node process
//   node bench/vite/bench.mjs build-cli [--modules 500] [--rounds 5]   `vite build` as a user runs it
//   node bench/vite/bench.mjs build-profile [--modules 500] [--rounds 6]   ... where Vite's main thread spends it
//   node bench/vite/bench.mjs memory [--edits 2000]      (runs both, each in its own process)
//
// Run from the repository root after ./scripts/test (or `npm ci` in clients/node and
// `pip install -e .` into .venv). Uses Vite 8 from clients/node/node_modules.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const clients = join(repo, 'clients/node')
process.env.VMD_PYTHON ??= join(repo, '.venv/bin/python')
const { createServer, build } = await import(pathToFileURL(join(clients, 'node_modules/vite/dist/node/index.js')).href)
const vmd = (await import(pathToFileURL(join(clients, 'dist/index.js')).href)).default
const baseline = (await import('./baseline.mjs')).default

const args = process.argv.slice(2)
const flag = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? fallback : args[at + 1]
}

function project(files) {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'vmd-bench-')))
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true })
    writeFileSync(join(root, rel), text)
  }
  return root
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const ms = (x) => `${x.toFixed(2)} ms`

// Both implementations do the same job: read a JSON file, export it. Each reads its own file,
// so a write makes only the implementation under test work (the other does not compete for
// the two cores while it is timed).
const files = {
  'package.json': '{"type":"module"}',
  'data/vmd.json': '0',
  'data/baseline.json': '0',
  'src/mod.vmd.py': 'import json, vmd\nwatch = ["../data/vmd.json"]\ndef load(ctx):\n    return vmd.json_module(json.loads((ctx.path.parent.parent / "data" / "vmd.json").read_text()))\n',
  'src/mod.loader.mjs': [
    "import { readFileSync } from 'node:fs'",
    "const file = new URL('../data/baseline.json', import.meta.url).pathname",
    'export const watch = [file]',
    'export function load() {',
    '  return `export default JSON.parse(${JSON.stringify(readFileSync(file, "utf8"))});`',
    '}',
    '',
  ].join('\n'),
  'src/main.js': "import a from './mod.vmd.py'\nimport b from './mod.loader.mjs'\nexport { a, b }\nimport.meta.hot?.accept(['./mod.vmd.py', './mod.loader.mjs'], () => {})\n",
}

async function devServer(root, serverOptions = {}) {
  const server = await createServer({
    root,
    configFile: false,
    logLevel: 'silent',
    plugins: [vmd(), baseline()],
    optimizeDeps: { noDiscovery: true, include: [] },
    server: serverOptions,
  })
  const updates = []
  const hot = server.environments.client.hot
  const send = hot.send.bind(hot)
  hot.send = (payload) => {
    if (payload.type === 'update') for (const u of payload.updates) updates.push(u.acceptedPath)
    send(payload)
  }
  return { server, updates }
}

// Edits alternating between the two implementations, each writing the next value to the
// implementation's own file; `timed(which, value, t0)` waits for it to arrive and records it.
// Saves come at most every `gap` ms, as people make them: chokidar (the baseline's and Vite's
// own watcher) throttles a file's change events to one per 50 ms, so closer writes would time
// its throttle, not the implementations.
async function alternateEdits(root, edits, gap, timed) {
  let value = 0
  for (let i = 0; i < edits * 2; i++) {
    const which = i % 2 === 0 ? 'vmd' : 'baseline'
    value += 1
    const t0 = performance.timeOrigin + performance.now()
    writeFileSync(join(root, `data/${which}.json`), String(value))
    await timed(which, value, t0)
    const rest = gap - (performance.timeOrigin + performance.now() - t0)
    if (rest > 0) await new Promise((r) => setTimeout(r, rest))
  }
}

async function latency() {
  const edits = Number(flag('edits', 100))
  const gap = Number(flag('gap', 100))
  const http = args.includes('--http')
  const root = project(files)
  const { server, updates } = await devServer(root, http ? { port: 0, host: '127.0.0.1' } : {})
  if (http) await server.listen()
  const env = server.environments.client
  await env.transformRequest('/src/main.js')
  await env.transformRequest('/src/mod.vmd.py')
  await env.transformRequest('/src/mod.loader.mjs')
  // In the dev server itself (`transformRequest`), or over HTTP with the URL the page's HMR
  // client fetches after an update (`?import&t=`), through all of Vite's middlewares.
  const origin = http ? `http://127.0.0.1:${server.httpServer.address().port}` : ''
  const serve = http
    ? async (url) => (await fetch(`${origin}${url}?import&t=${Date.now()}`)).text()
    : async (url) => (await env.transformRequest(url))?.code ?? ''
  const results = { vmd: { update: [], served: [] }, baseline: { update: [], served: [] } }
  await alternateEdits(root, edits, gap, async (which, value, t0) => {
    const url = which === 'vmd' ? '/src/mod.vmd.py' : '/src/mod.loader.mjs'
    const before = updates.filter((p) => p === url).length // no event is handled before this
    while (updates.filter((p) => p === url).length === before) await new Promise((r) => setImmediate(r))
    const t1 = performance.timeOrigin + performance.now()
    let code = ''
    while (!code.includes(`"${value}"`)) {
      code = await serve(url)
      if (!code.includes(`"${value}"`)) await new Promise((r) => setImmediate(r))
    }
    const t2 = performance.timeOrigin + performance.now()
    results[which].update.push(t1 - t0)
    results[which].served.push(t2 - t0)
  })
  await server.close()
  rmSync(root, { recursive: true, force: true })
  const where = http ? 'served over HTTP' : 'served'
  console.log(`watched-file write -> regenerated module, ${edits} edits each, interleaved, a write every ${gap} ms or slower`)
  console.log(`| implementation | write -> HMR update p50 | p90 | write -> fresh module ${where} p50 | p90 |`)
  console.log('|---|---|---|---|---|')
  for (const [name, r] of Object.entries(results)) {
    console.log(`| ${name} | ${ms(pct(r.update, 50))} | ${ms(pct(r.update, 90))} | ${ms(pct(r.served, 50))} | ${ms(pct(r.served, 90))} |`)
  }
  const ratio = pct(results.vmd.served, 50) / pct(results.baseline.served, 50)
  console.log(`vmd / baseline (${where}, p50): ${ratio.toFixed(2)}x`)
}

// The same edits seen from a real page in Debian's Chromium: each module's HMR accept callback
// renders the new value and stamps the time in the page (wall clock, like Node's
// performance.timeOrigin + now), so the browser's own HMR round trip (WebSocket message, fetch
// of the new module, evaluation) is included and the polling that collects stamps is not.
async function latencyBrowser() {
  const edits = Number(flag('edits', 100))
  const gap = Number(flag('gap', 100))
  const { chromium } = await import(pathToFileURL(join(clients, 'node_modules/playwright-core/index.mjs')).href)
  const root = project({
    ...files,
    'index.html': '<!doctype html><p id="vmd"></p><p id="baseline"></p><script type="module" src="/src/page.js"></script>\n',
    'src/page.js': [
      "import a from './mod.vmd.py'",
      "import b from './mod.loader.mjs'",
      'window.stamps = []',
      'const show = (which, value) => {',
      '  document.getElementById(which).textContent = String(value)',
      '  window.stamps.push({ which, value, at: performance.timeOrigin + performance.now() })',
      '}',
      "show('vmd', a)",
      "show('baseline', b)",
      "import.meta.hot.accept('./mod.vmd.py', (m) => m && show('vmd', m.default))",
      "import.meta.hot.accept('./mod.loader.mjs', (m) => m && show('baseline', m.default))",
      '',
    ].join('\n'),
  })
  const { server } = await devServer(root, { port: 0, host: '127.0.0.1' })
  await server.listen()
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const page = await browser.newPage()
  await page.goto(`http://127.0.0.1:${server.httpServer.address().port}/`)
  await page.waitForFunction(() => window.stamps.length === 2)
  const results = { vmd: [], baseline: [] }
  await alternateEdits(root, edits, gap, async (which, value, t0) => {
    let stamp
    while (!stamp) {
      await new Promise((r) => setTimeout(r, 5))
      stamp = await page.evaluate(([w, v]) => window.stamps.find((s) => s.which === w && s.value === v), [which, value])
    }
    results[which].push(stamp.at - t0)
  })
  await browser.close()
  await server.close()
  rmSync(root, { recursive: true, force: true })
  console.log(`watched-file write -> the page shows the new value (Chromium, HMR), ${edits} edits each, interleaved, a write every ${gap} ms or slower`)
  console.log('| implementation | p50 | p90 |')
  console.log('|---|---|---|')
  for (const [name, r] of Object.entries(results)) console.log(`| ${name} | ${ms(pct(r, 50))} | ${ms(pct(r, 90))} |`)
  console.log(`vmd / baseline (p50): ${(pct(results.vmd, 50) / pct(results.baseline, 50)).toFixed(2)}x`)
}

// One loader imported with N queries, and the baseline's JS loader doing the same.
function buildProject(n) {
  const importsOf = (ext) =>
    Array.from({ length: n }, (_, i) => `import m${i} from './data.${ext}?n=${i}'`).join('\n') +
    `\nexport default [${Array.from({ length: n }, (_, i) => `m${i}`).join(',')}]\n`
  return project({
    'package.json': '{"type":"module"}',
    'src/data.vmd.py': 'import vmd\ndef load(ctx):\n    n = int(ctx.query["n"])\n    return vmd.json_module({"n": n, "rows": [{"i": i, "sq": i * i} for i in range(20)]})\n',
    'src/data.loader.mjs':
      'export function load({ query }) {\n  const n = Number(query.n)\n  const value = { n, rows: Array.from({ length: 20 }, (_, i) => ({ i, sq: i * i })) }\n  return `export default JSON.parse(${JSON.stringify(JSON.stringify(value))});`\n}\n',
    'src/vmd.js': importsOf('vmd.py'),
    'src/baseline.js': importsOf('loader.mjs'),
  })
}

async function buildBench() {
  const n = Number(flag('modules', 500))
  const rounds = Number(flag('rounds', 3))
  const root = buildProject(n)
  const one = async (entry, plugin) => {
    const t0 = performance.now()
    await build({
      root,
      configFile: false,
      logLevel: 'silent',
      plugins: [plugin],
      build: { lib: { entry, formats: ['es'], fileName: 'out' }, outDir: `out-${plugin.name}`, minify: false },
    })
    return performance.now() - t0
  }
  const times = { vmd: [], baseline: [] }
  for (let r = 0; r < rounds; r++) {
    times.vmd.push(await one('src/vmd.js', vmd()))
    times.baseline.push(await one('src/baseline.js', baseline()))
  }
  rmSync(root, { recursive: true, force: true })
  console.log(`vite build of ${n} virtual modules, ${rounds} rounds alternating (wall time, includes daemon start-up and stop)`)
  console.log('| implementation | median | min | max |')
  console.log('|---|---|---|---|')
  for (const [name, t] of Object.entries(times)) console.log(`| ${name} | ${ms(pct(t, 50))} | ${ms(Math.min(...t))} | ${ms(Math.max(...t))} |`)
  console.log(`vmd / baseline (median): ${(pct(times.vmd, 50) / pct(times.baseline, 50)).toFixed(2)}x`)
}

// RSS (MB) of a process and all its descendants, from /proc.
function treeRss(pid) {
  const parents = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const all = [pid]
  for (let i = 0; i < all.length; i++) for (const [c, p] of parents) if (p === all[i]) all.push(c)
  let kb = 0
  for (const p of all) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))
      if (m) kb += Number(m[1])
    } catch {}
  }
  return { mb: kb / 1024, processes: all.length }
}

async function memoryOne(which, edits, rows) {
  const dataset = (lang) =>
    lang === 'py'
      ? `ROWS = [{"id": i, "name": f"row {i}", "tags": ["a", "b", "c"]} for i in range(${rows})]\n`
      : `const ROWS = Array.from({ length: ${rows} }, (_, i) => ({ id: i, name: 'row ' + i, tags: ['a', 'b', 'c'] }))\n`
  const loaderFor = (k) =>
    which === 'vmd'
      ? `import vmd\n${dataset('py')}EDIT = ${k}\ndef load(ctx):\n    return vmd.json_module({"edit": EDIT, "count": len(ROWS)})\n`
      : `${dataset('js')}const EDIT = ${k}\nexport function load() {\n  return 'export default ' + JSON.stringify({ edit: EDIT, count: ROWS.length })\n}\n`
  const file = which === 'vmd' ? 'src/big.vmd.py' : 'src/big.loader.mjs'
  const root = project({ 'package.json': '{"type":"module"}', [file]: loaderFor(0), 'src/main.js': `import x from './${file.slice(4)}'\nexport default x\nimport.meta.hot?.accept('./${file.slice(4)}', () => {})\n` })
  const { server, updates } = await devServer(root)
  const env = server.environments.client
  const url = `/${file}`
  await env.transformRequest('/src/main.js')
  await env.transformRequest(url)
  const samples = []
  for (let k = 1; k <= edits; k++) {
    const before = updates.length
    writeFileSync(join(root, file), loaderFor(k))
    while (updates.length === before) await new Promise((r) => setTimeout(r, 1))
    let code = ''
    while (!code.includes(`"edit":${k},`) && !code.includes(`\\"edit\\":${k},`)) code = (await env.transformRequest(url))?.code ?? ''
    if (k % Math.max(1, Math.floor(edits / 20)) === 0 || k === 20 || k === edits) {
      globalThis.gc?.()
      samples.push({ edit: k, ...treeRss(process.pid) })
    }
    // Loader edits faster than the mtime granularity are not the point: keep edits apart.
    await new Promise((r) => setTimeout(r, 5))
  }
  await server.close()
  rmSync(root, { recursive: true, force: true })
  return samples
}

async function memory() {
  const edits = Number(flag('edits', 2000))
  const rows = Number(flag('rows', 5000))
  const which = flag('impl', undefined)
  if (which) {
    console.log(JSON.stringify(await memoryOne(which, edits, rows)))
    return
  }
  const run = (impl) =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), 'memory', '--impl', impl, '--edits', String(edits), '--rows', String(rows)], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`${impl} exited ${code}`))))
    })
  console.log(`memory over ${edits} loader edits (dataset of ${rows} rows built at import); RSS of Vite's process plus every process below it`)
  console.log('| implementation | at edit 20 | at the last edit | growth | processes |')
  console.log('|---|---|---|---|---|')
  for (const impl of ['vmd', 'baseline']) {
    const samples = await run(impl)
    const first = samples.find((s) => s.edit >= 20) ?? samples[0]
    const last = samples[samples.length - 1]
    console.log(`| ${impl} | ${first.mb.toFixed(1)} MB | ${last.mb.toFixed(1)} MB | ${(last.mb - first.mb).toFixed(1)} MB | ${last.processes} |`)
    console.log(`  samples (edit: MB): ${samples.map((s) => `${s.edit}: ${s.mb.toFixed(0)}`).join(', ')}`)
  }
}

// `vite build` from the command line, a fresh Node process each time: what a user waits for.
// Both configs are loaded natively (--configLoader native), as an installed plugin would be,
// rather than bundled into the config by path. `run(name, nodeArgs)` times one build.
function cliProject(n) {
  const root = buildProject(n)
  const viteBin = join(clients, 'node_modules/vite/bin/vite.js')
  const config = (name, importLine, call, entry) =>
    writeFileSync(
      join(root, `${name}.config.mjs`),
      `${importLine}\nexport default { logLevel: 'silent', plugins: [${call}], build: { lib: { entry: '${entry}', formats: ['es'], fileName: 'out' }, outDir: 'out-${name}', minify: false } }\n`,
    )
  config('vmd', `import vmd from ${JSON.stringify(pathToFileURL(join(clients, 'dist/index.js')).href)}`, 'vmd()', 'src/vmd.js')
  config('baseline', `import baseline from ${JSON.stringify(new URL('./baseline.mjs', import.meta.url).href)}`, 'baseline()', 'src/baseline.js')
  const run = (name, nodeArgs = []) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now()
      const child = spawn(process.execPath, [...nodeArgs, viteBin, 'build', '--configLoader', 'native', '-c', `${name}.config.mjs`], { cwd: root, stdio: 'ignore' })
      child.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${name}: vite build exited ${code}`))))
    })
  return { root, run }
}

async function buildCli() {
  const n = Number(flag('modules', 500))
  const rounds = Number(flag('rounds', 5))
  const { root, run } = cliProject(n)
  const times = { vmd: [], baseline: [] }
  await run('vmd') // warm the disk cache and Python's bytecode for both
  await run('baseline')
  for (let r = 0; r < rounds; r++) {
    // Each goes first in every other round: neither always follows the other's exit.
    for (const name of r % 2 ? ['baseline', 'vmd'] : ['vmd', 'baseline']) times[name].push(await run(name))
  }
  rmSync(root, { recursive: true, force: true })
  console.log(`\`vite build\` of ${n} virtual modules from the command line, ${rounds} rounds alternating (process wall time)`)
  console.log('| implementation | median | min | max |')
  console.log('|---|---|---|---|')
  for (const [name, t] of Object.entries(times)) console.log(`| ${name} | ${ms(pct(t, 50))} | ${ms(Math.min(...t))} | ${ms(Math.max(...t))} |`)
  console.log(`vmd / baseline (median): ${(pct(times.vmd, 50) / pct(times.baseline, 50)).toFixed(2)}x`)
}

// Where Vite's main thread spends a command-line build: CPU profiles of `rounds` builds of each,
// self time summed by package (or Node internal module) and averaged per build.
async function buildProfile() {
  const n = Number(flag('modules', 500))
  const rounds = Number(flag('rounds', 6))
  const { root, run } = cliProject(n)
  const per = {}
  for (let r = 0; r < rounds; r++) {
    for (const name of ['vmd', 'baseline']) {
      const dir = join(root, `prof-${name}-${r}`)
      await run(name, ['--cpu-prof', '--cpu-prof-interval', '200', '--cpu-prof-dir', dir])
      // The main thread's profile is the first one written (workers write later ones).
      const main = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()[0]
      const profile = JSON.parse(readFileSync(join(dir, main), 'utf8'))
      const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
      const sums = (per[name] ??= new Map())
      profile.samples.forEach((id, i) => {
        const { url, functionName } = nodes.get(id).callFrame
        const pkg = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)?.[1]
        const key = pkg ?? (url.includes('clients/node/dist') ? 'vite-plugin-vmd' : url.endsWith('baseline.mjs') ? 'baseline plugin' : url.startsWith('node:') ? url.split('/').slice(0, 3).join('/') : url ? 'other' : functionName)
        sums.set(key, (sums.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000 / rounds)
      })
    }
  }
  rmSync(root, { recursive: true, force: true })
  console.log(`Vite's main thread in a command-line \`vite build\` of ${n} virtual modules, self time per build (mean of ${rounds})`)
  for (const [name, sums] of Object.entries(per)) {
    const total = [...sums.values()].reduce((a, b) => a + b, 0)
    const idle = sums.get('(idle)') ?? 0
    console.log(`\n${name}: busy ${ms(total - idle)}, idle ${ms(idle)}`)
    for (const [key, t] of [...sums].filter(([key]) => key !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${ms(t).padStart(10)}  ${key}`)
  }
}

const command = args[0]
if (command === 'latency') await (args.includes('--browser') ? latencyBrowser() : latency())
else if (command === 'build') await buildBench()
else if (command === 'build-cli') await buildCli()
else if (command === 'build-profile') await buildProfile()
else if (command === 'memory') await memory()
else {
  console.error('usage: node bench/vite/bench.mjs latency [--http|--browser]|build|build-cli|build-profile|memory [--edits N] [--gap MS] [--modules N] [--rounds N]')
  process.exit(2)
}
