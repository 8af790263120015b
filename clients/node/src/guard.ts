/**
 * What may reach the daemon from the dev server. A loader is server code: only ids of included
 * loaders that Vite's `server.fs` rules allow are loaded, and a dev-server request naming a
 * Python file is checked before any of Vite's own middlewares, so a malformed URL or a plain
 * fetch of a loader's source never gets past it.
 */

import { realpathSync } from 'node:fs'
import { isAbsolute, join, normalize } from 'node:path'
import { isFileLoadingAllowed } from 'vite'
import type { Connect, ResolvedConfig } from 'vite'
import { checkQuery, mentionsPython, parseRequestUrl } from './ids.js'

/** Whether a real, absolute path matches the `include` globs. */
export type IsLoader = (path: string) => boolean

// Why the dev server must not ask the daemon for the loader at `path`; undefined when it may.
// A build is not checked here: server.fs guards the dev server (the daemon confines every id).
export function refusal(config: ResolvedConfig, isLoader: IsLoader, path: string): string | undefined {
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

// Dev-server requests naming a Python file are checked before any of Vite's middlewares:
// malformed URLs (the shapes of past query-suffix CVEs) and files outside server.fs get 403,
// missing loaders 404, so nothing reaches the daemon. A loader is server code: a plain fetch
// of one (no `import` flag, which every module import the page makes has) would get its
// source, credentials and all, from Vite's static files, so it gets 403.
export function requestGuard(config: ResolvedConfig, isLoader: IsLoader): Connect.NextHandleFunction {
  return (req, res, next) => {
    const url = req.url
    if (!url || !mentionsPython(url)) return next()
    const status = requestStatus(config, isLoader, url)
    if (status === undefined) return next()
    res.statusCode = status
    res.setHeader('Content-Type', 'text/plain; charset=utf-8')
    res.end(status === 404 ? 'Not Found' : 'Forbidden')
  }
}

// The status to answer `url` with instead of Vite; undefined to let Vite serve it.
function requestStatus(config: ResolvedConfig, isLoader: IsLoader, url: string): number | undefined {
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
