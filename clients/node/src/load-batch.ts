/**
 * `batchLoads`: the loads asked for in one turn of the event loop, sent as one `vmd/loadMany`
 * (a build needs every module before it ends, and hundreds of messages each way cost Node more
 * than the loaders).
 */

import { ownError, requestError } from './jsonrpc.js'
import { LOAD, LOAD_MANY } from './protocol.js'
import type { LoadManyResult, LoadResult } from './protocol.js'

type QueuedLoad = { id: string; resolve: (result: LoadResult) => void; reject: (error: Error) => void }

/** Loads gathered for one `vmd/loadMany`. */
export class LoadBatch {
  readonly #start: () => Promise<{ methods: Set<string> }>
  readonly #request: <T>(method: string, params: object) => Promise<T>
  // Loads asked for in this turn of the event loop, not sent yet.
  #queued: QueuedLoad[] = []

  /**
   * @param start Starts the daemon (or finds it running) and says which methods it has.
   * @param request Sends one request to the running daemon.
   */
  constructor(start: () => Promise<{ methods: Set<string> }>, request: <T>(method: string, params: object) => Promise<T>) {
    this.#start = start
    this.#request = request
  }

  /** `vmd/load` as part of this turn's batch. */
  load(id: string): Promise<LoadResult> {
    return new Promise<LoadResult>((resolve, reject) => {
      if (this.#queued.length === 0) setImmediate(() => void this.#send())
      this.#queued.push({ id, resolve, reject })
    })
  }

  // One `vmd/loadMany` for the loads of this turn; `vmd/load` each when there is one, or when
  // the daemon predates `vmd/loadMany`.
  async #send(): Promise<void> {
    const loads = this.#queued
    this.#queued = []
    let session: { methods: Set<string> }
    try {
      session = await this.#start()
    } catch (error) {
      for (const load of loads) load.reject(ownError(error))
      return
    }
    if (loads.length === 1 || !session.methods.has(LOAD_MANY)) {
      for (const load of loads) this.#request<LoadResult>(LOAD, { id: load.id }).then(load.resolve, load.reject)
      return
    }
    let answer: LoadManyResult
    try {
      answer = await this.#request<LoadManyResult>(LOAD_MANY, { ids: loads.map((load) => load.id) })
    } catch (error) {
      for (const load of loads) load.reject(ownError(error))
      return
    }
    loads.forEach((load, at) => {
      const outcome = answer.results[at]
      if (outcome?.result) load.resolve(outcome.result)
      else if (outcome?.error) load.reject(requestError(outcome.error))
      else load.reject(new Error(`vmd: the daemon's vmd/loadMany answer has no outcome for ${load.id}`))
    })
  }
}
