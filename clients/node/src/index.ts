/**
 * vite-plugin-vmd: import JavaScript modules computed by Python loaders (`*.vmd.py`).
 *
 * A loader id is the loader's real file path plus its query (`/app/src/users.vmd.py?role=admin`),
 * the same string in Vite's module graph and in the daemon, so a `vmd/changed` for an id names
 * the Vite module to update without any mapping. The daemon watches; Vite's own watcher is told
 * to leave loader modules alone, so every change reaches the page exactly once.
 */

import { readFileSync, realpathSync, statSync } from 'node:fs'
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path'
import { createFilter, isFileLoadingAllowed, normalizePath } from 'vite'
import type { Plugin, ResolvedConfig, Rollup, ViteDevServer } from 'vite'
import { AheadLoads } from './ahead.js'
import { Daemon, DaemonRequestError, defaultPython } from './daemon.js'
import type { FileChange } from './daemon.js'
import { Dependents } from './dependents.js'
import { RefusedIdError, canonicalId, checkQuery, mentionsPython, parseId, parseRequestUrl } from './ids.js'
import { checkOptions } from './options.js'
import type { VmdOptions } from './options.js'
import type { ChangedParams, LoadResult } from './protocol.js'

export type { ChangedParams, LoadResult, LoaderErrorData, FileEvent } from './protocol.js'
export { Daemon, DaemonRequestError, defaultPython } from './daemon.js'
export type { DaemonOptions, DaemonLogger, FileChange } from './daemon.js'
export { VmdOptionError } from './options.js'
export type { VmdOptions } from './options.js'

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
  const { python, include, timeoutMs } = checkOptions(options)
  let config: ResolvedConfig
  let isLoader: (path: string) => boolean
  let daemon: Daemon | undefined
  let server: ViteDevServer | undefined
  // Last code served per id (undefined after a failure): after a daemon restart, only the
  // modules whose output differs from what the page has are updated.
  const served = new Map<string, string | undefined>()
  // Files given to `addWatchFile` in this build: once each, not once per module.
  const watchedInBuild = new Set<string>()
  // Dev only: which module depends on which file, and answers asked for before Vite asks
  // (as soon as a change is seen, by Vite's watcher or reported by the daemon).
  const dependents = new Dependents()
  const ahead = new AheadLoads()
  // Build only: a loader file's real path, looked up once per build for all its queries.
  const realInBuild = new Map<string, string | undefined>()
  // Build only: the environments building now. One plugin shared by environments built in
  // parallel (`builder.sharedPlugins`) stops the daemon when the last of them is done.
  const building = new Set<string>()

  function getDaemon(): Daemon {
    daemon ??= new Daemon({
      python: python ?? defaultPython(config.root),
      root: config.root,
      mode: config.command === 'build' ? 'build' : 'serve',
      include,
      timeoutMs,
      eagerRestart: config.command === 'serve',
      batchLoads: config.command === 'build',
      logger: {
        info: (msg) => config.logger.info(msg, { timestamp: true }),
        warn: (msg) => config.logger.warn(msg, { timestamp: true }),
        error: (msg) => config.logger.error(msg, { timestamp: true }),
      },
      onChanged: (params) => onChanged(params),
      onRestart: () => void resync(),
    })
    return daemon
  }

  // An environment's build ended: stop the daemon unless another is still building with it.
  async function doneBuilding(environment: string): Promise<void> {
    building.delete(environment)
    if (building.size === 0) await stop()
  }

  async function stop(): Promise<void> {
    const running = daemon
    daemon = undefined
    await running?.stop()
  }

  // Invalidate the module in every environment (client, SSR, …) and let Vite send the HMR
  // update; `server.reloadModule` alone touches one environment and nothing with HMR off.
  function onChanged({ id, version }: ChangedParams): void {
    if (!server) return
    if (ahead.changed(id, version) && served.has(id)) askAhead(id)
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

  // A restarted daemon knows nothing: load every id again (so it watches them again) and
  // update those whose output changed while it was down.
  async function resync(): Promise<void> {
    const running = daemon
    if (!running) return
    ahead.clear() // versions start again with the new daemon
    await Promise.all(
      [...served].map(async ([id, code]) => {
        let now: string | undefined
        try {
          now = (await running.load(id)).code
        } catch {
          now = undefined
        }
        if (now !== code || now === undefined) onChanged({ id, version: 0, reason: 'invalidate' })
      }),
    )
  }

  // Why the dev server must not ask the daemon for the loader at `path`; undefined when it may.
  // A build is not checked here: server.fs guards the dev server (the daemon confines every id).
  function refusal(path: string): string | undefined {
    if (config.command !== 'serve') return undefined
    let real: string
    try {
      real = realpathSync(path)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      return code === 'ENOENT' || code === 'ENOTDIR' ? 'the loader file does not exist' : `the loader file cannot be read (${code})`
    }
    if (isFileLoadingAllowed(config, real) && isLoader(real)) return undefined
    return 'outside server.fs.allow, in server.fs.deny, or not a loader once symlinks are resolved'
  }

  async function loadModule(id: string): Promise<LoadResult> {
    try {
      const result = await ahead.take(id, () => getDaemon().load(id))
      served.set(id, result.code)
      if (config.command === 'serve') dependents.set(id, [...result.watchFiles, ...result.dependencies])
      return result
    } catch (error) {
      served.set(id, undefined)
      throw toViteError(error, id, config.command)
    }
  }

  function askAhead(id: string): void {
    const running = daemon
    if (running) ahead.ask(id, () => running.load(id))
  }

  // Vite's watcher saw a file change that served modules depend on. It usually hears of it
  // before the daemon's watcher, which waits for a quiet moment: tell the daemon, and ask for
  // the modules right away, so the re-run starts and its answer is on the way sooner. The
  // daemon stats the file, so a change it also hears of itself counts once. An empty file is
  // left to the daemon's watcher (an editor may have truncated it and not written it yet).
  function onViteWatcher(type: FileChange['type'], file: string, stats?: { size: number }): void {
    const ids = dependents.of(file)
    if (ids.length === 0 || !daemon) return
    daemon.filesChanged([{ path: file, type }])
    if (type !== 'unlink' && stats?.size === 0) return
    for (const id of ids) askAhead(id)
  }

  // Dev-server requests naming a Python file are checked before any of Vite's middlewares:
  // malformed URLs (the shapes of past query-suffix CVEs) and files outside server.fs get 403,
  // missing loaders 404, so nothing reaches the daemon. A loader is server code: a plain fetch
  // of one (no `import` flag, which every module import the page makes has) would get its
  // source, credentials and all, from Vite's static files, so it gets 403.
  function guard(url: string): number | undefined {
    const base = config.base.startsWith('/') ? config.base : '/'
    const path = url.startsWith(base) ? `/${url.slice(base.length)}` : url
    const target = parseRequestUrl(path)
    if (!target || target.kind === 'id') return 403
    const file = normalize(target.kind === 'fs' ? target.path : join(config.root, target.path))
    if (!isAbsolute(file)) return 403
    let real: string
    try {
      real = realpathSync(file)
    } catch {
      if (!isFileLoadingAllowed(config, file)) return 403
      return isLoader(file) ? 404 : undefined
    }
    if (!isFileLoadingAllowed(config, real)) return 403
    if (!isLoader(file) && !isLoader(real)) return undefined
    if (!isLoader(real) || !target.imported) return 403
    try {
      checkQuery(url, target.query)
    } catch {
      return 403
    }
    return undefined
  }

  return {
    name: 'vmd',
    enforce: 'pre',

    configResolved(resolved) {
      config = resolved
      isLoader = createFilter(include, null, { resolve: config.root })
      // A plain build starts the daemon now, while Vite sets the build up. Vite's app builder
      // (`vite build --app`) resolves one config for itself and one per environment, each with
      // its own plugin instance: only those that build start one, in buildStart.
      if (config.command === 'build' && !config.builder) getDaemon().start().catch(() => undefined)
    },

    // Build: start the daemon as soon as the config is known, while Vite sets the build up
    // (and again for a later build, if a previous one stopped it).
    buildStart() {
      watchedInBuild.clear()
      realInBuild.clear()
      if (config.command !== 'build') return
      building.add(this.environment.name)
      getDaemon().start().catch(() => undefined)
    },

    configureServer(devServer) {
      server = devServer
      // Start the daemon while Vite finishes starting; a failure surfaces on the first load.
      getDaemon().start().catch(() => undefined)
      for (const type of ['change', 'add', 'unlink'] as const) {
        devServer.watcher.on(type, (file: string, stats?: { size: number }) => onViteWatcher(type, file, stats))
      }
      devServer.middlewares.use((req, res, next) => {
        const url = req.url
        if (!url || !mentionsPython(url)) return next()
        const status = guard(url)
        if (status === undefined) return next()
        res.statusCode = status
        res.setHeader('Content-Type', 'text/plain; charset=utf-8')
        res.end(status === 404 ? 'Not Found' : 'Forbidden')
      })
    },

    resolveId: {
      filter: { id: PYTHON_ID },
      async handler(source, importer, resolveOptions) {
        if (source.startsWith('\0')) return null
        const at = source.search(/[?#]/)
        const path = at === -1 ? source : source.slice(0, at)
        let file = relativeLoader(path, importer)
        if (file === undefined) {
          const resolved = await this.resolve(path, importer, { ...resolveOptions, skipSelf: true })
          if (!resolved || resolved.external) return null
          file = normalizePath(resolved.id)
        }
        if (file.includes('?') || !isLoader(file)) return null
        // A loader: from here on the id has exactly one spelling, or it is refused.
        const { query } = parseId(canonicalId(source))
        const refused = refusal(file)
        if (refused) throw new RefusedIdError(source, refused)
        return query ? `${file}?${query}` : file
      },
    },

    load: {
      filter: { id: PYTHON_ID },
      async handler(id) {
        if (id.startsWith('\0')) return null
        const { path } = parseId(id)
        if (!isLoader(path)) return null
        const refused = refusal(path)
        if (refused) throw new RefusedIdError(id, refused)
        const result = await loadModule(id)
        if (config.command === 'build') {
          // `vite build --watch` rebuilds when any of these change; the daemon re-checks them.
          // The glob folders too: a file created there may match (watched with what is below).
          const folders = this.meta.watchMode ? (result.watchDirs ?? []) : []
          for (const file of [...result.watchFiles, ...result.dependencies, ...folders]) {
            if (watchedInBuild.has(file)) continue
            watchedInBuild.add(file)
            this.addWatchFile(file)
          }
        }
        // The loader's map is passed through as it came (an object or its JSON text).
        const map = (result.map ?? null) as SourceMapInput | null
        return { code: result.code, map, moduleType: 'js' }
      },
    },

    // The loader file is in Vite's module graph (it is the modules' `file`), so Vite would
    // update them on its own when it changes; the daemon's `vmd/changed` does that already.
    hotUpdate({ modules }) {
      const others = modules.filter((mod) => !(mod.id && isLoaderId(mod.id)))
      return others.length === modules.length ? undefined : others
    },

    async watchChange(file, { event }) {
      // `vite build --watch`: a rebuild must not be served from the daemon's memory.
      if (!daemon || config.command !== 'build') return
      if (event === 'update') await daemon.invalidate({ path: file }).catch(() => undefined)
      else await Promise.all([...served.keys()].map((id) => daemon?.invalidate({ id }).catch(() => undefined)))
    },

    async buildEnd(error) {
      if (error && config.command === 'build' && !this.meta.watchMode) await doneBuilding(this.environment.name)
    },

    // Dev: the server is closing (its plugin context reports watch mode, so check the command).
    // Build: done, unless `--watch` keeps us for the next rebuild (then `closeWatcher` stops).
    async closeBundle() {
      if (config.command === 'serve') await stop()
      else if (!this.meta.watchMode) await doneBuilding(this.environment.name)
    },

    async closeWatcher() {
      await stop()
    },
  }

  // `./data.vmd.py` next to a file on disk: the loader's real path, found without a round of
  // every plugin's resolveId (hundreds of loader imports add up). Anything else, or a file
  // that is not there, is left to Vite's resolver.
  function relativeLoader(path: string, importer: string | undefined): string | undefined {
    if (!importer || !(path.startsWith('./') || path.startsWith('../'))) return undefined
    const from = importer.split('?', 1)[0]!
    if (!isAbsolute(from)) return undefined
    const file = resolve(dirname(from), path)
    if (config.command === 'build' && realInBuild.has(file)) return realInBuild.get(file)
    let found: string | undefined
    try {
      const real = config.resolve.preserveSymlinks ? file : realpathSync.native(file)
      found = statSync(real).isFile() ? normalizePath(real) : undefined
    } catch {
      found = undefined
    }
    if (config.command === 'build') realInBuild.set(file, found)
    return found
  }

  function isLoaderId(id: string): boolean {
    const at = id.indexOf('?')
    return isLoader(at === -1 ? id : id.slice(0, at))
  }
}

export { vmd }

// A code frame of the Python file (Vite's overlay shows it under the file link), then the
// traceback, which names the loader and every frame in between.
function toViteError(error: unknown, id: string, command: 'serve' | 'build'): Error {
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
