// The plugin in a real Vite dev server with a real daemon: resolving, loading, HMR in every
// environment, errors, restart and shutdown.
import { existsSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { createServer } from 'vite'
import type { HotPayload, ViteDevServer } from 'vite'
import vmd from './index.js'
import type { VmdLoaderError, VmdOptions } from './index.js'
import { alive, daemonsIn, descendants, makeProject, mappedProject, usersProject, waitFor, writeUnseen } from './test/project.js'
import type { Project } from './test/project.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

// main.js accepts both data modules, like a component that re-renders with new data.
const accepting = [
  "import users from './users.vmd.py'",
  "import admins from './users.vmd.py?role=admin'",
  'export { users, admins }',
  "if (import.meta.hot) import.meta.hot.accept(['./users.vmd.py', './users.vmd.py?role=admin'], () => {})",
  '',
].join('\n')

async function start(files: Record<string, string> = { ...usersProject, 'src/main.js': accepting }, options: VmdOptions = {}) {
  const project = makeProject(files)
  cleanups.push(() => project.remove())
  const server = await createServer({
    root: project.root,
    configFile: false,
    logLevel: 'silent',
    plugins: [vmd(options)],
    optimizeDeps: { noDiscovery: true, include: [] },
    server: { port: 0 },
  })
  cleanups.push(() => server.close())
  const payloads: HotPayload[] = []
  const hot = server.environments.client.hot
  const send = hot.send.bind(hot) as (payload: HotPayload) => void
  hot.send = ((payload: HotPayload) => {
    payloads.push(payload)
    send(payload)
  }) as typeof hot.send
  return { project, server, payloads }
}

/** The client env's HMR updates, as `acceptedPath`s, in order. */
function updatedPaths(payloads: HotPayload[]): string[] {
  return payloads.flatMap((p) => (p.type === 'update' ? p.updates.map((u) => u.acceptedPath) : []))
}

async function clientLoad(server: ViteDevServer, url: string): Promise<string> {
  const result = await server.environments.client.transformRequest(url)
  return result?.code ?? ''
}

interface Users {
  names: string[]
  label: string
  mode: string
}

// The data modules themselves: main.js accepts their updates, so Vite keeps its SSR instance.
async function ssrUsers(server: ViteDevServer): Promise<{ users: Users; admins: Users }> {
  const users = (await server.ssrLoadModule('/src/users.vmd.py')).default as Users
  const admins = (await server.ssrLoadModule('/src/users.vmd.py?role=admin')).default as Users
  return { users, admins }
}

describe('dev server', () => {
  test('resolves loader imports with their query and serves the generated module', async () => {
    const { server, project } = await start()
    const code = await clientLoad(server, '/src/main.js')
    expect(code).toContain('/src/users.vmd.py?role=admin')
    const admins = await clientLoad(server, '/src/users.vmd.py?role=admin')
    expect(admins).toContain('export default JSON.parse(')
    expect(admins).toContain('ada')
    expect(admins).not.toContain('alan')
    const resolved = await server.environments.client.pluginContainer.resolveId('./users.vmd.py?role=admin', project.path('src/main.js'))
    expect(resolved?.id).toBe(`${project.path('src/users.vmd.py')}?role=admin`)
    const ssr = await ssrUsers(server)
    expect(ssr.users).toEqual({ label: 'v1', mode: 'serve', names: ['ada', 'alan'] })
    expect(ssr.admins.names).toEqual(['ada'])
  })

  test('relative, symlinked and aliased loader imports all resolve to the real file with the query', async () => {
    const project = makeProject({ ...usersProject, 'src/main.js': accepting })
    cleanups.push(() => project.remove())
    symlinkSync(project.path('src'), project.path('linked'))
    const server = await createServer({
      root: project.root,
      configFile: false,
      logLevel: 'silent',
      plugins: [vmd()],
      resolve: { alias: { '@data': project.path('src') } },
      optimizeDeps: { noDiscovery: true, include: [] },
      server: { port: 0 },
    })
    cleanups.push(() => server.close())
    const container = server.environments.client.pluginContainer
    const real = `${project.path('src/users.vmd.py')}?role=admin`
    expect((await container.resolveId('./users.vmd.py?role=admin', project.path('src/main.js')))?.id).toBe(real)
    expect((await container.resolveId('../linked/users.vmd.py?role=admin', project.path('src/main.js')))?.id).toBe(real)
    expect((await container.resolveId('@data/users.vmd.py?role=admin', project.path('src/main.js')))?.id).toBe(real)
    expect(await container.resolveId('./missing.vmd.py', project.path('src/main.js'))).toBeNull()
  })

  test('a watched-file change updates both ids once by HMR (no full reload) and SSR sees it', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')
    await clientLoad(server, '/src/users.vmd.py?role=admin')
    expect((await ssrUsers(server)).users.names).toEqual(['ada', 'alan'])

    project.write('data/b.csv', 'name,role\ngrace,admin\n')
    await waitFor(() => updatedPaths(payloads).length >= 2, 'two HMR updates')
    expect((await ssrUsers(server)).admins.names).toEqual(['ada', 'grace'])
    expect(await clientLoad(server, '/src/users.vmd.py?role=admin')).toContain('grace')

    // A second, unrelated change is the barrier: once its update arrived, a duplicate of the
    // first would have too.
    project.write('data/a.csv', 'name,role\nada,admin\n')
    await waitFor(() => updatedPaths(payloads).length >= 4, 'two more HMR updates')
    expect(updatedPaths(payloads).sort()).toEqual([
      '/src/users.vmd.py',
      '/src/users.vmd.py',
      '/src/users.vmd.py?role=admin',
      '/src/users.vmd.py?role=admin',
    ])
    expect(payloads.filter((p) => p.type === 'full-reload')).toEqual([])
    expect((await ssrUsers(server)).users.names).toEqual(['ada', 'grace'])
  })

  test('after a change the client module is transformed again before the page asks for it', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')
    const graph = server.environments.client.moduleGraph

    project.write('data/b.csv', 'name,role\ngrace,admin\n')
    await waitFor(() => updatedPaths(payloads).includes('/src/users.vmd.py'), 'the HMR update')
    // Nothing here asks for the module: the page's fetch would find it ready.
    await waitFor(
      () => graph.getModuleById(project.path('src/users.vmd.py'))?.transformResult?.code.includes('grace') ?? false,
      'the new output transformed',
    )
  })

  test("a change Vite's watcher reports reaches the daemon and the page updates once", async () => {
    // A fence: a module whose globs match files that only the daemon's watcher can report
    // (new ones, which no served module lists yet), in the folder of the CSVs. Its update
    // comes after any the daemon's watcher had to give for what happened there before.
    const { server, project, payloads } = await start({
      ...usersProject,
      'src/main.js': [
        "import users from './users.vmd.py'",
        "import admins from './users.vmd.py?role=admin'",
        "import fence from './fence.vmd.py'",
        'export { users, admins, fence }',
        "if (import.meta.hot) import.meta.hot.accept(['./users.vmd.py', './users.vmd.py?role=admin', './fence.vmd.py'], () => {})",
        '',
      ].join('\n'),
      'src/fence.vmd.py': 'import vmd\n\nwatch = ["../data/*.stamp"]\n\ndef load(ctx):\n    return vmd.json_module(ctx.watched_files)\n',
    })
    const users = () => updatedPaths(payloads).filter((p) => p !== '/src/fence.vmd.py')
    let stamps = 0
    const fencePassed = async () => {
      const before = updatedPaths(payloads).filter((p) => p === '/src/fence.vmd.py').length
      project.write(`data/${++stamps}.stamp`, '')
      await waitFor(() => updatedPaths(payloads).filter((p) => p === '/src/fence.vmd.py').length > before, 'the fence')
      expect(await clientLoad(server, '/src/fence.vmd.py')).toContain(`${stamps}.stamp`) // fresh again
    }
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')
    await clientLoad(server, '/src/users.vmd.py?role=admin')
    await clientLoad(server, '/src/fence.vmd.py')
    await fencePassed() // the daemon's watcher is live

    const csv = project.path('data/a.csv')
    writeUnseen(csv, project.read('data/a.csv').replace('alan', 'anna'))
    await fencePassed()
    expect(users()).toEqual([]) // no watcher saw that write
    // Stands in for Vite's watcher noticing it (inotify cannot report a write through mmap).
    server.watcher.emit('change', csv, statSync(csv))
    await waitFor(() => users().length >= 2, 'two HMR updates')
    expect(await clientLoad(server, '/src/users.vmd.py')).toContain('anna')

    project.write('data/a.csv', 'name,role\nbarrier,admin\n')
    await waitFor(() => users().length >= 4, 'updates after the barrier')
    expect(users().filter((p) => p === '/src/users.vmd.py')).toHaveLength(2)
    expect(await clientLoad(server, '/src/users.vmd.py')).toContain('barrier')
  })

  test('loader edits and helper edits each arrive once, as HMR, with the new code', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')
    await clientLoad(server, '/src/users.vmd.py?role=admin')

    project.write('src/helper.py', 'def label():\n    return "v2"\n')
    await waitFor(() => updatedPaths(payloads).length >= 2, 'updates after a helper edit')
    expect((await ssrUsers(server)).users.label).toBe('v2')

    project.write('src/users.vmd.py', project.read('src/users.vmd.py').replace('"mode": ctx.mode', '"mode": "edited"'))
    await waitFor(() => updatedPaths(payloads).length >= 4, 'updates after a loader edit')
    expect((await ssrUsers(server)).users.mode).toBe('edited')

    project.write('data/a.csv', 'name,role\nbarrier,admin\n')
    await waitFor(() => updatedPaths(payloads).length >= 6, 'updates after the barrier')
    expect(updatedPaths(payloads).filter((p) => p === '/src/users.vmd.py')).toHaveLength(3)
    expect(payloads.filter((p) => p.type === 'full-reload')).toEqual([])
  })

  test("a loader's source map reaches Vite as the loader returned it", async () => {
    const { server } = await start(mappedProject)
    const result = await server.environments.client.transformRequest('/src/rows.vmd.py')
    expect(result?.code).toContain('export const rows = [1, 2];')
    expect(result?.map).toMatchObject({ sources: ['table.csv'], sourcesContent: ['n\n1\n2\n'], mappings: 'AAAA;AACA' })
  })

  test('a failing loader reports Python message, file, line and traceback, then recovers', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')

    project.write('src/helper.py', 'def label():\n    x = 1\n    return x / 0\n')
    await waitFor(() => updatedPaths(payloads).length >= 1, 'an update after breaking the helper')
    const error = await server.environments.client.transformRequest('/src/users.vmd.py').then(
      () => undefined,
      (e: unknown) => e as Error & { loc: { file: string; line: number }; frame: string; plugin: string },
    )
    expect(error?.message).toBe('ZeroDivisionError: division by zero')
    expect(error?.plugin).toBe('vmd')
    expect(error?.loc).toMatchObject({ file: project.path('src/helper.py'), line: 3 })
    expect(error?.frame).toContain('> 3 |     return x / 0')
    expect(error?.frame).toContain('Traceback (most recent call last)')
    expect(error?.frame).toContain('users.vmd.py')

    const before = updatedPaths(payloads).length
    project.write('src/helper.py', 'def label():\n    return "fixed"\n')
    await waitFor(() => updatedPaths(payloads).length > before, 'an update after the fix')
    expect(await clientLoad(server, '/src/users.vmd.py')).toContain('fixed')
  })

  test('a loader deleted while the server runs fails its modules saying so, and serves again once back', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    const before = await clientLoad(server, '/src/users.vmd.py')
    const loader = project.read('src/users.vmd.py')

    rmSync(project.path('src/users.vmd.py'))
    await waitFor(() => updatedPaths(payloads).includes('/src/users.vmd.py'), 'an update after deleting the loader')
    const error = await clientLoad(server, '/src/users.vmd.py').then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error?.message).toContain('the loader file does not exist')

    const updates = updatedPaths(payloads).length
    project.write('src/users.vmd.py', loader)
    await waitFor(() => updatedPaths(payloads).length > updates, 'an update after restoring the loader')
    expect(await clientLoad(server, '/src/users.vmd.py')).toBe(before)
  })

  test('a daemon that dies is restarted, re-synced, and HMR keeps working', async () => {
    const { server, project, payloads } = await start()
    await clientLoad(server, '/src/main.js')
    await clientLoad(server, '/src/users.vmd.py')
    const [first] = await waitFor(() => daemonsIn(project.root), 'the daemon')
    process.kill(first!, 'SIGKILL')
    // Changed while no daemon watched: the restart's re-sync must still deliver it.
    project.write('data/a.csv', 'name,role\nwhile-down,admin\n')
    await waitFor(() => updatedPaths(payloads).includes('/src/users.vmd.py'), 'an update after the restart')
    const [second] = await waitFor(() => daemonsIn(project.root), 'a new daemon')
    expect(second).not.toBe(first)
    expect(await clientLoad(server, '/src/users.vmd.py')).toContain('while-down')

    const before = updatedPaths(payloads).length
    project.write('data/a.csv', 'name,role\nafter-restart,admin\n')
    await waitFor(() => updatedPaths(payloads).length > before, 'an update from the new daemon')
    expect(await clientLoad(server, '/src/users.vmd.py')).toContain('after-restart')
  })

  test('closing the server stops the daemon and its workers', async () => {
    const { server, project } = await start()
    await clientLoad(server, '/src/users.vmd.py')
    const [daemon] = await waitFor(() => daemonsIn(project.root), 'the daemon')
    const family = [daemon!, ...descendants(daemon!)]
    expect(family.length).toBeGreaterThan(1)
    await server.close()
    await waitFor(() => family.every((pid) => !alive(pid)), 'every vmd process to exit')
  })
})

describe('options', () => {
  test('include: files its globs match are loaders, and a *.vmd.py outside them is never run', async () => {
    const run = (marker: string, out: string) =>
      `def load(ctx):\n    open(${JSON.stringify(marker)}, "a").write("x")\n    return "export default ${out}"\n`
    const { server, project } = await start({}, { include: 'src/data/*.loader.py' })
    project.write('src/data/rows.loader.py', run(project.path('rows-ran.txt'), "'rows'"))
    project.write('src/other.vmd.py', run(project.path('other-ran.txt'), "'other'"))

    expect(await clientLoad(server, '/src/data/rows.loader.py')).toContain("export default 'rows'")
    // Not a loader under these options: Vite treats it as any other file, vmd leaves it alone.
    await server.environments.client.transformRequest('/src/other.vmd.py').catch(() => undefined)
    expect(existsSync(project.path('rows-ran.txt'))).toBe(true)
    expect(existsSync(project.path('other-ran.txt'))).toBe(false)
  })

  test('timeoutMs: a run taking longer is stopped and shown as a timeout naming the loader', async () => {
    // Long enough for the run to be asleep on line 4 when it is stopped, on a busy machine too.
    const { server, project } = await start({}, { timeoutMs: 1000 })
    project.write('src/slow.vmd.py', 'import time\n\ndef load(ctx):\n    time.sleep(30)\n    return "export default 1"\n')
    // Ignoring the option would leave the loader asleep past this test's own 30 s limit.
    const error = await server.environments.client.transformRequest('/src/slow.vmd.py').then(
      () => undefined,
      (e: unknown) => e as VmdLoaderError,
    )
    expect(error?.kind).toBe('timeout')
    expect(error?.loc).toMatchObject({ file: project.path('src/slow.vmd.py'), line: 4 })
  })

  test('memoryLimitMb: a run that goes over fails with a MemoryError at its line; others are served', async () => {
    // Up to 4 GB, 16 MB at a time (line 4): without the limit it would take that much.
    const { server, project } = await start({}, { memoryLimitMb: 300 })
    project.write('src/greedy.vmd.py', 'def load(ctx):\n    held = []\n    for _ in range(256):\n        held.append(bytearray(16 << 20))\n    return "export default 1"\n')
    project.write('src/light.vmd.py', 'def load(ctx):\n    return "export default \'light\'"\n')
    const error = await server.environments.client.transformRequest('/src/greedy.vmd.py').then(
      () => undefined,
      (e: unknown) => e as VmdLoaderError,
    )
    expect(error?.kind).toBe('error')
    expect(error?.message).toContain('MemoryError: the loader went over its memory limit of 300 MB (memoryLimitMb)')
    expect(error?.loc).toMatchObject({ file: project.path('src/greedy.vmd.py'), line: 4 })
    expect(await clientLoad(server, '/src/light.vmd.py')).toContain("export default 'light'")
  })
})

describe('server.fs and strict ids', () => {
  const marker = 'ran.txt'
  const files = {
    'src/probe.vmd.py': `def load(ctx):\n    open(${JSON.stringify('MARKER')}, "a").write("x")\n    return "export default 1"\n`,
    'src/helper.py': 'X = 1\n',
  }

  async function startProbe(): Promise<{ base: string; project: Project; outside: Project }> {
    const outside = makeProject({ 'evil.vmd.py': '' })
    cleanups.push(() => outside.remove())
    outside.write('evil.vmd.py', files['src/probe.vmd.py'].replace('MARKER', outside.path(marker)))
    const { server, project } = await start({})
    project.write('src/probe.vmd.py', files['src/probe.vmd.py'].replace('MARKER', project.path(marker)))
    project.write('src/helper.py', files['src/helper.py'])
    await server.listen()
    const address = server.httpServer!.address()
    if (!address || typeof address === 'string') throw new Error('no port')
    return { base: `http://localhost:${address.port}`, project, outside }
  }

  async function status(base: string, path: string): Promise<number> {
    // Raw HTTP: fetch would normalise the very URLs under test.
    const { request } = await import('node:http')
    const url = new URL(base)
    return new Promise((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
  }

  test('CVE-shaped requests get 403/404 and run nothing; a clean one runs the loader', async () => {
    const { base, project, outside } = await startProbe()
    const refused: [string, number[]][] = [
      ['/src/probe.vmd.py?raw??', [403]],
      ['/src/probe.vmd.py?import&raw', [403]],
      ['/src/probe.vmd.py?raw', [403]],
      ['/src/probe.vmd.py?inline&import', [403]],
      ['/src/probe.vmd.py?url', [403]],
      ['/src/probe.vmd.py?a=1?raw', [403]],
      ['/src/probe.vmd.py?a=%3Fraw', [403]],
      ['/src/probe.vmd.py%3Fraw', [403]],
      ['/src/probe.vmd.py%3fimport', [403]],
      ['/src/probe.vmd.py%23x', [403]],
      ['/src%2Fprobe.vmd.py?import', [403]],
      ['/src/probe.vmd.py?a=1&a=2', [403]],
      ['/src/probe.vmd.py?a=1#x', [400, 403]], // Node's HTTP parser may refuse `#` first
      ['/src/../src/probe.vmd.py?import', [403]],
      [`/@fs${outside.path('evil.vmd.py')}?import`, [403]],
      [`/@fs${outside.path('evil.vmd.py')}`, [403]],
      [`/@id/${outside.path('evil.vmd.py')}`, [403]],
      [`/@fs${outside.path('missing.vmd.py')}?import`, [403]],
      ['/src/missing.vmd.py?import', [404]],
      ['/src/probe.vmd.py?import&t=123', [403]], // not Vite's timestamp: a reserved key
      ['/src/probe.vmd.py', [403]], // a plain fetch would get the loader's source
      ['/src/probe.vmd.py?x=1', [403]],
    ]
    for (const [path, codes] of refused) {
      expect.soft(codes, path).toContain(await status(base, path))
    }
    expect(project.read('src/helper.py')).toBe('X = 1\n')
    expect(() => project.read(marker)).toThrow()
    expect(() => outside.read(marker)).toThrow()
    // The test can fail: the same loader, asked properly, does run.
    expect(await status(base, '/src/probe.vmd.py?import')).toBe(200)
    expect(await status(base, '/src/probe.vmd.py?x=1&import&t=1700000000000')).toBe(200)
    expect(project.read(marker)).toBe('xx')
  })

  test('a query Vite decoded serves the module a build would, and .css in a value is no stylesheet', async () => {
    const { server, project } = await start({ 'src/echo.vmd.py': 'import vmd\n\ndef load(ctx):\n    return vmd.json_module(ctx.query)\n' })
    await server.listen()
    const address = server.httpServer!.address()
    if (!address || typeof address === 'string') throw new Error('no port')
    const get = async (path: string) => {
      const response = await fetch(`http://localhost:${address.port}${path}`)
      return { status: response.status, body: await response.text() }
    }
    const spaced = await get('/src/echo.vmd.py?import&title=hello%20world')
    expect(spaced.status).toBe(200)
    expect(spaced.body).toContain('{\\"title\\":\\"hello world\\"}')
    const accented = await get('/src/echo.vmd.py?import&name=caf%C3%A9')
    expect(accented.status).toBe(200)
    expect(accented.body).toContain('{\\"name\\":\\"caf\\u00e9\\"}')
    const css = await get('/src/echo.vmd.py?import&file=style.css')
    expect(css.status).toBe(200)
    expect(css.body).toContain('export default JSON.parse("{\\"file\\":\\"style.css\\"}")')
    expect(css.body).not.toContain('updateStyle')
    expect(project.read('src/echo.vmd.py')).toContain('json_module')
  })

  test('an id refused by the strict parser never reaches the daemon', async () => {
    const { server, project } = await start({ 'src/probe.vmd.py': '' })
    project.write('src/probe.vmd.py', files['src/probe.vmd.py'].replace('MARKER', project.path(marker)))
    for (const id of ['/src/probe.vmd.py?raw', '/src/probe.vmd.py?worker', '/src/probe.vmd.py?t=1', '/src/probe.vmd.py?a']) {
      await expect(server.environments.client.transformRequest(id), id).rejects.toThrow(/refused module id/)
    }
    expect(() => project.read(marker)).toThrow()
    await expect(server.environments.client.transformRequest('/src/probe.vmd.py?ok=1')).resolves.toBeTruthy()
    expect(project.read(marker)).toBe('x')
  })
})
