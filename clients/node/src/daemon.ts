/**
 * The vmd daemon as seen from Node: spawn `python -m vmd serve`, speak its protocol through
 * vscode-jsonrpc, restart it when it dies, and stop it without leaving a process behind.
 *
 * Modelled on esbuild's Node host: the child is started lazily and memoised, its stdio never
 * carries logs into the protocol, one `afterClose(reason)` fails every pending request, and the
 * child is unref'd while idle so it never keeps Node alive. Unlike esbuild, a dead daemon is
 * restarted (with backoff) and the owner is told, so it can re-sync what it served.
 */

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { MessageConnection } from 'vscode-jsonrpc/node'
import { isConnectionLoss, loadRpc, ownError, toError } from './jsonrpc.js'
import { LoadBatch } from './load-batch.js'
import {
  BUSY,
  CHANGED,
  INSTALL_HINT,
  INVALIDATE,
  LOAD,
  PROTOCOL_VERSION,
  RELOAD,
} from './protocol.js'

export { DaemonRequestError } from './jsonrpc.js'
import type {
  ChangedParams,
  InitializationOptions,
  InitializeResult,
  InvalidateParams,
  InvalidateResult,
  Json,
  LoadResult,
  Mode,
} from './protocol.js'

/** Where the daemon's own messages go (Vite's logger fits). */
export interface DaemonLogger {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

/** How to start and talk to one daemon. */
export interface DaemonOptions {
  /** The Python interpreter that has vmd installed. */
  python: string
  /** Workspace root: the daemon's cwd and `rootUri`. */
  root: string
  mode: Mode
  include: string[]
  timeoutMs: number
  /** Called for every `vmd/changed` notification. */
  onChanged?: (params: ChangedParams) => void
  /** Called when a daemon that died unexpectedly has been replaced and is ready. */
  onRestart?: () => void
  /** A request fails once the daemon has sent nothing for `timeoutMs` plus this (it is stuck). Default: 10000. */
  answerGraceMs?: number
  /** Restart a daemon that dies unexpectedly at once (with backoff), not only on the next request. */
  eagerRestart?: boolean
  /**
   * Send the loads asked for in one turn of the event loop as one `vmd/loadMany`, for a build:
   * it needs every module before it ends, and hundreds of messages each way cost Node more than
   * the loaders. Off for a dev server, where a slow loader must not hold back other modules.
   */
  batchLoads?: boolean
  logger?: DaemonLogger
}

/** A file a watcher saw change. */
export interface FileChange {
  path: string
  type: 'add' | 'change' | 'unlink'
}

// LSP's FileChangeType.
const CHANGE_TYPES = { add: 1, change: 2, unlink: 3 } as const
const DID_CHANGE_WATCHED_FILES = 'workspace/didChangeWatchedFiles'

/** The interpreter used when no `python` option is given: `VMD_PYTHON`, a `.venv`, `python3`. */
export function defaultPython(root: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.VMD_PYTHON) return env.VMD_PYTHON
  const win = process.platform === 'win32'
  for (let dir = root; ; dir = dirname(dir)) {
    const candidate = win ? join(dir, '.venv', 'Scripts', 'python.exe') : join(dir, '.venv', 'bin', 'python')
    if (existsSync(candidate)) return candidate
    if (dirname(dir) === dir) break
  }
  return win ? 'python' : 'python3'
}

// The hint every client gives (protocol.ts), the checkout spelled `<path-to-vmd>` as in this
// plugin's other messages, then how to point the plugin at another interpreter.
function installHint(python: string): string {
  const hint = INSTALL_HINT.replaceAll('{python}', () => python).replaceAll('{checkout}', '<path-to-vmd>')
  return `${hint} Or point the plugin at one that has it: vmd({ python: "/path/to/python" }) or VMD_PYTHON=/path/to/python.`
}

// Backoff between restarts of a daemon that keeps dying; reset once one lives long enough.
const RESTART_DELAYS_MS = [50, 200, 500, 1000, 2000, 5000]
// How long a failed start is the answer to every start, before one is tried again.
const FAILED_START_HOLD_MS = 2_000
const STABLE_AFTER_MS = 10_000
const STDERR_TAIL = 4096

type Pending = { reject: (error: Error) => void; method: string; sentAt: number }
// A request fails when the daemon has sent nothing (no answer, no `$/vmd/busy`) for the loader
// timeout plus a grace since it was sent: the daemon is stuck. Not simply that long after it
// was sent: a loader's runs queue in its one worker, each with its own timeout, and a
// `vmd/loadMany` is answered once all its modules have run, so a build's loads may wait far
// longer while the daemon works. Checked by one sweep while requests are pending (not a timer
// per request: a build sends hundreds at once). A daemon that does not answer `initialize`
// within the same time is given up on too.
const ANSWER_GRACE_MS = 10_000

interface Session {
  child: ChildProcess
  connection: MessageConnection
  exited: Promise<void>
  startedAt: number
  /** `initialize` was answered: a later exit is a crash worth a restart, not a failed start. */
  ready: boolean
  /** The vmd/* methods the daemon named in `initialize` (older daemons lack newer ones). */
  methods: Set<string>
  /** `stop()` began: stay ref'd, so Node waits for the daemon to exit. */
  stopping: boolean
  closed: boolean
}

/** One vmd daemon, started on first use and restarted when it dies. */
export class Daemon {
  readonly options: DaemonOptions
  #session: Promise<Session> | undefined
  #current: Session | undefined
  #pending = new Set<Pending>()
  #stopping = false
  #failures = 0
  #restartTimer: NodeJS.Timeout | undefined
  #failedStart: { error: unknown; at: number } | undefined
  #sweep: NodeJS.Timeout | undefined
  /** When the daemon last answered a request or said it was busy. */
  #heardAt = 0
  #stderrTail = ''
  #batch = new LoadBatch(() => this.#start(), (method, params) => this.#request(method, params))

  constructor(options: DaemonOptions) {
    this.options = options
  }

  /** Start the daemon if it is not running; resolves once `initialize` is answered. */
  start(): Promise<void> {
    return this.#start().then(() => undefined)
  }

  /** `vmd/load`: the module's output, fresh. */
  load(id: string): Promise<LoadResult> {
    if (!this.options.batchLoads) return this.#request<LoadResult>(LOAD, { id })
    return this.#batch.load(id)
  }

  /** `vmd/reload`: re-run the module now with `ctx.data = data`. */
  reload(id: string, data: Json = null): Promise<LoadResult> {
    return this.#request<LoadResult>(RELOAD, { id, data })
  }

  /** `vmd/invalidate`: drop cached output of one module or of everything depending on a file. */
  invalidate(params: InvalidateParams): Promise<InvalidateResult> {
    return this.#request<InvalidateResult>(INVALIDATE, params)
  }

  /**
   * Tell a running daemon that files changed (LSP `workspace/didChangeWatchedFiles`), as soon
   * as the caller's own watcher saw it: the daemon's watcher waits for a quiet step first. The
   * daemon stats each file, so a change it also hears of itself still counts once. Does
   * nothing while no daemon is running.
   */
  filesChanged(changes: FileChange[]): void {
    const session = this.#current
    if (!session?.ready || session.closed || changes.length === 0) return
    const params = { changes: changes.map(({ path, type }) => ({ uri: pathToFileURL(path).href, type: CHANGE_TYPES[type] })) }
    try {
      session.connection.sendNotification(DID_CHANGE_WATCHED_FILES, params).catch(() => undefined)
    } catch {
      // The connection closed under us: the daemon's own watcher (or its successor's re-sync) covers it.
    }
  }

  /** The daemon's process id, once one is running and initialized. */
  get pid(): number | undefined {
    return this.#current?.ready && !this.#current.closed ? this.#current.child.pid : undefined
  }

  /** Stop the daemon (LSP `shutdown` + `exit`, then signals) and never restart it. */
  async stop(): Promise<void> {
    this.#stopping = true
    clearTimeout(this.#restartTimer)
    const pending = this.#session
    this.#session = undefined
    if (!pending) return
    const session = await pending.catch(() => undefined)
    if (!session || session.closed) return
    await shutdown(session)
  }

  #start(): Promise<Session> {
    if (this.#stopping) return Promise.reject(new Error('vmd: the daemon was stopped'))
    // A start that just failed fails every start asked for soon after the same way: a build's
    // hundreds of loads (or a page's first requests) get its error, not a daemon each.
    const failed = this.#failedStart
    if (!this.#session && failed && Date.now() - failed.at < FAILED_START_HOLD_MS) return Promise.reject(failed.error)
    this.#session ??= this.#spawn().catch((error: unknown) => {
      this.#session = undefined
      this.#failedStart = { error, at: Date.now() }
      throw error
    })
    return this.#session
  }

  async #request<T>(method: string, params: object): Promise<T> {
    let session: Session
    try {
      session = await this.#start()
    } catch (error) {
      throw ownError(error)
    }
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { reject, method, sentAt: Date.now() }
      this.#pending.add(pending)
      this.#ref(session)
      this.#sweep ??= setInterval(() => this.#expire(), Math.min(1000, this.#silenceMs)).unref()
      const settle = (): void => {
        this.#heardAt = Date.now()
        this.#pending.delete(pending)
        if (this.#pending.size === 0) this.#idle(session)
      }
      session.connection.sendRequest<T>(method, params).then(
        (result) => {
          settle()
          resolve(result)
        },
        (error: unknown) => {
          // The stream closed under us: `afterClose` rejects this with the exit reason.
          if (isConnectionLoss(error)) return
          settle()
          reject(toError(error))
        },
      )
    })
  }

  /** How long a silent daemon is waited for before it is called stuck. */
  get #silenceMs(): number {
    return this.options.timeoutMs + (this.options.answerGraceMs ?? ANSWER_GRACE_MS)
  }

  #expire(): void {
    const now = Date.now()
    for (const pending of this.#pending) {
      if (Math.max(pending.sentAt, this.#heardAt) + this.#silenceMs > now) continue
      this.#pending.delete(pending)
      pending.reject(new Error(`vmd: no answer to ${pending.method}: the daemon has sent nothing for ${this.#silenceMs} ms`))
    }
    if (this.#pending.size === 0 && this.#current) this.#idle(this.#current)
  }

  // Nothing in flight: stop sweeping, and let Node exit if nothing else keeps it.
  #idle(session: Session): void {
    clearInterval(this.#sweep)
    this.#sweep = undefined
    this.#unref(session)
  }

  async #spawn(): Promise<Session> {
    const { python, root, mode, include, timeoutMs } = this.options
    this.#stderrTail = ''
    // Only the daemon's warnings and errors on stderr (each becomes a Vite warning); what
    // loaders print arrives as window/logMessage.
    const child = spawn(python, ['-m', 'vmd', 'serve', '--log-level', 'warning'], {
      cwd: root,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    })
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'ENOENT'
            ? new Error(
                `vmd: cannot start the Python interpreter "${python}": not found. ` +
                  'Install Python 3.10+ and vmd from a checkout of its repository (`python3 -m venv .venv && .venv/bin/pip install <path-to-vmd>`), ' +
                  'or point the plugin at an interpreter that has vmd: vmd({ python: "/path/to/python" }) or VMD_PYTHON.',
              )
            : new Error(`vmd: cannot start "${python}": ${error.message}`),
        )
      })
    })
    // Loaded while Python starts: a Vite run that never imports a loader never pays for it.
    const rpcLoaded = loadRpc()
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
    child.stderr?.setEncoding('utf8')
    let line = ''
    child.stderr?.on('data', (chunk: string) => {
      this.#stderrTail = (this.#stderrTail + chunk).slice(-STDERR_TAIL)
      line += chunk
      const lines = line.split('\n')
      line = lines.pop() ?? ''
      for (const text of lines) if (text.trim()) this.options.logger?.warn(`[vmd] ${text}`)
    })
    await spawned
    const { createMessageConnection, StreamMessageReader, StreamMessageWriter } = await rpcLoaded

    const connection = createMessageConnection(
      new StreamMessageReader(child.stdout!),
      new StreamMessageWriter(child.stdin!),
    )
    const session: Session = { child, connection, exited, startedAt: Date.now(), ready: false, methods: new Set(), stopping: false, closed: false }
    this.#current = session
    connection.onNotification(CHANGED, (params: ChangedParams) => this.options.onChanged?.(params))
    connection.onNotification(BUSY, () => {
      this.#heardAt = Date.now()
    })
    connection.onNotification('window/logMessage', (params: { type: number; message: string }) => {
      const logger = this.options.logger
      const text = `[vmd] ${params.message}`
      if (params.type === 1) logger?.error(text)
      else if (params.type === 2) logger?.warn(text)
      else logger?.info(text)
    })
    // A stream error also ends in 'close'; the reason is the process exit below.
    connection.onError(() => undefined)
    connection.listen()
    child.once('close', (code, signal) => {
      const reason = signal ? `killed by ${signal}` : `exited with code ${code}`
      this.#afterClose(session, reason)
    })

    const init = connection.sendRequest<InitializeResult>('initialize', {
      processId: process.pid,
      rootUri: pathToFileURL(root).href,
      workspaceFolders: [{ uri: pathToFileURL(root).href, name: 'root' }],
      capabilities: {},
      clientInfo: { name: 'vite-plugin-vmd' },
      initializationOptions: { mode, include, timeoutMs } satisfies InitializationOptions,
    })
    // A daemon that dies during start-up also rejects `init` (connection disposed): report why.
    const started = init.catch(async (error: unknown) => {
      if (!isConnectionLoss(error)) throw toError(error)
      await exited
      throw this.#startError(python)
    })
    let stuck: NodeJS.Timeout | undefined
    const tooLong = new Promise<never>((_, reject) => {
      stuck = setTimeout(() => {
        child.kill('SIGKILL')
        const tail = this.#stderrTail.trim()
        reject(new Error(`vmd: the daemon did not answer initialize within ${this.#silenceMs} ms ("${python} -m vmd serve")${tail ? `\n${tail}` : ''}`))
      }, this.#silenceMs)
    })
    const result = await Promise.race([started, tooLong]).finally(() => clearTimeout(stuck))
    if (result.serverInfo?.name !== 'vmd') {
      child.kill('SIGKILL')
      throw new Error(`vmd: "${python} -m vmd serve" is not the vmd daemon (serverInfo ${JSON.stringify(result.serverInfo)})`)
    }
    const revision = result.capabilities.experimental?.vmd?.protocolVersion
    if (revision !== undefined && revision !== PROTOCOL_VERSION) {
      child.kill('SIGKILL')
      throw new Error(
        `vmd: the daemon speaks protocol ${revision}, this vite-plugin-vmd speaks ${PROTOCOL_VERSION}: ` +
          `install both from the same checkout of vmd (\`${python} -m pip install <path-to-vmd>\` and \`npm install -D <path-to-vmd>/clients/node\`)`,
      )
    }
    connection.sendNotification('initialized', {}).catch(() => undefined)
    session.methods = new Set(result.capabilities.experimental?.vmd?.methods ?? [LOAD])
    session.ready = true
    this.#unref(session)
    return session
  }

  #startError(python: string): Error {
    const tail = this.#stderrTail.trim()
    if (/No module named vmd\.__main__/.test(tail)) {
      return new Error(
        `vmd: "${python}" has a different Python package named vmd installed (it has no \`python -m vmd\`). ` +
          `Uninstall it (\`${python} -m pip uninstall vmd\`). ${installHint(python)}`,
      )
    }
    if (/No module named '?vmd'?(?![.\w])/.test(tail)) {
      return new Error(`vmd: the Python package vmd is not installed for "${python}". ${installHint(python)}`)
    }
    return new Error(`vmd: the daemon exited during start-up ("${python} -m vmd serve").${tail ? `\n${tail}` : ''}`)
  }

  // Fail everything in flight with the reason; restart unless we were asked to stop.
  #afterClose(session: Session, reason: string): void {
    if (session.closed) return
    session.closed = true
    session.connection.dispose()
    const stderr = this.#stderrTail.trim()
    const error = new Error(`vmd: the daemon stopped (${reason})${stderr && !this.#stopping ? `\n${stderr}` : ''}`)
    for (const pending of this.#pending) pending.reject(error)
    this.#pending.clear()
    clearInterval(this.#sweep)
    this.#sweep = undefined
    if (this.#stopping || this.#current !== session || !session.ready) return
    this.#session = undefined
    const next = this.options.eagerRestart ? 'restarting' : 'the next request starts a new one'
    this.options.logger?.warn(`[vmd] the daemon stopped unexpectedly (${reason}); ${next}`)
    if (Date.now() - session.startedAt > STABLE_AFTER_MS) this.#failures = 0
    const delay = RESTART_DELAYS_MS[Math.min(this.#failures, RESTART_DELAYS_MS.length - 1)]!
    this.#failures += 1
    if (!this.options.eagerRestart) return
    clearTimeout(this.#restartTimer)
    this.#restartTimer = setTimeout(() => {
      if (this.#stopping) return
      this.#start().then(
        () => this.options.onRestart?.(),
        (error: Error) => this.options.logger?.error(`[vmd] restart failed: ${error.message}`),
      )
    }, delay)
    this.#restartTimer.unref()
  }

  #ref(session: Session): void {
    setRef(session.child, true)
  }

  #unref(session: Session): void {
    if (!session.stopping) setRef(session.child, false)
  }
}

type Refable = { ref?: () => void; unref?: () => void }

// An idle daemon must not keep Node alive: the process and its pipes are unref'd between requests.
function setRef(child: ChildProcess, on: boolean): void {
  const handles: Refable[] = [child, child.stdin as Refable, child.stdout as Refable, child.stderr as Refable]
  for (const handle of handles) {
    if (!handle) continue
    if (on) handle.ref?.()
    else handle.unref?.()
  }
}

async function shutdown(session: Session): Promise<void> {
  const { child, connection, exited } = session
  // Stopping is work in progress: keep Node alive until the daemon is gone.
  session.stopping = true
  setRef(child, true)
  const within = (ms: number): Promise<boolean> =>
    Promise.race([
      exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref()),
    ])
  try {
    await Promise.race([connection.sendRequest('shutdown'), within(1000)])
    await connection.sendNotification('exit')
  } catch {
    // Already gone: the signals below are no-ops then.
  }
  child.stdin?.end()
  if (await within(2000)) return
  child.kill('SIGTERM')
  if (await within(2000)) return
  child.kill('SIGKILL')
  await exited
}
