// vite-plugin-vmd against the seed plugin, @ulu/vite-plugin-virtual-modules (the JavaScript
// original: JS loader files run in Vite's process through a cache-busted `import()`), both through
// the real `vite` CLI, competitors alternating round by round in one run.
//
//   node bench/vite/seed.mjs build-many [--loaders 100] [--ids 5] [--rounds 5]   `vite build`, loaders x ids
//   node bench/vite/seed.mjs build-one [--ids 500] [--rounds 5]                  `vite build`, one loader x ids
//   node bench/vite/seed.mjs cold [--loaders 40] [--rounds 5]    `vite` spawned -> every loader module served
//
// Common flags:
//   --vmd-env KEY=VALUE      set in the environment of every vmd run only (repeatable)
//   --variants "on:VMD_PRELOAD=1,off:VMD_PRELOAD=0"
//                            several vmd competitors (name:KEY=VALUE;KEY=VALUE,...), each against the
//                            seed and all alternating; --vmd-env applies to each of them
//   --seed-spec SPEC         what `npm install` gets for the seed (default @ulu/vite-plugin-virtual-modules;
//                            a version, a tarball or a folder also work). Where the registry answers 404
//                            for it, `npm pack` a checkout of its repository, Jscherbe/vite-plugin-virtual-modules
//                            (1.1.0), and pass the .tgz
//   --warmup N               unrecorded runs of each competitor first (default 1)
//   --keep                   leave the temporary folder (its path is printed)
//
// The seed is installed with `npm install --no-save` into the benchmark's own temporary folder at
// each run, never into the repository. Run from the repository root after `npm ci` in
// clients/node (builds dist/) and `pip install -e .` into .venv (or ./scripts/test). Uses Vite 8
// from clients/node/node_modules; VMD_PYTHON defaults to .venv/bin/python.
//
// Both apps have the same shape (index.html -> src/main.js importing every loader id), and each
// loader does the same light work: read a small JSON file, export it with the query's value (the
// two builds' output is byte for byte the same). The seed's API: `import x from
// './l.js?virtual-module&q=1'`; l.js default-exports `(ctx) => ({ load({ watchedFiles, data,
// context }) { return code } })`, ctx.queries holding the query; `toJsonModule(value)` from the
// package makes `export default JSON.parse("...")`.
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as netServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const clients = join(repo, 'clients/node')
const viteBin = join(clients, 'node_modules/vite/bin/vite.js')
const vmdPlugin = join(clients, 'dist/index.js')
const SEED = '@ulu/vite-plugin-virtual-modules'

const args = process.argv.slice(2)
const flag = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? fallback : args[at + 1]
}
const flags = (name) => args.flatMap((a, i) => (a === `--${name}` ? [args[i + 1]] : []))
const keyValues = (pairs) =>
  Object.fromEntries(
    pairs.filter(Boolean).map((kv) => {
      const at = kv.indexOf('=')
      if (at < 1) throw new Error(`expected KEY=VALUE, got ${JSON.stringify(kv)}`)
      return [kv.slice(0, at), kv.slice(at + 1)]
    }),
  )

// The competitors: one or more vmd variants, then the seed.
function competitors() {
  const common = keyValues(flags('vmd-env'))
  const spec = flag('variants', undefined)
  const variants = spec
    ? spec.split(',').map((part) => {
        const [name, env = ''] = part.split(/:(.*)/s)
        return { name: `vmd:${name.trim()}`, env: { ...common, ...keyValues(env.split(';').map((s) => s.trim())) } }
      })
    : [{ name: 'vmd', env: common }]
  return [...variants.map((v) => ({ ...v, app: 'vmd' })), { name: 'seed', app: 'seed', env: {} }]
}

// ---------------------------------------------------------------------------------------------
// The apps

function write(root, files) {
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true })
    writeFileSync(join(root, rel), text)
  }
}

const dataFile = (i) => JSON.stringify({ loader: i, title: `loader ${i}`, rows: Array.from({ length: 10 }, (_, j) => ({ j, sq: j * j })) })
// What each module carries, unique per id: `k<loader>q<query>z`.
const token = (i, q) => `k${i}q${q}z`

const vmdLoader = (i) =>
  [
    'import json',
    '',
    'import vmd',
    '',
    '',
    'def load(ctx):',
    `    data = json.loads((ctx.path.parent.parent.parent / "data" / "d${i}.json").read_text())`,
    '    q = ctx.query.get("q")',
    '    return vmd.json_module({"key": f"k{data[\'loader\']}q{q}z", "data": data})',
    '',
  ].join('\n')

const seedLoader = (i) =>
  [
    "import { readFileSync } from 'node:fs'",
    `import { toJsonModule } from '${SEED}'`,
    '',
    `const file = new URL('../../data/d${i}.json', import.meta.url)`,
    '',
    'export default function ({ queries }) {',
    '  return {',
    '    load() {',
    "      const data = JSON.parse(readFileSync(file, 'utf8'))",
    '      return toJsonModule({ key: `k${data.loader}q${queries.q}z`, data })',
    '    },',
    '  }',
    '}',
    '',
  ].join('\n')

// `loaders` loader files, each imported with `ids` queries (?q=0..ids-1) from src/main.js.
function app(root, kind, loaders, ids) {
  const spec = (i, q) => (kind === 'vmd' ? `./loaders/l${i}.vmd.py?q=${q}` : `./loaders/l${i}.js?virtual-module&q=${q}`)
  const names = []
  const imports = []
  for (let i = 0; i < loaders; i++)
    for (let q = 0; q < ids; q++) {
      names.push(`m${i}_${q}`)
      imports.push(`import m${i}_${q} from '${spec(i, q)}'`)
    }
  const files = {
    'package.json': '{"private":true,"type":"module"}\n',
    'index.html': '<!doctype html>\n<title>bench</title>\n<script type="module" src="/src/main.js"></script>\n',
    'src/main.js': `${imports.join('\n')}\nwindow.modules = [${names.join(', ')}]\n`,
    'vite.config.mjs':
      kind === 'vmd'
        ? `import vmd from ${JSON.stringify(pathToFileURL(vmdPlugin).href)}\nexport default { plugins: [vmd()] }\n`
        : `import virtualModules from '${SEED}'\nexport default { plugins: [virtualModules()] }\n`,
  }
  for (let i = 0; i < loaders; i++) {
    files[`data/d${i}.json`] = dataFile(i)
    files[kind === 'vmd' ? `src/loaders/l${i}.vmd.py` : `src/loaders/l${i}.js`] = kind === 'vmd' ? vmdLoader(i) : seedLoader(i)
  }
  write(join(root, kind), files)
}

// A temporary folder with the seed installed from the registry and both apps in it.
function workspace(loaders, ids) {
  for (const [file, hint] of [
    [viteBin, 'npm ci in clients/node'],
    [vmdPlugin, 'npm ci (or npm run build) in clients/node'],
  ])
    if (!existsSync(file)) throw new Error(`${file} is missing: run ${hint}`)
  process.env.VMD_PYTHON ??= join(repo, '.venv/bin/python')
  // Vite runs in the benchmark's temporary folder: a relative path must not be read from there.
  if (process.env.VMD_PYTHON.includes('/')) process.env.VMD_PYTHON = resolve(process.env.VMD_PYTHON)
  if (!existsSync(process.env.VMD_PYTHON)) throw new Error(`no Python at ${process.env.VMD_PYTHON}: create .venv (./scripts/test) or set VMD_PYTHON`)
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'vmd-seed-bench-')))
  write(root, { 'package.json': '{"name":"vmd-seed-bench","private":true,"type":"module"}\n' })
  let spec = flag('seed-spec', SEED)
  if (/^[./]|\.tgz$/.test(spec)) spec = resolve(spec) // a local tarball or folder, from where we were run
  return new Promise((done, fail) => {
    const npm = spawn('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel', 'error', spec], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    npm.stderr.on('data', (d) => (err += d))
    npm.on('exit', (code) => {
      if (code !== 0) {
        rmSync(root, { recursive: true, force: true })
        fail(new Error(`npm install ${spec} failed (${code}):\n${err.trim()}\nGive the seed another way with --seed-spec <version|tarball|folder>.`))
        return
      }
      const version = JSON.parse(readFileSync(join(root, 'node_modules', SEED, 'package.json'), 'utf8')).version
      app(root, 'vmd', loaders, ids)
      app(root, 'seed', loaders, ids)
      done({ root, version, spec })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Running one competitor

let runs = 0
// Every process a run starts (Vite, the daemon, its workers) inherits this marker, so the next
// run waits until all of them are gone rather than competing with one still shutting down.
const MARK = 'VMD_SEED_BENCH_RUN'
function marked(value) {
  const pids = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(`${MARK}=${value}`)) pids.push(Number(name))
    } catch {}
  }
  return pids
}
async function settle(value) {
  const until = Date.now() + 10_000
  while (marked(value).length && Date.now() < until) await sleep(20)
  for (const pid of marked(value)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
}
const sleep = (t) => new Promise((r) => setTimeout(r, t))

const envFor = (who) => ({ ...process.env, ...who.env, [MARK]: `${process.pid}-${++runs}` })

function vite(who, root, cliArgs) {
  const env = envFor(who)
  const child = spawn(process.execPath, [viteBin, ...cliArgs, '--configLoader', 'native'], { cwd: join(root, who.app), env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })))
  return { child, exited, output: () => out.replace(/\x1b\[[0-9;]*m/g, ''), mark: env[MARK] }
}

function checkBuild(root, who, loaders, ids) {
  const dir = join(root, who.app, 'dist/assets')
  const code = readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n')
  for (let i = 0; i < loaders; i++) for (let q = 0; q < ids; q++) if (!code.includes(token(i, q))) throw new Error(`${who.name}: the build has no module for loader ${i}, q=${q}`)
}

async function buildOnce(who, root, loaders, ids) {
  rmSync(join(root, who.app, 'dist'), { recursive: true, force: true })
  const t0 = performance.now()
  const run = vite(who, root, ['build'])
  const { code, signal } = await run.exited
  const elapsed = performance.now() - t0
  await settle(run.mark)
  if (code !== 0) throw new Error(`${who.name}: vite build exited ${code ?? signal}\n${run.output()}`)
  checkBuild(root, who, loaders, ids)
  return { time: elapsed }
}

const freePort = () =>
  new Promise((done, fail) => {
    const s = netServer()
    s.on('error', fail)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => done(port))
    })
  })

// The page's requests, as a browser makes them: the HTML, the entry, then every module it imports
// at once. Done when the last loader module has answered 200 with its own content.
async function coldOnce(who, root, loaders, ids) {
  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const t0 = performance.now()
  const run = vite(who, root, ['--host', '127.0.0.1', '--port', String(port), '--strictPort'])
  let failure
  let listening
  try {
    const until = Date.now() + 60_000
    while (!run.output().includes(`${origin}/`)) {
      if (run.child.exitCode !== null || Date.now() > until) throw new Error(`${who.name}: the dev server did not start\n${run.output()}`)
      await sleep(2)
    }
    listening = performance.now() - t0
    const get = async (path) => {
      const res = await fetch(origin + path)
      const text = await res.text()
      if (res.status !== 200) throw new Error(`${who.name}: GET ${path} answered ${res.status}\n${text.slice(0, 500)}`)
      return text
    }
    await get('/')
    const main = await get('/src/main.js')
    const urls = [...main.matchAll(/(?:from|import)\s*["']([^"']*\/loaders\/[^"']*)["']/g)].map((m) => m[1])
    if (urls.length !== loaders * ids) throw new Error(`${who.name}: /src/main.js imports ${urls.length} loader modules, not ${loaders * ids}\n${main.slice(0, 500)}`)
    await Promise.all(
      urls.map(async (url) => {
        const [, i, q] = /\/l(\d+)\.[^?]*\?.*\bq=(\d+)/.exec(url)
        const text = await get(url)
        if (!text.includes(token(i, q))) throw new Error(`${who.name}: ${url} is not loader ${i}'s output for q=${q}\n${text.slice(0, 300)}`)
      }),
    )
  } catch (error) {
    failure = error
  }
  const elapsed = performance.now() - t0
  run.child.kill('SIGTERM')
  const killer = setTimeout(() => run.child.kill('SIGKILL'), 10_000)
  await run.exited
  clearTimeout(killer)
  await settle(run.mark)
  if (failure) throw failure
  return { time: elapsed, listening }
}

// ---------------------------------------------------------------------------------------------
// Rounds and the table

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const ms = (x) => `${x.toFixed(0)} ms`

async function bench({ title, loaders, ids, once, extra }) {
  const rounds = Number(flag('rounds', 5))
  const warmup = Number(flag('warmup', 1))
  const who = competitors()
  const { root, version, spec } = await workspace(loaders, ids)
  const results = Object.fromEntries(who.map((w) => [w.name, []]))
  try {
    console.log(`${title}, ${rounds} rounds alternating (${warmup} warm-up run each first, not counted)`)
    console.log(`seed: ${SEED} ${version} (npm install ${spec}); vmd: ${vmdPlugin}, python ${process.env.VMD_PYTHON}`)
    for (const w of who) if (w.app === 'vmd' && Object.keys(w.env).length) console.log(`  ${w.name} env: ${Object.entries(w.env).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    for (let r = 0; r < warmup; r++) for (const w of who) await once(w, root, loaders, ids)
    for (let r = 0; r < rounds; r++) {
      // Each round starts with the next competitor: none always follows the same one.
      const order = who.map((_, k) => who[(k + r) % who.length])
      for (const w of order) results[w.name].push(await once(w, root, loaders, ids))
      process.stderr.write(`round ${r + 1}/${rounds}: ${order.map((w) => `${w.name} ${ms(results[w.name].at(-1).time)}`).join(', ')}\n`)
    }
  } finally {
    if (args.includes('--keep')) console.log(`kept ${root}`)
    else rmSync(root, { recursive: true, force: true })
  }
  const head = ['implementation', 'median', 'min', 'max', ...(extra ? [extra.label] : [])]
  console.log(`| ${head.join(' | ')} |`)
  console.log(`|${head.map(() => '---').join('|')}|`)
  for (const [name, rs] of Object.entries(results)) {
    const t = rs.map((x) => x.time)
    console.log(`| ${[name, ms(median(t)), ms(Math.min(...t)), ms(Math.max(...t)), ...(extra ? [ms(median(rs.map(extra.of)))] : [])].join(' | ')} |`)
  }
  const med = (name) => median(results[name].map((x) => x.time))
  const vmds = who.filter((w) => w.app === 'vmd')
  for (const w of vmds) console.log(`${w.name} / seed (median): ${(med(w.name) / med('seed')).toFixed(2)}x`)
  for (const w of vmds.slice(1)) console.log(`${w.name} / ${vmds[0].name} (median): ${(med(w.name) / med(vmds[0].name)).toFixed(2)}x`)
}

async function main(command) {
  if (command === 'build-many') {
    const loaders = Number(flag('loaders', 100))
    const ids = Number(flag('ids', 5))
    await bench({ title: `\`vite build\` (CLI), ${loaders} loader files x ${ids} ids = ${loaders * ids} modules, process wall time`, loaders, ids, once: buildOnce })
  } else if (command === 'build-one') {
    const ids = Number(flag('ids', 500))
    await bench({ title: `\`vite build\` (CLI), 1 loader file x ${ids} ids, process wall time`, loaders: 1, ids, once: buildOnce })
  } else if (command === 'cold') {
    const loaders = Number(flag('loaders', 40))
    const ids = Number(flag('ids', 1))
    await bench({
      title: `\`vite\` dev cold start (CLI): spawn -> all ${loaders * ids} loader modules (${loaders} files x ${ids} ids) served 200 over HTTP`,
      loaders,
      ids,
      once: coldOnce,
      extra: { label: 'listening (median)', of: (x) => x.listening },
    })
  } else {
    console.error('usage: node bench/vite/seed.mjs build-many|build-one|cold [--loaders N] [--ids N] [--rounds N] [--warmup N] [--vmd-env K=V]... [--variants "a:K=V,b:K=V"] [--seed-spec SPEC] [--keep]')
    process.exit(2)
  }
}

try {
  await main(args[0])
} catch (error) {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
}
