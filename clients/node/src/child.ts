/**
 * The daemon's process: spawning `python -m vmd serve`, what it writes to stderr, and whether it
 * keeps Node alive. Knows nothing of the protocol its stdio carries.
 */

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'

const STDERR_TAIL = 4096

/** The last few KB the daemon wrote to stderr, quoted when it fails to start or dies. */
export class StderrTail {
  #text = ''

  /** Forget what an earlier daemon wrote. */
  reset(): void {
    this.#text = ''
  }

  /** Keep a chunk, dropping what falls out of the tail. */
  add(chunk: string): void {
    this.#text = (this.#text + chunk).slice(-STDERR_TAIL)
  }

  /** The tail, trimmed. */
  text(): string {
    return this.#text.trim()
  }
}

/** A spawned daemon process, before anything was said to it. */
export interface Child {
  child: ChildProcess
  /** Resolves once the process runs; rejects with the spawn error (`ENOENT` for no interpreter). */
  spawned: Promise<void>
  /** Resolves once the process has exited and its stdio closed. */
  exited: Promise<void>
}

/**
 * Start `python -m vmd serve` in `root`. Its stderr goes into `tail`, and each line of it to
 * `warn` (only the daemon's warnings and errors are written there, each becomes a Vite
 * warning; what loaders print arrives as `window/logMessage`).
 */
export function spawnChild(python: string, root: string, tail: StderrTail, warn: (line: string) => void): Child {
  const child = spawn(python, ['-m', 'vmd', 'serve', '--log-level', 'warning'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  })
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  child.stderr?.setEncoding('utf8')
  let line = ''
  child.stderr?.on('data', (chunk: string) => {
    tail.add(chunk)
    line += chunk
    const lines = line.split('\n')
    line = lines.pop() ?? ''
    for (const text of lines) if (text.trim()) warn(text)
  })
  return { child, spawned, exited }
}

type Refable = { ref?: () => void; unref?: () => void }

/** Let the process and its pipes keep Node alive, or not: an idle daemon must not. */
export function setRef(child: ChildProcess, on: boolean): void {
  const handles: Refable[] = [child, child.stdin as Refable, child.stdout as Refable, child.stderr as Refable]
  for (const handle of handles) {
    if (!handle) continue
    if (on) handle.ref?.()
    else handle.unref?.()
  }
}
