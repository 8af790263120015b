// The daemon client on its own: start-up errors that say how to fix them, requests failed with
// the reason when the daemon dies, and an idle daemon that never keeps Node alive.
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { Daemon, DaemonRequestError, defaultPython } from './daemon.js'
import { ErrorCodes } from './protocol.js'
import { alive, daemonsIn, descendants, makeProject, packageRoot, waitFor } from './test/project.js'
import type { Project } from './test/project.js'

const python = process.env.VMD_PYTHON!
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function project(files: Record<string, string>): Project {
  const p = makeProject(files)
  cleanups.push(() => p.remove())
  return p
}

function daemon(p: Project, overrides: Partial<ConstructorParameters<typeof Daemon>[0]> = {}): Daemon {
  const d = new Daemon({ python, root: p.root, mode: 'serve', include: ['**/*.vmd.py'], timeoutMs: 10_000, ...overrides })
  cleanups.push(() => d.stop())
  return d
}

describe('Daemon', () => {
  test('a missing interpreter names it and says how to install', async () => {
    const p = project({})
    const error = await daemon(p, { python: '/nonexistent/python3' }).start().catch((e: Error) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/cannot start the Python interpreter "\/nonexistent\/python3": not found/)
    expect((error as Error).message).toContain('pip install <path-to-vmd>')
  })

  test('an interpreter without vmd says exactly how to install it', async () => {
    const p = project({})
    // No site-packages (-S): this Python certainly lacks vmd.
    p.write('bare-python', `#!/bin/sh\nexec ${python} -S "$@"\n`)
    chmodSync(p.path('bare-python'), 0o755)
    const error = await daemon(p, { python: p.path('bare-python') }).start().catch((e: Error) => e)
    expect((error as Error).message).toContain(`the Python package vmd is not installed for "${p.path('bare-python')}"`)
    expect((error as Error).message).toContain(`\`${p.path('bare-python')} -m pip install <path-to-vmd>\``)
    expect((error as Error).message).toContain('vmd is not on PyPI')
  })

  test('an interpreter with an unrelated package named vmd says so, not that vmd is missing', async () => {
    const p = project({ 'other/vmd/__init__.py': '' })
    // A package named vmd without `python -m vmd`, as `pip install vmd` from PyPI gives.
    p.write('other-python', `#!/bin/sh\nPYTHONPATH=${p.path('other')} exec ${python} -S "$@"\n`)
    chmodSync(p.path('other-python'), 0o755)
    const error = await daemon(p, { python: p.path('other-python') }).start().catch((e: Error) => e)
    expect((error as Error).message).toContain(`"${p.path('other-python')}" has a different Python package named vmd installed`)
    expect((error as Error).message).toContain(`\`${p.path('other-python')} -m pip uninstall vmd\``)
    expect((error as Error).message).not.toContain('is not installed')
  })

  test('a request a stuck daemon never answers fails with the method and the wait', async () => {
    const p = project({ 'a.vmd.py': 'def load(ctx):\n    return ""\n' })
    // The same limit holds for initialize: room for the daemon to start on a busy machine.
    const d = daemon(p, { timeoutMs: 1500, answerGraceMs: 500 })
    await d.start()
    process.kill(d.pid!, 'SIGSTOP') // the real daemon, frozen: it reads nothing, answers nothing
    cleanups.push(() => void process.kill(d.pid!, 'SIGCONT'))
    const error = await d.load(p.path('a.vmd.py')).catch((e: Error) => e)
    expect((error as Error).message).toBe('vmd: no answer to vmd/load: the daemon has sent nothing for 2000 ms')
  })

  test('loads queued behind slow runs are not given up on while the daemon keeps answering', async () => {
    // One worker runs a loader's queries one after another: ten runs of 300 ms take longer
    // than the loader timeout plus the grace, yet every run is well within its own timeout
    // (by 1.7 s, room enough for a busy machine).
    const p = project({ 'slow.vmd.py': 'import time\ndef load(ctx):\n    time.sleep(0.3)\n    return f"export default {ctx.query[\'n\']}"\n' })
    const d = daemon(p, { timeoutMs: 2000, answerGraceMs: 500 })
    await d.start()
    const ids = Array.from({ length: 10 }, (_, n) => `${p.path('slow.vmd.py')}?n=${n}`)
    const results = await Promise.all(ids.map((id) => d.load(id)))
    expect(results.map((r) => r.code)).toEqual(ids.map((_, n) => `export default ${n}`))
  })

  test('loads queued behind a long vmd/loadMany are not given up on while the daemon says it is busy', async () => {
    // The batch is answered only when its eight 400 ms runs are done, longer than the timeout
    // plus the grace; the load asked for later waits behind them in the loader's one worker.
    // `$/vmd/busy` comes every second, 1.5 s within the 2.5 s of silence allowed.
    const p = project({ 'slow.vmd.py': 'import time\ndef load(ctx):\n    time.sleep(0.4)\n    return f"export default {ctx.query[\'n\']}"\n' })
    const d = daemon(p, { mode: 'build', batchLoads: true, timeoutMs: 2000, answerGraceMs: 500 })
    await d.start()
    const batch = Array.from({ length: 8 }, (_, n) => d.load(`${p.path('slow.vmd.py')}?n=${n}`))
    await new Promise((resolve) => setTimeout(resolve, 50))
    const later = d.load(`${p.path('slow.vmd.py')}?n=9`)
    const results = await Promise.all([...batch, later])
    expect(results.map((r) => r.code)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 9].map((n) => `export default ${n}`))
  })

  test('a daemon that never answers initialize is given up on, and killed', async () => {
    const p = project({})
    p.write('mute-python', `#!/bin/sh\nexec ${python} -c 'import time; time.sleep(60)' mute-daemon\n`)
    chmodSync(p.path('mute-python'), 0o755)
    const error = await daemon(p, { python: p.path('mute-python'), timeoutMs: 100, answerGraceMs: 400 }).start().catch((e: Error) => e)
    expect((error as Error).message).toContain('vmd: the daemon did not answer initialize within 500 ms')
    const mute = () => descendants(process.pid).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('mute-daemon')
      } catch {
        return false
      }
    })
    await waitFor(() => mute().length === 0, 'the mute daemon to be killed')
  })

  test('a daemon speaking another protocol revision is refused with how to match versions', async () => {
    const p = project({})
    // The real daemon, told it speaks revision 99.
    const patch = 'import vmd.protocol as p; p.PROTOCOL_VERSION = 99; from vmd.cli import main; main(["serve"])'
    p.write('future-python', `#!/bin/sh\nexec ${python} -c '${patch}'\n`)
    chmodSync(p.path('future-python'), 0o755)
    const error = await daemon(p, { python: p.path('future-python') }).start().catch((e: Error) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/daemon speaks protocol 99, this vite-plugin-vmd speaks 1/)
    expect((error as Error).message).toContain('from the same checkout of vmd')
    // ...and the refused daemon does not linger.
    const refused = () =>
      descendants(process.pid).filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('PROTOCOL_VERSION = 99')
        } catch {
          return false
        }
      })
    await waitFor(() => refused().length === 0, 'the refused daemon to exit')
  })

  test('loader failures carry the daemon error code and data', async () => {
    const p = project({ 'a.vmd.py': 'def load(ctx):\n    raise KeyError("k")\n' })
    const error = await daemon(p).load(p.path('a.vmd.py')).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DaemonRequestError)
    expect((error as DaemonRequestError).code).toBe(ErrorCodes.loaderError)
    expect((error as DaemonRequestError).data).toMatchObject({ file: p.path('a.vmd.py'), line: 2, kind: 'error' })
  })

  test('requests in flight fail with the reason when the daemon dies; the next one restarts it', async () => {
    const p = project({
      'slow.vmd.py': 'import time\n\ndef load(ctx):\n    open("running", "w").close()\n    time.sleep(20)\n    return ""\n',
      'ok.vmd.py': 'def load(ctx):\n    return "export default 1"\n',
    })
    const d = daemon(p)
    const slow = d.load(p.path('slow.vmd.py'))
    const pid = await waitFor(() => d.pid, 'the daemon')
    // Not merely a worker started (the first one starts with the daemon, before it answers
    // initialize): the loader itself, so the load is in flight.
    await waitFor(() => existsSync(p.path('running')), 'the loader running')
    process.kill(pid, 'SIGKILL')
    await expect(slow).rejects.toThrow(/vmd: the daemon stopped \(killed by SIGKILL\)/)
    const result = await d.load(p.path('ok.vmd.py'))
    expect(result.code).toBe('export default 1')
    expect(d.pid).not.toBe(pid)
  })

  describe('memoryLimitMb', () => {
    // The real daemon, recording the initializationOptions it is started with.
    function initOptionsRecorded(p: Project): { python: string; options: () => Record<string, unknown> } {
      p.write(
        'recording.py',
        [
          'import json, sys',
          'import vmd.server as server',
          'route = server.VmdServer._route',
          'def recording(self, body):',
          '    message = json.loads(body)',
          '    if message.get("method") == "initialize":',
          '        with open(sys.argv[1], "w") as f:',
          '            json.dump(message["params"]["initializationOptions"], f)',
          '    route(self, body)',
          'server.VmdServer._route = recording',
          'from vmd.cli import main',
          'main(["serve"])',
          '',
        ].join('\n'),
      )
      p.write('recording-python', `#!/bin/sh\nexec ${python} ${p.path('recording.py')} ${p.path('init-options.json')}\n`)
      chmodSync(p.path('recording-python'), 0o755)
      return { python: p.path('recording-python'), options: () => JSON.parse(p.read('init-options.json')) as Record<string, unknown> }
    }

    test.each([
      [512, { memoryLimitMb: 512 }],
      [0, { memoryLimitMb: 0 }], // no limit: sent, not taken for "not given"
      [undefined, {}], // the daemon's default: nothing sent, not even null
    ])('%s reaches the daemon as %j', async (memoryLimitMb, sent) => {
      const p = project({})
      const recorder = initOptionsRecorded(p)
      await daemon(p, { python: recorder.python, memoryLimitMb }).start()
      expect(recorder.options()).toStrictEqual({ mode: 'serve', include: ['**/*.vmd.py'], timeoutMs: 10_000, ...sent })
    })
  })

  describe('loads asked for in one turn', () => {
    // The real daemon, recording the method of every message it receives (and, for `old`,
    // without vmd/loadMany, as daemons before it were).
    function recordingPython(p: Project, old = false): { python: string; methods: () => string[] } {
      p.write(
        'recording.py',
        [
          'import json, sys',
          'import vmd.server as server',
          'route = server.VmdServer._route',
          'def recording(self, body):',
          '    with open(sys.argv[1], "a") as f:',
          '        f.write(json.loads(body).get("method", "-") + "\\n")',
          '    route(self, body)',
          'server.VmdServer._route = recording',
          ...(old
            ? [
                'from vmd.protocol import LOAD_MANY',
                'capabilities = server._capabilities',
                'def without(client):',
                '    caps = capabilities(client)',
                '    caps["experimental"]["vmd"]["methods"].remove(LOAD_MANY)',
                '    return caps',
                'server._capabilities = without',
                'del server._decoders[LOAD_MANY]',
              ]
            : []),
          'from vmd.cli import main',
          'main(["serve"])',
          '',
        ].join('\n'),
      )
      p.write('recording-python', `#!/bin/sh\nexec ${python} ${p.path('recording.py')} ${p.path('methods.log')}\n`)
      chmodSync(p.path('recording-python'), 0o755)
      const methods = () => readFileSync(p.path('methods.log'), 'utf8').split('\n').filter((m) => m.startsWith('vmd/'))
      return { python: p.path('recording-python'), methods }
    }

    const pages = {
      'page.vmd.py': 'import vmd\ndef load(ctx):\n    n = int(ctx.query["n"])\n    return vmd.json_module(10 // (n - 2))\n',
    }

    test('travel as one vmd/loadMany in a build, each answered with its own result or error', async () => {
      const p = project(pages)
      const recorder = recordingPython(p)
      const d = daemon(p, { python: recorder.python, mode: 'build', batchLoads: true })
      const ids = [1, 2, 3].map((n) => `${p.path('page.vmd.py')}?n=${n}`)
      const [first, failed, third] = await Promise.allSettled(ids.map((id) => d.load(id)))
      expect(first).toMatchObject({ status: 'fulfilled', value: { id: ids[0], code: expect.stringContaining('-10') } })
      expect(third).toMatchObject({ status: 'fulfilled', value: { id: ids[2], code: expect.stringContaining('10') } })
      const error = (failed as PromiseRejectedResult).reason as DaemonRequestError
      expect(error).toBeInstanceOf(DaemonRequestError)
      expect(error.code).toBe(ErrorCodes.loaderError)
      expect(error.data).toMatchObject({ id: ids[1], file: p.path('page.vmd.py'), line: 4, message: expect.stringMatching(/^ZeroDivisionError/) })
      expect(recorder.methods()).toEqual(['vmd/loadMany'])
    })

    test('fall back to vmd/load each against a daemon without vmd/loadMany', async () => {
      const p = project(pages)
      const recorder = recordingPython(p, true)
      const d = daemon(p, { python: recorder.python, mode: 'build', batchLoads: true })
      const ids = [1, 3].map((n) => `${p.path('page.vmd.py')}?n=${n}`)
      const results = await Promise.all(ids.map((id) => d.load(id)))
      expect(results.map((r) => r.id)).toEqual(ids)
      expect(recorder.methods()).toEqual(['vmd/load', 'vmd/load'])
    })

    test('are answered each as it is ready without batchLoads (dev): a slow loader holds back no other', async () => {
      // The slow one ends once the fast one's answer is here (or after 20 s, too late), so a
      // worker start-up on a busy machine cannot make it finish first.
      const p = project({
        'slow.vmd.py': [
          'import os, time',
          'def load(ctx):',
          '    for _ in range(2000):',
          '        if os.path.exists("fast-answered"):',
          '            break',
          '        time.sleep(0.01)',
          '    return "export default 1"',
          '',
        ].join('\n'),
        'fast.vmd.py': 'def load(ctx):\n    return "export default 2"\n',
      })
      const d = daemon(p)
      const order: string[] = []
      const answered = (name: string) => {
        order.push(name)
        if (name === 'fast') writeFileSync(p.path('fast-answered'), '')
      }
      await Promise.all(['slow', 'fast'].map((name) => d.load(p.path(`${name}.vmd.py`)).then(() => answered(name))))
      expect(order).toEqual(['fast', 'slow'])
    })
  })

  test('an idle daemon does not keep Node alive, and goes away with it', async () => {
    const p = project({ 'a.vmd.py': 'def load(ctx):\n    return "export default 42"\n' })
    const script = `
      import { Daemon } from ${JSON.stringify(pathToFileURL(`${packageRoot}/dist/daemon.js`).href)}
      const d = new Daemon({ python: ${JSON.stringify(python)}, root: ${JSON.stringify(p.root)}, mode: 'serve', include: ['**/*.vmd.py'], timeoutMs: 10000 })
      const r = await d.load(${JSON.stringify(p.path('a.vmd.py'))})
      console.log(r.code, d.pid)
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const code = await new Promise((resolve) => child.on('close', resolve))
    expect(code).toBe(0)
    const [text, pid] = out.trim().split(/ (?=\d+$)/)
    expect(text).toBe('export default 42')
    await waitFor(() => !alive(Number(pid)), 'the daemon to exit after Node')
    expect(daemonsIn(p.root)).toEqual([])
  })

  test('defaultPython: VMD_PYTHON, then the nearest .venv, then python3', () => {
    const p = project({ 'a/b/.keep': '', '.venv/bin/python': '' })
    expect(defaultPython(p.path('a/b'), { VMD_PYTHON: '/x/python' })).toBe('/x/python')
    expect(defaultPython(p.path('a/b'), {})).toBe(p.path('.venv/bin/python'))
    const bare = project({})
    expect(defaultPython(bare.root, {})).toBe('python3')
  })
})
