/**
 * vscode-jsonrpc, imported on first use, and what its errors mean to the daemon's callers: the
 * daemon's own answers (`DaemonRequestError`) apart from a connection that closed under us.
 */

import type { ResponseError } from 'vscode-jsonrpc/node'
import { isLoaderErrorData } from './protocol.js'
import type { LoaderErrorData } from './protocol.js'

/** A request the daemon answered with a JSON-RPC error. */
export class DaemonRequestError extends Error {
  readonly code: number
  /** Present for failures about one module: the loader's file, line and traceback. */
  readonly data: LoaderErrorData | undefined

  constructor(code: number, message: string, data: LoaderErrorData | undefined) {
    super(message)
    this.name = 'DaemonRequestError'
    this.code = code
    this.data = data
  }
}

/** The vscode-jsonrpc module. */
export type Rpc = typeof import('vscode-jsonrpc/node')

// The module once imported: a Vite run that never imports a loader never pays for it, and
// `isResponseError` needs its class (no answer can have arrived before it was loaded).
let rpc: Rpc | undefined

/** vscode-jsonrpc, imported the first time a daemon starts. */
export async function loadRpc(): Promise<Rpc> {
  rpc ??= await import('vscode-jsonrpc/node')
  return rpc
}

function isResponseError(error: unknown): error is ResponseError<unknown> {
  return rpc !== undefined && error instanceof rpc.ResponseError
}

/** Whether a request failed because the connection closed or failed (vscode-jsonrpc's own codes), not by the daemon's answer. */
export function isConnectionLoss(error: unknown): boolean {
  return !isResponseError(error) || (error.code >= -32099 && error.code <= -32097)
}

/**
 * A copy of a failure shared by many loads (a failed start, a failed `vmd/loadMany`): Vite
 * adds each module's "Could not load …" to the error it is given.
 */
export function ownError(error: unknown): Error {
  if (error instanceof DaemonRequestError) return new DaemonRequestError(error.code, error.message, error.data)
  return error instanceof Error ? new Error(error.message) : new Error(String(error))
}

/** A request's failure as an `Error`: a `DaemonRequestError` for the daemon's own answers. */
export function toError(error: unknown): Error {
  if (isResponseError(error)) return requestError(error)
  return error instanceof Error ? error : new Error(String(error))
}

/** A JSON-RPC error object the daemon answered (a request's, or one id's in `vmd/loadMany`). */
export function requestError({ code, message, data }: { code: number; message: string; data?: unknown }): DaemonRequestError {
  return new DaemonRequestError(code, message, isLoaderErrorData(data) ? data : undefined)
}
