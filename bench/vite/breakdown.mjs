// Where the time of a `vite build` with 500 vmd modules goes: daemon start (first load), the loads, the stop.
//
//   node bench/vite/breakdown.mjs          (VMD_PYTHON picks the interpreter; default .venv)

import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { fileURLToPath, pathToFileURL } from 'node:url'
const clients = fileURLToPath(new URL('../../clients/node', import.meta.url))
process.env.VMD_PYTHON ??= fileURLToPath(new URL('../../.venv/bin/python', import.meta.url))
const { build } = await import(pathToFileURL(join(clients, 'node_modules/vite/dist/node/index.js')).href)
const vmd = (await import(pathToFileURL(join(clients, 'dist/index.js')).href)).default
const root = realpathSync(mkdtempSync(join(tmpdir(), 'vb-')))
mkdirSync(join(root, 'src'))
writeFileSync(join(root, 'package.json'), '{"type":"module"}')
writeFileSync(join(root, 'src/data.vmd.py'), 'import vmd\ndef load(ctx):\n    n = int(ctx.query["n"])\n    return vmd.json_module({"n": n, "rows": [{"i": i, "sq": i * i} for i in range(20)]})\n')
const n = 500
writeFileSync(join(root, 'src/vmd.js'), Array.from({ length: n }, (_, i) => `import m${i} from './data.vmd.py?n=${i}'`).join('\n') + `\nexport default [${Array.from({ length: n }, (_, i) => `m${i}`).join(',')}]\n`)
for (let r = 0; r < 3; r++) {
  const p = vmd()
  const t0 = performance.now()
  let first, last, count = 0
  const inner = p.load.handler
  p.load.handler = async function (id) { first ??= performance.now(); const out = await inner.call(this, id); last = performance.now(); count++; return out }
  const origClose = p.closeBundle
  let closeStart, closeEnd
  p.closeBundle = async function () { closeStart = performance.now(); await origClose.call(this); closeEnd = performance.now() }
  await build({ root, configFile: false, logLevel: 'silent', plugins: [p], build: { lib: { entry: 'src/vmd.js', formats: ['es'], fileName: 'out' }, outDir: 'out', minify: false } })
  const t1 = performance.now()
  console.log(`total ${(t1 - t0).toFixed(0)} ms; first load at ${(first - t0).toFixed(0)}; loads span ${(last - first).toFixed(0)} ms (${count}); close ${(closeEnd - closeStart).toFixed(0)} ms`)
}
rmSync(root, { recursive: true, force: true })
