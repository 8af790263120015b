/**
 * Wire types of the vmd protocol, mirroring `vmd/protocol.py` (documented in `protocol.md`).
 * Every field the daemon may omit is optional here, so newer daemons stay compatible.
 */

/**
 * The include globs when none are given: the daemon's default (`DEFAULT_INCLUDE` in
 * vmd/protocol.py), declared once for every client (see `clients/README.md`).
 */
export const DEFAULT_INCLUDE = ['**/*.vmd.py'] as const

/**
 * What a client tells a user whose interpreter lacks vmd, before saying how to pick another
 * (`INSTALL_HINT` in vmd/protocol.py): `{python}` is the interpreter, `{checkout}` the path of a
 * vmd checkout.
 */
export const INSTALL_HINT = 'Install vmd into that interpreter from a checkout of the vmd repository: `{python} -m pip install {checkout}` (vmd is not on PyPI: the "vmd" there is an unrelated project).'

/** Method and notification names. */
export const LOAD = 'vmd/load'
export const LOAD_MANY = 'vmd/loadMany'
export const RELOAD = 'vmd/reload'
export const INVALIDATE = 'vmd/invalidate'
export const CHANGED = 'vmd/changed'
/** Sent every second while requests that run loaders are unanswered (see protocol.md). */
export const BUSY = '$/vmd/busy'

/** JSON-RPC error codes for failures about one module. */
export const ErrorCodes = {
  loaderError: -32010,
  timeout: -32011,
  crash: -32012,
  refused: -32020,
} as const

export type EventType = 'add' | 'change' | 'unlink'
export type ChangeReason = 'watch' | 'code' | 'reload' | 'invalidate'
export type ErrorKind = 'error' | 'timeout' | 'crash' | 'refused'
export type Mode = 'serve' | 'build'

/** JSON as it travels on the wire. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export interface LoadParams {
  id: string
}

export interface ReloadParams {
  id: string
  data?: Json
}

export interface InvalidateParams {
  id?: string | null
  path?: string | null
}

/** Result of `vmd/load` and `vmd/reload`. */
export interface LoadResult {
  id: string
  code: string
  map?: { [key: string]: Json } | string | null
  version: number
  /** Absolute files the loader's `watch` globs match now. */
  watchFiles: string[]
  /** Absolute files the output depends on: the loader, its local imports, files it read. */
  dependencies: string[]
  /** Existing folders the `watch` globs look in (absent from daemons before it was added). */
  watchDirs?: string[]
}

/** A JSON-RPC error object: what a failed `vmd/load` of the same id answers. */
export interface ErrorObject {
  code: number
  message: string
  data?: LoaderErrorData | null
}

/** How one id of a `vmd/loadMany` ended: exactly one of `result` and `error` is present. */
export interface LoadOutcome {
  result?: LoadResult
  error?: ErrorObject
}

/** Result of `vmd/loadMany`: one outcome per id, in the order of the ids. */
export interface LoadManyResult {
  results: LoadOutcome[]
}

export interface InvalidateResult {
  ids: string[]
}

export interface FileEvent {
  type: EventType
  path: string
}

/** `vmd/changed`: a loaded module's output became stale (the daemon is re-running it). */
export interface ChangedParams {
  id: string
  /** The version that is now stale. */
  version: number
  reason: ChangeReason
  events?: FileEvent[]
}

/** The `data` of a JSON-RPC error about one module. */
export interface LoaderErrorData {
  id: string
  message: string
  /** Absolute file of the deepest frame in the loader or its project-local imports. */
  file: string
  /** 1-based line in `file`. */
  line: number
  kind?: ErrorKind
  traceback?: string
}

/** Result of the editor command `vmd.preview` (`workspace/executeCommand`). */
export interface PreviewResult {
  id: string
  /** The read-only document to open: `vmd:` + the encoded module id. */
  uri: string
  code: string | null
  version: number | null
  error: LoaderErrorData | null
  /** The document's text: the code, or the error as a JavaScript comment. */
  text: string
}

/** Result of the editor command `vmd.reload`: the ids re-run, and the errors of those that failed. */
export interface ReloadCommandResult {
  ids: string[]
  errors: LoaderErrorData[]
}

export interface InitializationOptions {
  mode?: Mode
  include?: string[]
  timeoutMs?: number
  maxWorkers?: number
  maxQueryIds?: number
  memoryLimitMb?: number | null
  progressDelayMs?: number
  preload?: boolean
}

/** The protocol revision this client speaks (`PROTOCOL_VERSION` in vmd/protocol.py). */
export const PROTOCOL_VERSION = 1

export interface InitializeResult {
  capabilities: { experimental?: { vmd?: { protocolVersion?: number; methods?: string[] } }; [key: string]: unknown }
  serverInfo?: { name: string; version?: string }
}

/** True when `value` has the shape of a `LoaderErrorData`. */
export function isLoaderErrorData(value: unknown): value is LoaderErrorData {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return (
    typeof v.id === 'string' &&
    typeof v.message === 'string' &&
    typeof v.file === 'string' &&
    typeof v.line === 'number'
  )
}
