/**
 * One daemon process and its connection: the notifications it sends, the `initialize`
 * handshake, keeping Node alive only while it works, and stopping it (`shutdown`/`exit`, then
 * signals). What a started daemon must be, and what to say when it is not, is `daemon.ts`'s.
 */

import type { ChildProcess } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import type { MessageConnection } from 'vscode-jsonrpc/node'
import { setRef } from './child.js'
import type { Child } from './child.js'
import { isConnectionLoss, toError } from './jsonrpc.js'
import type { Rpc } from './jsonrpc.js'
import { BUSY, CHANGED } from './protocol.js'
import type { ChangedParams, InitializationOptions, InitializeResult } from './protocol.js'

/** One daemon process and its connection. */
export interface Session {
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

/** What a session tells its owner. */
export interface SessionEvents {
  onChanged: (params: ChangedParams) => void
  /** `$/vmd/busy`: the daemon is working. */
  onBusy: () => void
  onLog: (type: number, message: string) => void
  /** The process exited (`reason` says how); called once, after every stream closed. */
  onClose: (session: Session, reason: string) => void
}

/** Connect to a spawned daemon and listen; nothing is sent yet. */
export function openSession(rpc: Rpc, { child, exited }: Child, events: SessionEvents): Session {
  const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(child.stdout!),
    new rpc.StreamMessageWriter(child.stdin!),
  )
  const session: Session = { child, connection, exited, startedAt: Date.now(), ready: false, methods: new Set(), stopping: false, closed: false }
  connection.onNotification(CHANGED, (params: ChangedParams) => events.onChanged(params))
  connection.onNotification(BUSY, () => events.onBusy())
  connection.onNotification('window/logMessage', (params: { type: number; message: string }) => events.onLog(params.type, params.message))
  // A stream error also ends in 'close'; the reason is the process exit below.
  connection.onError(() => undefined)
  connection.listen()
  child.once('close', (code, signal) => {
    const reason = signal ? `killed by ${signal}` : `exited with code ${code}`
    events.onClose(session, reason)
  })
  return session
}

/** How `initialize` is given up on. */
export interface InitializeLimits {
  /** The daemon is killed and the start failed if `initialize` is not answered within this. */
  silenceMs: number
  /** How the daemon was started, for the message. */
  command: string
  /** The daemon's stderr, for the message. */
  stderr: () => string
  /** The error for a daemon that exited before answering. */
  exitedError: () => Error
}

/** Send `initialize` and wait for its answer; the daemon is killed if it takes too long. */
export async function initialize(session: Session, root: string, options: InitializationOptions, limits: InitializeLimits): Promise<InitializeResult> {
  const { child, connection, exited } = session
  const init = connection.sendRequest<InitializeResult>('initialize', {
    processId: process.pid,
    rootUri: pathToFileURL(root).href,
    workspaceFolders: [{ uri: pathToFileURL(root).href, name: 'root' }],
    capabilities: {},
    clientInfo: { name: 'vite-plugin-vmd' },
    initializationOptions: options,
  })
  // A daemon that dies during start-up also rejects `init` (connection disposed): report why.
  const started = init.catch(async (error: unknown) => {
    if (!isConnectionLoss(error)) throw toError(error)
    await exited
    throw limits.exitedError()
  })
  let stuck: NodeJS.Timeout | undefined
  const tooLong = new Promise<never>((_, reject) => {
    stuck = setTimeout(() => {
      child.kill('SIGKILL')
      const tail = limits.stderr()
      reject(new Error(`vmd: the daemon did not answer initialize within ${limits.silenceMs} ms ("${limits.command}")${tail ? `\n${tail}` : ''}`))
    }, limits.silenceMs)
  })
  return Promise.race([started, tooLong]).finally(() => clearTimeout(stuck))
}

/** Keep Node alive while the daemon works for us. */
export function ref(session: Session): void {
  setRef(session.child, true)
}

/** Let Node exit while the daemon is idle, unless it is being stopped. */
export function unref(session: Session): void {
  if (!session.stopping) setRef(session.child, false)
}

/** Stop the daemon: `shutdown` and `exit`, then SIGTERM, then SIGKILL, whichever it exits after. */
export async function shutdown(session: Session): Promise<void> {
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
