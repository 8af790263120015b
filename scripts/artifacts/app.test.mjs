// vmd's installable artifacts, tested as a user gets them: scripts/test-artifacts builds the
// wheel and the vite-plugin-vmd tarball, installs them into a fresh venv and into a fresh Vite
// app outside the checkout (the app is this file's folder and the working directory), and runs
// this file there with node's test runner. Only node: builtins are imported, so nothing resolves
// from the checkout; what it needs comes from the environment:
//   VMD_ARTIFACT_PYTHON    the fresh venv's python, the wheel installed in it
//   VMD_ARTIFACT_WHEEL     the wheel that was installed
//   VMD_ARTIFACT_TARBALL   the npm tarball the app installed
//   VMD_ARTIFACT_CHECKOUT  the checkout the artifacts were built from, which nothing may use
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { after, test } from 'node:test'

const app = process.cwd()
const python = need('VMD_ARTIFACT_PYTHON')
const wheel = need('VMD_ARTIFACT_WHEEL')
const tarball = need('VMD_ARTIFACT_TARBALL')
const checkout = realpathSync(need('VMD_ARTIFACT_CHECKOUT'))
const venv = dirname(dirname(python))
const vite = join(app, 'node_modules', 'vite', 'bin', 'vite.js')

// What Vite, the daemon and its workers run with: the fresh venv's python, and no variable
// that could put the checkout (or another environment) on a module path.
const childEnv = { ...process.env, VMD_PYTHON: python, NO_COLOR: '1', FORCE_COLOR: '0' }
for (const name of ['PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV', 'NODE_PATH']) delete childEnv[name]

// Beside the app, in the folder scripts/test-artifacts removes whatever happens here.
const scratch = mkdtempSync(join(dirname(app), 'scratch-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

const LICENSE_LINES = ['MIT License', 'Copyright (c) 2026 the vmd authors']

test('the app and the fresh venv are outside the checkout', () => {
  for (const path of [app, venv, wheel, tarball]) assert.ok(!inside(realpathSync(path), checkout), `${path} is inside the checkout ${checkout}`)
})

test('import vmd in the fresh venv resolves to its site-packages, with nothing of the checkout on sys.path', () => {
  const info = JSON.parse(py(`
import glob, importlib.metadata as md, json, os, sys, sysconfig, vmd
purelib = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "file": vmd.__file__, "prefix": sys.prefix, "purelib": purelib, "path": sys.path,
    "files": [str(f) for f in md.files("vmd") or []],
    "pth": {p: open(p, encoding="utf-8").read() for p in glob.glob(os.path.join(purelib, "*.pth"))},
}))`))
  assert.equal(realpathSync(info.prefix), realpathSync(venv), 'sys.prefix is not the fresh venv')
  const purelib = realpathSync(info.purelib)
  assert.ok(inside(realpathSync(info.file), purelib), `vmd imports from ${info.file}, not from ${purelib}`)
  for (const entry of info.path) {
    if (entry) assert.ok(!inside(safeRealpath(entry), checkout), `sys.path has ${entry}, inside the checkout`)
  }
  for (const [file, text] of Object.entries(info.pth)) {
    assert.ok(!text.includes(checkout), `${file} points into the checkout (an editable install?):\n${text}`)
  }
  assert.ok(info.files.some((f) => /^vmd-[^/]+\.dist-info\/licenses\/LICENSE$/.test(f)), `the installed dist-info has no licenses/LICENSE: ${info.files.join(', ')}`)
})

test('the wheel carries LICENSE and a README without relative links', () => {
  const wheelInfo = JSON.parse(py(`
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    lic = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    print(json.dumps({"names": names, "metadata": z.read(meta).decode(),
                      "license": z.read(lic[0]).decode() if lic else None}))`, wheel))
  assert.ok(wheelInfo.license !== null, `no *.dist-info/licenses/LICENSE in ${wheel}: ${wheelInfo.names.join(', ')}`)
  for (const line of LICENSE_LINES) assert.ok(wheelInfo.license.includes(line), `the wheel's LICENSE lacks "${line}"`)
  const [headers, ...body] = wheelInfo.metadata.split(/\r?\n\r?\n/)
  assert.match(headers, /^License-File: LICENSE$/m)
  assert.match(headers, /^Description-Content-Type: text\/markdown$/m)
  const description = body.join('\n\n')
  assert.ok(description.includes('# vmd'), 'METADATA has no long description (README.md)')
  assert.deepEqual(badLinks(description), [], "links in the wheel's README that are dead once packaged")
})

test('the npm tarball carries LICENSE, maps with their sources and a README without relative links', () => {
  const out = join(scratch, 'tarball')
  mkdirSync(out)
  run('tar', ['-xzf', tarball, '-C', out])
  const pkg = join(out, 'package')
  const files = walk(pkg).map((f) => relative(pkg, f).split(sep).join('/'))
  assert.ok(existsSync(join(pkg, 'LICENSE')), `no LICENSE in the tarball: ${files.join(', ')}`)
  const license = readFileSync(join(pkg, 'LICENSE'), 'utf8')
  for (const line of LICENSE_LINES) assert.ok(license.includes(line), `the tarball's LICENSE lacks "${line}"`)
  assert.ok(files.includes('dist/index.js'), `no dist/index.js in the tarball: ${files.join(', ')}`)
  assert.deepEqual(files.filter((f) => /\.test\.|(^|\/)test\//.test(f)), [], 'test files in the tarball')
  for (const file of files.filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'))) {
    const ref = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(pkg, file), 'utf8'))?.[1]
    if (!ref || ref.startsWith('data:')) continue
    const target = join(dirname(file), ref).split(sep).join('/')
    assert.ok(files.includes(target), `${file} points at ${ref}, which is not in the tarball`)
  }
  for (const file of files.filter((f) => f.endsWith('.map'))) {
    const map = JSON.parse(readFileSync(join(pkg, file), 'utf8'))
    const content = map.sourcesContent ?? []
    assert.equal(content.length, map.sources.length, `${file} has no sourcesContent for ${map.sources.join(', ')}, which are not shipped`)
    assert.ok(content.every((s) => typeof s === 'string' && s.length > 0), `${file} has an empty sourcesContent entry`)
  }
  assert.deepEqual(badLinks(readFileSync(join(pkg, 'README.md'), 'utf8')), [], "links in the tarball's README that are dead once packaged")
})

test('the link check finds relative links and missing anchors, and leaves code alone', () => {
  const sample = [
    '# Top heading', '', 'See [a](other.md), ![b](img/x.png), [c](https://example.org/c),',
    '[d](#top-heading), [e](#missing), `[f](inline.md)` and <a href="../up.md">g</a>.', '',
    '```md', '[h](fenced.md)', '```', '', '[ref]: docs/ref.md',
  ].join('\n')
  assert.deepEqual(badLinks(sample), ['other.md', 'img/x.png', '#missing', '../up.md', 'docs/ref.md'])
})

test('the plugin in node_modules is the tarball, installed, not a link to the checkout', () => {
  const plugin = join(app, 'node_modules', 'vite-plugin-vmd')
  assert.ok(!lstatSync(plugin).isSymbolicLink(), `${plugin} is a symlink (a file: folder dependency?)`)
  assert.ok(inside(realpathSync(plugin), realpathSync(app)), `${plugin} resolves outside the app`)
  const pkg = JSON.parse(readFileSync(join(plugin, 'package.json'), 'utf8'))
  assert.equal(pkg.name, 'vite-plugin-vmd')
})

test('vite build bundles the output of the loader, run by the fresh venv', { timeout: 90_000 }, () => {
  const build = spawnSync(process.execPath, [vite, 'build'], { cwd: app, env: childEnv, encoding: 'utf8', timeout: 80_000 })
  assert.equal(build.status, 0, `vite build failed (status ${build.status}, signal ${build.signal}):\n${build.stdout}\n${build.stderr}`)
  const assets = join(app, 'dist', 'assets')
  const js = readdirSync(assets).filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(assets, f), 'utf8')).join('\n')
  assert.ok(js.includes('artifact v1 (build)'), `the built JS lacks the loader's output "artifact v1 (build)":\n${js.slice(0, 2000)}`)
  assert.ok(js.includes(vmdFile()), `the built JS does not name the fresh venv's vmd (${vmdFile()}), so another vmd ran the loader`)
})

test('the vite dev server serves the loader module, and its new output once data.txt changes', { timeout: 90_000 }, async (t) => {
  const port = await freePort()
  const server = spawn(process.execPath, [vite, '--host', '127.0.0.1', '--port', String(port), '--strictPort'], {
    cwd: app,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  server.stdout.on('data', (chunk) => (output += chunk))
  server.stderr.on('data', (chunk) => (output += chunk))
  const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })))
  t.after(async () => {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM')
    const timer = setTimeout(() => server.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  })
  const base = `http://127.0.0.1:${port}`
  const ready = await Promise.race([
    until(() => output.includes(`${base}/`), 30_000),
    exited.then(({ code, signal }) => assert.fail(`vite exited (code ${code}, signal ${signal}) before it was ready:\n${output}`)),
  ])
  assert.ok(ready, `vite did not print ${base}/ within 30 s:\n${output}`)

  const main = await get(`${base}/main.js`)
  assert.equal(main.status, 200, `GET /main.js: ${main.status}\n${main.body}\n${output}`)
  const url = /from\s*["']([^"']*data\.vmd\.py[^"']*)["']/.exec(main.body)?.[1]
  assert.ok(url, `main.js as served does not import the loader:\n${main.body}`)
  const first = await get(new URL(url, base).href)
  assert.equal(first.status, 200, `GET ${url}: ${first.status}\n${first.body}\n${output}`)
  assert.ok(first.body.includes('artifact v1 (serve)'), `${url} lacks the loader's output "artifact v1 (serve)":\n${first.body}`)
  assert.ok(first.body.includes(vmdFile()), `${url} does not name the fresh venv's vmd (${vmdFile()}):\n${first.body}`)

  writeFileSync(join(app, 'data.txt'), 'artifact v2\n')
  let last = first
  const updated = await until(async () => {
    last = await get(new URL(url, base).href)
    return last.body.includes('artifact v2 (serve)')
  }, 20_000)
  assert.ok(updated, `20 s after data.txt changed, ${url} still serves:\n${last.body}\n--- vite output:\n${output}`)
})

function need(name) {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set: run this through scripts/test-artifacts`)
  return value
}

function inside(path, folder) {
  const rel = relative(folder, path)
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel))
}

function safeRealpath(path) {
  try {
    return realpathSync(path)
  } catch {
    return path
  }
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: app, env: childEnv, encoding: 'utf8', ...options })
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed (status ${result.status}):\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

function py(code, ...args) {
  return run(python, ['-c', code, ...args])
}

let vmdFileMemo
function vmdFile() {
  vmdFileMemo ??= py('import vmd; print(vmd.__file__)').trim()
  return vmdFileMemo
}

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  )
}

// Link targets in Markdown that are dead once the file is packaged: anything but an absolute
// https URL or an anchor of a heading in the same document. Code (fenced or inline) is skipped.
function badLinks(markdown) {
  const prose = markdown.replace(/^(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  const anchors = headingAnchors(prose)
  const text = prose.replace(/`+[^`\n]*`+/g, '')
  const targets = []
  const patterns = [
    /!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)/g, // [text](target), ![alt](target)
    /^ {0,3}\[[^\]\n]+\]:\s*<?([^\s>]+)/gm, // [ref]: target
    /\b(?:href|src)\s*=\s*["']([^"']+)["']/gi, // <a href="…">, <img src="…">
  ]
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) targets.push([match.index, match[1]])
  return targets
    .sort((a, b) => a[0] - b[0])
    .map(([, target]) => target)
    .filter((target) => !(target.startsWith('https://') || (target.startsWith('#') && anchors.has(target.slice(1)))))
}

// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2… for repeats.
function headingAnchors(markdown) {
  const anchors = new Set()
  const seen = new Map()
  for (const [, heading] of markdown.matchAll(/^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/gm)) {
    const slug = heading.replace(/`/g, '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    anchors.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return anchors
}

async function get(url) {
  const response = await fetch(url)
  return { status: response.status, body: await response.text() }
}

async function until(check, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}
