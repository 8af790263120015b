/**
 * Loader imports resolved to module ids: the loader's real path plus its query in its one
 * canonical spelling (`/app/src/users.vmd.py?role=admin`), the same string in Vite's module
 * graph and in the daemon. Anything that is not an included loader is left to Vite.
 */

import { realpathSync, statSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { normalizePath } from 'vite'
import type { ResolvedConfig, Rollup } from 'vite'
import { refusal } from './guard.js'
import type { IsLoader } from './guard.js'
import { RefusedIdError, canonicalId, parseId } from './ids.js'

type ResolveOptions = NonNullable<Parameters<Rollup.PluginContext['resolve']>[2]>

/** Resolves loader imports for one plugin instance. */
export class LoaderIds {
  // Build only: a loader file's real path, looked up once per build for all its queries.
  readonly #realInBuild = new Map<string, string | undefined>()

  /** A build (or a `--watch` rebuild) starts: files may have moved since the last. */
  reset(): void {
    this.#realInBuild.clear()
  }

  /**
   * The id of the loader `source` imports from `importer`, null when it is no loader; throws
   * `RefusedIdError` for a loader the dev server must not load.
   */
  async resolve(
    context: Pick<Rollup.PluginContext, 'resolve'>,
    config: ResolvedConfig,
    isLoader: IsLoader,
    source: string,
    importer: string | undefined,
    options: ResolveOptions,
  ): Promise<string | null> {
    if (source.startsWith('\0')) return null
    const at = source.search(/[?#]/)
    const path = at === -1 ? source : source.slice(0, at)
    let file = this.#relativeLoader(config, path, importer)
    if (file === undefined) {
      const resolved = await context.resolve(path, importer, { ...options, skipSelf: true })
      if (!resolved || resolved.external) return null
      file = normalizePath(resolved.id)
    }
    if (file.includes('?') || !isLoader(file)) return null
    // A loader: from here on the id has exactly one spelling, or it is refused.
    const { query } = parseId(canonicalId(source))
    const refused = refusal(config, isLoader, file)
    if (refused) throw new RefusedIdError(source, refused)
    return query ? `${file}?${query}` : file
  }

  // `./data.vmd.py` next to a file on disk: the loader's real path, found without a round of
  // every plugin's resolveId (hundreds of loader imports add up). Anything else, or a file
  // that is not there, is left to Vite's resolver.
  #relativeLoader(config: ResolvedConfig, path: string, importer: string | undefined): string | undefined {
    if (!importer || !(path.startsWith('./') || path.startsWith('../'))) return undefined
    const from = importer.split('?', 1)[0]!
    if (!isAbsolute(from)) return undefined
    const file = resolve(dirname(from), path)
    if (config.command === 'build' && this.#realInBuild.has(file)) return this.#realInBuild.get(file)
    let found: string | undefined
    try {
      const real = config.resolve.preserveSymlinks ? file : realpathSync.native(file)
      found = statSync(real).isFile() ? normalizePath(real) : undefined
    } catch {
      found = undefined
    }
    if (config.command === 'build') this.#realInBuild.set(file, found)
    return found
  }
}
