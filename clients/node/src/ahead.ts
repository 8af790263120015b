/**
 * Answers to `vmd/load` asked for before Vite asks for the module.
 *
 * When a file a module depends on changes, the daemon re-runs the loader at once; Vite asks
 * for the module only after the HMR update went out. Asking the daemon as soon as the change
 * is seen lets the answer travel while Vite invalidates, so Vite's `load` finds it waiting.
 *
 * An answer asked ahead is used once, and only if it cannot predate a change the daemon has
 * reported since (`vmd/changed`): a result must come from a later run than the output the
 * report called stale; a failure is reused only if no report came after it was asked for.
 * Anything else is asked again, so using an answer ahead never serves what a plain load would
 * not have.
 */

import { DaemonRequestError } from './daemon.js'
import type { LoadResult } from './protocol.js'

interface Asked {
  answer: Promise<LoadResult>
  settled: boolean
  /** How many reports for the id had arrived when this was asked for. */
  reportsBefore: number
}

interface Reports {
  count: number
  /** The highest stale version reported: a result must be newer. */
  staleVersion: number
}

export class AheadLoads {
  #asked = new Map<string, Asked>()
  #reports = new Map<string, Reports>()

  /** Ask now (`load` sends the request); replaces an earlier answer that was not used. */
  ask(id: string, load: () => Promise<LoadResult>): void {
    const asked: Asked = { answer: load(), settled: false, reportsBefore: this.#reports.get(id)?.count ?? 0 }
    const settle = (): void => {
      asked.settled = true
    }
    asked.answer.then(settle, settle)
    this.#asked.set(id, asked)
  }

  /**
   * The daemon reported `id` stale at `version`. True when an answer should be asked for now:
   * none is on its way (one still in flight was asked after the change, or is checked on use).
   */
  changed(id: string, version: number): boolean {
    const reports = this.#reports.get(id) ?? { count: 0, staleVersion: -1 }
    reports.count += 1
    reports.staleVersion = Math.max(reports.staleVersion, version)
    this.#reports.set(id, reports)
    const asked = this.#asked.get(id)
    if (asked?.settled) this.#asked.delete(id)
    return !this.#asked.has(id)
  }

  /** The module's output for Vite's `load`: the answer asked ahead if it is still good, else `load()`. */
  async take(id: string, load: () => Promise<LoadResult>): Promise<LoadResult> {
    const asked = this.#asked.get(id)
    if (!asked) return load()
    this.#asked.delete(id)
    let result: LoadResult
    try {
      result = await asked.answer
    } catch (error) {
      if ((this.#reports.get(id)?.count ?? 0) === asked.reportsBefore && error instanceof DaemonRequestError) throw error
      return load()
    }
    return result.version > (this.#reports.get(id)?.staleVersion ?? -1) ? result : load()
  }

  /** Forget everything (the daemon was replaced: versions start again). */
  clear(): void {
    this.#asked.clear()
    this.#reports.clear()
  }
}
