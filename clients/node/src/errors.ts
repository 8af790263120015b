/**
 * A failing loader as Vite shows it: the daemon's error data (Python message, file, line,
 * traceback) turned into an error whose `loc` and `frame` Vite's overlay displays, and whose
 * message a build log can stand on alone.
 */

import { readFileSync } from 'node:fs'
import { normalizePath } from 'vite'
import { DaemonRequestError } from './daemon.js'

/** The error a failing loader produces: Vite shows `loc` and `frame` in its overlay. */
export interface VmdLoaderError extends Error {
  id: string
  plugin?: string
  loc: { file: string; line: number; column: number }
  frame: string
  /** The Python traceback. */
  traceback: string
  /** `error`, `timeout`, `crash` or `refused`. */
  kind: string
}

// A code frame of the Python file (Vite's overlay shows it under the file link), then the
// traceback, which names the loader and every frame in between.
export function toViteError(error: unknown, id: string, command: 'serve' | 'build'): Error {
  if (!(error instanceof DaemonRequestError) || !error.data) {
    return error instanceof Error ? error : new Error(String(error))
  }
  const { message, file, line, traceback = '', kind = 'error' } = error.data
  const frame = codeFrame(file, line)
  // Dev shows loc and frame in the overlay; a build log may show only the message, so it names
  // the module too (a helper failing for many queries of one loader fails each its own way).
  const text = command === 'build' ? `${file}:${line}: ${message}\n  while loading ${id}\n\n${traceback.trimEnd()}` : message
  const err = new Error(text) as VmdLoaderError
  err.plugin = 'vmd'
  err.id = normalizePath(file)
  err.loc = { file: normalizePath(file), line, column: 1 }
  err.frame = [frame, traceback.trimEnd()].filter(Boolean).join('\n\n')
  err.traceback = traceback
  err.kind = kind
  err.stack = `Error: ${message}\n    while loading ${id}\n${traceback}`
  return err
}

function codeFrame(file: string, line: number): string {
  let lines: string[]
  try {
    lines = readFileSync(file, 'utf8').split(/\r?\n/)
  } catch {
    return ''
  }
  const start = Math.max(1, line - 2)
  const end = Math.min(lines.length, line + 2)
  const width = String(end).length
  const out: string[] = []
  for (let n = start; n <= end; n++) {
    out.push(`${n === line ? '>' : ' '} ${String(n).padStart(width)} | ${lines[n - 1] ?? ''}`)
  }
  return out.join('\n')
}
