/**
 * Requests to the daemon in flight: sending them, failing them when the daemon goes silent or
 * closes, and keeping Node alive only while any is pending.
 *
 * A request fails when the daemon has sent nothing (no answer, no `$/vmd/busy`) for the loader
 * timeout plus a grace since it was sent: the daemon is stuck. Not simply that long after it
 * was sent: a loader's runs queue in its one worker, each with its own timeout, and a
 * `vmd/loadMany` is answered once all its modules have run, so a build's loads may wait far
 * longer while the daemon works. Checked by one sweep while requests are pending (not a timer
 * per request: a build sends hundreds at once).
 */

import { isConnectionLoss, toError } from './jsonrpc.js'
import { ref, unref } from './session.js'
import type { Session } from './session.js'

type Pending = { reject: (error: Error) => void; method: string; sentAt: number }

/** The requests in flight to one daemon and its successors. */
export class Requests {
  readonly #silenceMs: () => number
  readonly #current: () => Session | undefined
  #pending = new Set<Pending>()
  #sweep: NodeJS.Timeout | undefined
  // When the daemon last answered a request or said it was busy.
  #heardAt = 0

  /**
   * @param silenceMs How long a silent daemon is waited for before it is called stuck.
   * @param current The session running now, let go of once nothing is pending.
   */
  constructor(silenceMs: () => number, current: () => Session | undefined) {
    this.#silenceMs = silenceMs
    this.#current = current
  }

  /** Send a request; it fails with the reason if the daemon goes silent or closes first. */
  send<T>(session: Session, method: string, params: object): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { reject, method, sentAt: Date.now() }
      this.#pending.add(pending)
      ref(session)
      this.#sweep ??= setInterval(() => this.#expire(), Math.min(1000, this.#silenceMs())).unref()
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
          // The stream closed under us: `failAll` rejects this with the exit reason.
          if (isConnectionLoss(error)) return
          settle()
          reject(toError(error))
        },
      )
    })
  }

  /** The daemon said something (`$/vmd/busy`): it is not stuck. */
  heard(): void {
    this.#heardAt = Date.now()
  }

  /** Fail every request in flight with `error` (the daemon closed). */
  failAll(error: Error): void {
    for (const pending of this.#pending) pending.reject(error)
    this.#pending.clear()
    clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  #expire(): void {
    const now = Date.now()
    const silenceMs = this.#silenceMs()
    for (const pending of this.#pending) {
      if (Math.max(pending.sentAt, this.#heardAt) + silenceMs > now) continue
      this.#pending.delete(pending)
      pending.reject(new Error(`vmd: no answer to ${pending.method}: the daemon has sent nothing for ${silenceMs} ms`))
    }
    const current = this.#current()
    if (this.#pending.size === 0 && current) this.#idle(current)
  }

  // Nothing in flight: stop sweeping, and let Node exit if nothing else keeps it.
  #idle(session: Session): void {
    clearInterval(this.#sweep)
    this.#sweep = undefined
    unref(session)
  }
}
