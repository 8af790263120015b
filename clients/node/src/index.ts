/**
 * vite-plugin-vmd: import JavaScript modules computed by Python loaders (`*.vmd.py`).
 *
 * A loader id is the loader's real file path plus its query (`/app/src/users.vmd.py?role=admin`),
 * the same string in Vite's module graph and in the daemon, so a `vmd/changed` for an id names
 * the Vite module to update without any mapping. The daemon watches; Vite's own watcher is told
 * to leave loader modules alone, so every change reaches the page exactly once.
 *
 * This file wires Vite's hooks to the parts that do the work: daemon.ts (the daemon process),
 * resolve.ts (import → id), guard.ts (what the dev server may load), hmr.ts (dev updates),
 * build.ts (builds and their watched files) and errors.ts (loader failures for Vite).
 */

import { createFilter } from 'vite'
import type { Plugin, ResolvedConfig, Rollup } from 'vite'
import { Builds } from './build.js'
import { Daemon, defaultPython } from './daemon.js'
import type { DaemonOptions } from './daemon.js'
import { toViteError } from './errors.js'
import { refusal, requestGuard } from './guard.js'
import type { IsLoader } from './guard.js'
import { Hmr, withoutLoaders } from './hmr.js'
import { RefusedIdError, parseId } from './ids.js'
import { checkOptions } from './options.js'
import type { CheckedOptions, VmdOptions } from './options.js'
import { LoaderIds } from './resolve.js'

export type { ChangedParams, LoadResult, LoaderErrorData, FileEvent } from './protocol.js'
export { Daemon, DaemonRequestError, defaultPython } from './daemon.js'
export type { DaemonOptions, DaemonLogger, FileChange } from './daemon.js'
export type { VmdLoaderError } from './errors.js'
export { VmdOptionError } from './options.js'
export type { VmdOptions } from './options.js'

type SourceMapInput = Rollup.SourceMapInput

const PYTHON_ID = /\.py(?:[?#]|$)/

/**
 * The vmd Vite plugin: `import users from "./users.vmd.py?role=admin"` in dev, build and SSR.
 *
 * @example
 * // vite.config.ts
 * import { defineConfig } from 'vite'
 * import vmd from 'vite-plugin-vmd'
 * export default defineConfig({ plugins: [vmd()] })
 */
export default function vmd(options: VmdOptions = {}): Plugin {
  const checked = checkOptions(options)
  let config: ResolvedConfig
  let isLoader: IsLoader
  const daemon: PluginDaemon = new PluginDaemon(() => daemonOptions(config, checked, hmr))
  const hmr: Hmr = new Hmr(() => daemon.running)
  const builds = new Builds()
  const ids = new LoaderIds()

  // An environment's build ended: stop the daemon unless another is still building with it.
  async function doneBuilding(environment: string): Promise<void> {
    if (builds.end(environment)) await daemon.stop()
  }

  return {
    name: 'vmd',
    enforce: 'pre',

    configResolved(resolved) {
      config = resolved
      isLoader = createFilter(checked.include, null, { resolve: config.root })
      // A plain build starts the daemon now, while Vite sets the build up. Vite's app builder
      // (`vite build --app`) resolves one config for itself and one per environment, each with
      // its own plugin instance: only those that build start one, in buildStart.
      if (config.command === 'build' && !config.builder) daemon.get().start().catch(() => undefined)
    },

    // Build: start the daemon as soon as the config is known, while Vite sets the build up
    // (and again for a later build, if a previous one stopped it).
    buildStart() {
      builds.reset()
      ids.reset()
      if (config.command !== 'build') return
      builds.start(this.environment.name)
      daemon.get().start().catch(() => undefined)
    },

    configureServer(server) {
      hmr.attach(server)
      // Start the daemon while Vite finishes starting; a failure surfaces on the first load.
      daemon.get().start().catch(() => undefined)
      server.middlewares.use(requestGuard(config, isLoader))
    },

    resolveId: {
      filter: { id: PYTHON_ID },
      handler(source, importer, resolveOptions) {
        return ids.resolve(this, config, isLoader, source, importer, resolveOptions)
      },
    },

    load: {
      filter: { id: PYTHON_ID },
      async handler(id) {
        if (id.startsWith('\0')) return null
        const { path } = parseId(id)
        if (!isLoader(path)) return null
        const refused = refusal(config, isLoader, path)
        if (refused) throw new RefusedIdError(id, refused)
        const result = await hmr.load(id, () => daemon.get().load(id), config.command === 'serve').catch((error: unknown) => {
          throw toViteError(error, id, config.command)
        })
        if (config.command === 'build') builds.watch(this, result, this.meta.watchMode)
        // The loader's map is passed through as it came (an object or its JSON text).
        const map = (result.map ?? null) as SourceMapInput | null
        return { code: result.code, map, moduleType: 'js' }
      },
    },

    hotUpdate({ modules }) {
      return withoutLoaders(modules, isLoader)
    },

    async watchChange(file, { event }) {
      // `vite build --watch`: a rebuild must not be served from the daemon's memory.
      const running = daemon.running
      if (!running || config.command !== 'build') return
      if (event === 'update') await running.invalidate({ path: file }).catch(() => undefined)
      else await Promise.all(hmr.servedIds().map((id) => running.invalidate({ id }).catch(() => undefined)))
    },

    async buildEnd(error) {
      if (error && config.command === 'build' && !this.meta.watchMode) await doneBuilding(this.environment.name)
    },

    // Dev: the server is closing (its plugin context reports watch mode, so check the command).
    // Build: done, unless `--watch` keeps us for the next rebuild (then `closeWatcher` stops).
    async closeBundle() {
      if (config.command === 'serve') await daemon.stop()
      else if (!this.meta.watchMode) await doneBuilding(this.environment.name)
    },

    async closeWatcher() {
      await daemon.stop()
    },
  }
}

export { vmd }

/** The plugin's daemon: started on first use, stopped with the dev server or the last build. */
class PluginDaemon {
  // A stopped Daemon never starts again: a later build (or rebuild) gets a new one.
  #daemon: Daemon | undefined
  readonly #options: () => DaemonOptions

  constructor(options: () => DaemonOptions) {
    this.#options = options
  }

  /** The daemon, created if none is; it starts on its first request. */
  get(): Daemon {
    this.#daemon ??= new Daemon(this.#options())
    return this.#daemon
  }

  /** The daemon if there is one; never creates one. */
  get running(): Daemon | undefined {
    return this.#daemon
  }

  async stop(): Promise<void> {
    const running = this.#daemon
    this.#daemon = undefined
    await running?.stop()
  }
}

// How the plugin starts its daemon: in the Vite root, with the mode of the command, restarted
// at once by a dev server, and loading a build's modules in batches.
function daemonOptions(config: ResolvedConfig, checked: CheckedOptions, hmr: Hmr): DaemonOptions {
  return {
    python: checked.python ?? defaultPython(config.root),
    root: config.root,
    mode: config.command === 'build' ? 'build' : 'serve',
    include: checked.include,
    timeoutMs: checked.timeoutMs,
    memoryLimitMb: checked.memoryLimitMb,
    eagerRestart: config.command === 'serve',
    batchLoads: config.command === 'build',
    logger: {
      info: (msg) => config.logger.info(msg, { timestamp: true }),
      warn: (msg) => config.logger.warn(msg, { timestamp: true }),
      error: (msg) => config.logger.error(msg, { timestamp: true }),
    },
    onChanged: (params) => hmr.changed(params),
    onRestart: () => void hmr.resync(),
  }
}
