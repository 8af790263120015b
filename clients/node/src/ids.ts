/**
 * Strict parsing of loader ids and of dev-server request URLs that name a loader.
 *
 * Several Vite CVEs came from loose query parsing (`?raw??`, `?import&raw`, `#`, encoded
 * separators): one component read the URL one way and another the other way. Here a loader id
 * has exactly one spelling: an absolute path with no encoded or special characters, then at most
 * one `?` followed by `key=value` pairs. Anything else is refused before the daemon is asked.
 */

/** Query keys Vite gives a meaning of its own; a loader query must not use them. */
const VITE_QUERY_KEYS = new Set([
  'raw',
  'url',
  'inline',
  'no-inline',
  'worker',
  'sharedworker',
  'worker_file',
  'import',
  'direct',
  'html-proxy',
  'inline-css',
  'used',
  'init',
  't',
  'v',
])

const KEY = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/
// RFC 3986 unreserved and a few sub-delimiters, or percent-escapes (checked after decoding).
const VALUE = /^(?:[A-Za-z0-9_.~!$'()*+,;:@/-]|%[0-9A-Fa-f]{2})*$/
const FORBIDDEN_DECODED = /[?#\\\0-\x1f\x7f]/

/** A loader id refused by the plugin before the daemon is asked. */
export class RefusedIdError extends Error {
  readonly id: string
  constructor(id: string, reason: string) {
    super(`vmd: refused module id ${JSON.stringify(id)}: ${reason}`)
    this.name = 'RefusedIdError'
    this.id = id
  }
}

/** An id split into the loader's path and its query (without `?`, `''` when none). */
export interface ParsedId {
  path: string
  query: string
}

/**
 * Split `id` at its only `?`; throws `RefusedIdError` unless the query is strict `key=value`
 * pairs (see `checkQuery`) and the path holds no `#`, NUL or `%`.
 */
export function parseId(id: string): ParsedId {
  const at = id.indexOf('?')
  const path = at === -1 ? id : id.slice(0, at)
  const query = at === -1 ? '' : id.slice(at + 1)
  if (/[#\0]/.test(path)) throw new RefusedIdError(id, 'the path contains "#" or NUL')
  checkQuery(id, query)
  return { path, query }
}

/**
 * `source` (an import as Vite hands it to `resolveId`) with its query in the one spelling a
 * loader id has, whoever decoded it first. Vite's dev server decodes a request URL before
 * resolving it (`?title=hello%20world` arrives as `hello world`), a build does not: a value
 * holding characters a strict query cannot is taken as decoded text and percent-encoded, so
 * both give the same id and the loader the same value. A value's trailing extension dot is
 * encoded too: Vite's CSS and HTML plugins take an id ending in `.css` or `.html` for a
 * stylesheet or a page, and a loader's output is JavaScript whatever its query says.
 * What comes out is still checked by `parseId`.
 */
export function canonicalId(source: string): string {
  const at = source.indexOf('?')
  if (at === -1 || at === source.length - 1) return source
  const pairs = source.slice(at + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=')
    if (eq === -1) return pair // refused by checkQuery, which names it
    let value = pair.slice(eq + 1)
    if (!VALUE.test(value)) {
      try {
        value = encodeURIComponent(value)
      } catch {
        return pair // a lone surrogate: refused by checkQuery
      }
    }
    return `${pair.slice(0, eq)}=${value.replace(/\.(?=[A-Za-z0-9]+$)/, '%2E')}`
  })
  return `${source.slice(0, at)}?${pairs.join('&')}`
}

/**
 * Throws unless `query` is empty or `key=value` pairs joined by `&`: keys `[A-Za-z0-9_.-]`,
 * not one of Vite's own query flags (`raw`, `url`, `inline`, `worker`, `import`, `t`, …),
 * no key twice, values URL-safe without `?`, `#` or `\` even after percent-decoding.
 */
export function checkQuery(id: string, query: string): void {
  if (query === '') {
    if (id.endsWith('?')) throw new RefusedIdError(id, 'empty query')
    return
  }
  const seen = new Set<string>()
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=')
    if (eq === -1) throw new RefusedIdError(id, `query part ${JSON.stringify(pair)} is not key=value`)
    const key = pair.slice(0, eq)
    const value = pair.slice(eq + 1)
    if (!KEY.test(key)) throw new RefusedIdError(id, `bad query key ${JSON.stringify(key)}`)
    if (VITE_QUERY_KEYS.has(key)) throw new RefusedIdError(id, `query key "${key}" is reserved by Vite`)
    if (seen.has(key)) throw new RefusedIdError(id, `query key "${key}" given twice`)
    seen.add(key)
    if (!VALUE.test(value)) throw new RefusedIdError(id, `bad query value for "${key}"`)
    let decoded: string
    try {
      decoded = decodeURIComponent(value)
    } catch {
      throw new RefusedIdError(id, `bad percent-encoding in "${key}"`)
    }
    if (FORBIDDEN_DECODED.test(decoded)) throw new RefusedIdError(id, `forbidden character in "${key}"`)
  }
}

/** What a dev-server request URL asks for, once Vite's own query flags are taken off. */
export interface RequestTarget {
  /** `fs`: an `/@fs/` absolute path; `root`: a path under the server root; `id`: `/@id/…`. */
  kind: 'fs' | 'root' | 'id'
  /** The decoded path (absolute for `fs`, root-relative starting with `/` for `root`). */
  path: string
  /** The loader query left for the daemon (Vite's `import` and `t=` removed). */
  query: string
  /** Whether the URL has Vite's `import` flag: a module import, not a plain fetch of the file. */
  imported: boolean
}

const ENCODED_SPECIAL = /%(?:2f|5c|3f|23|25|00)/i

/**
 * Parse a request URL (`req.url`, after Vite's `base` was removed) that names a Python file.
 * Returns `undefined` when the URL is malformed in any way a past CVE used: a `#`, a second `?`,
 * encoded `/`, `\`, `?`, `#`, `%` or NUL in the path, undecodable escapes.
 */
export function parseRequestUrl(url: string): RequestTarget | undefined {
  if (url.includes('#') || /[\0\\]/.test(url)) return undefined
  const at = url.indexOf('?')
  const rawPath = at === -1 ? url : url.slice(0, at)
  const rawQuery = at === -1 ? '' : url.slice(at + 1)
  if (rawQuery.includes('?') || /%(?:3f|23)/i.test(rawQuery)) return undefined
  if (ENCODED_SPECIAL.test(rawPath)) return undefined
  let path: string
  try {
    path = decodeURI(rawPath)
  } catch {
    return undefined
  }
  if (!path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '.')) return undefined
  // Vite's own flags on module requests: `import` (added by import analysis) and `t=` (HMR).
  const parts = rawQuery.split('&')
  // Vite removes `t=` only with a 13-digit timestamp; any other `t` is left to checkQuery.
  const query = parts.filter((p) => p !== '' && p !== 'import' && !/^t=\d{13}$/.test(p)).join('&')
  const imported = parts.includes('import')
  if (path.startsWith('/@fs/')) return { kind: 'fs', path: path.slice('/@fs'.length), query, imported }
  if (path.startsWith('/@id/')) return { kind: 'id', path, query, imported }
  return { kind: 'root', path, query, imported }
}

/** True when a URL, decoded up to three times, names a `.py` file anywhere. */
export function mentionsPython(url: string): boolean {
  let text = url
  for (let i = 0; i < 3; i++) {
    if (/\.py(?:$|[^A-Za-z0-9_])/i.test(text)) return true
    try {
      const next = decodeURIComponent(text)
      if (next === text) break
      text = next
    } catch {
      break
    }
  }
  return /\.py(?:$|[^A-Za-z0-9_])/i.test(text)
}
