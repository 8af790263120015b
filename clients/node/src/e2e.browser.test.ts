// The example app in Debian's Chromium: data updates in place (state kept, no reload), a broken
// loader shows Vite's overlay with file and line, and the page recovers after the fix.
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createServer } from 'vite'
import type { ViteDevServer } from 'vite'
import vmd from './index.js'
import { makeProject, packageRoot, waitFor } from './test/project.js'
import type { Project } from './test/project.js'

const exampleApp = join(packageRoot, '../../examples/app')

let project: Project
let server: ViteDevServer
let context: BrowserContext
let page: Page
let userDataDir: string
let navigations = 0

beforeAll(async () => {
  project = makeProject({})
  for (const part of ['index.html', 'src', 'content']) cpSync(join(exampleApp, part), project.path(part), { recursive: true })
  server = await createServer({
    root: project.root,
    configFile: false,
    logLevel: 'silent',
    plugins: [vmd()],
    server: { port: 0, host: '127.0.0.1' },
  })
  await server.listen()
  userDataDir = mkdtempSync(join(tmpdir(), 'vmd-chromium-'))
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  page = context.pages()[0] ?? (await context.newPage())
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations++
  })
  const address = server.httpServer!.address()
  if (!address || typeof address === 'string') throw new Error('no address')
  await page.goto(`http://127.0.0.1:${address.port}/`)
}, 60_000)

afterAll(async () => {
  await context?.close()
  await server?.close()
  project?.remove()
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true })
})

const text = (selector: string): Promise<string> => page.locator(selector).innerText()

describe('example app in Chromium', () => {
  test('renders data from every loader', async () => {
    await waitFor(async () => (await text('#users')).includes('Ada Lovelace'), 'the users table')
    expect(await text('#user-count')).toBe('(4, 2 admin)')
    expect(await text('#posts')).toContain('Hello from Python')
    expect(await text('#build')).toContain('staging · serve')
  })

  test('a watched CSV change updates the page in place: counter and window marker survive', async () => {
    for (let i = 0; i < 3; i++) await page.click('#counter')
    expect(await text('#counter')).toBe('clicked 3 times')
    await page.evaluate(() => Object.assign(globalThis, { __vmdMarker: "kept" }))
    const before = navigations

    project.write('content/users/newcomers.csv', 'name,role,joined\nKatherine Johnson,admin,1953\n')
    await waitFor(async () => (await text('#users')).includes('Katherine Johnson'), 'the new row')
    // `users.vmd.py` and `users.vmd.py?role=admin` are two modules: two updates.
    await waitFor(async () => (await text('#user-count')) === '(5, 3 admin)', 'the admin count')
    expect(await text('#counter')).toBe('clicked 3 times')
    expect(await page.evaluate(() => (globalThis as { __vmdMarker?: string }).__vmdMarker)).toBe('kept')
    expect(navigations).toBe(before)
  })

  test('a broken loader shows the overlay with file and line; fixing it recovers in place', async () => {
    const loader = 'src/data/posts.vmd.py'
    const original = project.read(loader)
    const broken = original.replace('    posts = {}\n', '    posts = {}\n    raise RuntimeError("broken on purpose")\n')
    expect(broken).not.toBe(original)
    const line = broken.split('\n').findIndex((l) => l.includes('broken on purpose')) + 1
    const before = navigations

    project.write(loader, broken)
    const overlay = page.locator('vite-error-overlay')
    await overlay.waitFor({ state: 'attached' })
    await waitFor(async () => (await overlay.locator('.message-body').innerText()).includes('RuntimeError: broken on purpose'), 'the Python message')
    expect(await overlay.locator('.file').innerText()).toContain(`${project.path(loader)}:${line}`)
    expect(await overlay.locator('.frame').innerText()).toContain('Traceback (most recent call last)')

    project.write(loader, original.replace('Hello from Python', 'unused').replace('posts = {}', 'posts = {"fixed": {"title": "fixed", "html": "<p>fixed again</p>"}}'))
    await overlay.waitFor({ state: 'detached' })
    await waitFor(async () => (await text('#posts')).includes('fixed again'), 'the fixed posts')
    expect(await text('#counter')).toBe('clicked 3 times')
    expect(await page.evaluate(() => (globalThis as { __vmdMarker?: string }).__vmdMarker)).toBe('kept')
    expect(navigations).toBe(before)
  })
})
