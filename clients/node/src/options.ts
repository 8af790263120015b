/**
 * The plugin's options, checked when `vmd()` is called (as Vite loads the config), so a typo or
 * a wrong type fails there, naming the option, instead of as a puzzling error on the first load
 * or, worse, a setting silently ignored.
 */

import { DEFAULT_INCLUDE } from './protocol.js'

/** Options of the vmd Vite plugin; every one has a default. */
export interface VmdOptions {
  /**
   * The Python interpreter that has vmd installed. Default: `VMD_PYTHON`, else `.venv/bin/python`
   * in the Vite root or the nearest parent that has one, else `python3`.
   */
  python?: string
  /** Loader globs, relative to the Vite root. Default: `["**\/*.vmd.py"]`. */
  include?: string | string[]
  /** A loader run taking longer than this (ms) is stopped and reported. Default: 30000. */
  timeoutMs?: number
  /**
   * Each loader process's memory limit (MB); a run that goes over fails with a `MemoryError` at
   * its line, and the daemon carries on. `0`: no limit. Default: a quarter of the machine's (or
   * the container's) memory.
   */
  memoryLimitMb?: number
}

/** The options with their defaults filled in (`python` stays open: it depends on the root). */
export interface CheckedOptions {
  python: string | undefined
  include: string[]
  timeoutMs: number
  /** `undefined`: the daemon's default, and none is sent. */
  memoryLimitMb: number | undefined
}

const KNOWN = ['python', 'include', 'timeoutMs', 'memoryLimitMb']

// Brace alternatives, a leading negation and extglobs: picomatch reads them, the daemon does not.
const FOREIGN_GLOB = /[{}]|^!|[?*+@!]\(/

/** A plugin option that cannot be used; the message names it and what was given. */
export class VmdOptionError extends TypeError {
  constructor(message: string) {
    super(`vmd: ${message}`)
    this.name = 'VmdOptionError'
  }
}

/** `options` with defaults filled in; throws `VmdOptionError` for an unknown or malformed one. */
export function checkOptions(options: unknown): CheckedOptions {
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new VmdOptionError(`options must be an object, got ${describe(options)}`)
  }
  const given = options as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!KNOWN.includes(key)) {
      throw new VmdOptionError(`unknown option "${key}" (the options are ${KNOWN.join(', ')})`)
    }
  }
  const { python, include, timeoutMs, memoryLimitMb } = given
  if (python !== undefined && (typeof python !== 'string' || python.trim() === '')) {
    throw new VmdOptionError(`option "python" must be the path or name of a Python interpreter, got ${describe(python)}`)
  }
  const globs: unknown[] = include === undefined ? [...DEFAULT_INCLUDE] : [include].flat()
  if (globs.length === 0 || !globs.every((glob) => typeof glob === 'string' && glob.trim() !== '')) {
    throw new VmdOptionError(`option "include" must be a glob or a non-empty list of globs, got ${describe(include)}`)
  }
  // The plugin matches `include` with picomatch, the daemon with its own globs: only what both
  // read the same way is accepted.
  const foreign = (globs as string[]).find((glob) => FOREIGN_GLOB.test(glob))
  if (foreign !== undefined) {
    throw new VmdOptionError(
      `option "include": ${describe(foreign)} uses glob syntax vmd does not read ({a,b} alternatives, ` +
        '!negation or @(…) patterns); vmd globs have *, ?, [...] and **: give each alternative as its own glob',
    )
  }
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs <= 0)) {
    throw new VmdOptionError(`option "timeoutMs" must be a positive whole number of milliseconds, got ${describe(timeoutMs)}`)
  }
  if (memoryLimitMb !== undefined && (typeof memoryLimitMb !== 'number' || !Number.isInteger(memoryLimitMb) || memoryLimitMb < 0)) {
    throw new VmdOptionError(`option "memoryLimitMb" must be a whole number of megabytes, 0 or more (0: no limit), got ${describe(memoryLimitMb)}`)
  }
  return {
    python: python as string | undefined,
    include: globs as string[],
    timeoutMs: (timeoutMs as number | undefined) ?? 30_000,
    memoryLimitMb: memoryLimitMb as number | undefined,
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `[${value.map(describe).join(', ')}]`
  if (value === null || typeof value !== 'object') return String(value)
  return 'an object'
}
