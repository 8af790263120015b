// `vite-plugin-vmd/client`: a TypeScript app that references it type-checks its loader imports
// (default, named, namespace, and with a query declared in the app); without it, TypeScript
// cannot find the module.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'

const pkg = fileURLToPath(new URL('..', import.meta.url))
const tsc = join(pkg, 'node_modules/.bin/tsc')
const apps: string[] = []

afterAll(() => {
  for (const app of apps) rmSync(app, { recursive: true, force: true })
})

// A TypeScript app as Vite's template sets one up, with the package installed under its name.
function typeCheck(types: string[]): { ok: boolean; output: string } {
  const app = realpathSync(mkdtempSync(join(tmpdir(), 'vmd-types-')))
  apps.push(app)
  mkdirSync(join(app, 'node_modules'))
  mkdirSync(join(app, 'src'))
  symlinkSync(pkg, join(app, 'node_modules/vite-plugin-vmd'), 'dir')
  const compilerOptions = { strict: true, module: 'ESNext', moduleResolution: 'bundler', target: 'ES2022', noEmit: true, types }
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['src'] }))
  // A pattern holds one `*`: an import with a query has its own line, as the README shows.
  writeFileSync(join(app, 'src/env.d.ts'), "declare module '*.vmd.py?type=dog'\n")
  writeFileSync(
    join(app, 'src/main.ts'),
    [
      "import users from './users.vmd.py'",
      "import dogs from './animals.vmd.py?type=dog'",
      "import { rows, total } from './stats.vmd.py'",
      "import * as all from './all.vmd.py'",
      'export const count: number = users.length + rows.length + total + all.size + dogs.length',
      '',
    ].join('\n'),
  )
  try {
    return { ok: true, output: execFileSync(tsc, ['-p', app], { encoding: 'utf8' }) }
  } catch (error) {
    return { ok: false, output: String((error as { stdout?: string }).stdout) }
  }
}

test('an app referencing vite-plugin-vmd/client type-checks its loader imports', () => {
  expect(typeCheck(['vite-plugin-vmd/client'])).toEqual({ ok: true, output: '' })
})

test('without the client types, TypeScript cannot find a loader module', () => {
  const { ok, output } = typeCheck([])
  expect(ok).toBe(false)
  expect(output).toContain("error TS2307: Cannot find module './users.vmd.py'")
})
