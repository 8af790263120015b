// The JavaScript original of the idea, written for comparison: an in-process Vite plugin that
// imports a JS loader (`*.loader.mjs`) with a cache-busted `import()` and watches with chokidar.
// Same HMR path as vite-plugin-vmd (invalidate in every environment, reloadModule), so the
// comparison is about where and how the loader runs.
import { pathToFileURL } from 'node:url'
// chokidar comes from clients/node's dev dependencies (this script has no package.json).
const { watch } = await import(new URL('../../clients/node/node_modules/chokidar/index.js', import.meta.url).href)

const LOADER = /\.loader\.mjs(?:\?|$)/

export default function baseline() {
  let server
  let watcher
  // loader file -> version, bumped on every change so `import()` gets a fresh instance
  const versions = new Map()
  // watched file -> ids that depend on it
  const dependents = new Map()

  function onChange(file) {
    const ids = dependents.get(file)
    if (!ids || !server) return
    for (const id of ids) {
      const loader = id.split('?')[0]
      versions.set(loader, (versions.get(loader) ?? 0) + 1)
      for (const environment of Object.values(server.environments)) {
        const mod = environment.moduleGraph.getModuleById(id)
        if (!mod) continue
        environment.moduleGraph.invalidateModule(mod, new Set(), Date.now(), true)
        void environment.reloadModule(mod)
      }
    }
  }

  return {
    name: 'baseline-loader',
    enforce: 'pre',
    configureServer(s) {
      server = s
      watcher = watch([], { ignoreInitial: true })
      watcher.on('change', onChange)
      watcher.on('add', onChange)
    },
    async closeBundle() {
      await watcher?.close()
    },
    hotUpdate({ modules }) {
      const others = modules.filter((m) => !(m.id && LOADER.test(m.id)))
      return others.length === modules.length ? undefined : others
    },
    load: {
      filter: { id: LOADER },
      async handler(id) {
        const [file, query = ''] = id.split('?')
        const version = versions.get(file) ?? 0
        const mod = await import(`${pathToFileURL(file).href}?v=${version}`)
        const files = [file, ...(mod.watch ?? [])]
        for (const f of files) {
          if (!dependents.has(f)) dependents.set(f, new Set())
          dependents.get(f).add(id)
          watcher?.add(f)
          if (!server) this.addWatchFile(f)
        }
        const code = await mod.load({ query: Object.fromEntries(new URLSearchParams(query)) })
        return { code, moduleType: 'js' }
      },
    },
  }
}
