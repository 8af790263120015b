/**
 * `vite build` and `vite build --watch`: which environments are building with the daemon (it is
 * stopped when the last is done), and the files Vite must watch so a rebuild follows what the
 * loaders depend on.
 */

import type { LoadResult } from './protocol.js'

/** The builds one plugin instance takes part in. */
export class Builds {
  // The environments building now. One plugin shared by environments built in parallel
  // (`builder.sharedPlugins`) stops the daemon when the last of them is done.
  readonly #building = new Set<string>()
  // Files given to `addWatchFile` in this build: once each, not once per module.
  readonly #watched = new Set<string>()

  /** A build (or a `--watch` rebuild) starts: its files are watched afresh. */
  reset(): void {
    this.#watched.clear()
  }

  /** `environment` builds now. */
  start(environment: string): void {
    this.#building.add(environment)
  }

  /** `environment`'s build ended; true when no other is building any more. */
  end(environment: string): boolean {
    this.#building.delete(environment)
    return this.#building.size === 0
  }

  /**
   * Have Vite watch what a loaded module depends on: `vite build --watch` rebuilds when any
   * of it changes (the daemon re-checks them). In watch mode the glob folders too: a file
   * created there may match (Vite watches what is below them).
   */
  watch(context: { addWatchFile(file: string): void }, result: LoadResult, watchMode: boolean): void {
    const folders = watchMode ? (result.watchDirs ?? []) : []
    for (const file of [...result.watchFiles, ...result.dependencies, ...folders]) {
      if (this.#watched.has(file)) continue
      this.#watched.add(file)
      context.addWatchFile(file)
    }
  }
}
