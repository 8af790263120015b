// `vite build` and `vite build --watch` with a real daemon: build mode, failures, watch
// rebuilds, and a process that exits by itself leaving no Python behind.
import { spawn } from 'node:child_process'
import { chmodSync, readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { build, version } from 'vite'
import type { InlineConfig, Rollup } from 'vite'
import vmd from './index.js'
import { alive, daemonsIn, descendants, distUrl, makeProject, mappedProject, usersProject, viteBin, waitFor } from './test/project.js'
import type { Project } from './test/project.js'

const python = process.env.VMD_PYTHON!
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function project(files: Record<string, string> = usersProject): Project {
  const p = makeProject(files)
  cleanups.push(() => p.remove())
  return p
}

const libBuild = {
  lib: { entry: 'src/main.js', formats: ['es' as const], fileName: 'main' },
  outDir: 'out',
  emptyOutDir: true,
  minify: false,
}

function config(p: Project, extra: InlineConfig = {}): InlineConfig {
  return { root: p.root, configFile: false, logLevel: 'silent', plugins: [vmd()], build: libBuild, ...extra }
}

let imports = 0
async function importOutput(p: Project): Promise<{ users: { names: string[]; mode: string; label: string }; admins: { names: string[] } }> {
  // A fresh URL each time: Node caches ES modules by URL.
  return (await import(`${pathToFileURL(p.path('out/main.js')).href}?n=${imports++}`)) as never
}

function run(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [viteBin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.on('close', (code) => resolve({ code, output }))
  })
}

const cliConfig = `import vmd from ${JSON.stringify(distUrl)}
export default {
  logLevel: 'warn',
  plugins: [vmd()],
  build: ${JSON.stringify(libBuild)},
}
`

describe('vite build', () => {
  test('runs the Vite major this project pins', () => {
    expect(version.split('.')[0]).toBe(process.env.VMD_VITE_MAJOR)
  })

  test('serves every loader with mode "build" and stops the daemon when done', async () => {
    const p = project()
    await build(config(p))
    const out = await importOutput(p)
    expect(out.users).toEqual({ label: 'v1', mode: 'build', names: ['ada', 'alan'] })
    expect(out.admins.names).toEqual(['ada'])
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('query values reach the loader decoded, and one ending in .css still makes a module', async () => {
    const p = project({
      'package.json': '{"type":"module"}',
      'src/echo.vmd.py': 'import vmd\n\ndef load(ctx):\n    return vmd.json_module(ctx.query)\n',
      'src/main.js': [
        "import a from './echo.vmd.py?title=hello%20world'",
        "import b from './echo.vmd.py?name=caf%C3%A9'",
        "import c from './echo.vmd.py?file=style.css'",
        'export { a, b, c }',
        '',
      ].join('\n'),
    })
    await build(config(p))
    const out = (await import(`${pathToFileURL(p.path('out/main.js')).href}?n=${imports++}`)) as Record<string, unknown>
    expect(out).toMatchObject({ a: { title: 'hello world' }, b: { name: 'café' }, c: { file: 'style.css' } })
  })

  test("the build's source map leads back to what the loader's map names, with its content", async () => {
    const p = project(mappedProject)
    await build(config(p, { build: { ...libBuild, sourcemap: true } }))
    const map = JSON.parse(readFileSync(p.path('out/main.js.map'), 'utf8')) as { sources: string[]; sourcesContent: string[] }
    const at = map.sources.indexOf('../src/table.csv')
    expect(at).toBeGreaterThanOrEqual(0)
    expect(map.sourcesContent[at]).toBe('n\n1\n2\n')
  })

  test('a failing loader fails the build with the Python message, file and line', async () => {
    const p = project({ ...usersProject, 'src/helper.py': 'def label():\n    raise ValueError("no label today")\n' })
    const error = await build(config(p)).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    // Vite 8 reports every failing module (?role=admin among them), Vite 7 the first one.
    expect(error?.message).toContain(`${p.path('src/helper.py')}:2: ValueError: no label today\n  while loading ${p.path('src/users.vmd.py')}`)
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('an interpreter without vmd fails the build with its error once, after one attempt', async () => {
    const p = project()
    // Counts its starts; no site-packages (-S), so certainly no vmd.
    p.write('bare-python', `#!/bin/sh\necho started >> ${p.path('starts.txt')}\nexec ${python} -S "$@"\n`)
    chmodSync(p.path('bare-python'), 0o755)
    const error = await build(config(p, { plugins: [vmd({ python: p.path('bare-python') })] })).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error?.message).toContain('the Python package vmd is not installed')
    // Every module's load failed with it: each error names one module, not all of them.
    expect(error?.message.split('Could not load').length).toBeLessThanOrEqual(2)
    expect(p.read('starts.txt')).toBe('started\n')
  })

  test('the CLI exits by itself (0, then non-zero with the message), leaving no Python process', async () => {
    const p = project({ ...usersProject, 'vite.config.mjs': cliConfig })
    const ok = await run(['build'], p.root)
    expect(ok.code, ok.output).toBe(0)
    expect((await importOutput(p)).users.mode).toBe('build')
    expect(daemonsIn(p.root)).toEqual([])

    p.write('src/users.vmd.py', 'def load(ctx):\n    return {}["missing"]\n')
    const failed = await run(['build'], p.root)
    expect(failed.code).not.toBe(0)
    expect(failed.output).toContain("KeyError: 'missing'")
    expect(failed.output).toContain(`${p.path('src/users.vmd.py')}:2`)
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('an app build (client and SSR) starts one daemon per environment and prints no daemon chatter', async () => {
    // A wrapper interpreter that counts the daemons started.
    const wrapper = `#!/bin/sh\necho started >> "$(dirname "$0")/daemons.log"\nexec ${process.env.VMD_PYTHON} "$@"\n`
    const appConfig = `import vmd from ${JSON.stringify(distUrl)}
export default {
  logLevel: 'warn',
  plugins: [vmd({ python: ${JSON.stringify('./python-wrapper')} })],
  builder: {},
  environments: {
    client: { build: { outDir: 'out/client', rollupOptions: { input: 'src/main.js' } } },
    ssr: { build: { outDir: 'out/ssr', ssr: 'src/main.js' } },
  },
}
`
    const p = project({ ...usersProject, 'vite.config.mjs': appConfig, 'python-wrapper': wrapper })
    chmodSync(p.path('python-wrapper'), 0o755)
    const result = await run(['build', '--app'], p.root)
    expect(result.code, result.output).toBe(0)
    expect(result.output).not.toContain('[vmd]')
    expect(readFileSync(p.path('out/ssr/main.js'), 'utf8')).toContain('build')
    expect(readFileSync(p.path('daemons.log'), 'utf8').trim().split('\n')).toHaveLength(2)
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('an app build sharing one plugin across environments built in parallel keeps the daemon until both are done', async () => {
    // The client asks for its module half a second after the SSR build asked for its own, and
    // is done while the SSR build still waits for it: the SSR loader returns only once the
    // client build has closed (after vmd's own closeBundle), however long that takes.
    const appConfig = `import { writeFileSync } from 'node:fs'
import vmd from ${JSON.stringify(distUrl)}
const later = {
  name: 'later',
  async transform(code, id) { if (id.endsWith('client.js')) await new Promise((r) => setTimeout(r, 500)) },
  closeBundle: { order: 'post', sequential: true, handler() { if (this.environment.name === 'client') writeFileSync('client-done', '') } },
}
export default {
  logLevel: 'warn',
  plugins: [vmd(), later],
  builder: { sharedPlugins: true, buildApp: (b) => Promise.all([b.build(b.environments.client), b.build(b.environments.ssr)]) },
  environments: {
    client: { build: { outDir: 'out/client', rollupOptions: { input: 'src/client.js' } } },
    ssr: { build: { outDir: 'out/ssr', ssr: 'src/server.js' } },
  },
}
`
    const p = project({
      'vite.config.mjs': appConfig,
      'src/client.js': "import fast from './fast.vmd.py'\nconsole.log(fast)\n",
      'src/server.js': "import slow from './slow.vmd.py'\nexport default slow\n",
      'src/fast.vmd.py': 'import time\ndef load(ctx):\n    time.sleep(0.3)\n    return "export default \'fast\'"\n',
      'src/slow.vmd.py': [
        'import os, time',
        'def load(ctx):',
        '    for _ in range(2000):  # 20 s at most: a test that fails says so, not hangs',
        '        if os.path.exists("client-done"):',
        '            return "export default \'slow\'"',
        '        time.sleep(0.01)',
        '    raise RuntimeError("the client build never closed")',
        '',
      ].join('\n'),
    })
    const result = await run(['build', '--app'], p.root)
    expect(result.code, result.output).toBe(0)
    expect(readFileSync(p.path('out/ssr/server.mjs'), 'utf8')).toContain('"slow"')
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('build --watch rebuilds when a watched file, a new file the globs match, a helper or the loader changes', async () => {
    const p = project()
    const watcher = (await build(config(p, { build: { ...libBuild, watch: {} } }))) as Rollup.RollupWatcher
    let ends = 0
    let lastError: unknown
    watcher.on('event', (event) => {
      if (event.code === 'BUNDLE_END') void event.result.close()
      if (event.code === 'END') ends++
      if (event.code === 'ERROR') lastError = event.error
    })
    cleanups.push(async () => {
      await watcher.close()
      // closeWatcher stops the daemon
      await waitFor(() => daemonsIn(p.root).length === 0, 'the daemon to stop')
    })
    await waitFor(() => ends >= 1, 'the first build')
    expect((await importOutput(p)).users.names).toEqual(['ada', 'alan'])

    p.write('data/a.csv', 'name,role\nada,admin\nkatherine,admin\n')
    await waitFor(async () => (await importOutput(p)).admins.names.includes('katherine'), 'a rebuild after a CSV edit')

    p.write('data/b.csv', 'name,role\ngrace,admin\n')
    await waitFor(async () => (await importOutput(p)).admins.names.includes('grace'), 'a rebuild after a new CSV')

    p.write('src/helper.py', 'def label():\n    return "v2"\n')
    await waitFor(async () => (await importOutput(p)).users.label === 'v2', 'a rebuild after a helper edit')

    p.write('src/users.vmd.py', p.read('src/users.vmd.py').replace('"mode": ctx.mode', '"mode": "edited"'))
    await waitFor(async () => (await importOutput(p)).users.mode === 'edited', 'a rebuild after a loader edit')
    expect(lastError).toBeUndefined()
  })
})

describe('vite dev (CLI)', () => {
  test('killing the Vite process with SIGKILL leaves no Python process behind', async () => {
    const p = project({ ...usersProject, 'vite.config.mjs': cliConfig })
    const child = spawn(process.execPath, [viteBin, '--port', '0', '--host', '127.0.0.1', '--logLevel', 'info'], {
      cwd: p.root,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const closed = new Promise((resolve) => child.on('close', resolve))
    const url = await waitFor(() => /Local:\s+(http:\/\/\S+)/.exec(output.replace(/\x1b\[[0-9;]*m/g, ''))?.[1], 'the dev server URL')
    const res = await fetch(new URL('src/users.vmd.py?import', url))
    expect(await res.text()).toContain('ada')
    const [daemon] = daemonsIn(p.root)
    const family = [daemon!, ...descendants(daemon!)]
    expect(family.length).toBeGreaterThan(1)
    child.kill('SIGKILL')
    await closed
    await waitFor(() => family.every((pid) => !alive(pid)), 'every Python process to exit')
  })
})
