/**
 * The vmd daemon as seen from Node: start it, restart it when it dies, and stop it without
 * leaving a process behind; and what to tell the user when the interpreter is not vmd's.
 *
 * Modelled on esbuild's Node host: the child is started lazily and memoised, its stdio never
 * carries logs into the protocol, one `afterClose(reason)` fails every pending request, and the
 * child is unref'd while idle so it never keeps Node alive. Unlike esbuild, a dead daemon is
 * restarted (with backoff) and the owner is told, so it can re-sync what it served. The process
 * is `child.ts`'s, its connection and handshake `session.ts`'s, the requests in flight
 * `requests.ts`'s.
 */

import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { StderrTail, spawnChild } from './child.js'
import { loadRpc, ownError } from './jsonrpc.js'
import { LoadBatch } from './load-batch.js'
import { INSTALL_HINT, INVALIDATE, LOAD, PROTOCOL_VERSION, RELOAD } from './protocol.js'
import type {
  ChangedParams,
  InitializeResult,
  InvalidateParams,
  InvalidateResult,
  Json,
  LoadResult,
  Mode,
} from './protocol.js'
import { Requests } from './requests.js'
import { initialize, openSession, shutdown, unref } from './session.js'
import type { Session } from './session.js'

export { DaemonRequestError } from './jsonrpc.js'

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
  /** Each loader process's memory limit in MB; `0`: none. Absent: the daemon's default (a quarter of the machine's or container's memory). */
  memoryLimitMb?: number
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
// A request fails once the daemon has sent nothing for the loader timeout plus this (see
// requests.ts); a daemon that does not answer `initialize` within the same time is given up on.
const ANSWER_GRACE_MS = 10_000

/** One vmd daemon, started on first use and restarted when it dies. */
export class Daemon {
  readonly options: DaemonOptions
  #session: Promise<Session> | undefined
  #current: Session | undefined
  #stopping = false
  #failures = 0
  #restartTimer: NodeJS.Timeout | undefined
  #failedStart: { error: unknown; at: number } | undefined
  // Shared by every daemon this one starts: a later one's start resets it.
  #stderr = new StderrTail()
  #requests = new Requests(() => this.#silenceMs, () => this.#current)
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
    return this.#requests.send<T>(session, method, params)
  }

  // How long a silent daemon is waited for before it is called stuck.
  get #silenceMs(): number {
    return this.options.timeoutMs + (this.options.answerGraceMs ?? ANSWER_GRACE_MS)
  }

  async #spawn(): Promise<Session> {
    const { python, root, mode, include, timeoutMs, memoryLimitMb } = this.options
    this.#stderr.reset()
    const child = spawnChild(python, root, this.#stderr, (line) => this.options.logger?.warn(`[vmd] ${line}`))
    const spawned = child.spawned.catch((error: NodeJS.ErrnoException) => {
      throw cannotStart(python, error)
    })
    // Loaded while Python starts: a Vite run that never imports a loader never pays for it.
    const rpcLoaded = loadRpc()
    await spawned
    const session = openSession(await rpcLoaded, child, {
      onChanged: (params: ChangedParams) => this.options.onChanged?.(params),
      onBusy: () => this.#requests.heard(),
      onLog: (type, message) => this.#log(type, message),
      onClose: (closed, reason) => this.#afterClose(closed, reason),
    })
    this.#current = session
    // Absent unless given: the daemon then picks its own default.
    const initOptions = { mode, include, timeoutMs, ...(memoryLimitMb === undefined ? {} : { memoryLimitMb }) }
    const result = await initialize(session, root, initOptions, {
      silenceMs: this.#silenceMs,
      command: `${python} -m vmd serve`,
      stderr: () => this.#stderr.text(),
      exitedError: () => startError(python, this.#stderr.text()),
    })
    const wrong = notOurDaemon(python, result)
    if (wrong) {
      session.child.kill('SIGKILL')
      throw wrong
    }
    session.connection.sendNotification('initialized', {}).catch(() => undefined)
    session.methods = new Set(result.capabilities.experimental?.vmd?.methods ?? [LOAD])
    session.ready = true
    unref(session)
    return session
  }

  // The daemon's `window/logMessage`, at its LSP MessageType's level.
  #log(type: number, message: string): void {
    const logger = this.options.logger
    const text = `[vmd] ${message}`
    if (type === 1) logger?.error(text)
    else if (type === 2) logger?.warn(text)
    else logger?.info(text)
  }

  // Fail everything in flight with the reason; restart unless we were asked to stop.
  #afterClose(session: Session, reason: string): void {
    if (session.closed) return
    session.closed = true
    session.connection.dispose()
    const stderr = this.#stderr.text()
    this.#requests.failAll(new Error(`vmd: the daemon stopped (${reason})${stderr && !this.#stopping ? `\n${stderr}` : ''}`))
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
}

// The interpreter could not be run at all.
function cannotStart(python: string, error: NodeJS.ErrnoException): Error {
  return error.code === 'ENOENT'
    ? new Error(
        `vmd: cannot start the Python interpreter "${python}": not found. ` +
          'Install Python 3.10+ and vmd from a checkout of its repository (`python3 -m venv .venv && .venv/bin/pip install <path-to-vmd>`), ' +
          'or point the plugin at an interpreter that has vmd: vmd({ python: "/path/to/python" }) or VMD_PYTHON.',
      )
    : new Error(`vmd: cannot start "${python}": ${error.message}`)
}

// The daemon exited before answering `initialize`: why, from what it wrote to stderr.
function startError(python: string, tail: string): Error {
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

// What is wrong with the daemon that answered `initialize`, if anything: not vmd, or another revision of its protocol.
function notOurDaemon(python: string, result: InitializeResult): Error | undefined {
  if (result.serverInfo?.name !== 'vmd') {
    return new Error(`vmd: "${python} -m vmd serve" is not the vmd daemon (serverInfo ${JSON.stringify(result.serverInfo)})`)
  }
  const revision = result.capabilities.experimental?.vmd?.protocolVersion
  if (revision !== undefined && revision !== PROTOCOL_VERSION) {
    return new Error(
      `vmd: the daemon speaks protocol ${revision}, this vite-plugin-vmd speaks ${PROTOCOL_VERSION}: ` +
        `install both from the same checkout of vmd (\`${python} -m pip install <path-to-vmd>\` and \`npm install -D <path-to-vmd>/clients/node\`)`,
    )
  }
  return undefined
}
