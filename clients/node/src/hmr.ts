/**
 * Keeping served modules fresh in dev. The daemon reports a stale module (`vmd/changed`): it is
 * invalidated in every environment and Vite sends the HMR update, while the new output is
 * already asked for. Vite's watcher usually sees a change first: the daemon hears of it at
 * once. A restarted daemon knows nothing: every served id is loaded again, and those whose
 * output changed meanwhile are updated.
 */

import type { EnvironmentModuleNode, ViteDevServer } from 'vite'
import { AheadLoads } from './ahead.js'
import type { Daemon, FileChange } from './daemon.js'
import { Dependents } from './dependents.js'
import type { IsLoader } from './guard.js'
import type { ChangedParams, LoadResult } from './protocol.js'

/** The modules this plugin served, and their updates while a dev server runs. */
export class Hmr {
  // Last code served per id (undefined after a failure): after a daemon restart, only the
  // modules whose output differs from what the page has are updated. A `vite build --watch`
  // rebuild also invalidates every id in it when a file is added or removed.
  readonly #served = new Map<string, string | undefined>()
  // Dev only: which module depends on which file, so that Vite's watcher events for a file
  // reach the daemon and start the re-run of what depends on it.
  readonly #dependents = new Dependents()
  // Dev only: answers asked for before Vite asks (as soon as a change is seen, by Vite's
  // watcher or reported by the daemon), used by the load that follows if still good.
  readonly #ahead = new AheadLoads()
  readonly #daemon: () => Daemon | undefined
  #server: ViteDevServer | undefined

  /** `daemon` is the running daemon, if any: updates never start one. */
  constructor(daemon: () => Daemon | undefined) {
    this.#daemon = daemon
  }

  /** Dev: send updates to `server`, and pass its watcher's events on to the daemon. */
  attach(server: ViteDevServer): void {
    this.#server = server
    for (const type of ['change', 'add', 'unlink'] as const) {
      server.watcher.on(type, (file: string, stats?: { size: number }) => this.#viteWatcher(type, file, stats))
    }
  }

  /** The module's output (`load` asks the daemon), recorded as served; throws what `load` threw. */
  async load(id: string, load: () => Promise<LoadResult>, dev: boolean): Promise<LoadResult> {
    try {
      const result = await this.#ahead.take(id, load)
      this.#served.set(id, result.code)
      if (dev) this.#dependents.set(id, [...result.watchFiles, ...result.dependencies])
      return result
    } catch (error) {
      this.#served.set(id, undefined)
      throw error
    }
  }

  /** Every id served so far. */
  servedIds(): string[] {
    return [...this.#served.keys()]
  }

  /**
   * The daemon reported `id` stale: invalidate it in every environment (client, SSR, …) and
   * let Vite send the HMR update (`server.reloadModule` alone touches one environment, and
   * nothing with HMR off).
   */
  changed({ id, version }: ChangedParams): void {
    const server = this.#server
    if (!server) return
    if (this.#ahead.changed(id, version) && this.#served.has(id)) this.#askAhead(id)
    for (const environment of Object.values(server.environments)) {
      const mod = environment.moduleGraph.getModuleById(id)
      if (!mod) continue
      environment.moduleGraph.invalidateModule(mod, new Set(), Date.now(), true)
      void environment.reloadModule(mod)
    }
    // The page will fetch the module again: have Vite transform it as soon as the answer
    // arrives, so the fetch finds it ready (errors surface on that fetch, not here).
    const client = server.environments.client
    const url = client?.moduleGraph.getModuleById(id)?.url
    if (url) client.transformRequest(url).catch(() => undefined)
  }

  /**
   * A restarted daemon is ready: load every served id again (so it watches them again) and
   * update those whose output changed while it was down.
   */
  async resync(): Promise<void> {
    const running = this.#daemon()
    if (!running) return
    this.#ahead.clear() // versions start again with the new daemon
    await Promise.all(
      [...this.#served].map(async ([id, code]) => {
        let now: string | undefined
        try {
          now = (await running.load(id)).code
        } catch {
          now = undefined
        }
        if (now !== code || now === undefined) this.changed({ id, version: 0, reason: 'invalidate' })
      }),
    )
  }

  #askAhead(id: string): void {
    const running = this.#daemon()
    if (running) this.#ahead.ask(id, () => running.load(id))
  }

  // Vite's watcher saw a file change that served modules depend on. It usually hears of it
  // before the daemon's watcher, which waits for a quiet moment: tell the daemon, and ask for
  // the modules right away, so the re-run starts and its answer is on the way sooner. The
  // daemon stats the file, so a change it also hears of itself counts once. An empty file is
  // left to the daemon's watcher (an editor may have truncated it and not written it yet).
  #viteWatcher(type: FileChange['type'], file: string, stats?: { size: number }): void {
    const ids = this.#dependents.of(file)
    const running = this.#daemon()
    if (ids.length === 0 || !running) return
    running.filesChanged([{ path: file, type }])
    if (type !== 'unlink' && stats?.size === 0) return
    for (const id of ids) this.#askAhead(id)
  }
}

/**
 * `hotUpdate`'s answer: the changed modules without the loaders'. A loader file is in Vite's
 * module graph (it is its modules' `file`), so Vite would update them on its own when it
 * changes; the daemon's `vmd/changed` does that already.
 */
export function withoutLoaders(modules: EnvironmentModuleNode[], isLoader: IsLoader): EnvironmentModuleNode[] | undefined {
  const others = modules.filter((mod) => !(mod.id && isLoader(mod.id.split('?', 1)[0]!)))
  return others.length === modules.length ? undefined : others
}
